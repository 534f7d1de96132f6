"""Care teams and invitations: a therapist invites a patient, who joins their care team.

Every invitation link (a therapist's for a patient, a patient's for a supporter) is used by
one conditional UPDATE that only one request can win (`claim`). Registering from a link with
email configured (`join`) answers the same whether the address has an account or not: a new
address confirms itself through an emailed link (`confirm_address`), an existing account is
offered the invitation at its next login (`offers_for`, `take_offer`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, timedelta

from flask import current_app
from flask_babel import format_number
from sqlalchemy import and_, delete, or_, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from .. import crypto
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
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
from .timeline import Cursor

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
        raise accounts.ValidationError(
            {"label": _("Use at most %(n)s characters.", n=format_number(LABEL_MAX))}
        )
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


def claim(*, session: Session, invitation: Invitation, user_id=None) -> bool:
    """Use up an unused, unexpired invitation: one conditional UPDATE, so of several requests
    with the same link exactly one wins (True). Nothing else may be written before it; the
    caller commits (or rolls back on False)."""
    now = utcnow()
    won = session.exec(
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            col(Invitation.used_at).is_(None),
            Invitation.expires_at > now,
        )
        .values(used_at=now, used_by_id=user_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won == 1:  # what the row now holds, without writing it a second time
        set_committed_value(invitation, "used_at", now)
        set_committed_value(invitation, "used_by_id", user_id)
    return won == 1


def take(*, session: Session, invitation: Invitation, user: User) -> None:
    """Make sure `user` holds the invitation: claim it now, or it was claimed for them already
    (registration, an accepted offer). InvitationError(USED) when someone else has it."""
    if invitation.used_at is None:
        if not claim(session=session, invitation=invitation, user_id=user.id):
            raise InvitationError(InvitationProblem.USED)
    elif invitation.used_by_id != user.id:
        raise InvitationError(InvitationProblem.USED)


def accept_patient_invitation(*, session: Session, invitation: Invitation, patient: User) -> None:
    """Use up the invitation (see `take`) and put the patient on the inviting therapist's care
    team; the caller commits."""
    take(session=session, invitation=invitation, user=patient)
    if not is_linked(session=session, therapist_id=invitation.inviter_id, patient_id=patient.id):
        session.add(CareTeam(therapist_id=invitation.inviter_id, patient_id=patient.id))
    session.flush()


# --- joining from a link ------------------------------------------------------------------------

# The role an account needs to join through each kind of invitation link.
JOIN_ROLES = {"patient": "patient", "support": "support"}
OFFER_KIND = "offer"  # Invitation.kind of an invitation offered to an existing account
# Without email, registering with an address that has an account cannot be hidden (anyone may
# try to log in next): this says no more than that.
NOT_CREATED = _l(
    "We could not create an account with this address. If you already have one, log in, "
    "then open the link again."
)


@dataclass
class Joined:
    """What registering from a link did. Whatever it was, the page says the same."""

    user: User  # the new account, or the account the address already had
    registered: accounts.Registered | None  # a new account's keys (None: it existed)
    confirm_token: str | None = None  # emailed to a new address; only its hash is stored
    offered: bool = False  # the existing account is asked to accept at its next login


def join(*, session: Session, invitation: Invitation, form: dict, by_email: bool) -> Joined:
    """Register from an invitation link (`form`: email, name, password, password2), after the
    same work (one Argon2id run, a key pair) whether the address has an account or not, and
    claim the link the same way in both cases.

    `by_email` (email is configured): a new address gets an account that cannot log in until
    the emailed link is opened; an existing account is offered the invitation instead (never
    joined by someone who does not own it). Without email, EmailTaken for an existing address
    and the link stays unused. ValidationError for the form; InvitationError(USED) if another
    request used the link first. Nothing is stored before the claim; the caller commits."""
    role = JOIN_ROLES[invitation.kind]
    fresh = accounts.new_account(**form, role=role)
    existing = accounts.find_by_email(session=session, email=form["email"])
    if existing is not None and not by_email:
        raise accounts.EmailTaken({"email": NOT_CREATED})
    if not claim(session=session, invitation=invitation):
        raise InvitationError(InvitationProblem.USED)
    if existing is not None and accounts.awaiting_confirmation(session=session, user=existing):
        # Never confirmed (so never used): the address's owner confirms the newest account.
        session.exec(delete(User).where(User.id == existing.id))
        existing = None
    if existing is None:
        try:
            with session.begin_nested():
                session.add(fresh.user)
        except IntegrityError:  # the same address registered at this very moment
            existing = accounts.find_by_email(session=session, email=form["email"])
    if existing is not None:
        return Joined(user=existing, registered=None, offered=_offer(session, invitation, existing))
    _used_by(session, invitation, fresh.user.id)
    token = _issue_confirmation(session, fresh.user) if by_email else None
    return Joined(user=fresh.user, registered=fresh, confirm_token=token)


def _used_by(session: Session, invitation: Invitation, user_id) -> None:
    session.exec(
        update(Invitation)
        .where(Invitation.id == invitation.id)
        .values(used_by_id=user_id)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(invitation, "used_by_id", user_id)


def _expiry():
    return utcnow() + timedelta(days=current_app.config["INVITATION_DAYS"])


def _issue_confirmation(session: Session, user: User) -> str:
    token = crypto.new_token()
    row = Invitation(
        token_hash=crypto.token_hash(token),
        kind=accounts.CONFIRM_KIND,
        inviter_id=user.id,
        expires_at=_expiry(),
    )
    session.add(row)
    session.flush()
    return token


def _offer_hash(invitation_id) -> bytes:
    # Offers are found from the invitation they offer; never from a URL (see find_usable).
    return crypto.token_hash(f"kapjournal/v1/offer:{invitation_id}")


def _offer(session: Session, invitation: Invitation, owner: User) -> bool:
    """Point the claimed invitation at the address's account, and offer it to them if their
    role can accept it. Returns whether it was offered."""
    _used_by(session, invitation, owner.id)
    if owner.role != JOIN_ROLES[invitation.kind] or owner.disabled_at is not None:
        return False
    session.add(
        Invitation(
            token_hash=_offer_hash(invitation.id),
            kind=OFFER_KIND,
            inviter_id=owner.id,
            expires_at=_expiry(),
        )
    )
    session.flush()
    return True


def confirm_address(*, session: Session, token: str) -> tuple[User, list[Invitation]]:
    """Use an emailed confirmation link (once: a conditional UPDATE): the account may log in
    from now on. Returns it and the invitations it registered from, to join now (those offered
    to it later wait for its login). InvitationError saying why the link cannot be used."""
    row = find_usable(session=session, token=token, kind=accounts.CONFIRM_KIND)
    user = session.get(User, row.inviter_id)
    if not claim(session=session, invitation=row, user_id=user.id):
        raise InvitationError(InvitationProblem.USED)
    offered = {offer.token_hash for offer in _offers(session, user)}
    return user, [
        invitation
        for digest, invitation in _claimed_by(session, user).items()
        if digest not in offered and JOIN_ROLES[invitation.kind] == user.role
    ]


def _claimed_by(session: Session, user: User) -> dict[bytes, Invitation]:
    """The links used with the user's address, by the hash their offer would have."""
    query = select(Invitation).where(
        Invitation.used_by_id == user.id, col(Invitation.kind).in_(list(JOIN_ROLES))
    )
    return {_offer_hash(invitation.id): invitation for invitation in session.exec(query)}


def _offers(session: Session, user: User) -> list[Invitation]:
    query = select(Invitation).where(
        Invitation.kind == OFFER_KIND, Invitation.inviter_id == user.id
    )
    return list(session.exec(query))


def offers_for(*, session: Session, user: User) -> list[tuple[Invitation, Invitation]]:
    """Invitations waiting for the user to accept or decline, as (offer, invitation), oldest
    first (done at each login: one indexed query when there is none). Nothing is offered to
    a role that cannot accept it."""
    offers = [offer for offer in _offers(session, user) if offer.expires_at > utcnow()]
    claimed = _claimed_by(session, user) if offers else {}
    found = [(offer, claimed[offer.token_hash]) for offer in offers if offer.token_hash in claimed]
    return sorted(found, key=lambda pair: pair[0].created_at)


def take_offer(
    *, session: Session, offer: Invitation, user: User, accept: bool
) -> Invitation | None:
    """Decide an offer: one DELETE only one request can win. Returns the invitation it
    offered (to join, when accepting), or None if it was decided already. Declined, the
    invitation stays used and no longer names the user. The caller commits."""
    invitation = _claimed_by(session, user).get(offer.token_hash)
    gone = session.exec(
        delete(Invitation)
        .where(Invitation.id == offer.id, Invitation.expires_at > utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if gone != 1 or invitation is None:
        return None
    if not accept:
        _used_by(session, invitation, None)
    return invitation


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
            Invitation.kind == "patient",
            Invitation.used_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
        .order_by(Invitation.created_at.desc())
    )
    return list(session.exec(query))


def cancel_invitation(*, session: Session, invitation: Invitation) -> None:
    session.delete(invitation)


def patients_page(*, session: Session, therapist: User, before=None, size: int = 20):
    """A page of the therapist's patients, newest on the care team first, cut at `before`
    (a cursor on when and which link); the patients and the next page's cursor."""
    query = (
        select(User, CareTeam.created_at, CareTeam.id)
        .join(CareTeam, CareTeam.patient_id == User.id)
        .where(CareTeam.therapist_id == therapist.id)
    )
    if before is not None:
        query = query.where(tuple_(CareTeam.created_at, CareTeam.id) < tuple_(before.at, before.id))
    order = (col(CareTeam.created_at).desc(), col(CareTeam.id).desc())
    rows = session.exec(query.order_by(*order).limit(size + 1)).all()
    after = None
    if len(rows) > size:
        _, at, link_id = rows[size - 1]
        after = Cursor(at=at if at.tzinfo else at.replace(tzinfo=UTC), id=link_id)
    return [user for user, _, _ in rows[:size]], after


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
        journal.queue_work(session=session, patient_id=patient.id)
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
