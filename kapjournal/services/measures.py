"""Questionnaires (PHQ-9, GAD-7) and the safety check after each PHQ-9 (DESIGN §2, §3).

A response is an entry of kind `phq9` or `gad7`: the answers and the score are its encrypted
body, shared like any entry (with the care team by default; the patient may change that) and
never with a support member. Dates are clear metadata, as for every entry, so the app can say
when a questionnaire is due without opening anything.

After every PHQ-9 a SafetyCheck is written for the care team, whatever the answers: only
whether item 9 was answered above "Not at all" (never the answer or the score: those stay in
the result, which the care team reads only if the patient shares it), under its own data key,
wrapped to each therapist. A therapist's caseload opens
the checks still open: one without a flag is marked seen there and then, one with a flag
stays until a therapist acknowledges it. Both leave the same row and the same one access-log
event, so once a flag is acknowledged neither the tables nor the log tell it from a routine
check. While it waits, they do: a check still open after a therapist has looked at the
caseload is, to someone holding a dump, a flag. The acknowledgement must be in the patient's
access log, whose rows are clear metadata (DESIGN §2), so this window cannot be hidden
without hiding the acknowledgement too; it lasts until a therapist acknowledges.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam
from sqlmodel import Session, col, func, select

from .. import crypto
from ..i18n import lazy_gettext as _l
from ..models import (
    MEASURE_KINDS,
    Entry,
    Grant,
    ItemKey,
    SafetyCheck,
    TreatmentSession,
    User,
    aware,
    utcnow,
)
from . import audit, care, journal, sealed
from .instruments import INSTRUMENTS, PHQ9, SAFETY_ITEM, Instrument, band

log = logging.getLogger(__name__)

KIND = "safety_check"  # ItemKey.subject_kind
# Shared with the care team unless the patient changed it on their sharing page.
SHARED_BY_DEFAULT = {"phq9": True, "gad7": True, "safety_plan": True}
DUE_EVERY = timedelta(days=14)
BEFORE_KETAMINE = timedelta(days=3)


def shares_by_default(user: User, kind: str) -> bool:
    """Whether a new entry of `kind` goes to the care team unless the patient unticks them."""
    return bool(user.share_defaults.get(kind, SHARED_BY_DEFAULT.get(kind, False)))


# --- answering -----------------------------------------------------------------------------------


def record(
    *,
    session: Session,
    patient: User,
    instrument: Instrument,
    body: dict,
    client_id: uuid.UUID,
    readers: list[User],
) -> tuple[Entry, bool]:
    """Store a response (idempotent on `client_id`, like every entry) and, for a PHQ-9, the
    care team's safety check. The caller commits."""
    entry, created = journal.create(
        session=session,
        author=patient,
        kind=instrument.key,
        body=body,
        client_id=client_id,
        readers=[r for r in readers if r.role == "therapist"],
    )
    if created and instrument is PHQ9:
        _add_safety_check(session, patient=patient, entry=entry, body=body)
    return entry, created


@dataclass
class Result:
    entry: Entry
    instrument: Instrument
    body: dict | None  # None: it did not open (reported in the log by id)

    @property
    def score(self) -> int | None:
        return self.body["score"] if self.body else None

    @property
    def band_label(self) -> str:
        return str(band(self.instrument, self.score).label) if self.body else ""

    @property
    def at(self) -> datetime:
        return self.entry.created_at


def by_instrument(items: list) -> dict[str, list[Result]]:
    """Questionnaire responses opened through the read path (services/reading.py Items), each
    instrument's oldest first."""
    found: dict[str, list[Result]] = {key: [] for key in MEASURE_KINDS}
    for item in sorted(items, key=lambda i: i.entry.created_at):
        found[item.entry.kind].append(Result(item.entry, INSTRUMENTS[item.entry.kind], item.body))
    return found


# --- when a questionnaire is due ----------------------------------------------------------------


@dataclass
class Due:
    instrument: Instrument
    reason: str  # a lazy string: said in the language of the page that shows it
    session: TreatmentSession | None = None  # the ketamine session it comes before


def due(*, session: Session, patient: User, now: datetime | None = None) -> list[Due]:
    """The questionnaires to ask for now: before each ketamine session (within three days of
    it, unless answered since) and every 14 days. Uses dates only: two queries."""
    now = now or utcnow()
    upcoming = session.exec(
        select(TreatmentSession).where(
            TreatmentSession.patient_id == patient.id,
            col(TreatmentSession.scheduled_at) >= now,
            col(TreatmentSession.scheduled_at) <= now + BEFORE_KETAMINE,
        )
    ).all()
    latest = latest_taken_all(session=session, patient=patient)
    return due_from(latest=latest, upcoming=list(upcoming), now=now)


def due_from(*, latest: dict, upcoming: list, now: datetime | None = None) -> list[Due]:
    """`due`, from when each questionnaire was last answered (`latest_taken_all`) and the
    patient's sessions still ahead (any kinds; the planned ketamine ones count)."""
    now = now or utcnow()
    ahead = sorted(
        (
            s
            for s in upcoming
            if s.kind == "ketamine"
            and s.status == "planned"
            and now <= aware(s.scheduled_at) <= now + BEFORE_KETAMINE
        ),
        key=lambda s: s.scheduled_at,
    )
    soon = ahead[0] if ahead else None
    asked = []
    for instrument in INSTRUMENTS.values():
        last = latest.get(instrument.key)
        last = aware(last) if last is not None else None
        if soon is not None and (last is None or last < aware(soon.scheduled_at) - BEFORE_KETAMINE):
            asked.append(Due(instrument, _l("before your ketamine session"), soon))
        elif last is None:
            asked.append(Due(instrument, _l("to see where you are starting from")))
        elif now - last >= DUE_EVERY:
            asked.append(Due(instrument, _l("it has been two weeks since the last one")))
    return asked


# The patient's home runs this on every first page: built once, run on the connection.
_LATEST_TAKEN = select(
    *(
        select(func.max(Entry.created_at))
        .where(Entry.author_id == bindparam("patient"), Entry.kind == kind)
        .scalar_subquery()
        for kind in INSTRUMENTS
    )
)


def latest_taken_all(*, session: Session, patient: User) -> dict:
    """When the patient last answered each questionnaire: {kind: time}. One query: an index
    lookup per questionnaire (ix_entry_author_kind_created), whatever the journal's size."""
    found = session.connection().execute(_LATEST_TAKEN, {"patient": patient.id}).one()
    return {kind: at for kind, at in zip(INSTRUMENTS, found, strict=True) if at is not None}


def ketamine_sessions(*, session: Session, patient: User, until: datetime) -> list:
    """The patient's ketamine sessions that took place (not cancelled) up to `until`."""
    return list(
        session.exec(
            select(TreatmentSession)
            .where(
                TreatmentSession.patient_id == patient.id,
                TreatmentSession.kind == "ketamine",
                TreatmentSession.status != "cancelled",
                col(TreatmentSession.scheduled_at) <= until,
            )
            .order_by(col(TreatmentSession.scheduled_at))
        )
    )


def answered_before(*, session: Session, treatment_session: TreatmentSession) -> bool:
    """Whether the patient answered every questionnaire within the window before a session."""
    opens = treatment_session.scheduled_at - BEFORE_KETAMINE
    for kind in INSTRUMENTS:
        last = session.exec(
            select(Entry.created_at).where(
                Entry.author_id == treatment_session.patient_id,
                Entry.kind == kind,
                col(Entry.created_at) >= opens,
            )
        ).first()
        if last is None:
            return False
    return True


def latest_taken(*, session: Session, patient: User, kind: str) -> datetime | None:
    """When the patient last answered `kind`."""
    return session.exec(
        select(Entry.created_at)
        .where(Entry.author_id == patient.id, Entry.kind == kind)
        .order_by(col(Entry.created_at).desc())
    ).first()


# --- the safety check ---------------------------------------------------------------------------


def _body_ad(check: SafetyCheck) -> dict:
    return {"p": "safety_check/body", "check": str(check.id), "patient": str(check.patient_id)}


def _wrap_ad(check: SafetyCheck, reader_id) -> dict:
    return {"p": "safety_check/dek", "check": str(check.id), "reader": str(reader_id)}


CHECK = sealed.Kind(KIND, _body_ad, _wrap_ad)


def _add_safety_check(session: Session, *, patient: User, entry: Entry, body: dict) -> None:
    therapists = care.therapists_of(session=session, patient=patient)
    if not therapists:
        return  # no one in the app to tell; the patient is shown the crisis lines regardless
    check = SafetyCheck(patient_id=patient.id, response_id=entry.id)
    dek = crypto.random_key()
    # 0 or 1, not false/true: the blob has the same length whatever the answer was.
    content = {"flag": int(body["items"][SAFETY_ITEM] > 0)}
    check.body_blob = CHECK.seal(check, dek, content)
    session.add(check)
    CHECK.give(session, check, dek, therapists)


@dataclass
class Flag:
    """An unacknowledged PHQ-9 check whose item 9 was answered above "Not at all". It holds no
    answer and no score: those are in the result, which the therapist opens (a read like any
    other) only if the patient shared it (`shared`). `opened` is False when the check did not
    open: it is shown as a flag, to be safe."""

    check: SafetyCheck
    opened: bool = True
    shared: bool = False


def open_flags(
    *, session: Session, therapist: User, patient_ids: list | None, private_key
) -> dict[uuid.UUID, list[Flag]]:
    """The unacknowledged flags of these patients (of every patient the therapist holds checks
    of, with None), by patient. Open checks without a flag are marked seen by `therapist` on
    the way (and logged). The caller commits."""
    shared_with_me = and_(
        Grant.entry_id == SafetyCheck.response_id,
        Grant.reader_id == therapist.id,
        col(Grant.wrapped_key).is_not(None),
    )
    query = (
        select(SafetyCheck, ItemKey.wrapped_key, Grant.id)
        .join(ItemKey, ItemKey.subject_id == SafetyCheck.id)
        .outerjoin(Grant, shared_with_me)
        .where(
            ItemKey.subject_kind == KIND,
            ItemKey.reader_id == therapist.id,
            col(SafetyCheck.reviewed_at).is_(None),
        )
        .order_by(col(SafetyCheck.created_at))
    )
    if patient_ids is not None:
        query = query.where(col(SafetyCheck.patient_id).in_(list(patient_ids)))
    flags: dict[uuid.UUID, list[Flag]] = {}
    for check, wrapped, grant_id in session.exec(query).all():
        content = _open(check, wrapped, therapist.id, private_key)
        if content is not None and not _flagged(content):
            mark_reviewed(session=session, check=check, therapist=therapist)
            continue
        flag = Flag(check, opened=content is not None, shared=grant_id is not None)
        flags.setdefault(check.patient_id, []).append(flag)
    return flags


def _flagged(content: dict) -> bool:
    """Whether a check says item 9 was above "Not at all". Checks written before this rule
    hold item 9's answer and the score; only this much of them is ever used."""
    if "flag" in content:
        return bool(content["flag"])
    return bool(content.get("item9"))


def _open(check: SafetyCheck, wrapped: bytes, reader_id, private_key) -> dict | None:
    try:
        return CHECK.open_for(check, wrapped, reader_id, private_key)[0]
    except sealed.Unreadable:
        return None


def mark_reviewed(*, session: Session, check: SafetyCheck, therapist: User) -> None:
    """A therapist has seen this check (acknowledged it, if it was a flag); in the patient's
    access log either way. The caller commits."""
    check.reviewed_at = utcnow()
    check.reviewed_by_id = therapist.id
    session.add(check)
    audit.record(
        session=session,
        actor_id=therapist.id,
        action="safety_check",
        patient_id=check.patient_id,
        entry_id=check.response_id,
    )


def safety_plan_entry(*, session: Session, patient: User) -> Entry | None:
    """The patient's newest safety plan (one per patient by convention)."""
    return session.exec(
        select(Entry)
        .where(Entry.author_id == patient.id, Entry.kind == "safety_plan")
        .order_by(col(Entry.created_at).desc())
    ).first()
