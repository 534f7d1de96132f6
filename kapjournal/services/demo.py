"""A demo clinic made through the real services (refused in production by the CLI)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlmodel import Session

from ..models import TreatmentSession, utcnow
from . import accounts, care, journal

DEMO_DOMAIN = "demo.kapjournal.invalid"


class AlreadySeeded(RuntimeError):
    """The demo accounts exist already."""


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(12)


def seed(*, session: Session) -> list[tuple[str, str, str]]:
    """Create an owner therapist, two patients on their care team and a supporter.

    Returns (role, email, password) for each account. Refuses to run twice.
    """
    if accounts.find_by_email(session=session, email=f"therapist@{DEMO_DOMAIN}"):
        raise AlreadySeeded("The demo clinic exists already in this database.")
    logins = []

    def make(role: str, local: str, name: str, **extra):
        email, password = f"{local}@{DEMO_DOMAIN}", _password()
        registered = accounts.register(
            session=session,
            email=email,
            name=name,
            password=password,
            password2=password,
            role=role,
            **extra,
        )
        accounts.confirm_recovery_saved(session=session, user=registered.user)
        logins.append((role, email, password))
        return registered.user

    therapist = make("therapist", "therapist", "Dr. Robin Vale", is_owner=True)
    patients = []
    for local, name in (("patient", "Sam Rivera"), ("patient2", "Alex Chen")):
        patient = make("patient", local, name)
        issued = care.create_invitation(session=session, inviter=therapist, kind="patient")
        care.accept_patient_invitation(
            session=session, invitation=issued.invitation, patient=patient
        )
        patients.append(patient)
    make("support", "supporter", "Jordan Rivera")
    _course(session, patients[0], therapist)
    session.commit()
    return logins


def _course(session: Session, patient, therapist) -> None:
    """A course of treatment with intentions, reflections and check-ins, some shared."""
    now = utcnow()
    plan = [
        ("preparation", -20),
        ("ketamine", -14),
        ("integration", -12),
        ("ketamine", -7),
        ("integration", -5),
        ("ketamine", 3),
    ]
    made = []
    for kind, days in plan:
        made.append(
            TreatmentSession(
                patient_id=patient.id,
                created_by_id=therapist.id,
                kind=kind,
                scheduled_at=now + timedelta(days=days),
                status="done" if days < 0 else "planned",
            )
        )
        session.add(made[-1])
    session.flush()
    writes = [
        (
            "intention",
            1,
            True,
            {
                "intention": "To meet my grief with curiosity instead of fear.",
                "hopes": "A little more room to breathe.",
                "worries": "Feeling out of control.",
                "grounding": "I am safe, and this will pass.",
                "support": "Jordan is driving me home.",
            },
        ),
        (
            "reflection",
            1,
            True,
            {
                "text": "I saw my grandmother's kitchen. It felt warm, not sad.\n\n"
                "I want to talk about the part where I let go.",
                "mood": 4,
            },
        ),
        ("check_in", None, False, {"text": "Tired but lighter.", "mood": 3}),
        ("intention", 3, True, {"intention": "To be kind to the part of me that worries."}),
        ("reflection", 3, False, {"text": "Harder this time. Noise, then quiet.", "mood": 2}),
        ("free", None, False, {"text": "Walked by the river. Ten minutes, like we said."}),
    ]
    for kind, index, shared, body in writes:
        body.setdefault("answers", [])
        journal.create(
            session=session,
            author=patient,
            kind=kind,
            body=body,
            client_id=uuid.uuid4(),
            session_id=made[index].id if index is not None else None,
            readers=[therapist] if shared else [],
        )
