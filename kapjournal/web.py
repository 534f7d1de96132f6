"""What every view of a logged-in person needs, outside the blueprints (no view imports
another view): who is asking, their `Reader` for this request (services/reading.py), and the
end of the request that records what the delivered page showed."""

from __future__ import annotations

import io

from flask import Response, current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user

from . import db
from .models import User
from .services import importing, reading, sessions


def me() -> User:
    """The logged-in user of this request."""
    return current_user.user


def reader() -> reading.Reader:
    """The current user reading during this request (one per request): their private key is
    unlocked only on a key-cache miss, and the cache is this device session's."""
    found = g.get("reader")
    if found is None:
        unlocked = current_user.unlocked
        found = g.reader = reading.Reader(
            user=unlocked.user,
            unlock=unlocked.private_key,
            load_cache=lambda: sessions.key_cache(unlocked),
            store_cache=lambda cache: sessions.store_key_cache(
                session=db.session(), unlocked=unlocked, cache=cache
            ),
        )
    return found


def finish(response: Response) -> Response:
    """after_request: the page was delivered (no server error), so what it showed was read:
    record the reads and keep the key cache, in one commit."""
    found = g.get("reader")
    if found is None or response.status_code >= 500:
        return response
    dbs = db.session()
    if reading.finish(session=dbs, reader=found):
        dbs.commit()
    return response


def absolute_url(path: str) -> str:
    """`path` on KAPJOURNAL_BASE_URL (required in production: never the request's Host)."""
    base = current_app.config.get("BASE_URL") or request.url_root
    return base.rstrip("/") + path


# --- uploads ------------------------------------------------------------------------------------

# The views that take a file, and the largest request each accepts (a file and the form around
# it); every other request keeps MAX_CONTENT_LENGTH. A larger one is refused (413) unread.
UPLOAD_LIMITS = {
    "capture.new": lambda config: config["MEMO_MAX_BYTES"] + 256 * 1024,  # a voice memo
    # Up to twice the largest journal.json is read, so that the page can say what is wrong.
    "export.import_journal": lambda config: 2 * importing.MAX_BYTES,
}
# Pages that may use the microphone (Permissions-Policy): the capture page and its offline copy.
MICROPHONE = {"capture.new", "offline.capture_offline"}


class InMemoryUploads:
    """Uploads stay in memory, never in a temporary file: a voice memo or a journal being
    imported is someone's words in clear until it is sealed, and must never touch the disk.
    UPLOAD_LIMITS bound the memory a request may take. A mixin: on top of the request class
    the extensions chose (htmx's)."""

    _max_content_length: int | None

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        return io.BytesIO()

    @property
    def max_content_length(self) -> int | None:
        limit = UPLOAD_LIMITS.get(self.endpoint)
        if self._max_content_length is None and limit is not None and current_app:
            return limit(current_app.config)
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value


class CsrfCookie(SecureCookieSessionInterface):
    """Flask's signed cookie session, which holds only the CSRF token, with its signer built
    once per set of keys instead of on every request."""

    _signer: tuple | None = None

    def get_signing_serializer(self, app):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if self._signer is None or self._signer[0] != keys:
            self._signer = (keys, super().get_signing_serializer(app))
        return self._signer[1]
