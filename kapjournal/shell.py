"""The app shell every page shares (templates/base.html): the tabs of the main navigation for
who is logged in, which one the page belongs to, and the icon sprite. A bottom tab bar on a
phone, a bar in the header on a tablet or a computer (static/css/app.css)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup


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


def init_app(app: Flask) -> None:
    app.context_processor(_context)
    app.add_template_global(icon, "icon")
    app.add_template_global(icon, "svg_icon")  # for the macro of the same name (_macros.html)
