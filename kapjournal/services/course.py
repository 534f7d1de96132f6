"""A patient's course of treatment: preparation, ketamine and integration sessions."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import SESSION_KINDS, SESSION_STATUSES, TreatmentSession, User
from .accounts import ValidationError

# What each kind and status is called on the pages (the stored values stay these English keys).
KIND_LABELS = {
    "preparation": _l("Preparation session"),
    "ketamine": _l("Ketamine session"),
    "integration": _l("Integration session"),
}
STATUS_LABELS = {
    "planned": _l("planned"),
    "done": _l("done"),
    "cancelled": _l("cancelled"),
}


def parse_local_time(value: str, zone) -> datetime:
    """A `datetime-local` form value in the viewer's zone, as aware UTC."""
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError({"scheduled_at": _("Enter a date and time.")}) from None
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=zone)


def schedule(
    *, session: Session, patient: User, created_by: User, kind: str, when: str, zone
) -> TreatmentSession:
    """Add a treatment session to the patient's course; the caller commits."""
    errors = {}
    if kind not in SESSION_KINDS:
        errors["kind"] = _("Choose the kind of session.")
    try:
        scheduled_at = parse_local_time(when, zone)
    except ValidationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    found = TreatmentSession(
        patient_id=patient.id, created_by_id=created_by.id, kind=kind, scheduled_at=scheduled_at
    )
    session.add(found)
    session.flush()
    return found


def set_status(*, session: Session, treatment_session: TreatmentSession, status: str) -> None:
    if status not in SESSION_STATUSES:
        raise ValidationError({"status": _("Choose planned, done or cancelled.")})
    treatment_session.status = status
    session.add(treatment_session)


def sessions_of(*, session: Session, patient: User) -> list[TreatmentSession]:
    query = (
        select(TreatmentSession)
        .where(TreatmentSession.patient_id == patient.id)
        .order_by(col(TreatmentSession.scheduled_at))
    )
    return list(session.exec(query))
