"""Intentions over time (issue 15, item 5): each session's intention beside the reflections that
followed it, across the whole course, so a patient and their therapist can see how the
intentions moved.

A page is the usual page of entries (services/timeline: newest first, 20 to a page, cut by a
cursor), limited to intentions and reflections the reader holds a live grant on, opened through
the read path (a read of someone else's words is recorded when the page has been delivered).
Each entry is then set under its session: the session it was written for when it names one;
else, for an intention, the next session after it was written, and for a reflection, the last
session before. Three statements on a warm key cache, whatever the size of the journal: the
entries, their sessions, and none for keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from ..models import TreatmentSession, User, aware
from . import reading, timeline

KINDS = ("intention", "reflection")


@dataclass
class Row:
    """One session (None: entries not tied to any session), its intentions and the reflections
    that followed it, oldest first within the row."""

    session: TreatmentSession | None
    intentions: list[reading.Item] = field(default_factory=list)
    reflections: list[reading.Item] = field(default_factory=list)


@dataclass
class Page:
    rows: list[Row]
    next: timeline.Cursor | None
    first: bool = True


def page(
    *,
    session: Session,
    reader: reading.Reader,
    patient: User,
    before: timeline.Cursor | None = None,
) -> Page:
    """A page of `patient`'s intentions and reflections that `reader` may read, set out by
    session, newest session first."""
    rows, after = timeline.entries_page(
        session=session, patient_id=patient.id, reader_id=reader.id, kinds=KINDS, before=before
    )
    live = [row for row in rows if row.live]  # a pending share holds no key: nothing to show
    items = reading.open_entries(session=session, reader=reader, rows=live)
    sessions = _sessions_of(session, patient.id, items)
    return Page(rows=by_session(items, sessions), next=after, first=before is None)


def _sessions_of(session: Session, patient_id, items) -> list[TreatmentSession]:
    """The patient's sessions the page's entries may belong to, oldest first: those named by an
    entry, and every one from the last before the oldest entry to the first after the newest.
    One query (none for an empty page)."""
    if not items:
        return []
    times = [aware(item.entry.created_at) for item in items]
    oldest, newest = min(times), max(times)
    named = {item.entry.session_id for item in items if item.entry.session_id}
    before_oldest = (
        select(TreatmentSession.scheduled_at)
        .where(TreatmentSession.patient_id == patient_id, TreatmentSession.scheduled_at <= oldest)
        .order_by(col(TreatmentSession.scheduled_at).desc())
        .limit(1)
        .scalar_subquery()
    )
    after_newest = (
        select(TreatmentSession.scheduled_at)
        .where(TreatmentSession.patient_id == patient_id, TreatmentSession.scheduled_at >= newest)
        .order_by(col(TreatmentSession.scheduled_at))
        .limit(1)
        .scalar_subquery()
    )
    in_range = and_(
        col(TreatmentSession.scheduled_at) >= func.coalesce(before_oldest, oldest),
        col(TreatmentSession.scheduled_at) <= func.coalesce(after_newest, newest),
    )
    wanted = or_(in_range, col(TreatmentSession.id).in_(named)) if named else in_range
    query = select(TreatmentSession).where(TreatmentSession.patient_id == patient_id, wanted)
    return list(session.exec(query.order_by(col(TreatmentSession.scheduled_at))))


def by_session(items: list[reading.Item], sessions: list[TreatmentSession]) -> list[Row]:
    """The items set under their sessions (see the module's docstring), newest session first,
    the entries tied to no session last; within a row, oldest first."""
    ordered = sorted(sessions, key=lambda s: aware(s.scheduled_at))
    by_id = {s.id: s for s in ordered}
    found: dict = {}
    for item in sorted(items, key=lambda i: (aware(i.entry.created_at), i.entry.id)):
        home = by_id.get(item.entry.session_id) or _nearest(item, ordered)
        row = found.setdefault(home.id if home else None, Row(session=home))
        (row.intentions if item.entry.kind == "intention" else row.reflections).append(item)
    rows = sorted(
        (row for key, row in found.items() if key is not None),
        key=lambda row: aware(row.session.scheduled_at),
        reverse=True,
    )
    return rows + ([found[None]] if None in found else [])


def _nearest(item: reading.Item, ordered: list[TreatmentSession]) -> TreatmentSession | None:
    """For an entry that names no session: an intention belongs to the next session, a
    reflection to the last one before it."""
    made = aware(item.entry.created_at)
    if item.entry.kind == "intention":
        return next((s for s in ordered if aware(s.scheduled_at) >= made), None)
    return next((s for s in reversed(ordered) if aware(s.scheduled_at) <= made), None)
