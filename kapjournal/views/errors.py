"""Error pages that work as full pages and as htmx fragments."""

from __future__ import annotations

import logging
import traceback

from flask import Flask, current_app, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from . import render

log = logging.getLogger(__name__)

# The same words whether a thing never existed, was deleted (a patient who left) or is not, or
# no longer, shared with the reader: nothing here tells those apart.
NOT_HERE = _l(
    "There is nothing here for you. It may have been deleted, or it is not shared with you,"
    " or no longer."
)
MESSAGES = {
    400: (_l("Something was wrong with that request"), _l("Please go back and try again.")),
    404: (_l("Page not found"), NOT_HERE),
    405: (_l("Page not found"), NOT_HERE),
    410: (_l("This link has expired"), _l("Ask for a new one.")),
    413: (_l("That was too long to send"), _l("Please shorten it and try again.")),
    422: (_l("Please check what you entered"), _l("Some of it could not be accepted.")),
    429: (
        _l("Too many attempts"),
        _l("For your safety, please wait a few minutes before trying again."),
    ),
    500: (
        _l("Something went wrong on our side"),
        _l("Your words were not lost if they are still on your screen. Please try again."),
    ),
}


def error_page(status: int, detail: str | None = None):
    title, text = MESSAGES.get(status, MESSAGES[400])
    response = render(
        "errors/error.html",
        block="content",
        status=status,
        title=str(title),  # lazy: in the language of this request
        text=str(detail or text),
        code=status,
        current_tab=None,  # the same page whatever was asked for: nothing to tell apart
    )
    if request.htmx and not request.htmx.boosted:
        # A fragment replaces the main content, whatever the element that asked.
        response.headers["HX-Retarget"] = "#main"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


# Views whose requests may be too large say why in their own words.
TOO_LARGE = {
    "capture.new": lambda config: _(
        "That voice memo is too long to keep: memos can be up to 5 minutes (%(mb)d MB)."
        " Nothing was saved. Please record a shorter one, or write a few words instead.",
        mb=config["MEMO_MAX_BYTES"] // (1024 * 1024),
    ),
}


def _http_error(exc: HTTPException):
    status = 404 if exc.code == 405 else (exc.code or 500)
    if status == 413 and request.endpoint in TOO_LARGE:
        return error_page(413, TOO_LARGE[request.endpoint](current_app.config))
    if isinstance(exc, CSRFError):
        return error_page(
            400, _("This form had expired. Go back, reload the page and send it again.")
        )
    response = error_page(status)
    whole = dict(exc.get_headers()).get("Content-Range") if status == 416 else None
    if whole:  # the protocol's own header: the length a range may ask within
        response.headers["Content-Range"] = whole
    return response


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    # The type and the stack, never the message: a message may quote someone's words.
    stack = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s\n%s", type(exc).__name__, stack)
    return error_page(500)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _http_error)
    app.register_error_handler(Exception, _unexpected)
