"""Practices: what a patient takes from an integration session into daily life (DESIGN §2).

The words (what, how often, why it matters) are encrypted like an entry: a data key per
version, wrapped (ItemKey rows) to the patient and to each therapist on their care team. The
days the patient ticks are clear dates. There is no streak and nothing that counts what was
not done: the therapist sees the days that were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

from flask_babel import format_number
from sqlalchemy import and_, bindparam
from sqlmodel import Session, col, select

from .. import crypto
from ..i18n import gettext as _
from ..models import Practice, PracticeCheck, User, utcnow
from . import audit, care, sealed
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


PRACTICE = sealed.Kind(KIND, _body_ad, _wrap_ad)


def parse(form) -> dict:
    """The practice from a submitted form; ValidationError names the field."""
    body = {name: form.get(name, "") for name in FIELDS}
    errors = {}
    if not body["what"].strip():
        errors["what"] = _("Write what the practice is.")
    for name, limit in FIELDS.items():
        if len(body[name]) > limit and name not in errors:
            errors[name] = _("Use at most %(n)s characters.", n=format_number(limit))
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
    practice.body_blob = PRACTICE.seal(practice, dek, body)
    session.add(practice)
    PRACTICE.give(
        session, practice, dek, [patient, *care.therapists_of(session=session, patient=patient)]
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


@cache
def _held_practices(*, active_only: bool, since: bool):
    """The statement of `for_reader`, built once per shape; parameters: reader, patient,
    since (when `since`)."""
    checks = PracticeCheck.practice_id == Practice.id
    if since:
        checks = and_(checks, PracticeCheck.day >= bindparam("since"))
    query = (
        PRACTICE.held(Practice, bindparam("reader"))
        .add_columns(PracticeCheck.day)
        .outerjoin(PracticeCheck, checks)
        .where(Practice.patient_id == bindparam("patient"))
        .order_by(col(Practice.created_at).desc(), col(PracticeCheck.day).desc())
    )
    if active_only:
        query = query.where(col(Practice.ended_at).is_(None))
    return query


def for_reader(
    *,
    session: Session,
    patient: User,
    reader: User,
    private_key,
    active_only: bool = True,
    since: date | None = None,
    keys=None,
) -> list[Opened]:
    """The patient's practices that `reader` holds a key for, newest first, with the days
    ticked (from `since`, if given). One query, and the private key loaded at most once,
    however many practices; none when `keys` (the request's reading.Reader) holds their data
    keys in the device's cache."""
    params = {"reader": reader.id, "patient": patient.id}
    if since is not None:
        params["since"] = since
    query = _held_practices(active_only=active_only, since=since is not None)
    found: dict = {}
    for practice, wrapped, day in session.exec(query, params=params).all():
        if practice.id not in found:
            found[practice.id] = (practice, wrapped, [])
        if day is not None:
            found[practice.id][2].append(day)
    if not found:
        return []
    key = sealed.lazily(private_key)
    return [
        Opened(practice, _open(practice, wrapped, reader.id, key, keys), days)
        for practice, wrapped, days in found.values()
    ]


def _open(practice: Practice, wrapped: bytes, reader_id, key, keys=None) -> dict | None:
    try:
        return PRACTICE.open_for(practice, wrapped, reader_id, key, keys=keys)[0]
    except sealed.Unreadable:
        return None
