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

from sqlalchemy import and_, bindparam, literal, or_, union_all
from sqlmodel import Session, col, select

from ..i18n import gettext as _
from ..models import (
    MEASURE_KINDS,
    CareTeam,
    Entry,
    Grant,
    Invitation,
    PendingShare,
    SupportLink,
    User,
)
from . import accounts


@dataclass(frozen=True)
class Reader:
    """One person an entry is shared with, as its author sees them."""

    name: str
    role: str  # "therapist", "support", or "invited" (not registered yet)
    pending: bool = False  # chosen, but not able to read it yet


# Every list of the author's own entries runs this: built once, run on the connection.
_READERS_BY_ENTRY = union_all(
    select(
        Grant.entry_id,
        col(Grant.wrapped_key).is_(None).label("pending"),
        User.id.label("who"),
        User.name_enc.label("blob"),
        User.role.label("role"),
    )
    .join(User, User.id == Grant.reader_id)
    .where(
        col(Grant.entry_id).in_(bindparam("entries", expanding=True)),
        Grant.reader_id != bindparam("author"),
    ),
    select(
        PendingShare.entry_id,
        literal(True).label("pending"),
        Invitation.id.label("who"),
        Invitation.label_enc.label("blob"),
        literal("invited").label("role"),
    )
    .join(Invitation, Invitation.id == PendingShare.invitation_id)
    .where(
        col(PendingShare.entry_id).in_(bindparam("entries", expanding=True)),
        Invitation.inviter_id == bindparam("author"),
        col(Invitation.used_at).is_(None),
    ),
)


def readers_by_entry(*, session: Session, author: User, entry_ids: list) -> dict:
    """Everyone but the author who reads, or will read, each of these entries of `author`:
    {entry id: [Reader, ...]} (therapists first, then supporters, then invitees; by name).
    One query whatever the number of entries (grants with their readers, and entries waiting
    for someone invited), each name decrypted once."""
    if not entry_ids:
        return {}
    rows = session.connection().execute(
        _READERS_BY_ENTRY, {"entries": list(entry_ids), "author": author.id}
    )
    names: dict[uuid.UUID, str] = {}
    found: dict[uuid.UUID, list[Reader]] = {}
    for entry_id, pending, who, blob, role in rows:
        if who not in names:
            names[who] = _name(who, blob, role)
        found.setdefault(entry_id, []).append(Reader(names[who], role, bool(pending)))
    order = {"therapist": 0, "support": 1, "invited": 2}
    return {
        entry_id: sorted(readers, key=lambda r: (order.get(r.role, 3), r.name.casefold()))
        for entry_id, readers in found.items()
    }


def _name(who, blob: bytes | None, role: str) -> str:
    """A reader's name, or an invitation's label (which only the patient sees)."""
    if role == "invited":
        ad = {"p": "invitation/label", "invitation": str(who)}
        return accounts.keyring().open(blob, ad).decode() if blob else _("someone you invited")
    return accounts.name_from(who, blob)


@dataclass(frozen=True)
class Person:
    """Someone beside an entry, as the sharing panel needs them: no more than their id and
    role (and their name beside it)."""

    id: uuid.UUID
    role: str


# Every view of the author's own entry runs this: built once, run on the connection (the rows
# are plain columns, no ORM objects to track).
_PEOPLE_AROUND = (
    select(User.id, User.role, User.name_enc, Grant.id, col(Grant.wrapped_key).is_(None))
    .outerjoin(Grant, and_(Grant.reader_id == User.id, Grant.entry_id == bindparam("entry")))
    .where(
        or_(
            col(User.id).in_(
                union_all(
                    select(CareTeam.therapist_id).where(CareTeam.patient_id == bindparam("me")),
                    select(SupportLink.supporter_id).where(
                        SupportLink.patient_id == bindparam("me")
                    ),
                )
            ),
            User.id == bindparam("me"),
        )
    )
    .order_by(col(Grant.created_at))
)


def people_around(*, session: Session, patient: User, entry: Entry):
    """For the author's own entry: who reads it (with whether their grant is pending) and
    whom they may still share it with (their therapists, and their support people unless it
    is a questionnaire), as ([(person, name, pending)], [(person, name)]). One query."""
    rows = session.connection().execute(_PEOPLE_AROUND, {"entry": entry.id, "me": patient.id})
    readers, addable = [], []
    supporters_may = kind_for_supporters(entry.kind)
    for user_id, role, name_enc, grant_id, pending in rows:
        person, name = Person(user_id, role), accounts.name_from(user_id, name_enc)
        if grant_id is not None:
            readers.append((person, name, bool(pending)))
        elif role == "therapist" or (role == "support" and supporters_may):
            addable.append((person, name))
    readers.sort(key=lambda r: r[0].id != patient.id)  # the author first
    return readers, addable


def kind_for_supporters(kind: str) -> bool:
    """Questionnaires go to the care team only (see policy.may_share_kind_with_supporters)."""
    return kind not in MEASURE_KINDS


def in_words_by_entry(*, session: Session, author: User, entry_ids: list) -> dict:
    """For the author's own lists: {entry id: whom it is shared with, in words}."""
    found = readers_by_entry(session=session, author=author, entry_ids=entry_ids)
    return {entry_id: in_words(readers) for entry_id, readers in found.items()}


def in_words(readers: list[Reader]) -> str:
    """'Dr. Tess Ward', 'Dr. Tess Ward and Jordan Rivera', 'A, B and C'; a pending reader
    is marked as such: 'Jordan Rivera (not joined yet)'. In the request's language."""
    names = [
        _("%(name)s (%(pending)s)", name=r.name, pending=_pending_words(r)) if r.pending else r.name
        for r in readers
    ]
    if len(names) <= 1:
        return "".join(names)
    return _("%(names)s and %(last)s", names=", ".join(names[:-1]), last=names[-1])


def _pending_words(reader: Reader) -> str:
    if reader.role == "invited":
        return _("invited, not joined yet")
    return _("waiting for them to join")
