"""The access log (DESIGN §2): append-only, hash-chained with a key derived from the KEK."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import Session, col, select

from .. import crypto
from ..models import AuditEvent, utcnow
from . import accounts

ACTIONS = {
    "read": "read",
    "write": "wrote",
    "edit": "edited",
    "share": "shared",
    "revoke": "stopped sharing",
    "delete": "deleted",
    "annotate": "annotated",
    "export": "exported",
    "leave": "gave up access to",
}
_GENESIS = b"kapjournal/v1/audit-genesis"


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


def record(
    *, session: Session, actor_id, action: str, patient_id=None, entry_id=None, target_id=None
) -> AuditEvent:
    """Append an event in the caller's transaction (committed with the action it records)."""
    if session.get_bind().dialect.name == "postgresql":
        # One writer at a time extends the chain; the lock ends with the transaction.
        session.exec(text("SELECT pg_advisory_xact_lock(727271)"))
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    ring = accounts.keyring()
    event = AuditEvent(
        seq=(last.seq + 1) if last else 1,
        at=utcnow(),
        actor_id=actor_id,
        action=action,
        patient_id=patient_id,
        entry_id=entry_id,
        target_id=target_id,
        kek_id=ring.active,
    )
    event.mac = ring.audit_mac(event.kek_id, _message(event, last.mac if last else _GENESIS))
    session.add(event)
    session.flush()
    return event


@dataclass
class ChainReport:
    checked: int
    broken_at: int | None  # seq of the first row that does not match, or None


def verify(*, session: Session, keyring: crypto.Keyring | None = None) -> ChainReport:
    """Recompute the chain from the start; report the first row that does not fit."""
    ring = keyring or accounts.keyring()
    previous, expected_seq, checked = _GENESIS, 1, 0
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        try:
            mac = ring.audit_mac(event.kek_id, _message(event, previous))
        except KeyError:
            return ChainReport(checked, event.seq)
        if event.seq != expected_seq or mac != event.mac:
            return ChainReport(checked, event.seq)
        previous, expected_seq, checked = event.mac, expected_seq + 1, checked + 1
    return ChainReport(checked, None)


class ChainBroken(Exception):
    """The access log does not verify, so `keys rotate` will not re-key (launder) it."""

    def __init__(self, report: ChainReport):
        super().__init__(f"the access log is broken at event {report.broken_at}")
        self.report = report


def rekey(*, session: Session, keyring: crypto.Keyring) -> int:
    """Re-MAC the whole chain under the active KEK (keys rotate), so retired KEKs can be
    removed; raise ChainBroken instead if the chain does not verify. Returns the count."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(727271)"))  # no appends meanwhile
    report = verify(session=session, keyring=keyring)
    if report.broken_at is not None:
        raise ChainBroken(report)
    previous = _GENESIS
    events = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
    for event in events:
        event.kek_id = keyring.active
        event.mac = keyring.audit_mac(keyring.active, _message(event, previous))
        previous = event.mac
        session.add(event)
    return len(events)


def for_patient(*, session: Session, patient_id, entry_id=None, limit: int = 200):
    """The events about a patient's entries, newest first."""
    query = select(AuditEvent).where(AuditEvent.patient_id == patient_id)
    if entry_id is not None:
        query = query.where(AuditEvent.entry_id == entry_id)
    return list(session.exec(query.order_by(col(AuditEvent.seq).desc()).limit(limit)))
