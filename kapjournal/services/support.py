"""Support members (DESIGN §1 to §4): a patient invites the people around them, chooses what each
may read (their support card, chosen entries), and takes it back, one entry or the whole
person at once. A supporter reads what was granted and nothing else, and may leave.

Entries chosen for someone who has not registered yet wait as PendingShare rows; when they
join, each becomes a Grant holding no key, wrapped on the patient's next request, the only time
the patient's private key is unlocked (DESIGN §3 flow 10).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from flask import current_app
from sqlmodel import Session, col, select

from .. import crypto
from ..i18n import gettext as _
from ..models import (
    MEASURE_KINDS,
    Entry,
    Grant,
    Invitation,
    PendingShare,
    SupportLink,
    TreatmentSession,
    User,
    utcnow,
)
from . import accounts, audit, care, journal
from .accounts import ValidationError

log = logging.getLogger(__name__)

KIND = "support"  # Invitation.kind of a patient's invitation to a supporter
NAME_MAX = care.LABEL_MAX


# --- who supports whom ---------------------------------------------------------------------------


def is_supporter(*, session: Session, supporter_id, patient_id) -> bool:
    """Whether `supporter_id` is (still) one of the patient's support members."""
    query = select(SupportLink.id).where(
        SupportLink.supporter_id == supporter_id, SupportLink.patient_id == patient_id
    )
    return session.exec(query).first() is not None


def supporters_of(*, session: Session, patient: User) -> list[User]:
    """The patient's support members, in the order they joined."""
    query = (
        select(User)
        .join(SupportLink, SupportLink.supporter_id == User.id)
        .where(SupportLink.patient_id == patient.id)
        .order_by(col(SupportLink.created_at))
    )
    return list(session.exec(query))


def patients_of(*, session: Session, supporter: User) -> list[User]:
    """The patients a support member supports (one account may support several)."""
    query = (
        select(User)
        .join(SupportLink, SupportLink.patient_id == User.id)
        .where(SupportLink.supporter_id == supporter.id)
        .order_by(col(SupportLink.created_at))
    )
    return list(session.exec(query))


# --- invitations ---------------------------------------------------------------------------------


def invite(*, session: Session, patient: User, name: str, entries: list[Entry]) -> care.Issued:
    """A single-use, expiring invitation for a support member called `name` (stored encrypted,
    seen only by the patient), who will read `entries` once they join; the caller commits."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": _("Enter their name, so you know who the link is for.")})
    if len(name) > NAME_MAX:
        raise ValidationError({"name": _("Use at most %(n)d characters.", n=NAME_MAX)})
    issued = care.create_invitation(session=session, inviter=patient, kind=KIND, label=name)
    for entry in _own(entries, patient):
        session.add(PendingShare(entry_id=entry.id, invitation_id=issued.invitation.id))
    session.flush()
    return issued


def _own(entries: list[Entry], patient: User) -> list[Entry]:
    if any(entry.author_id != patient.id for entry in entries):
        raise ValueError("a patient shares only their own entries")
    if any(entry.kind in MEASURE_KINDS for entry in entries):
        raise ValueError("questionnaires are never shared with support members")
    return list({entry.id: entry for entry in entries}.values())


def open_invitations(*, session: Session, patient: User) -> list[Invitation]:
    """The patient's support invitations nobody has used yet (expired ones too, which can be
    re-issued), newest first."""
    query = (
        select(Invitation)
        .where(
            Invitation.inviter_id == patient.id,
            Invitation.kind == KIND,
            col(Invitation.used_at).is_(None),
        )
        .order_by(col(Invitation.created_at).desc())
    )
    return list(session.exec(query))


def chosen_for(*, session: Session, invitation: Invitation) -> list[Entry]:
    """The entries waiting for an invitee, oldest first."""
    query = (
        select(Entry)
        .join(PendingShare, PendingShare.entry_id == Entry.id)
        .where(PendingShare.invitation_id == invitation.id)
        .order_by(col(Entry.created_at))
    )
    return list(session.exec(query))


def reissue(*, session: Session, invitation: Invitation) -> str:
    """A new link for an unused invitation: the old link stops working, the new one expires
    after INVITATION_DAYS. Returns the token (shown once; only its hash is stored)."""
    if invitation.used_at is not None:
        raise ValueError("a used invitation cannot be re-issued")
    token = crypto.new_token()
    invitation.token_hash = crypto.token_hash(token)
    invitation.expires_at = utcnow() + timedelta(days=current_app.config["INVITATION_DAYS"])
    session.add(invitation)
    return token


def cancel(*, session: Session, invitation: Invitation) -> None:
    """Withdraw an unused invitation and the entries chosen for it."""
    for pending in session.exec(
        select(PendingShare).where(PendingShare.invitation_id == invitation.id)
    ):
        session.delete(pending)
    session.flush()  # before the invitation they point to
    care.cancel_invitation(session=session, invitation=invitation)


def find_usable(*, session: Session, token: str) -> Invitation:
    """The support invitation behind a link, or care.InvitationError saying why not."""
    return care.find_usable(session=session, token=token, kind=KIND)


def accept(*, session: Session, invitation: Invitation, supporter: User) -> None:
    """Use up the invitation (`care.take`: now, or it was claimed for this supporter already;
    care.InvitationError if someone else has it): the supporter joins the patient's support
    people, and every entry chosen for them becomes a grant holding no key yet (wrapped on the
    patient's next request). The caller commits."""
    if supporter.role != "support":
        raise ValueError("only a support account accepts a support invitation")
    care.take(session=session, invitation=invitation, user=supporter)
    if not is_supporter(
        session=session, supporter_id=supporter.id, patient_id=invitation.inviter_id
    ):
        session.add(SupportLink(patient_id=invitation.inviter_id, supporter_id=supporter.id))
    pending = session.exec(select(PendingShare).where(PendingShare.invitation_id == invitation.id))
    for share in pending:
        if (
            journal.grant_of(session=session, entry_id=share.entry_id, reader_id=supporter.id)
            is None
        ):
            session.add(Grant(entry_id=share.entry_id, reader_id=supporter.id, wrapped_key=None))
            journal.queue_work(session=session, patient_id=invitation.inviter_id)
        session.delete(share)
    session.flush()


def card_of(*, session: Session, patient: User) -> Entry | None:
    """The patient's support card (the newest, should they have written more than one)."""
    query = (
        select(Entry)
        .where(Entry.author_id == patient.id, Entry.kind == "support_card")
        .order_by(col(Entry.created_at).desc())
    )
    return session.exec(query).first()


# --- the next ketamine session, for the ride home ------------------------------------------------

# In the patient's share_defaults: whether their supporters see when their next ketamine session
# is (off unless they turn it on). A key starting with "_" is never an entry kind.
NEXT_SESSION = "_next_session_to_supporters"


def shows_next_session(patient: User) -> bool:
    """Whether the patient lets their supporters see the time of their next ketamine session."""
    return bool(patient.share_defaults.get(NEXT_SESSION))


def show_next_session(*, session: Session, patient: User, shown: bool) -> None:
    """Let the patient's supporters see the time of their next ketamine session, or stop it.
    Not in the access log: a session time is not the patient's words. The caller commits."""
    # A new dict: the JSON column notices only a new value, not a change inside the old one.
    patient.share_defaults = {**patient.share_defaults, NEXT_SESSION: shown}
    session.add(patient)


def next_session_for_supporters(*, session: Session, patient: User) -> TreatmentSession | None:
    """The patient's next planned ketamine session, when they let their supporters see it;
    never any other session (preparation, integration, past or cancelled)."""
    if not shows_next_session(patient):
        return None
    query = (
        select(TreatmentSession)
        .where(
            TreatmentSession.patient_id == patient.id,
            TreatmentSession.kind == "ketamine",
            TreatmentSession.status == "planned",
            col(TreatmentSession.scheduled_at) > utcnow(),
        )
        .order_by(col(TreatmentSession.scheduled_at))
    )
    return session.exec(query).first()


# --- what a supporter can read -------------------------------------------------------------------


def granted(*, session: Session, patient: User, supporter: User) -> list[tuple[Entry, bool]]:
    """The patient's entries the supporter holds a grant for, newest first, each with whether
    the grant is still pending (no key yet)."""
    query = (
        select(Entry, Grant.wrapped_key)
        .join(Grant, Grant.entry_id == Entry.id)
        .where(Entry.author_id == patient.id, Grant.reader_id == supporter.id)
        .order_by(col(Entry.created_at).desc())
    )
    return [(entry, wrapped is None) for entry, wrapped in session.exec(query)]


def granted_ids(*, session: Session, patient: User, supporter: User) -> list:
    """The ids of the patient's entries the supporter holds a grant for (live or pending)."""
    return list(
        session.exec(
            select(Grant.entry_id)
            .join(Entry, Entry.id == Grant.entry_id)
            .where(Entry.author_id == patient.id, Grant.reader_id == supporter.id)
        )
    )


def share(
    *, session: Session, patient: User, private_key: bytes, supporter: User, entries: list[Entry]
) -> int:
    """Grant the supporter each of `entries` (their current version); returns how many were
    new. Each share is in the patient's access log."""
    count = 0
    for entry in _own(entries, patient):
        if journal.grant_of(session=session, entry_id=entry.id, reader_id=supporter.id) is None:
            journal.share(
                session=session,
                entry=entry,
                author=patient,
                private_key=private_key,
                reader=supporter,
            )
            count += 1
    return count


def remove(*, session: Session, patient: User, private_key: bytes, supporter: User) -> int:
    """Revoke the whole person: every grant of theirs on the patient's entries goes and each
    entry is re-encrypted without them (DESIGN §3 flow 5), then the link itself. Their next
    request is a 404. Returns how many entries they lost."""
    entries = [entry for entry, _ in granted(session=session, patient=patient, supporter=supporter)]
    for entry in entries:
        journal.revoke(
            session=session,
            entry=entry,
            author=patient,
            private_key=private_key,
            reader_id=supporter.id,
        )
    _unlink(session, patient_id=patient.id, supporter_id=supporter.id)
    return len(entries)


def leave(*, session: Session, supporter: User, patient: User) -> None:
    """The supporter ends their own access. Their grants go at once; the entries are marked so
    the patient's next request re-encrypts them (the supporter cannot: DESIGN §3 flow 5)."""
    for entry, _live in granted(session=session, patient=patient, supporter=supporter):
        grant = journal.grant_of(session=session, entry_id=entry.id, reader_id=supporter.id)
        session.delete(grant)
        entry.needs_rotation = True
        session.add(entry)
        journal.queue_work(session=session, patient_id=patient.id)
        audit.record(
            session=session,
            actor_id=supporter.id,
            action="leave",
            patient_id=patient.id,
            entry_id=entry.id,
        )
    _unlink(session, patient_id=patient.id, supporter_id=supporter.id)


def _unlink(session: Session, *, patient_id, supporter_id) -> None:
    link = session.exec(
        select(SupportLink).where(
            SupportLink.patient_id == patient_id, SupportLink.supporter_id == supporter_id
        )
    ).first()
    if link is not None:
        session.delete(link)
    session.flush()


# --- work that waits for the patient's key -------------------------------------------------------


def finish_waiting_work(*, session: Session, patient: User, unlock: Callable[[], bytes]) -> bool:
    """On a patient's request, when their row says work is queued (the request pipeline looks
    at `pending_work` first): wrap the data keys of pending grants to supporters who have
    joined (flow 10), and re-encrypt entries marked for rotation (flow 5). The flag is cleared
    once nothing is left (an entry that does not open keeps it set). Returns whether anything
    changed; the caller commits."""
    waiting = session.exec(
        select(Entry, User)
        .join(Grant, Grant.entry_id == Entry.id)
        .join(SupportLink, SupportLink.supporter_id == Grant.reader_id)
        .join(User, User.id == Grant.reader_id)
        .where(
            SupportLink.patient_id == patient.id,
            Entry.author_id == patient.id,
            col(Grant.wrapped_key).is_(None),
        )
    ).all()
    marked = session.exec(
        select(Entry).where(Entry.author_id == patient.id, col(Entry.needs_rotation))
    ).all()
    if not waiting and not marked:
        patient.pending_work = False
        session.add(patient)
        return False
    private_key = unlock()
    done = []
    for entry in marked:  # first, so that a pending grant is wrapped for the newest version
        done.append(_quietly(journal.rotate, session, entry, patient, private_key))
    for entry, reader in waiting:
        done.append(
            _quietly(
                journal.complete_pending_grant, session, entry, patient, private_key, reader=reader
            )
        )
    patient.pending_work = not all(done)
    session.add(patient)
    return any(done)


def _quietly(action, session: Session, entry: Entry, author: User, private_key, **extra) -> bool:
    """Run one piece of waiting work; an entry that does not open (tampered) is logged by id
    and left for later, instead of failing every request of its author."""
    try:  # both actions fail, if at all, before they change anything
        result = action(
            session=session, entry=entry, author=author, private_key=private_key, **extra
        )
    except journal.EntryUnreadable:
        log.error("waiting work on entry %s could not be done", entry.id)  # not-ui: a log line
        return False
    return result is not False


def names(users: list[User]) -> list[tuple[User, str]]:
    return [(user, accounts.name_of(user)) for user in users]
