"""The access log (DESIGN §2): append-only, hash-chained with a key derived from the KEK.

Three promises, each kept here rather than by callers:
- Appending is safe under concurrency: the anchor row (`AuditHead`) is the lock. Every append
  first locks it (PostgreSQL: `SELECT ... FOR UPDATE`; SQLite: a no-op UPDATE, which takes the
  database's write lock), so the chain's end it reads cannot move before the commit.
- Removing the newest rows shows: the anchor holds a KEK-keyed MAC over the last sequence
  number and that row's MAC, updated in the same transaction as each append; `verify`
  compares the chain's end with it.
- The log says what a person did: a read (`read`, `read_notes`) appends one event per reader,
  subject and clinic day; repeats only raise a `ReadTally` count, shown beside that event.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, has_app_context
from sqlalchemy import bindparam, column, text, true, update
from sqlalchemy import values as values_of
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from .. import crypto
from ..models import AuditEvent, AuditHead, ReadTally, utcnow
from . import accounts

log = logging.getLogger(__name__)

READS = ("read", "read_notes")
ANCHOR_REMADE = "anchor_remade"  # an append found the anchor missing and made it again
_GENESIS = b"kapjournal/v1/audit-genesis"
_HEAD_LABEL = b"kapjournal/v1/audit-head\x00"
_HEAD_ID = 1
_LOCK_KEY = "kapjournal.audit_head"  # session.info: (transaction, head) while the lock is held


def _message(event: AuditEvent, previous_mac: bytes) -> bytes:
    fields = {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "actor": str(event.actor_id),
        "action": event.action,
        "patient": str(event.patient_id),
        "entry": str(event.entry_id),
        "target": str(event.target_id),
    }
    return previous_mac + json.dumps(fields, sort_keys=True).encode()


def _head_message(seq: int, last_mac: bytes) -> bytes:
    return _HEAD_LABEL + json.dumps({"seq": seq, "last_mac": last_mac.hex()}).encode()


def _seal_head(head: AuditHead, ring: crypto.Keyring) -> None:
    head.kek_id = ring.active
    head.mac = ring.audit_mac(ring.active, _head_message(head.seq, head.last_mac))


# --- the lock and the anchor ---------------------------------------------------------------------


def _insert(session: Session, model):
    """INSERT with ON CONFLICT support for the session's database."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


def _select_head(session: Session) -> AuditHead | None:
    query = select(AuditHead).where(AuditHead.id == _HEAD_ID).with_for_update()
    return session.exec(query.execution_options(populate_existing=True)).first()


def _locked_head(session: Session, *, create: bool = True, mark: bool = True) -> AuditHead | None:
    """The anchor row, locked until the caller's transaction ends (taken once per transaction).
    A log without an anchor (a database from before anchors) is anchored at its current end,
    unless `create` is false (then None). With `mark`, anchoring a log that has events also
    appends an `anchor_remade` event, so that a lost anchor stays visible in the chain."""
    held = session.info.get(_LOCK_KEY)
    if held and held[0] is session.get_transaction() and held[1] in session:
        return held[1]
    if session.get_bind().dialect.name == "sqlite":
        # pysqlite issues BEGIN before this statement; it takes SQLite's write lock, so the
        # reads below see the latest commit and no other writer runs until ours ends.
        session.exec(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
    head = _select_head(session)
    if head is None:
        if not create:
            return None
        made = _anchor_current_end(session)
        head = _select_head(session)
        if made and head.seq and mark:
            _append(session, head, at=utcnow(), actor_id=None, action=ANCHOR_REMADE)
    if not session.in_nested_transaction():
        session.info[_LOCK_KEY] = (session.get_transaction(), head)
    return head


def _anchor_current_end(session: Session) -> bool:
    """Insert the anchor at the chain's current end; whether this request made it (of two
    first appends at once, one makes it and the other waits on its lock)."""
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    head = AuditHead(
        id=_HEAD_ID, seq=last.seq if last else 0, last_mac=last.mac if last else _GENESIS
    )
    _seal_head(head, accounts.keyring())
    values = {c: getattr(head, c) for c in ("id", "seq", "last_mac", "kek_id", "mac")}
    insert = _insert(session, AuditHead).values(**values).on_conflict_do_nothing()
    made = session.exec(insert.returning(AuditHead.__table__.c.id)).first() is not None
    if made and last is not None:
        log.warning("the access log had no anchor: anchored it at event %s", last.seq)
    return made


def anchor(*, session: Session) -> int:
    """Make sure the log has its anchor (after `db upgrade` from a database without one);
    returns the sequence number it anchors. The caller commits."""
    return _locked_head(session, mark=False).seq


# --- appending -----------------------------------------------------------------------------------


def _chained(head: AuditHead, *, at: datetime, actor_id, action, **about) -> AuditEvent:
    """The next event of the chain (its MAC over the previous one's); moves `head` on."""
    ring = accounts.keyring()
    event = AuditEvent(
        seq=head.seq + 1, at=at, actor_id=actor_id, action=action, kek_id=ring.active, **about
    )
    event.mac = ring.audit_mac(event.kek_id, _message(event, head.last_mac))
    head.seq, head.last_mac = event.seq, event.mac
    return event


def _store_chained(session: Session, head: AuditHead, events: list[AuditEvent]) -> None:
    """Insert chained events (one statement) and the anchor that now names the last one."""
    _seal_head(head, accounts.keyring())
    session.add_all(events)
    session.add(head)
    session.flush()


def _append(
    session: Session, head: AuditHead, *, at: datetime, actor_id, action, **about
) -> AuditEvent:
    event = _chained(head, at=at, actor_id=actor_id, action=action, **about)
    _store_chained(session, head, [event])
    return event


def record(
    *,
    session: Session,
    actor_id,
    action: str,
    patient_id=None,
    entry_id=None,
    target_id=None,
    now: datetime | None = None,
) -> AuditEvent | None:
    """Append an event in the caller's transaction (committed with the action it records).
    A read goes through `record_read` (once per reader, subject and day): None if it only
    raised that day's count."""
    if action in READS:
        return record_read(
            session=session,
            reader_id=actor_id,
            patient_id=patient_id,
            entry_id=entry_id,
            action=action,
            now=now,
        )
    head = _locked_head(session)
    return _append(
        session,
        head,
        at=now or utcnow(),
        actor_id=actor_id,
        action=action,
        patient_id=patient_id,
        entry_id=entry_id,
        target_id=target_id,
    )


def clinic_day(moment: datetime) -> date:
    """The day `moment` falls on in the clinic's time zone (KAPJOURNAL_TIMEZONE)."""
    name = (current_app.config.get("TIMEZONE") if has_app_context() else None) or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return moment.astimezone(zone).date()


def record_read(
    *,
    session: Session,
    reader_id,
    patient_id,
    entry_id=None,
    action: str = "read",
    now: datetime | None = None,
) -> AuditEvent | None:
    """Record that `reader_id` read an entry (`read`) or a patient's notes and practices
    (`read_notes`): see `record_reads`. Returns the new event, or None when it was a repeat
    that only raised the day's count. The caller commits."""
    made = record_reads(
        session=session, reader_id=reader_id, reads=[(patient_id, entry_id, action)], now=now
    )
    return made[0] if made else None


def record_reads(*, session: Session, reader_id, reads, now: datetime | None = None) -> list:
    """Record what one reader read on one page: `reads` are (patient id, entry id or None,
    action) with action `read` (an entry) or `read_notes` (a patient's notes and practices).
    The first read of a subject on the clinic day appends an event; later ones only raise that
    day's count. One upsert for the whole page (concurrent requests cannot both count a read
    as the first), then, only for first reads, the events. Returns the new events; the caller
    commits."""
    now = now or utcnow()
    subjects = {}
    for patient_id, entry_id, action in reads:
        if action not in READS:
            raise ValueError(f"not a read: {action}")
        subject = entry_id if action == "read" and entry_id is not None else patient_id
        subjects[(subject, action)] = (patient_id, entry_id if action == "read" else None)
    if not subjects:
        return []
    order = sorted(subjects, key=lambda key: (str(key[0]), key[1]))  # one lock order for all
    counted = _count_reads(session, reader_id, order, subjects, clinic_day(now))
    firsts = [key for key in order if counted[key][1] == 1]
    if not firsts:
        return []
    head = _locked_head(session)  # already ours on PostgreSQL (see _count_reads)
    events = []
    for subject, action in firsts:
        patient_id, entry_id = subjects[(subject, action)]
        events.append(
            _chained(
                head,
                at=now,
                actor_id=reader_id,
                action=action,
                patient_id=patient_id,
                entry_id=entry_id,
            )
        )
    _store_chained(session, head, events)
    tally = ReadTally.__table__  # Core: one executemany, keyed by the tally row's id
    session.exec(
        update(tally).where(tally.c.id == bindparam("tally")).values(event_seq=bindparam("seq")),
        params=[
            {"tally": counted[key][0], "seq": event.seq}
            for key, event in zip(firsts, events, strict=True)
        ],
    )
    return events


def _count_reads(session: Session, reader_id, order, subjects, day) -> dict:
    """One upsert of the day's tally rows; (subject, action) → (tally id, count now).

    PostgreSQL: the same statement first locks the anchor (a `FOR UPDATE` CTE the rows are
    joined to), as every append takes it, so two requests reading the same entries wait for
    each other instead of deadlocking on the tally rows — and a page read again the same day
    costs this one statement. SQLite: the upsert itself takes the database's only write lock."""
    tally = ReadTally.__table__
    rows = [
        {
            "id": uuid.uuid4(),
            "reader_id": reader_id,
            "patient_id": subjects[key][0],
            "subject_id": key[0],
            "action": key[1],
            "day": day,
            "count": 1,
        }
        for key in order
    ]
    if session.get_bind().dialect.name == "postgresql":
        upsert = postgresql.insert(ReadTally).from_select(list(rows[0]), _rows_after_lock(rows))
    else:
        upsert = sqlite.insert(ReadTally).values(rows)
    upsert = upsert.on_conflict_do_update(
        index_elements=["reader_id", "subject_id", "action", "day"],
        set_={"count": tally.c.count + 1},
    ).returning(tally.c.id, tally.c.subject_id, tally.c.action, tally.c.count)
    return {(subject, action): (tid, count) for tid, subject, action, count in session.exec(upsert)}


def _rows_after_lock(rows: list[dict]):
    """SELECT of `rows` (in their order) joined to the locked anchor, so PostgreSQL locks the
    anchor before it inserts a row (a missing anchor locks nothing: the first append makes it)."""
    tally = ReadTally.__table__
    given = values_of(*(column(name, tally.c[name].type) for name in rows[0]), name="v").data(
        [tuple(row.values()) for row in rows]
    )
    head = select(AuditHead.id).where(AuditHead.id == _HEAD_ID).with_for_update().cte("head")
    return select(*given.c).select_from(given.outerjoin(head, true()))


# --- checking ------------------------------------------------------------------------------------


@dataclass
class ChainReport:
    checked: int
    broken_at: int | None  # seq of the first row that does not match, or None
    problem: str | None = None  # the rows fit together but not with their anchor
    remade_at: list[int] = field(default_factory=list)  # `anchor_remade` events, if any

    @property
    def intact(self) -> bool:
        return self.broken_at is None and self.problem is None

    def __str__(self) -> str:
        if self.broken_at is not None:
            return f"the access log is broken at event {self.broken_at}"
        return self.problem or f"the access log is intact ({self.checked} events)"


def verify(*, session: Session, keyring: crypto.Keyring | None = None) -> ChainReport:
    """Recompute the chain from the start and compare its end with the anchor; report the
    first row that does not fit, or what is wrong with the end."""
    ring = keyring or accounts.keyring()
    previous, expected_seq, checked, remade = _GENESIS, 1, 0, []
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        try:
            mac = ring.audit_mac(event.kek_id, _message(event, previous))
        except KeyError:
            return ChainReport(checked, event.seq, remade_at=remade)
        if event.seq != expected_seq or mac != event.mac:
            return ChainReport(checked, event.seq, remade_at=remade)
        if event.action == ANCHOR_REMADE:
            remade.append(event.seq)
        previous, expected_seq, checked = event.mac, expected_seq + 1, checked + 1
    head = session.get(AuditHead, _HEAD_ID)
    return ChainReport(checked, None, _anchor_problem(head, ring, checked, previous), remade)


def _anchor_problem(head: AuditHead | None, ring, checked: int, last_mac: bytes) -> str | None:
    if head is None:
        if checked == 0:
            return None  # a new, empty log
        return f"its anchor is missing: the log has {checked} events but no anchor row"
    try:
        expected = ring.audit_mac(head.kek_id, _head_message(head.seq, head.last_mac))
    except KeyError:
        return f"its anchor is sealed under an unknown KEK ({head.kek_id!r})"
    if expected != head.mac:
        return "its anchor was changed (its MAC does not match)"
    if head.seq > checked:
        return (
            f"the newest events were removed: the log ends at {checked} "
            f"but its anchor says {head.seq}"
        )
    if head.seq < checked:
        return (
            f"events were added behind its anchor: the log ends at {checked}, the anchor {head.seq}"
        )
    if head.last_mac != last_mac:
        return f"the last event ({checked}) is not the one its anchor names"
    return None


class ChainBroken(Exception):
    """The access log does not verify, so `keys rotate` will not re-key (launder) it."""

    def __init__(self, report: ChainReport):
        super().__init__(str(report))
        self.report = report


def rekey(*, session: Session, keyring: crypto.Keyring) -> int:
    """Re-MAC the whole chain and its anchor under the active KEK (keys rotate), so retired
    KEKs can be removed; raise ChainBroken instead if the log does not verify. Returns the
    count of events."""
    # Locked first (no appends meanwhile), but a missing anchor is not re-made here: over
    # existing events that would hide what `verify` reports.
    head = _locked_head(session, create=False)
    report = verify(session=session, keyring=keyring)
    if not report.intact:
        raise ChainBroken(report)
    if head is None:  # an empty log: anchor it, under the lock this takes
        head = _locked_head(session)
    previous = _GENESIS
    events = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
    for event in events:
        event.kek_id = keyring.active
        event.mac = keyring.audit_mac(keyring.active, _message(event, previous))
        previous = event.mac
        session.add(event)
    head.last_mac = previous
    _seal_head(head, keyring)
    session.add(head)
    return len(events)


# --- the patient's view --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedEvent:
    """One row of a patient's access log; `count`: how often that read happened that day."""

    seq: int
    at: datetime
    actor_id: uuid.UUID | None
    action: str
    patient_id: uuid.UUID | None
    entry_id: uuid.UUID | None
    target_id: uuid.UUID | None
    count: int = 1


def for_patient(
    *, session: Session, patient_id, entry_id=None, before: int | None = None, limit: int = 200
) -> list[LoggedEvent]:
    """The events about a patient's entries, newest first (those before event `before`, for
    a page further back), each read with its day's count. Two queries."""
    query = select(AuditEvent).where(AuditEvent.patient_id == patient_id)
    if entry_id is not None:
        query = query.where(AuditEvent.entry_id == entry_id)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    events = list(session.exec(query.order_by(col(AuditEvent.seq).desc()).limit(limit)))
    reads = [e.seq for e in events if e.action in READS]
    counts = {}
    if reads:
        counts = dict(
            session.exec(
                select(ReadTally.event_seq, ReadTally.count).where(
                    ReadTally.patient_id == patient_id, col(ReadTally.event_seq).in_(reads)
                )
            ).all()
        )
    return [
        LoggedEvent(
            seq=e.seq,
            at=e.at,
            actor_id=e.actor_id,
            action=e.action,
            patient_id=e.patient_id,
            entry_id=e.entry_id,
            target_id=e.target_id,
            count=counts.get(e.seq, 1),
        )
        for e in events
    ]
