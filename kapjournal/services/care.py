"""Care teams and invitations: a therapist invites a patient, who joins their care team."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from .. import crypto
from ..models import (
    Annotation,
    CareTeam,
    Entry,
    EntryFlag,
    Grant,
    Invitation,
    ItemKey,
    Practice,
    SafetyCheck,
    User,
    utcnow,
)
from . import accounts, audit, journal

LABEL_MAX = 80


class InvitationProblem(enum.Enum):
    """Why an invitation link cannot be used; each has its own calm page."""

    UNKNOWN = "unknown"  # forged, mistyped or cancelled
    USED = "used"
    EXPIRED = "expired"


class InvitationError(Exception):
    def __init__(self, problem: InvitationProblem):
        super().__init__(problem.value)
        self.problem = problem


@dataclass
class Issued:
    invitation: Invitation
    token: str  # shown once; only its hash is stored


def label_ad(invitation: Invitation) -> dict:
    return {"p": "invitation/label", "invitation": str(invitation.id)}


def create_invitation(*, session: Session, inviter: User, kind: str, label: str = "") -> Issued:
    """A single-use invitation that expires after INVITATION_DAYS; the caller commits."""
    label = label.strip()
    if len(label) > LABEL_MAX:
        raise accounts.ValidationError({"label": f"Use at most {LABEL_MAX} characters."})
    token = crypto.new_token()
    days = current_app.config["INVITATION_DAYS"]
    invitation = Invitation(
        token_hash=crypto.token_hash(token),
        kind=kind,
        inviter_id=inviter.id,
        expires_at=utcnow() + timedelta(days=days),
    )
    if label:
        invitation.label_enc = accounts.keyring().seal(label.encode(), label_ad(invitation))
    session.add(invitation)
    session.flush()
    return Issued(invitation=invitation, token=token)


def label_of(invitation: Invitation) -> str:
    if invitation.label_enc is None:
        return ""
    return accounts.keyring().open(invitation.label_enc, label_ad(invitation)).decode()


def find_usable(*, session: Session, token: str, kind: str) -> Invitation:
    """The invitation behind a link, or InvitationError saying why it cannot be used."""
    invitation = session.exec(
        select(Invitation).where(Invitation.token_hash == crypto.token_hash(token or ""))
    ).first()
    if invitation is None or invitation.kind != kind:
        raise InvitationError(InvitationProblem.UNKNOWN)
    if invitation.used_at is not None:
        raise InvitationError(InvitationProblem.USED)
    if invitation.expires_at <= utcnow():
        raise InvitationError(InvitationProblem.EXPIRED)
    return invitation


def accept_patient_invitation(*, session: Session, invitation: Invitation, patient: User) -> None:
    """Use up the invitation and put the patient on the inviting therapist's care team."""
    invitation.used_at = utcnow()
    invitation.used_by_id = patient.id
    session.add(invitation)
    if not is_linked(session=session, therapist_id=invitation.inviter_id, patient_id=patient.id):
        session.add(CareTeam(therapist_id=invitation.inviter_id, patient_id=patient.id))


def is_linked(*, session: Session, therapist_id, patient_id) -> bool:
    query = select(CareTeam.id).where(
        CareTeam.therapist_id == therapist_id, CareTeam.patient_id == patient_id
    )
    return session.exec(query).first() is not None


def pending_invitations(*, session: Session, inviter: User) -> list[Invitation]:
    """Unused, unexpired invitations the user made, newest first."""
    query = (
        select(Invitation)
        .where(
            Invitation.inviter_id == inviter.id,
            Invitation.used_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
        .order_by(Invitation.created_at.desc())
    )
    return list(session.exec(query))


def cancel_invitation(*, session: Session, invitation: Invitation) -> None:
    session.delete(invitation)


def patients_of(*, session: Session, therapist: User) -> list[User]:
    query = (
        select(User)
        .join(CareTeam, CareTeam.patient_id == User.id)
        .where(CareTeam.therapist_id == therapist.id)
        .order_by(CareTeam.created_at)
    )
    return list(session.exec(query))


def therapists_of(*, session: Session, patient: User) -> list[User]:
    query = (
        select(User)
        .join(CareTeam, CareTeam.therapist_id == User.id)
        .where(CareTeam.patient_id == patient.id)
        .order_by(CareTeam.created_at)
    )
    return list(session.exec(query))


def remove_from_care_team(
    *, session: Session, patient: User, therapist: User, private_key: bytes | None = None
) -> int:
    """Take a therapist off a patient's care team. Their grants on the patient's entries, their
    keys to the patient's notes and practices and their flags go at once (their next request
    is a 404). When the patient does it (`private_key` given), every entry the therapist could
    read is re-encrypted under a new data key in the same transaction; when the therapist does
    it, the entries are marked and re-encrypted on the patient's next request, the only time
    the patient's key is unlocked (DESIGN §3 flow 5). Returns how many entries they lost; the
    caller commits."""
    entries = session.exec(
        select(Entry)
        .join(Grant, Grant.entry_id == Entry.id)
        .where(Grant.reader_id == therapist.id, Entry.author_id == patient.id)
    ).all()
    for entry in entries:
        if private_key is not None:
            try:
                journal.revoke(
                    session=session,
                    entry=entry,
                    author=patient,
                    private_key=private_key,
                    reader_id=therapist.id,
                )
                continue
            except journal.EntryUnreadable:
                pass  # a damaged entry: drop the grant now, rotate when it opens again
        grant = journal.grant_of(session=session, entry_id=entry.id, reader_id=therapist.id)
        session.delete(grant)
        entry.needs_rotation = True
        session.add(entry)
        audit.record(
            session=session,
            actor_id=therapist.id if private_key is None else patient.id,
            action="leave" if private_key is None else "revoke",
            patient_id=patient.id,
            entry_id=entry.id,
            target_id=None if private_key is None else therapist.id,
        )
    _drop_workspace_access(session, patient=patient, therapist=therapist)
    return len(entries)


def _drop_workspace_access(session: Session, *, patient: User, therapist: User) -> None:
    notes = select(Annotation.id).where(Annotation.patient_id == patient.id)
    practices = select(Practice.id).where(Practice.patient_id == patient.id)
    checks = select(SafetyCheck.id).where(SafetyCheck.patient_id == patient.id)
    keys = select(ItemKey).where(
        ItemKey.reader_id == therapist.id,
        or_(
            and_(ItemKey.subject_kind == "annotation", col(ItemKey.subject_id).in_(notes)),
            and_(ItemKey.subject_kind == "practice", col(ItemKey.subject_id).in_(practices)),
            and_(ItemKey.subject_kind == "safety_check", col(ItemKey.subject_id).in_(checks)),
        ),
    )
    for key in session.exec(keys):
        session.delete(key)
    for flag in session.exec(
        select(EntryFlag).where(
            EntryFlag.therapist_id == therapist.id, EntryFlag.patient_id == patient.id
        )
    ):
        session.delete(flag)
    for link in session.exec(
        select(CareTeam).where(
            CareTeam.therapist_id == therapist.id, CareTeam.patient_id == patient.id
        )
    ):
        session.delete(link)
    session.flush()
