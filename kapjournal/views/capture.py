"""After a ketamine session: the capture page (a voice memo, one tap for body and mood, a few
words), playing a memo back, and the patient's choice the next day about what the cooling-off
seal held (services/capture.py)."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, abort, request
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from .. import db, pages, policy, web
from ..services import capture, journal, reading
from ..services.accounts import ValidationError
from . import form_uuid, render, see_other

bp = Blueprint("capture", __name__)


@bp.app_template_filter("feeling")
def feeling_label(value: str) -> str:
    """A stored feeling ("calm") as the reader reads it: its label in their language; a value
    no longer offered is shown as stored."""
    return str(dict(capture.FEELINGS).get(value) or value.capitalize())


def _me():
    return web.me()


def _context(*, values=None, errors=None) -> dict:
    dbs = db.session()
    return {
        "feelings": capture.FEELINGS,
        "values": values or {"client_id": str(uuid.uuid4())},
        "chosen": set(values.getlist("feeling")) if hasattr(values, "getlist") else set(),
        "errors": errors or {},
        "sealing": capture.seal_on(_me())
        and capture.session_in_window(session=dbs, patient=_me()) is not None,
        "hours": capture.hours(),
        "memo_mb": capture.memo_limit() // (1024 * 1024),
    }


@bp.route("/capture", methods=["GET", "POST"])
@policy.allow("patient")
def new():
    """The capture page, and (POST) keeping what was captured. The memo comes as a file of the
    form: held in memory only (web.InMemoryRequest), sealed, never written anywhere in clear."""
    if request.method == "GET":
        return render("capture/new.html", **_context())
    dbs = db.session()
    try:
        body, audio, _ = capture.parse(request.form, request.files.get("memo"))
    except capture.MemoTooLarge:
        raise RequestEntityTooLarge() from None  # errors.py says it in the memo's words
    except ValidationError as exc:
        return render(
            "capture/new.html", status=422, **_context(values=request.form, errors=exc.errors)
        )
    client_id = form_uuid("client_id") or uuid.uuid4()
    readers = pages.default_readers(_me(), "capture")  # held by the seal in the after-hours
    new = {"body": body, "audio": audio, "client_id": client_id, "readers": readers}
    try:
        entry, _created = capture.create(session=dbs, author=_me(), **new)
    except IntegrityError:
        # The same client_id twice at once (a retry, a queued send): the first one made it.
        dbs.rollback()
        entry, _created = capture.create(session=dbs, author=_me(), **new)
    dbs.commit()
    return see_other("journal.show_entry", entry_id=entry.id)


@bp.get("/entries/<uuid:entry_id>/memo")
@policy.allow(policy.AUTHENTICATED)
def memo(entry_id: uuid.UUID):
    """An entry's voice memo, decrypted for whoever may read the entry, never stored by the
    browser (no-store, set for every non-public response); byte ranges for seeking. Playing
    someone else's memo is a read in the access log."""
    dbs = db.session()
    entry, wrapped = policy.get_entry_to_read_for(
        session=dbs, user=_me(), entry_id=entry_id, need="read"
    )
    try:
        audio = reading.open_memo(session=dbs, reader=web.reader(), entry=entry, wrapped=wrapped)
        kind = (
            reading.open_entry(
                session=dbs, reader=web.reader(), entry=entry, wrapped=wrapped, shown=False
            )
            .get("memo", {})
            .get("type", "audio/webm")
        )
    except journal.EntryUnreadable:
        abort(404)
    return _ranged(audio, kind if kind in capture.AUDIO_TYPES else "audio/webm")


def _ranged(data: bytes, mimetype: str) -> Response:
    """`data` whole (200) or the byte range asked for (206; 416 outside it): Werkzeug's own
    range handling, on bytes held in memory."""
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = "inline"
    return response.make_conditional(request, accept_ranges=True, complete_length=len(data))


@bp.post("/capture/<uuid:entry_id>/decide")
@policy.allow("patient")
def decide(entry_id: uuid.UUID):
    """The next day, for something the seal held: share it with the people ticked, keep it
    private, or delete it."""
    dbs = db.session()
    entry, _hold = policy.get_held_entry_for(session=dbs, user=_me(), entry_id=entry_id)
    choice = request.form.get("choice", "")
    if choice == "share":
        readers = policy.get_held_readers_for(
            session=dbs, patient=_me(), reader_ids=request.form.getlist("share"), kind=entry.kind
        )
        if not readers:
            choice = "private"  # nobody ticked: it stays theirs
        else:
            private_key = web.reader().private_key
            capture.share_held(
                session=dbs, entry=entry, author=_me(), private_key=private_key, readers=readers
            )
    if choice == "private":
        capture.release(session=dbs, entry=entry)
    elif choice == "delete":
        capture.release(session=dbs, entry=entry)
        journal.delete(session=dbs, entry=entry, author=_me())
    elif choice != "share":
        abort(404)
    dbs.commit()
    return see_other("journal.timeline")
