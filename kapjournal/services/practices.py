"""Practices: what a patient takes from an integration session into daily life (DESIGN §2).

The words (what, how often, why it matters) are encrypted like an entry: a data key per
version, wrapped (ItemKey rows) to the patient and to each therapist on their care team. The
days the patient ticks are clear dates. There is no streak and nothing that counts what was
not done: the therapist sees the days that were.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlmodel import Session, col, select

from .. import crypto
from ..models import ItemKey, Practice, PracticeCheck, User, utcnow
from . import accounts, audit, care
from .accounts import ValidationError

log = logging.getLogger(__name__)

KIND = "practice"  # ItemKey.subject_kind
FIELDS = {"what": 300, "how_often": 120, "why": 2_000}
TICK_BACK_DAYS = 6  # a patient may tick today or one of the six days before


def _body_ad(practice: Practice) -> dict:
    return {
        "p": "practice/body",
        "practice": str(practice.id),
        "version": practice.version,
        "author": str(practice.created_by_id),
        "patient": str(practice.patient_id),
    }


def _wrap_ad(practice: Practice, reader_id) -> dict:
    return {
        "p": "practice/dek",
        "practice": str(practice.id),
        "version": practice.version,
        "reader": str(reader_id),
    }


def parse(form) -> dict:
    """The practice from a submitted form; ValidationError names the field."""
    body = {name: form.get(name, "") for name in FIELDS}
    errors = {}
    if not body["what"].strip():
        errors["what"] = "Write what the practice is."
    for name, limit in FIELDS.items():
        if len(body[name]) > limit and name not in errors:
            errors[name] = f"Use at most {limit:,} characters."
    if errors:
        raise ValidationError(errors)
    return body


def create(
    *, session: Session, patient: User, therapist: User, body: dict, treatment_session_id=None
) -> Practice:
    """Record a practice for the patient; readable by them and their care team. The caller
    checked the therapist is on the care team, and commits."""
    practice = Practice(
        patient_id=patient.id, created_by_id=therapist.id, session_id=treatment_session_id
    )
    dek = crypto.random_key()
    practice.body_blob = crypto.seal(
        dek, json.dumps(body, ensure_ascii=False).encode("utf-8"), _body_ad(practice)
    )
    session.add(practice)
    for reader in [patient, *care.therapists_of(session=session, patient=patient)]:
        wrapped = crypto.wrap_key(dek, accounts.public_key(reader), _wrap_ad(practice, reader.id))
        session.add(
            ItemKey(
                subject_kind=KIND, subject_id=practice.id, reader_id=reader.id, wrapped_key=wrapped
            )
        )
    session.flush()
    audit.record(session=session, actor_id=therapist.id, action="practice", patient_id=patient.id)
    return practice


def end(*, session: Session, practice: Practice, by: User) -> None:
    """Stop showing the practice to the patient (its ticks stay)."""
    practice.ended_at = utcnow()
    session.add(practice)
    audit.record(
        session=session, actor_id=by.id, action="practice_end", patient_id=practice.patient_id
    )


def tick(*, session: Session, practice: Practice, day: date) -> None:
    """The patient did the practice on `day` (ticking twice changes nothing)."""
    exists = session.exec(
        select(PracticeCheck.id).where(
            PracticeCheck.practice_id == practice.id, PracticeCheck.day == day
        )
    ).first()
    if exists is None:
        session.add(PracticeCheck(practice_id=practice.id, day=day))


def untick(*, session: Session, practice: Practice, day: date) -> None:
    for check in session.exec(
        select(PracticeCheck).where(
            PracticeCheck.practice_id == practice.id, PracticeCheck.day == day
        )
    ):
        session.delete(check)


def days_of(*, session: Session, practice: Practice) -> list[date]:
    """The days the practice was ticked, newest first (clear dates: nothing is opened)."""
    query = select(PracticeCheck.day).where(PracticeCheck.practice_id == practice.id)
    return list(session.exec(query.order_by(col(PracticeCheck.day).desc())))


def tickable_days(today: date, *, started: date) -> list[date]:
    """The days a patient may tick, newest first: today, and the days before it back to a
    week ago, but none before the practice was recorded (`started`, in the patient's zone)."""
    earliest = max(started, today - timedelta(days=TICK_BACK_DAYS))
    return [today - timedelta(days=n) for n in range(max((today - earliest).days, 0) + 1)]


@dataclass
class Opened:
    practice: Practice
    body: dict | None  # None: did not open (tampered); the page says so
    days: list[date] = field(default_factory=list)  # ticked days, newest first

    @property
    def id(self):
        return self.practice.id


def for_reader(
    *, session: Session, patient: User, reader: User, private_key, active_only: bool = True
) -> list[Opened]:
    """The patient's practices that `reader` holds a key for, newest first, with the days
    ticked. Two queries, and the private key loaded once, however many practices."""
    query = (
        select(Practice, ItemKey.wrapped_key)
        .join(ItemKey, ItemKey.subject_id == Practice.id)
        .where(
            ItemKey.subject_kind == KIND,
            ItemKey.reader_id == reader.id,
            Practice.patient_id == patient.id,
        )
        .order_by(col(Practice.created_at).desc())
    )
    if active_only:
        query = query.where(col(Practice.ended_at).is_(None))
    rows = session.exec(query).all()
    if not rows:
        return []
    days: dict = {}
    for check in session.exec(
        select(PracticeCheck)
        .where(col(PracticeCheck.practice_id).in_([p.id for p, _ in rows]))
        .order_by(col(PracticeCheck.day).desc())
    ):
        days.setdefault(check.practice_id, []).append(check.day)
    raw = private_key() if callable(private_key) else private_key
    key = crypto.load_private(raw)
    return [
        Opened(practice, _open(practice, wrapped, reader.id, key), days.get(practice.id, []))
        for practice, wrapped in rows
    ]


def _open(practice: Practice, wrapped: bytes, reader_id, key) -> dict | None:
    try:
        dek = crypto.unwrap_key(wrapped, key, _wrap_ad(practice, reader_id))
        return json.loads(crypto.open_sealed(dek, practice.body_blob, _body_ad(practice)))
    except (crypto.CryptoError, ValueError):
        log.error("practice %s did not open for reader %s", practice.id, reader_id)
        return None
