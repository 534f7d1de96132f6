"""Blueprints, one per domain, and the helpers every view uses."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import (
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from jinja2_fragments.flask import render_block


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


def viewer_zone() -> ZoneInfo:
    """The viewer's time zone: the `tz` cookie app.js sets from the browser, else the
    clinic's KAPJOURNAL_TIMEZONE, else UTC."""
    for name in (request.cookies.get("tz", ""), current_app.config.get("TIMEZONE", "UTC")):
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
    """Jinja filter: a stored UTC time in the viewer's zone."""
    return "" if value is None else in_viewer_zone(value).strftime(fmt)


def init_app(app) -> None:
    from ..services.measures import shares_by_default

    app.add_template_filter(local_time, "local")
    app.add_template_global(shares_by_default, "shares_by_default")
