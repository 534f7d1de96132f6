"""Pages of a patient's journal and course of treatment (DESIGN §6 "Pages, not lists").

Entries come newest first, 20 to a page, cut by a cursor on (created_at, id), never an OFFSET,
so a first page costs the same at 100 or 20,000 entries. The course stays readable across
pages: each session heads the entries written from then until the next session, and a page
that starts inside such a period repeats its heading. Sessions still ahead are listed on the
first page. Search scans the same way, newest first, and stops when a page of results is full
or after SCAN_LIMIT entries, offering to go on from there: it never opens the whole journal.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import NamedTuple

from sqlalchemy import and_, bindparam, func, tuple_
from sqlmodel import Session, col, select

from ..models import (
    MEASURE_KINDS,
    Annotation,
    Entry,
    EntryFlag,
    Grant,
    ItemKey,
    TreatmentSession,
    User,
    aware,
    utcnow,
)
from . import journal, reading

PAGE_SIZE = 20
SCAN_LIMIT = 200  # entries one search request opens at most
_BATCH = 50


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the (time, id) of its last item; the next page starts below it."""

    at: datetime
    id: uuid.UUID

    def __str__(self) -> str:
        return f"{int(self.at.timestamp() * 1_000_000)}.{self.id.hex}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """The cursor in a "Show earlier" link or form; None for the first page or nonsense."""
        micros, _, hexid = (text or "").partition(".")
        try:
            at = datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC)
            return cls(at=at, id=uuid.UUID(hex=hexid))
        except (ValueError, OverflowError, OSError):
            return None

    @classmethod
    def after(cls, entry: Entry) -> Cursor:
        return cls(at=aware(entry.created_at), id=entry.id)


@cache
def _page_statement(*, chosen_kinds: bool, after_cursor: bool, size: int):
    """A page of a patient's entries that a reader holds a grant on (live or pending), newest
    first: `(Entry, live, notes, flagged)` rows, with how many notes the reader can open on each
    and whether they flagged it for a session. Built once per shape (every page runs one);
    parameters: reader, patient, kinds (when `chosen_kinds`; else all but questionnaires),
    before_at and before_id (when `after_cursor`)."""
    reader = bindparam("reader")
    notes = (
        select(func.count(ItemKey.id))
        .join(Annotation, Annotation.id == ItemKey.subject_id)
        .where(
            ItemKey.subject_kind == "annotation",
            ItemKey.reader_id == reader,
            Annotation.entry_id == Entry.id,
        )
        .scalar_subquery()
    )
    flagged = (
        select(EntryFlag.id)
        .where(EntryFlag.entry_id == Entry.id, EntryFlag.therapist_id == reader)
        .exists()
    )
    query = (
        select(Entry, reading.live(), notes, flagged)
        .join(Grant, and_(Grant.entry_id == Entry.id, Grant.reader_id == reader))
        .where(Entry.author_id == bindparam("patient"))
    )
    if chosen_kinds:
        query = query.where(col(Entry.kind).in_(bindparam("kinds", expanding=True)))
    else:
        query = query.where(col(Entry.kind).not_in(MEASURE_KINDS))
    if after_cursor:
        query = query.where(
            tuple_(Entry.created_at, Entry.id)
            < tuple_(
                bindparam("before_at", type_=Entry.__table__.c.created_at.type),
                bindparam("before_id", type_=Entry.__table__.c.id.type),
            )
        )
    order = (col(Entry.created_at).desc(), col(Entry.id).desc())
    return query.order_by(*order).limit(size + 1)


def entries_page(
    *, session: Session, patient_id, reader_id, kinds=None, before=None, size: int = PAGE_SIZE
):
    """One page of a patient's entries that the reader holds a grant on, newest first, after
    `before`; its rows and the cursor of the next page (None when this is the last).
    Questionnaires only when `kinds` names them."""
    params = {"reader": reader_id, "patient": patient_id}
    if kinds:
        params["kinds"] = list(kinds)
    if before is not None:
        params |= {"before_at": before.at, "before_id": before.id}
    statement = _page_statement(
        chosen_kinds=bool(kinds), after_cursor=before is not None, size=size
    )
    found = session.exec(statement, params=params).all()
    rows = [Row(*row) for row in found[:size]]
    return rows, (Cursor.after(rows[-1].entry) if len(found) > size else None)


class Row(NamedTuple):
    """An entry on a page, for its reader: whether their grant is live, how many notes they
    can open on it, whether they flagged it for a session. Unpacks as (entry, live, ...)."""

    entry: Entry
    live: bool
    notes: int = 0
    flagged: bool = False


# --- the course of treatment ---------------------------------------------------------------------


@dataclass
class Period:
    """The entries written from `session` until the next one (`session` None: before the
    first); `continued`: the period began on an earlier page."""

    session: TreatmentSession | None
    items: list[reading.Item] = field(default_factory=list)
    continued: bool = False


@dataclass
class Page:
    periods: list[Period]
    items: list[reading.Item]
    next: Cursor | None
    upcoming: list[TreatmentSession] = field(default_factory=list)  # first page only
    first: bool = True
    note_counts: dict = field(default_factory=dict)  # entry id → notes the reader can open
    flagged: set = field(default_factory=set)  # entries the reader flagged for a session

    @property
    def sessions(self) -> dict:
        """Every session on the page by id (to name the one an entry was written for)."""
        found = {s.id: s for s in self.upcoming}
        found.update({p.session.id: p.session for p in self.periods if p.session})
        return found


def course_page(
    *,
    session: Session,
    reader: reading.Reader,
    patient: User,
    before: Cursor | None = None,
    kinds=None,
) -> Page:
    """A page of the entries of `patient` that `reader` may read, in the periods between
    sessions. Three queries on a warm key cache (entries, sessions, and none for keys),
    whatever the size of the journal."""
    rows, after = entries_page(
        session=session, patient_id=patient.id, reader_id=reader.id, kinds=kinds, before=before
    )
    items = reading.open_entries(session=session, reader=reader, rows=rows)
    now = utcnow()
    oldest = aware(items[-1].entry.created_at) if items and after else None
    found = sessions_between(
        session, patient.id, oldest=oldest, newest=before.at if before else None
    )
    upcoming = [s for s in found if aware(s.scheduled_at) > now] if before is None else []
    past = [s for s in found if aware(s.scheduled_at) <= now]
    return Page(
        periods=periods(past, items, first=before is None),
        items=items,
        next=after,
        upcoming=upcoming,
        first=before is None,
        note_counts={row.entry.id: row.notes for row in rows if row.notes},
        flagged={row.entry.id for row in rows if row.flagged},
    )


def sessions_between(session: Session, patient_id, *, oldest, newest) -> list[TreatmentSession]:
    """The patient's sessions from the one that began the period of `oldest` (all earlier
    ones too when None: the last page) up to `newest` (all, future included, when None: the
    first page), oldest first. One query."""
    params = {"patient": patient_id, "newest": newest, "oldest": oldest}
    query = _sessions_statement(newest=newest is not None, oldest=oldest is not None)
    return list(session.exec(query, params=params))


@cache
def _sessions_statement(*, newest: bool, oldest: bool):
    """The statement of `sessions_between`, built once per shape."""
    at = TreatmentSession.__table__.c.scheduled_at.type
    patient = bindparam("patient")
    query = select(TreatmentSession).where(TreatmentSession.patient_id == patient)
    if newest:
        query = query.where(TreatmentSession.scheduled_at < bindparam("newest", type_=at))
    if oldest:
        start = (
            select(func.max(TreatmentSession.scheduled_at))
            .where(
                TreatmentSession.patient_id == patient,
                TreatmentSession.scheduled_at <= bindparam("oldest", type_=at),
            )
            .scalar_subquery()
        )
        query = query.where(
            TreatmentSession.scheduled_at >= func.coalesce(start, bindparam("oldest", type_=at))
        )
    return query.order_by(col(TreatmentSession.scheduled_at))


def periods(past: list[TreatmentSession], items: list[reading.Item], *, first: bool) -> list:
    """Newest first: each past session with the entries written since it (until the next),
    then the entries from before the first session. On a later page the newest session was
    the previous page's last heading: it comes again, marked continued, only if entries of
    its period are on this page too."""
    ordered = sorted(past, key=lambda s: aware(s.scheduled_at), reverse=True)
    found = [Period(session=s) for s in ordered]
    loose = Period(session=None)
    for item in items:
        made = aware(item.entry.created_at)
        period = next((p for p in found if aware(p.session.scheduled_at) <= made), loose)
        period.items.append(item)
    if loose.items:
        found.append(loose)
    if not first and found and found[0].session is not None:
        if found[0].items:
            found[0].continued = True
        else:
            found.pop(0)
    return found


# --- search --------------------------------------------------------------------------------------


@dataclass
class Found:
    results: list[reading.Item]
    next: Cursor | None  # where to go on searching from (None: the whole journal was searched)
    scanned: int


def search(
    *, session: Session, reader: reading.Reader, patient: User, words: str, before=None
) -> Found:
    """The reader's own entries whose words contain `words` (case-insensitive), newest first,
    opened in memory batch by batch from `before`: it stops at a page of results, or after
    SCAN_LIMIT entries, and says where to go on from."""
    needle = words.casefold().strip()
    results: list[reading.Item] = []
    scanned, cursor = 0, before
    while needle and scanned < SCAN_LIMIT:
        rows, more = entries_page(
            session=session,
            patient_id=patient.id,
            reader_id=reader.id,
            before=cursor,
            size=min(_BATCH, SCAN_LIMIT - scanned),
        )
        items = reading.open_entries(session=session, reader=reader, rows=rows)
        for index, item in enumerate(items):
            scanned += 1
            cursor = Cursor.after(item.entry)
            if item.body and needle in journal.text_of(item.body).casefold():
                results.append(item)
                if len(results) == PAGE_SIZE:
                    last = index == len(items) - 1 and more is None
                    return Found(results=results, next=None if last else cursor, scanned=scanned)
        if more is None:
            return Found(results=results, next=None, scanned=scanned)
    return Found(results=results, next=cursor if needle else None, scanned=scanned)
