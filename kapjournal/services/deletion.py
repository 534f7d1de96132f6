"""Leaving: deleting an account, and deleting many entries at once (DESIGN §11 "Deletion").

Deletion is crypto-shredding. A patient's account goes with their private key (every wrap of
it), every data key wrapped to them, and every ciphertext they authored (entries, replies),
with the notes, practices and safety checks about them and every reader's key to those, in
one transaction. A copy of the database taken before keeps those rows, but nobody can open
them any more once the only wraps of their keys that a password could open are gone: the
patient's private key was wrapped only to their password and recovery code, which no one else
has. What a backup still holds is in the README. The access log keeps its rows (metadata, no
content) and gains a tombstone event, so its chain still verifies.

A supporter's or a therapist's account goes with their keys and what they wrote; the entries
they could read are marked, so that the patient's next request re-encrypts them under new data
keys (the departed reader's wraps in an old backup then open only old versions).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from ..i18n import gettext as _
from ..models import (
    Annotation,
    CareTeam,
    Entry,
    Grant,
    ItemKey,
    Practice,
    SafetyCheck,
    SessionDay,
    SupportLink,
    TreatmentSession,
    User,
)
from . import audit, care, journal

# Typed by the person, so that no slip of a finger does it. The page asks for the phrase in its
# own language (`phrase()`: "eliminar mi cuenta" in Spanish); the English one is accepted on
# every page too, so that nobody is refused for typing what they read in the other language.
CONFIRMATION = "delete my account"  # not-ui: the English phrase as compared; phrase() is shown


def phrase() -> str:
    """The confirmation phrase in the page's language, as the page asks for it."""
    return _("delete my account")


def confirmed(typed: str) -> bool:
    """Whether `typed` is the confirmation phrase (the page's language's, or the English one),
    whatever the letter case and the spaces around and between its words."""
    words = " ".join(typed.split()).casefold()
    return words in {CONFIRMATION, " ".join(phrase().split()).casefold()}


def sole_patients_of(*, session: Session, therapist: User) -> list[User]:
    """The patients for whom `therapist` is the only therapist on the care team."""
    others = select(CareTeam.patient_id).where(CareTeam.therapist_id != therapist.id)
    return list(
        session.exec(
            select(User)
            .join(CareTeam, CareTeam.patient_id == User.id)
            .where(CareTeam.therapist_id == therapist.id, col(User.id).not_in(others))
        )
    )


def delete_account(*, session: Session, user: User) -> None:
    """Delete `user` and everything that is theirs (see the module's docstring); a therapist
    must have left the care team of every patient they were the only therapist of. The caller
    commits."""
    if user.role == "therapist" and sole_patients_of(session=session, therapist=user):
        raise ValueError("hand over or leave the patients you are the only therapist of first")
    if user.role == "patient":
        _shred_patient(session, user)
    else:
        _leave_every_journal(session, user)
    audit.record(
        session=session,
        actor_id=user.id,
        action="account_deleted",
        patient_id=user.id if user.role == "patient" else None,
    )
    session.exec(
        delete(User).where(User.id == user.id).execution_options(synchronize_session=False)
    )
    if user in session:
        session.expunge(user)


def _shred_patient(session: Session, patient: User) -> None:
    """The patient's ciphertext and every key to it, and the records about them."""
    kinds = ((Annotation, "annotation"), (Practice, "practice"), (SafetyCheck, "safety_check"))
    kinds += ((SessionDay, "session_day"),)  # helper DAY: the session-day checklists
    for model, kind in kinds:
        about = select(model.id).where(model.patient_id == patient.id)
        _delete(session, ItemKey, ItemKey.subject_kind == kind, col(ItemKey.subject_id).in_(about))
    for model, _kind in kinds:
        _delete(session, model, model.patient_id == patient.id)
    mine = select(Entry.id).where(Entry.author_id == patient.id)
    _delete(session, Grant, col(Grant.entry_id).in_(mine))
    _delete(session, Entry, Entry.author_id == patient.id)
    _delete(session, TreatmentSession, TreatmentSession.patient_id == patient.id)
    _delete(session, CareTeam, CareTeam.patient_id == patient.id)
    _delete(session, SupportLink, SupportLink.patient_id == patient.id)


def _leave_every_journal(session: Session, reader: User) -> None:
    """A supporter or therapist leaves: their grants go, and each patient's next request
    re-encrypts what they could read; the patients are told in their access log."""
    read = select(Grant.entry_id).where(Grant.reader_id == reader.id)
    patients = set(
        session.exec(select(Entry.author_id).where(col(Entry.id).in_(read))).all()
    ) | set(session.exec(select(CareTeam.patient_id).where(CareTeam.therapist_id == reader.id)))
    patients |= set(
        session.exec(select(SupportLink.patient_id).where(SupportLink.supporter_id == reader.id))
    )
    session.exec(
        update(Entry)
        .where(col(Entry.id).in_(read))
        .values(needs_rotation=True)
        .execution_options(synchronize_session=False)
    )
    _delete(session, Grant, Grant.reader_id == reader.id)
    for patient_id in sorted(patients, key=str):
        journal.queue_work(session=session, patient_id=patient_id)
        audit.record(
            session=session, actor_id=reader.id, action="account_deleted", patient_id=patient_id
        )
    if reader.role == "therapist":
        for patient in care.patients_of(session=session, therapist=reader):
            care.remove_from_care_team(session=session, patient=patient, therapist=reader)
        # What they wrote goes with them (the rows by cascade): the keys to it here.
        for model, author, kind in (
            (Annotation, Annotation.author_id, "annotation"),
            (Practice, Practice.created_by_id, "practice"),
        ):
            theirs = select(model.id).where(author == reader.id)
            _delete(
                session, ItemKey, ItemKey.subject_kind == kind, col(ItemKey.subject_id).in_(theirs)
            )


def _delete(session: Session, model, *conditions) -> None:
    session.exec(delete(model).where(*conditions).execution_options(synchronize_session=False))


# --- many entries at once --------------------------------------------------------------------


def entries_to_delete(*, session: Session, patient: User, session_id=None, before=None):
    """The patient's own entries of one treatment session, or written before a moment (one of
    the two): the statement both the question ("delete these 12 entries?") and the deletion
    use, so they name the same entries."""
    query = select(Entry).where(Entry.author_id == patient.id)
    if session_id is not None:
        return query.where(Entry.session_id == session_id)
    if isinstance(before, datetime):
        return query.where(col(Entry.created_at) < before)
    raise ValueError("a session or a moment")


def delete_entries(*, session: Session, patient: User, query) -> int:
    """Delete every entry `query` (from `entries_to_delete`) names, each as `journal.delete`
    does (ciphertext, every reader's wrapped key, the notes on it); returns how many. The
    caller commits."""
    entries = list(session.exec(query))
    for entry in entries:
        journal.delete(session=session, entry=entry, author=patient)
    return len(entries)
