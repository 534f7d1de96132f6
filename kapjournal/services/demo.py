"""A demo clinic made through the real services (refused in production by the CLI)."""

from __future__ import annotations

import secrets

from sqlmodel import Session

from . import accounts, care

DEMO_DOMAIN = "demo.kapjournal.invalid"


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(12)


def seed(*, session: Session) -> list[tuple[str, str, str]]:
    """Create an owner therapist, two patients on their care team and a supporter.

    Returns (role, email, password) for each account. Refuses to run twice.
    """
    if accounts.find_by_email(session=session, email=f"therapist@{DEMO_DOMAIN}"):
        raise RuntimeError("The demo clinic exists already in this database.")
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
    for local, name in (("patient", "Sam Rivera"), ("patient2", "Alex Chen")):
        patient = make("patient", local, name)
        issued = care.create_invitation(session=session, inviter=therapist, kind="patient")
        care.accept_patient_invitation(
            session=session, invitation=issued.invitation, patient=patient
        )
    make("support", "supporter", "Jordan Rivera")
    session.commit()
    return logins
