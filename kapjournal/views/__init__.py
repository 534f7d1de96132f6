"""Blueprints, one per domain, and the helpers every view uses."""

from __future__ import annotations

from flask import Response, make_response, redirect, render_template, request, url_for
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
