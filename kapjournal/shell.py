"""The app shell every page shares (templates/base.html): the tabs of the main navigation for
who is logged in, which one the page belongs to, and the icon sprite. A bottom tab bar on a
phone, a bar in the header on a tablet or a computer (static/css/app.css).

The shell is the same for everyone who shares a language, a role and a tab, so its markup is
rendered once for each and kept (`{% shell 'name', key… %}…{% endshell %}`, see ShellCache):
only the app's own words, links and icons, never a person's data.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, request, url_for
from flask_login import current_user
from jinja2 import nodes
from jinja2.ext import Extension
from markupsafe import Markup

from .i18n import lazy_gettext as _l


@dataclass(frozen=True)
class Tab:
    key: str
    label: str  # lazy: in the language of the page it is shown on
    endpoint: str
    icon: str
    where: str = "all"  # "all", "wide" (tablets and computers only) or "narrow" (phones)
    args: tuple = ()

    @property
    def url(self) -> str:
        return url_for(self.endpoint, **dict(self.args))


TABS = {
    "patient": (
        Tab("journal", _l("Journal"), "journal.timeline", "book-open"),
        Tab("write", _l("Write"), "journal.new_entry", "pen-line", args=(("kind", "reflection"),)),
        Tab("progress", _l("Progress"), "measures.index", "chart-line"),
        Tab("supporters", _l("My supporters"), "support.supporters", "users", where="wide"),
        Tab("account", _l("Account"), "account.index", "user-round", where="wide"),
        Tab("more", _l("More"), "home.more", "list-checks", where="narrow"),
    ),
    "therapist": (
        Tab("home", _l("Patients"), "home.index", "clipboard-list"),
        Tab("invite", _l("Invite a patient"), "care.invitations", "plus"),
        Tab("account", _l("Account"), "account.index", "user-round"),
    ),
    "support": (
        Tab("home", _l("Home"), "home.index", "heart-handshake"),
        Tab("account", _l("Account"), "account.index", "user-round"),
    ),
}

# Which tab a page belongs to, by blueprint or endpoint (the first match wins).
_TAB_OF = (
    ("journal.new_entry", "write"),
    ("journal.edit_entry", "write"),
    ("measures.", "progress"),
    ("support.supporter", "supporters"),
    ("support.", "supporters"),
    ("account.", "account"),
    ("mfa.", "account"),
    ("push.", "account"),
    ("home.more", "more"),
    ("care.invitations", "invite"),
    ("care.create_invitation", "invite"),
    ("journal.", "journal"),
    ("home.", "home"),
    ("patients.", "home"),
    ("workspace.", "home"),
    ("integration.", "home"),
)


def current_tab() -> str | None:
    endpoint = request.endpoint or ""
    role = current_user.role if current_user.is_authenticated else ""
    for prefix, key in _TAB_OF:
        if endpoint == prefix or (prefix.endswith(".") and endpoint.startswith(prefix)):
            if role == "support" and key == "supporters":
                return "home"
            return key
    return None


def _context() -> dict:
    tabs = ()
    if current_user.is_authenticated and not current_user.unlocked.device.mfa_pending:
        tabs = TABS.get(current_user.role, ())
    return {
        "tabs": tabs,
        "current_tab": current_tab() if tabs else None,
        "sprite": _sprite_url(),
    }


def _sprite_url() -> str:
    """Built once (it needs a request to build, and is the same ever after)."""
    found = current_app.extensions.get("sprite_url")
    if found is None:
        found = current_app.extensions["sprite_url"] = url_for(
            "static", filename="icons/sprite.svg"
        )
    return found


def icon(name: str, class_: str = "") -> Markup:
    """An icon from the vendored Lucide sprite, for sighted readers only (`aria-hidden`): the
    words beside it say what it means. A template global: `{{ icon('book-open') }}`."""
    classes = f"icon {class_}" if class_ else "icon"
    template = Markup(
        '<svg class="{}" aria-hidden="true" focusable="false"><use href="{}#i-{}"></use></svg>'
    )
    return template.format(classes, _sprite_url(), name)  # each value escaped


class ShellCache(Extension):
    """`{% shell 'nav', html_lang(), current_tab %}…{% endshell %}`: the body rendered once
    per key (the template and line are part of it) and kept on the Jinja environment, i.e. per
    app. For the shell's markup only: what is inside may depend on nothing but its key, and a
    key is made of the language, the role and the tab (tests/test_shell.py reads every use).
    Never a person's data: the server keeps no page (DESIGN §4)."""

    tags = {"shell"}
    LIMIT = 512  # keys are few (languages by roles by tabs); past this, render without keeping

    def __init__(self, environment):
        super().__init__(environment)
        environment.extend(shell_cache={})

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        values = []
        while parser.stream.current.type != "block_end":
            if values:
                parser.stream.expect("comma")
            values.append(parser.parse_expression())
        key = [nodes.Const(parser.name), nodes.Const(lineno), *values]
        body = parser.parse_statements(("name:endshell",), drop_needle=True)
        call = self.call_method("_kept", [nodes.Tuple(key, "load")])
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _kept(self, key: tuple, caller) -> str:
        kept = self.environment.shell_cache
        found = kept.get(key)
        if found is None:
            found = caller()
            if len(kept) < self.LIMIT:
                kept[key] = found
        return found


def init_app(app: Flask) -> None:
    app.jinja_env.add_extension(ShellCache)
    app.context_processor(_context)
    app.add_template_global(icon, "icon")
    app.add_template_global(icon, "svg_icon")  # for the macro of the same name (_macros.html)
