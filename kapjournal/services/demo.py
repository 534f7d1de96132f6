"""A demo clinic made through the real services (refused in production by the CLI)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlmodel import Session, select

from ..models import ClinicSetup, Entry, Grant, SafetyCheck, TreatmentSession, utcnow
from . import (
    accounts,
    annotations,
    care,
    instruments,
    journal,
    measures,
    practices,
    support,
    totp,
    workspace,
)

DEMO_DOMAIN = "demo.kapjournal.invalid"


class AlreadySeeded(RuntimeError):
    """The demo accounts exist already."""


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(12)


def seed(*, session: Session) -> list[tuple[str, ...]]:
    """Create an owner therapist, two patients on their care team and a supporter of the first
    (with a support card and two entries shared, and one more invitation not used yet).

    Returns (role, email, password) for each account, and for the therapist a fourth item,
    `totp:SECRET`, the key for their authenticator app. Refuses to run twice.
    """
    if accounts.find_by_email(session=session, email=f"therapist@{DEMO_DOMAIN}"):
        raise AlreadySeeded("The demo clinic exists already in this database.")
    logins, keys = [], {}

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
        keys[registered.user.id] = registered.private_key
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
    supporter = make("support", "supporter", "Jordan Rivera")
    entries = _course(session, patients[0], therapist)
    _support(session, patients[0], supporter, entries, private_key=keys[patients[0].id])
    secret = _workspace(session, patients[0], therapist, private_key=keys[therapist.id])
    _measures(session, patients[0], therapist)
    logins[0] = (*logins[0], f"totp:{secret}")  # the therapist's two-step login key
    if session.get(ClinicSetup, 1) is None:  # the owner exists: /setup is closed
        session.add(ClinicSetup())
    session.commit()
    return logins


def _workspace(session: Session, patient, therapist, *, private_key: bytes) -> str:
    """The therapist's two-step login (returns its secret), two notes on Sam's shared
    reflection (one shared with Sam, one private), an agenda for the next integration session
    and a practice Sam has ticked twice."""
    secret = totp.new_secret()
    totp.enable(session=session, user=therapist, secret=secret)
    reflection = session.exec(
        select(Entry)
        .join(Grant, Grant.entry_id == Entry.id)
        .where(
            Entry.author_id == patient.id,
            Entry.kind == "reflection",
            Grant.reader_id == therapist.id,
        )
    ).first()
    body = journal.read(
        session=session, entry=reflection, reader_id=therapist.id, private_key=private_key
    )
    kitchen, letting_go = annotations.paragraphs_of(reflection.kind, body)[:2]
    notes = [
        (kitchen, "private", "Warmth where there used to be grief: a shift worth following."),
        (letting_go, "shared", "I'd like to hear more about letting go. Shall we start there?"),
    ]
    for paragraph, visibility, note in notes:
        annotations.create(
            session=session,
            patient=patient,
            author=therapist,
            note=note,
            visibility=visibility,
            entry=reflection,
            paragraph=paragraph,
            bring_to_session=visibility == "shared",
            private_key=private_key,
        )
    workspace.set_entry_flag(session=session, entry=reflection, therapist=therapist, flagged=True)
    practice = practices.create(
        session=session,
        patient=patient,
        therapist=therapist,
        body={
            "what": "Ten minutes outside each morning",
            "how_often": "Most mornings",
            "why": "Your intention was to meet grief with curiosity; the walks give it room.",
        },
    )
    practice.created_at = utcnow() - timedelta(days=5)  # in the last integration session
    today = utcnow().date()
    for days_ago in (1, 3):
        practices.tick(session=session, practice=practice, day=today - timedelta(days=days_ago))
    return secret


def _support(session: Session, patient, supporter, entries: list, *, private_key: bytes) -> None:
    """Jordan accepted Sam's invitation (the card and two entries chosen), and Sam's key has
    wrapped them for Jordan, as on Sam's next request; Casey's invitation is not used yet."""
    card, _ = journal.create(
        session=session,
        author=patient,
        kind="support_card",
        body={
            "helps": "Sit with me quietly. Tea, a blanket, the window open.",
            "unhelpful": "Lots of questions straight away. Give me until tomorrow.",
            "after_session": "Jordan drives me home and stays until bedtime. No driving for me "
            "until the next day.",
            "who_to_call": "Dr. Robin Vale's clinic, or my sister Kim.",
            "crisis": "988 (call or text).",
            "answers": [],
        },
        client_id=uuid.uuid4(),
    )
    issued = support.invite(
        session=session, patient=patient, name="Jordan", entries=[card, *entries]
    )
    support.accept(session=session, invitation=issued.invitation, supporter=supporter)
    support.finish_waiting_work(session=session, patient=patient, unlock=lambda: private_key)
    support.invite(session=session, patient=patient, name="Casey", entries=[card])


def _course(session: Session, patient, therapist) -> list:
    """A course of treatment with intentions, reflections and check-ins, some shared; returns
    the two entries the patient later shares with their supporter."""
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
    created = []
    for kind, index, shared, body in writes:
        body.setdefault("answers", [])
        entry, _ = journal.create(
            session=session,
            author=patient,
            kind=kind,
            body=body,
            client_id=uuid.uuid4(),
            session_id=made[index].id if index is not None else None,
            readers=[therapist] if shared else [],
        )
        created.append(entry)
    return [created[0], created[-1]]  # the first intention, the walk by the river


# (days ago, PHQ-9, GAD-7): a course that reaches response and, for the PHQ-9, remission.
DEMO_SCORES = [(26, 19, 15), (15, 16, 13), (10, 12, 10), (6, 8, 8), (3, 6, 6), (1, 4, 5)]


def _items(total: int, count: int, *, last: int = 0) -> list[int]:
    """Answers adding up to `total`, the last item fixed at `last` (PHQ-9 item 9)."""
    rest = total - last
    items = [min(3, max(0, rest - 3 * i)) for i in range(count - 1)]
    return [*items, last]


def _measures(session: Session, patient, therapist) -> None:
    """Six PHQ-9 and GAD-7 results over Sam's course, shared with the therapist (the first
    PHQ-9 answered item 9 with "Several days", acknowledged since), and a safety plan."""
    now = utcnow()
    for days, phq, gad in DEMO_SCORES:
        for instrument, total in ((instruments.PHQ9, phq), (instruments.GAD7, gad)):
            count = len(instrument.items)
            items = _items(
                total, count, last=1 if days == 26 and instrument is instruments.PHQ9 else 0
            )
            entry, _ = measures.record(
                session=session,
                patient=patient,
                instrument=instrument,
                body={
                    "items": items,
                    "difficulty": 1,
                    "score": instruments.score(instrument, items),
                },
                client_id=uuid.uuid4(),
                readers=[therapist],
            )
            entry.created_at = entry.updated_at = now - timedelta(days=days)
            session.add(entry)
    session.flush()
    for check in session.exec(select(SafetyCheck)):
        check.created_at = session.get(Entry, check.response_id).created_at
        measures.mark_reviewed(session=session, check=check, therapist=therapist)
    journal.create(
        session=session,
        author=patient,
        kind="safety_plan",
        body={
            "warning_signs": "I stop answering messages and stay in bed past noon.",
            "coping": "A hot shower, then a walk to the river with headphones.",
            "distractions": "The library café; my sister Kim's kitchen.",
            "people": "Jordan (555 0142), Kim (555 0177).",
            "professionals": "Dr. Robin Vale's clinic, weekdays 9 to 5. 988 any time.",
            "environment": "Jordan keeps my spare medication while things are hard.",
            "answers": [],
        },
        client_id=uuid.uuid4(),
        readers=[therapist],
    )
