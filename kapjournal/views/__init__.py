"""Blueprints, one per domain, and the helpers every view uses."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import (
    Response,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from jinja2_fragments.flask import render_block
from markupsafe import Markup, escape

from .. import i18n


def render(template: str, *, block: str | None = None, status: int = 200, **context) -> Response:
    """The page, or just its `block` for an htmx request that targets part of the page.

    Boosted navigation and history restores get the full page, like a browser without
    JavaScript, so a fragment and its page come from the same template and never drift.
    """
    partial = block and request.htmx and not request.htmx.boosted
    partial = partial and not request.htmx.history_restore_request
    body = (
        render_block(template, block, **context)
        if partial
        else render_template(template, **context)
    )
    return make_response(body, status)


def see_other(endpoint: str, **values) -> Response:
    """303 to another page: a redirect without JavaScript, HX-Redirect-free with htmx
    (htmx follows the 303 and swaps the page it lands on)."""
    return redirect(url_for(endpoint, **values), code=303)


def form_text(name: str, limit: int = 10_000) -> str:
    return request.form.get(name, "")[:limit]


def form_uuid(name: str) -> uuid.UUID | None:
    """A form field holding an id, or None when it is missing or not one."""
    try:
        return uuid.UUID(request.form.get(name) or "")
    except ValueError:
        return None


def ticked(name: str) -> bool:
    """Whether a checkbox (or a one-button form's hidden field) said yes."""
    return request.form.get(name) in ("1", "yes", "on")


def in_place() -> bool:
    """Whether a component's own htmx request (not a boosted form) posted this: it gets its
    block back and records only the action, never re-reading the page it came from."""
    return bool(request.htmx) and not request.htmx.boosted


def next_path() -> str:
    """The page a component sits on, without its anchor (to render its `next` field again)."""
    return form_text("next", 500).partition("#")[0]


def back_to(default: str) -> Response:
    """303 to the page a form came from (its `next` field, if a path on this site), or to
    `default`."""
    return redirect(safe_next(form_text("next", 500), default), code=303)


def safe_next(value: str | None, default: str | None = None) -> str:
    """`value` if it is a path on this site (see `on_this_site`), else `default` (the home
    page). Every `next` or `back` value the app follows goes through here."""
    return value if on_this_site(value) else (default or url_for("home.index"))


def on_this_site(value: str | None) -> bool:
    """Whether `value` is a path on this site (query and fragment allowed). Refused: a control
    character or white space anywhere, also once percent-decoded (browsers drop tabs and
    newlines, so slash-tab-slash-host would become //host); a scheme or a host, after reading
    backslashes as slashes as browsers do; anything not starting with exactly one slash."""
    if not value or not _a_path_here(value, spaces=False):
        return False
    return _a_path_here(unquote(value), spaces=True)  # what a second decoding would make


def _a_path_here(value: str, *, spaces: bool) -> bool:
    for ch in value:
        if unicodedata.category(ch)[0] == "C" or (ch.isspace() and not (spaces and ch == " ")):
            return False
    candidate = value.replace("\\", "/")
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return False
    if parts.scheme or parts.netloc:
        return False
    return candidate.startswith("/") and not candidate.startswith("//")


def viewer_zone() -> ZoneInfo:
    """The viewer's time zone: the `tz` cookie app.js sets from the browser, else the
    clinic's KAPJOURNAL_TIMEZONE, else UTC. Found once per request (a page shows many
    times)."""
    found = g.get("viewer_zone")
    if found is None:
        found = g.viewer_zone = _zone_named(
            request.cookies.get("tz", ""), current_app.config.get("TIMEZONE", "UTC")
        )
    return found


def _zone_named(*names: str) -> ZoneInfo:
    for name in names:
        try:
            return ZoneInfo(name) if name else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def in_viewer_zone(value: datetime) -> datetime:
    """A stored UTC time (naive or aware) in the viewer's zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(viewer_zone())


def local_time(value: datetime | None, fmt: str = "%a %-d %b %Y, %H:%M") -> str:
    """Jinja filter: a stored UTC time in the viewer's zone and the page's language, `fmt` in
    strftime style (rendered by Babel: see i18n.format_moment)."""
    return "" if value is None else i18n.format_moment(in_viewer_zone(value), fmt)


# --- phone numbers as links ---------------------------------------------------------------------

# A run that may be a phone number: digits with spaces, dots, hyphens or brackets between them,
# never across a line break, and not inside a word or a longer number.
_PHONE_RUN = re.compile(r"(?<![\w+(])(?:\+|\()?\d[\d \u00a0().-]*\d(?!\w)", re.ASCII)
_SHORT_NUMBERS = {"911", "988"}  # crisis and emergency lines said in three digits
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{4} ?- ?\d{4}", re.ASCII)


def _phone_number(run: str) -> str | None:
    """What to dial for a run of text, or None if it does not look like a phone number: 7
    to 15 digits (or a three-digit crisis line), and not a date or a span of years."""
    digits = re.sub(r"\D", "", run, flags=re.ASCII)
    if _DATE.fullmatch(run) or not (7 <= len(digits) <= 15 or run in _SHORT_NUMBERS):
        return None
    return ("+" if run.startswith("+") else "") + digits


def phone_links(text: str | None) -> Markup:
    """Jinja filter for the words of a safety plan or a support card: the text, escaped, with
    each phone number in it a tel: link (one tap to call). Built from escaped pieces only."""
    text = text or ""
    out, last = Markup(""), 0
    for match in _PHONE_RUN.finditer(text):
        run, start = match.group(0), match.start()
        if run.startswith("(") and ")" not in run:
            run, start = run[1:], start + 1  # "(call 555 0100)": the bracket is not dialled
        number = _phone_number(run)
        if number is None:
            continue
        out += escape(text[last:start]) + Markup('<a href="tel:{}">{}</a>').format(number, run)
        last = match.end()
    return out + escape(text[last:])


def init_app(app) -> None:
    from ..services.entry_forms import MOOD_FACES
    from ..services.measures import shares_by_default

    app.add_template_filter(local_time, "local")
    app.add_template_filter(phone_links, "phone_links")
    app.add_template_global(MOOD_FACES, "mood_faces")
    app.add_template_global(shares_by_default, "shares_by_default")
