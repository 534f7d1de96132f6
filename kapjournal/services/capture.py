"""After a ketamine session: soft capture and the cooling-off seal (DESIGN §11).

A capture is an entry of kind "capture": how the body and mood feel (one tap each), a few
words, and maybe a voice memo. Its body is sealed like any entry; the memo's audio is sealed
under the same data key in its own row (journal.seal_memo), so lists never load it.

The cooling-off seal: whatever a patient writes within COOLING_OFF_HOURS of a ketamine
session's start is written readable by them alone, whatever their standing defaults; the
readers it would have gone to wait in a CoolingOff row until the seal ends, when the patient
chooses to share it, keep it private or delete it ("From yesterday's session"). Others see at
most how many items wait, never what they are.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import delete as delete_rows
from sqlmodel import Session, col, select

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import CoolingOff, Entry, TreatmentSession, User, aware, utcnow
from . import journal
from .accounts import ValidationError

# (stored value, label shown in the reader's language)
FEELINGS = [
    ("calm", _l("Calm")),
    ("tearful", _l("Tearful")),
    ("heavy", _l("Heavy")),
    ("light", _l("Light")),
    ("nauseous", _l("Nauseous")),
    ("open", _l("Open")),
]
WORDS_MAX = 4000
# What a browser's recorder (or a phone's voice-memo app) sends; anything else is refused.
AUDIO_TYPES = {
    "audio/webm",
    "audio/ogg",
    "audio/mp4",
    "audio/mpeg",
    "audio/aac",
    "audio/wav",
    "audio/x-wav",
    "audio/3gpp",
    "audio/x-m4a",
}
SEAL_SETTING = "cooling_off"  # in users.share_defaults: False when the patient turned it off


class MemoTooLarge(Exception):
    """A memo over MEMO_MAX_BYTES: nothing was saved."""


def hours() -> int:
    return int(current_app.config.get("COOLING_OFF_HOURS", 12))


def memo_limit() -> int:
    return int(current_app.config.get("MEMO_MAX_BYTES", 5 * 1024 * 1024))


def seal_on(patient: User) -> bool:
    """Whether the patient keeps the cooling-off seal (on unless they turned it off)."""
    return bool(patient.share_defaults.get(SEAL_SETTING, True)) and hours() > 0


def in_window(sessions, now: datetime | None = None) -> TreatmentSession | None:
    """Of `sessions` (already loaded), the latest ketamine session whose start was less than
    COOLING_OFF_HOURS ago: the one whose after-hours it is now, or None."""
    now = now or utcnow()
    window = timedelta(hours=hours())
    found = [
        s
        for s in sessions
        if s.kind == "ketamine"
        and s.status != "cancelled"
        and aware(s.scheduled_at) <= now < aware(s.scheduled_at) + window
    ]
    return max(found, key=lambda s: aware(s.scheduled_at), default=None)


def session_in_window(*, session: Session, patient: User, now: datetime | None = None):
    """The patient's ketamine session whose after-hours it is now, or None. One query."""
    now = now or utcnow()
    recent = session.exec(
        select(TreatmentSession).where(
            TreatmentSession.patient_id == patient.id,
            TreatmentSession.kind == "ketamine",
            TreatmentSession.scheduled_at <= now,
            TreatmentSession.scheduled_at > now - timedelta(hours=hours()),
        )
    ).all()
    return in_window(recent, now)


# --- the form ----------------------------------------------------------------------------------


def parse(form, memo) -> tuple[dict, bytes | None, str | None]:
    """(body, audio, audio type) from a submitted capture form and its file (or None);
    ValidationError if there is nothing in it, MemoTooLarge if the memo is too long."""
    feelings = [value for value, _label in FEELINGS if value in form.getlist("feeling")]
    words = form.get("text", "")[: WORDS_MAX * 4]
    audio, kind = None, None
    if memo is not None and memo.filename is not None:
        audio = memo.stream.read(memo_limit() + 1)
        if len(audio) > memo_limit():
            raise MemoTooLarge()
        kind = (memo.mimetype or "").split(";")[0].strip().lower()
        if not audio:
            audio, kind = None, None
        elif kind not in AUDIO_TYPES:
            raise ValidationError({"memo": _("That file is not a sound recording we can keep.")})
    if len(words) > WORDS_MAX:
        raise ValidationError({"text": _("A few words are enough here: up to 4,000 characters.")})
    if not (feelings or words.strip() or audio):
        raise ValidationError({"text": _("Tap how you feel, say something or write a few words.")})
    body: dict = {"text": words, "feelings": feelings, "answers": []}
    if audio:
        body["memo"] = {"type": kind, "bytes": len(audio)}
    return body, audio, kind


# --- writing, under the seal ---------------------------------------------------------------------


def create(
    *,
    session: Session,
    author: User,
    body: dict,
    client_id: uuid.UUID,
    audio: bytes | None = None,
    readers: list[User] = (),
    kind: str = "capture",
    session_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> tuple[Entry, bool]:
    """Write an entry (a capture, or any kind), with its memo, under the seal if it is the
    after-hours of a ketamine session: then readable by the author only, and `readers` wait
    for the author's choice. Idempotent on (author, client_id) like journal.create; the caller
    commits."""
    sealing = session_in_window(session=session, patient=author, now=now)
    if sealing is not None and seal_on(author):
        held, readers = list(readers), []
    else:
        sealing, held = None, []
    entry, created = journal.create(
        session=session,
        author=author,
        kind=kind,
        body=body,
        client_id=client_id,
        session_id=session_id or (sealing.id if sealing else None),
        readers=readers,
        audio=audio,
    )
    if not created:
        return entry, False
    if sealing is not None:
        session.add(
            CoolingOff(
                entry_id=entry.id,
                patient_id=author.id,
                session_id=sealing.id,
                until=aware(sealing.scheduled_at) + timedelta(hours=hours()),
                reader_ids=[str(r.id) for r in held if r.id != author.id],
            )
        )
    session.flush()
    return entry, True


# --- the next day ---------------------------------------------------------------------------------


# The patient's home runs this on every first page: built once.
_READY = (
    select(Entry, CoolingOff)
    .join(CoolingOff, CoolingOff.entry_id == Entry.id)
    .where(
        CoolingOff.patient_id == bindparam("patient"),
        CoolingOff.until <= bindparam("now", type_=CoolingOff.__table__.c.until.type),
    )
    .order_by(col(Entry.created_at))
)


def ready(*, session: Session, patient: User, now: datetime | None = None):
    """The patient's held entries whose seal has ended, oldest first: (Entry, CoolingOff)
    rows. One query."""
    return session.exec(_READY, params={"patient": patient.id, "now": now or utcnow()}).all()


def held_readers(*, session: Session, hold: CoolingOff) -> list[User]:
    """Whom a held entry would have gone to."""
    ids = [uuid.UUID(value) for value in hold.reader_ids]
    if not ids:
        return []
    return list(session.exec(select(User).where(col(User.id).in_(ids))))


def release(*, session: Session, entry: Entry) -> None:
    """The patient chose: the entry is no longer held."""
    session.exec(
        delete_rows(CoolingOff)
        .where(CoolingOff.entry_id == entry.id)
        .execution_options(synchronize_session=False)
    )


def share_held(
    *, session: Session, entry: Entry, author: User, private_key, readers: list[User]
) -> None:
    """Share a held entry with `readers` (the patient's choice) and release it."""
    for reader in readers:
        journal.share(
            session=session, entry=entry, author=author, private_key=private_key, reader=reader
        )
    release(session=session, entry=entry)
