"""What every view of a logged-in person needs, outside the blueprints (no view imports
another view): who is asking, their `Reader` for this request (services/reading.py), and the
end of the request that records what the delivered page showed."""

from __future__ import annotations

from flask import Response, current_app, g, request
from flask_login import current_user

from . import db
from .models import User
from .services import reading, sessions


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
