"""Whom a patient's entries are shared with, named, for the lists that show their entries
(DESIGN §2 Grant, §3 flow 10).

Grant rows (who reads what) are clear metadata; the names are not: each is decrypted once
per person per page, whatever the number of entries. Someone chosen but not able to read yet
is named as pending: a supporter who joined but whose key the patient's next request wraps
(a Grant without a key), or someone invited who has not joined (a PendingShare, named by
the invitation's label, which only the patient sees).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel import Session, col, select

from ..models import Grant, Invitation, PendingShare, User
from . import accounts, care


@dataclass(frozen=True)
class Reader:
    """One person an entry is shared with, as its author sees them."""

    name: str
    role: str  # "therapist", "support", or "invited" (not registered yet)
    pending: bool = False  # chosen, but not able to read it yet


def readers_by_entry(*, session: Session, author: User, entry_ids: list) -> dict:
    """Everyone but the author who reads, or will read, each of these entries of `author`:
    {entry id: [Reader, ...]} (therapists first, then supporters, then invitees; by name).
    Two queries whatever the number of entries: grants with their readers, and entries
    waiting for someone invited."""
    if not entry_ids:
        return {}
    grants = session.exec(
        select(Grant.entry_id, col(Grant.wrapped_key).is_(None), User)
        .join(User, User.id == Grant.reader_id)
        .where(col(Grant.entry_id).in_(entry_ids), Grant.reader_id != author.id)
    ).all()
    waiting = session.exec(
        select(PendingShare.entry_id, Invitation)
        .join(Invitation, Invitation.id == PendingShare.invitation_id)
        .where(
            col(PendingShare.entry_id).in_(entry_ids),
            Invitation.inviter_id == author.id,
            col(Invitation.used_at).is_(None),
        )
    ).all()
    names: dict[uuid.UUID, str] = {}
    found: dict[uuid.UUID, list[Reader]] = {}
    for entry_id, pending, user in grants:
        if user.id not in names:
            names[user.id] = accounts.name_of(user)
        found.setdefault(entry_id, []).append(Reader(names[user.id], user.role, bool(pending)))
    for entry_id, invitation in waiting:
        if invitation.id not in names:
            names[invitation.id] = care.label_of(invitation) or "someone you invited"
        found.setdefault(entry_id, []).append(Reader(names[invitation.id], "invited", True))
    order = {"therapist": 0, "support": 1, "invited": 2}
    return {
        entry_id: sorted(readers, key=lambda r: (order.get(r.role, 3), r.name.casefold()))
        for entry_id, readers in found.items()
    }


def in_words_by_entry(*, session: Session, author: User, entry_ids: list) -> dict:
    """For the author's own lists: {entry id: whom it is shared with, in words}."""
    found = readers_by_entry(session=session, author=author, entry_ids=entry_ids)
    return {entry_id: in_words(readers) for entry_id, readers in found.items()}


def in_words(readers: list[Reader]) -> str:
    """'Dr. Tess Ward', 'Dr. Tess Ward and Jordan Rivera', 'A, B and C'; a pending reader
    is marked as such: 'Jordan Rivera (not joined yet)'."""
    names = [f"{r.name} ({_pending_words(r)})" if r.pending else r.name for r in readers]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _pending_words(reader: Reader) -> str:
    return "invited, not joined yet" if reader.role == "invited" else "waiting for them to join"
