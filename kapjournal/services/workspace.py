"""The therapist's workspace: the caseload, and the agenda of an integration session.

The caseload shows only metadata (kinds, dates, counts), so it decrypts nothing. The agenda
gathers what the therapist flagged "bring to session" and has not talked through yet (items
talked through today stay on it, ticked, until the day is over), and opens it for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, or_
from sqlmodel import Session, col, select

from ..models import (
    MEASURE_KINDS,
    Annotation,
    CoolingOff,
    Entry,
    EntryFlag,
    Grant,
    Practice,
    PracticeCheck,
    TreatmentSession,
    User,
    utcnow,
)
from . import accounts, annotations, audit, care, journal, measures, reading

CURRENT_WITHIN = timedelta(hours=24)  # a planned session this close to now is "today's"


# --- sessions ---------------------------------------------------------------------------------


def last_integration(sessions: list[TreatmentSession], now: datetime) -> TreatmentSession | None:
    """The latest integration session that has taken place (not cancelled, not ahead)."""
    past = [
        s
        for s in sessions
        if s.kind == "integration" and s.status != "cancelled" and s.scheduled_at <= now
    ]
    return max(past, key=lambda s: s.scheduled_at, default=None)


def next_session(sessions: list[TreatmentSession], now: datetime) -> TreatmentSession | None:
    ahead = [s for s in sessions if s.status == "planned" and s.scheduled_at >= now]
    return min(ahead, key=lambda s: s.scheduled_at, default=None)


def current_integration(*, session: Session, patient: User) -> TreatmentSession | None:
    """The planned integration session nearest to now, if it is within a day: the one the
    session view is running (its notes and practices are linked to it)."""
    now = utcnow()
    query = select(TreatmentSession).where(
        TreatmentSession.patient_id == patient.id,
        TreatmentSession.kind == "integration",
        TreatmentSession.status == "planned",
        TreatmentSession.scheduled_at >= now - CURRENT_WITHIN,
        TreatmentSession.scheduled_at <= now + CURRENT_WITHIN,
    )
    found = list(session.exec(query))
    return min(found, key=lambda s: abs(s.scheduled_at - now), default=None)


# --- flags --------------------------------------------------------------------------------------


def _live_entries(therapist_id):
    """Entries the therapist holds a live grant on (flags on others are out of reach)."""
    return select(Grant.entry_id).where(
        Grant.reader_id == therapist_id, col(Grant.wrapped_key).is_not(None)
    )


def _open_or_since(column, since: datetime | None):
    return col(column).is_(None) if since is None else or_(col(column).is_(None), column >= since)


def entry_flags(*, session: Session, therapist_id, patient_ids, since=None) -> list[EntryFlag]:
    """The therapist's flags on entries they may still read; undiscussed, or discussed after
    `since`."""
    query = select(EntryFlag).where(
        EntryFlag.therapist_id == therapist_id,
        col(EntryFlag.patient_id).in_(patient_ids),
        col(EntryFlag.entry_id).in_(_live_entries(therapist_id)),
        _open_or_since(EntryFlag.discussed_at, since),
    )
    return list(session.exec(query.order_by(col(EntryFlag.created_at))))


def flagged_notes(*, session: Session, therapist_id, patient_ids, since=None):
    """A statement: notes the therapist can read that are flagged for the session."""
    return annotations.readable(therapist_id).where(
        col(Annotation.patient_id).in_(patient_ids),
        col(Annotation.bring_to_session),
        _open_or_since(Annotation.discussed_at, since),
        or_(
            col(Annotation.entry_id).is_(None),
            col(Annotation.entry_id).in_(_live_entries(therapist_id)),
        ),
    )


def flag_of(*, session: Session, entry: Entry, therapist: User) -> EntryFlag | None:
    return session.exec(
        select(EntryFlag).where(
            EntryFlag.entry_id == entry.id, EntryFlag.therapist_id == therapist.id
        )
    ).first()


def set_entry_flag(*, session: Session, entry: Entry, therapist: User, flagged: bool) -> None:
    """Bring an entry to the next integration session, or not; the caller checked access."""
    found = flag_of(session=session, entry=entry, therapist=therapist)
    if flagged and found is None:
        session.add(
            EntryFlag(entry_id=entry.id, therapist_id=therapist.id, patient_id=entry.author_id)
        )
    elif flagged and found.discussed_at is not None:
        found.discussed_at = None  # flagged again for another session
        session.add(found)
    elif not flagged and found is not None:
        session.delete(found)
    else:
        return
    audit.record(
        session=session,
        actor_id=therapist.id,
        action="flag" if flagged else "unflag",
        patient_id=entry.author_id,
        entry_id=entry.id,
    )


def set_entry_discussed(*, session: Session, flag: EntryFlag, by: User, discussed: bool) -> None:
    """Mark a flagged entry talked through (or not yet), and with it the flagged notes on it,
    which the agenda shows beside its passages rather than as items of their own."""
    previous, now = flag.discussed_at, utcnow()
    flag.discussed_at = now if discussed else None
    session.add(flag)
    notes = flagged_notes(
        session=session, therapist_id=by.id, patient_ids=[flag.patient_id], since=previous
    ).where(Annotation.entry_id == flag.entry_id)
    for note, _ in session.exec(notes):
        if discussed and note.discussed_at is None:
            note.discussed_at = now
        elif not discussed and previous and note.discussed_at and note.discussed_at >= previous:
            note.discussed_at = None
        session.add(note)
    audit.record(
        session=session,
        actor_id=by.id,
        action="discuss",
        patient_id=flag.patient_id,
        entry_id=flag.entry_id,
    )


# --- what was shared since the last integration session --------------------------------------


@dataclass(frozen=True)
class SharedSince:
    """What a patient shared with a therapist since their last integration session (the latest
    one that took place; `since` None: since they joined): entries (the patient page lists
    them) and questionnaire results (under their questionnaires). Counted by when an entry was
    shared, not when it was written, and only while the therapist may still read it."""

    since: datetime | None
    entries: int = 0
    questionnaires: int = 0
    # Items written after a ketamine session that wait under the cooling-off seal for the
    # patient's choice: a number, never what they are (helper CAPTURE).
    waiting: int = 0


def shared_since(*, session: Session, therapist: User, patient_ids: list) -> dict:
    """{patient id: SharedSince} for the caseload and the patient page, so both say the same:
    one statement, whatever the number of patients and entries. The last session is found
    once per patient (a grouped subquery); then, per patient, the therapist's grants made
    after it are counted from the therapist's grants in time order (ix_grant_reader_created),
    so the cost follows what was shared since the session, never the size of the journal."""
    ids = list(patient_ids)
    last = (
        select(
            TreatmentSession.patient_id.label("patient_id"),
            func.max(TreatmentSession.scheduled_at).label("since"),
        )
        .where(
            col(TreatmentSession.patient_id).in_(ids),
            TreatmentSession.kind == "integration",
            TreatmentSession.status != "cancelled",
            TreatmentSession.scheduled_at <= utcnow(),
        )
        .group_by(TreatmentSession.patient_id)
        .subquery()
    )
    # Before any integration session everything shared counts: from the start of time.
    since = func.coalesce(last.c.since, datetime(1970, 1, 1, tzinfo=UTC))
    measure = col(Entry.kind).in_(MEASURE_KINDS)

    def shared(kinds):
        return (
            select(func.count())
            .select_from(Grant)
            .join(Entry, Entry.id == Grant.entry_id)
            .where(
                Grant.reader_id == therapist.id,
                Grant.created_at > since,
                col(Grant.wrapped_key).is_not(None),
                Entry.author_id == User.id,
                kinds,
            )
            .correlate(User, last)
            .scalar_subquery()
        )

    query = (
        select(User.id, last.c.since, shared(~measure), shared(measure), _waiting_count())
        .outerjoin(last, last.c.patient_id == User.id)
        .where(col(User.id).in_(ids))
    )
    return {
        patient_id: SharedSince(
            since=at, entries=entries or 0, questionnaires=results or 0, waiting=held
        )
        for patient_id, at, entries, results, held in session.exec(query)
    }


def _waiting_count():
    """SQL: how many of the patient's items the cooling-off seal holds: a count, never what."""
    return (
        select(func.count())
        .select_from(CoolingOff)
        .where(CoolingOff.patient_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )


# --- the caseload -------------------------------------------------------------------------------


@dataclass
class Shared:
    entry_id: object
    kind: str
    shared_at: datetime


@dataclass
class CaseloadRow:
    patient: User
    name: str
    next_session: TreatmentSession | None = None
    last_integration: TreatmentSession | None = None
    shared: list[Shared] = field(default_factory=list)  # since the last integration session
    flagged: int = 0
    practices: int = 0
    practice_days: int = 0  # days ticked since the last integration session
    safety_flags: list = field(default_factory=list)  # measures.Flag, not yet acknowledged
    shared_since: SharedSince | None = None  # how many of `shared`, in words on the page

    @property
    def needs_attention(self) -> bool:
        return bool(self.shared or self.flagged or self.safety_flags)


def caseload(
    *, session: Session, therapist: User, private_key=None, before=None, size: int = 20
) -> tuple[list[CaseloadRow], object]:
    """A page of the therapist's patients (newest on the care team first, cut at a cursor),
    each with the next session, what they shared since the last integration session (newest
    first) and what is flagged; and the cursor of the next page. On the first page, every
    patient with an unacknowledged PHQ-9 safety flag comes first, whichever page they would
    be on. A fixed number of queries whatever the number of patients; nothing is decrypted but
    names and, with `private_key`, the open safety checks (which may mark some seen: the
    caller commits)."""
    patients, after = care.patients_page(
        session=session, therapist=therapist, before=before, size=size
    )
    flagged: dict = {}
    if private_key is not None and before is None:
        flagged = measures.open_flags(
            session=session, therapist=therapist, patient_ids=None, private_key=private_key
        )
        shown = {p.id for p in patients}
        missing = [pid for pid in flagged if pid not in shown]
        if missing:
            patients = list(session.exec(select(User).where(col(User.id).in_(missing)))) + patients
    if not patients:
        return [], after
    ids = [p.id for p in patients]
    now = utcnow()
    rows = {p.id: CaseloadRow(patient=p, name=accounts.name_of(p)) for p in patients}
    sessions: dict = {}
    for found in session.exec(
        select(TreatmentSession).where(col(TreatmentSession.patient_id).in_(ids))
    ):
        sessions.setdefault(found.patient_id, []).append(found)
    for row in rows.values():
        mine = sessions.get(row.patient.id, [])
        row.next_session = next_session(mine, now)
        row.last_integration = last_integration(mine, now)
        row.safety_flags = flagged.get(row.patient.id, [])
    _add_shared(session, therapist, ids, rows)
    counts = shared_since(session=session, therapist=therapist, patient_ids=ids)
    for row in rows.values():
        row.shared_since = counts[row.patient.id]
    # Counted as the agenda shows them: a flagged note on a flagged entry is part of it.
    flagged_entries = set()
    for flag in entry_flags(session=session, therapist_id=therapist.id, patient_ids=ids):
        rows[flag.patient_id].flagged += 1
        flagged_entries.add(flag.entry_id)
    for note, _ in session.exec(
        flagged_notes(session=session, therapist_id=therapist.id, patient_ids=ids)
    ):
        if note.entry_id not in flagged_entries:
            rows[note.patient_id].flagged += 1
    _add_practices(session, ids, rows)
    return sorted(rows.values(), key=_attention_first), after


def _attention_first(row: CaseloadRow):
    """Within a page: a waiting safety flag first, then who shared or has something flagged
    (the latest sharing first), then the rest."""
    latest = row.shared[0].shared_at.timestamp() if row.shared else 0
    return (not row.safety_flags, not row.needs_attention, -latest)


def _since(row: CaseloadRow) -> datetime | None:
    return row.last_integration.scheduled_at if row.last_integration else None


def _add_shared(session: Session, therapist: User, ids: list, rows: dict) -> None:
    query = (
        select(Entry.id, Entry.author_id, Entry.kind, Grant.created_at)
        .join(Grant, Grant.entry_id == Entry.id)
        .where(
            Grant.reader_id == therapist.id,
            col(Grant.wrapped_key).is_not(None),
            col(Entry.author_id).in_(ids),
        )
        .order_by(col(Grant.created_at).desc())
    )
    for entry_id, author_id, kind, shared_at in session.exec(query):
        row = rows[author_id]
        since = _since(row)
        if since is None or shared_at > since:
            row.shared.append(Shared(entry_id, kind, shared_at))


def _add_practices(session: Session, ids: list, rows: dict) -> None:
    active = list(
        session.exec(
            select(Practice).where(
                col(Practice.patient_id).in_(ids), col(Practice.ended_at).is_(None)
            )
        )
    )
    owner = {p.id: p.patient_id for p in active}
    for practice in active:
        rows[practice.patient_id].practices += 1
    if not owner:
        return
    for check in session.exec(
        select(PracticeCheck).where(col(PracticeCheck.practice_id).in_(list(owner)))
    ):
        row = rows[owner[check.practice_id]]
        since = _since(row)
        if since is None or check.day >= since.date():
            row.practice_days += 1


# --- the agenda of an integration session ------------------------------------------------------


@dataclass
class AgendaItem:
    """One thing to talk through: a flagged entry (with its notes beside its paragraphs), or a
    flagged note."""

    kind: str  # "entry" or "note"
    id: object  # the entry's or the note's id
    discussed_at: datetime | None
    entry: Entry | None = None
    body: dict | None = None
    paragraphs: list = field(default_factory=list)
    placement: annotations.Placement | None = None
    note: annotations.Note | None = None

    @property
    def sort_key(self):
        made = self.entry.created_at if self.entry else self.note.annotation.created_at
        return (made, 0 if self.kind == "entry" else 1)


def agenda(
    *, session: Session, reader: reading.Reader, patient: User, since: datetime
) -> list[AgendaItem]:
    """Everything the therapist (`reader`) flagged for this patient that is not talked
    through yet, or was talked through after `since` (earlier today), oldest first. Entries
    are opened through the read path: each is a read of the patient's words."""
    therapist = reader.user
    flags = entry_flags(
        session=session, therapist_id=therapist.id, patient_ids=[patient.id], since=since
    )
    items = []
    entries = {}
    for flag in flags:
        entry = session.get(Entry, flag.entry_id)
        item = AgendaItem(
            kind="entry", id=entry.id, discussed_at=flag.discussed_at, entry=entry, body=None
        )
        try:
            item.body = reading.open_entry(session=session, reader=reader, entry=entry)
        except journal.EntryUnreadable:
            item.body = None
        if item.body is not None:
            item.paragraphs = annotations.paragraphs_of(entry.kind, item.body)
            notes = annotations.for_entry(
                session=session, entry=entry, reader=therapist, private_key=reader.private_key
            )
            item.placement = annotations.place(notes, item.paragraphs)
        entries[entry.id] = entry
        items.append(item)
    query = flagged_notes(
        session=session, therapist_id=therapist.id, patient_ids=[patient.id], since=since
    )
    for note in annotations.open_all(
        session=session, query=query, reader=therapist, private_key=reader.private_key
    ):
        entry_id = note.annotation.entry_id
        if entry_id in entries:
            continue  # already beside its passage in the flagged entry's item
        entry = session.get(Entry, entry_id) if entry_id else None
        if entry is not None:
            _place_alone(session, note, entry, reader)
        items.append(
            AgendaItem(
                kind="note",
                id=note.id,
                discussed_at=note.annotation.discussed_at,
                entry=entry,
                note=note,
            )
        )
    return sorted(items, key=lambda i: i.sort_key)


def agenda_progress(
    *, session: Session, therapist: User, patient: User, since: datetime
) -> tuple[int, int]:
    """How many of the agenda's items are talked through, and how many there are, as
    `agenda` would list them, from clear metadata only (nothing is opened or read)."""
    flags = entry_flags(
        session=session, therapist_id=therapist.id, patient_ids=[patient.id], since=since
    )
    flagged = {flag.entry_id for flag in flags}
    done = [flag.discussed_at is not None for flag in flags]
    query = flagged_notes(
        session=session, therapist_id=therapist.id, patient_ids=[patient.id], since=since
    )
    for note, _ in session.exec(query):
        if note.entry_id not in flagged:
            done.append(note.discussed_at is not None)
    return sum(done), len(done)


def _place_alone(session: Session, note, entry: Entry, reader: reading.Reader) -> None:
    """Find where a flagged note's passage is now (reading the entry: a read)."""
    try:
        body = reading.open_entry(session=session, reader=reader, entry=entry)
    except journal.EntryUnreadable:
        return
    annotations.place([note], annotations.paragraphs_of(entry.kind, body))


def session_notes(
    *, session: Session, therapist: User, patient: User, private_key, since: datetime
) -> list[annotations.Note]:
    """Notes taken in sessions (not on an entry) since `since`, oldest first."""
    query = annotations.readable(therapist.id).where(
        Annotation.patient_id == patient.id,
        col(Annotation.entry_id).is_(None),
        Annotation.created_at >= since,
    )
    return annotations.open_all(
        session=session, query=query, reader=therapist, private_key=private_key
    )


# The patient's home runs this on every first page: built once.
_SHARED_SESSION_NOTES = annotations.readable(bindparam("reader")).where(
    Annotation.patient_id == bindparam("reader"),
    col(Annotation.entry_id).is_(None),
    Annotation.visibility == "shared",
)


def shared_session_notes(
    *, session: Session, patient: User, private_key, keys=None
) -> list[annotations.Note]:
    """For the patient's home: notes from sessions their therapist shared with them, newest
    first (never a private one: the patient holds no key to those)."""
    notes = annotations.open_all(
        session=session,
        query=_SHARED_SESSION_NOTES,
        params={"reader": patient.id},
        reader=patient,
        private_key=private_key,
        keys=keys,
    )
    return list(reversed(notes))


def record_printout(*, session: Session, therapist: User, patient: User) -> None:
    """A therapist made a printable copy of what the patient shared: in the patient's log (the
    entries on it are reads too, recorded by the read path). The caller commits."""
    audit.record(session=session, actor_id=therapist.id, action="export", patient_id=patient.id)
