"""Care teams and invitations: a therapist invites a patient, who joins their care team."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlmodel import Session, select

from .. import crypto
from ..models import CareTeam, Invitation, User, utcnow
from . import accounts

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
