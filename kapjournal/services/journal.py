"""Journal entries: write, edit, share, revoke, delete (DESIGN §3 flows 3 to 5).

Entries are sealed items (services/sealed.py) whose readers' keys are Grant rows: the grant is
the right to read. Pages open entries through the read path (services/reading.py); what is
opened here (to edit, share or re-encrypt) is opened for the author, for one request. Nothing
decrypted is logged or put into an exception.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

from sqlalchemy import update as update_rows
from sqlmodel import Session, col, select

from .. import crypto
from ..models import Annotation, Entry, EntryMemo, Grant, ItemKey, User, utcnow
from . import audit, sealed

log = logging.getLogger(__name__)

BODY_MAX_BYTES = 64 * 1024


class EntryUnreadable(sealed.Unreadable):
    """An entry's wrap or body did not open: tampered, swapped or corrupt. Logged by id."""


class EditConflict(Exception):
    """The entry changed since the editor opened it; nothing was saved. (It carries no text:
    the page that shows both versions opens the saved one again.)"""

    def __init__(self, saved_version: int):
        super().__init__("the entry changed meanwhile")  # not-ui: never shown
        self.saved_version = saved_version


# --- associated data: every blob is bound to its entry, version, author and reader ----------


def _body_ad(entry: Entry) -> dict:
    return {
        "p": "entry/body",
        "entry": str(entry.id),
        "version": entry.version,
        "author": str(entry.author_id),
        "patient": str(entry.author_id),
    }


def _wrap_ad(entry: Entry, reader_id) -> dict:
    return {
        "p": "entry/dek",
        "entry": str(entry.id),
        "version": entry.version,
        "author": str(entry.author_id),
        "reader": str(reader_id),
    }


ENTRY = sealed.Kind("entry", _body_ad, _wrap_ad)


def slot(entry: Entry) -> str:
    """An entry version's place in a device's key cache (services/reading.py)."""
    return f"{entry.id}:{entry.version}"


def _quote_ad(entry: Entry, annotation_id) -> dict:
    return {
        "p": "annotation/quote",
        "annotation": str(annotation_id),
        "entry": str(entry.id),
        "version": entry.version,
        "patient": str(entry.author_id),
    }


def seal_quote(entry: Entry, dek: bytes, annotation_id, quote: str) -> bytes:
    """A note's quoted passage, sealed under the entry's data key (its current version), so
    that whoever loses the entry loses the quote with it. Re-sealed with each new version."""
    return ENTRY.seal(entry, dek, quote, _quote_ad(entry, annotation_id))


def open_quote(entry: Entry, dek: bytes, annotation_id, blob: bytes) -> str:
    """The quoted passage of a note on `entry`; CryptoError if it does not open."""
    return ENTRY.open_text(entry, dek, blob, _quote_ad(entry, annotation_id))


def _memo_ad(entry: Entry) -> dict:
    return {
        "p": "entry/memo",
        "entry": str(entry.id),
        "version": entry.version,
        "author": str(entry.author_id),
        "patient": str(entry.author_id),
    }


def seal_memo(entry: Entry, dek: bytes, audio: bytes) -> EntryMemo:
    """An entry's voice memo, sealed under the entry's data key (its current version), as the
    row to add. The audio never exists anywhere else on the server but in this request."""
    blob = crypto.seal(dek, audio, _memo_ad(entry))
    return EntryMemo(entry_id=entry.id, version=entry.version, audio_blob=blob)


def open_memo(entry: Entry, dek: bytes, memo: EntryMemo) -> bytes:
    """The audio of an entry's memo; CryptoError if it does not open (or is of another
    version)."""
    return crypto.open_sealed(dek, memo.audio_blob, _memo_ad(entry))


def _move_memo(session: Session, entry: Entry, old_dek: bytes, dek: bytes) -> None:
    """Re-seal the entry's memo (sealed under `old_dek`, the version before) for the current
    version and `dek`. Called by _reencrypt after the version moved on."""
    memo = session.get(EntryMemo, entry.id)
    if memo is None:
        return
    entry.version -= 1  # the associated data of the version the memo was sealed for
    try:
        audio = open_memo(entry, old_dek, memo)
    finally:
        entry.version += 1
    memo.audio_blob = crypto.seal(dek, audio, _memo_ad(entry))
    memo.version = entry.version
    session.add(memo)


def body_digest(body: dict) -> str:
    """A fingerprint of a body, given to its editor's form to tell real conflicts apart."""
    return hashlib.sha256(_encode(body)).hexdigest()


def _encode(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _seal_version(entry: Entry, body: dict) -> bytes:
    """Encrypt `body` as the entry's current version under a fresh data key; returns the key."""
    dek = crypto.random_key()
    entry.body_blob = ENTRY.seal(entry, dek, body)
    return dek


# --- opening, for the author's own changes (pages read through services/reading.py) ----------


def open_entry(entry: Entry, *, wrapped_key: bytes | None, reader_id, private_key, dek=None):
    """(body, data key) of an entry for a reader, from their grant's wrapped key (or `dek`,
    known already); EntryUnreadable (logged by id) if it does not open."""
    try:
        return ENTRY.open_for(entry, wrapped_key, reader_id, private_key, dek=dek)
    except sealed.Unreadable:
        raise EntryUnreadable(str(entry.id)) from None


def _read_with_key(session: Session, entry: Entry, reader_id, private_key) -> tuple[dict, bytes]:
    """The body and the data key of the entry's current version, for a reader."""
    grant = grant_of(session=session, entry_id=entry.id, reader_id=reader_id)
    wrapped = grant.wrapped_key if grant else None
    return open_entry(entry, wrapped_key=wrapped, reader_id=reader_id, private_key=private_key)


def read(*, session: Session, entry: Entry, reader_id, private_key) -> dict:
    """The body of an entry for one reader who holds a live grant (no access-log event: for
    the author's own changes and for tests; pages use services/reading.py)."""
    return _read_with_key(session, entry, reader_id, private_key)[0]


def _dek_for(session: Session, entry: Entry, reader_id, private_key) -> bytes:
    return _read_with_key(session, entry, reader_id, private_key)[1]


def data_keys(*, session: Session, entry_ids, reader_id, private_key) -> dict:
    """entry id → (Entry, data key) for those of `entry_ids` the reader holds a live grant
    on: one query, one unwrap each (`private_key` raw, loaded, or a callable)."""
    if not entry_ids:
        return {}
    rows = session.exec(
        select(Entry, Grant.wrapped_key)
        .join(Grant, Grant.entry_id == Entry.id)
        .where(
            Grant.reader_id == reader_id,
            col(Grant.entry_id).in_(list(entry_ids)),
            col(Grant.wrapped_key).is_not(None),
        )
    ).all()
    found = {}
    for entry, wrapped in rows:
        try:
            found[entry.id] = (entry, ENTRY.unwrap(entry, wrapped, reader_id, private_key))
        except sealed.Unreadable:
            continue
    return found


def grant_of(*, session: Session, entry_id, reader_id) -> Grant | None:
    return session.exec(
        select(Grant).where(Grant.entry_id == entry_id, Grant.reader_id == reader_id)
    ).first()


# --- writing -------------------------------------------------------------------------------------


def body_too_large(body: dict) -> bool:
    """Whether the words in a body (its text fields and prompt answers) pass 64 KB of UTF-8.
    What the person wrote is measured, not its JSON encoding, so exactly 64 KB of text fits."""
    return sum(len(part.encode("utf-8")) for part in _parts_of(body)) > BODY_MAX_BYTES


def create(
    *,
    session: Session,
    author: User,
    kind: str,
    body: dict,
    client_id: uuid.UUID,
    session_id: uuid.UUID | None = None,
    readers: list[User] = (),
    audio: bytes | None = None,
) -> tuple[Entry, bool]:
    """Write a new entry, readable by the author and `readers`, with its voice memo (`audio`)
    if any; the caller commits.

    Idempotent on (author, client_id): a retried submission returns the entry it made the
    first time and `False`.
    """
    existing = session.exec(
        select(Entry).where(Entry.author_id == author.id, Entry.client_id == client_id)
    ).first()
    if existing is not None:
        return existing, False
    entry = Entry(author_id=author.id, kind=kind, client_id=client_id, session_id=session_id)
    dek = _seal_version(entry, body)
    session.add(entry)
    if audio:
        session.add(seal_memo(entry, dek, audio))
    for reader in _unique([author, *readers]):
        session.add(
            Grant(
                entry_id=entry.id, reader_id=reader.id, wrapped_key=ENTRY.wrap(entry, dek, reader)
            )
        )
    session.flush()
    _record(session, author, "write", entry)
    for reader in _unique(readers):
        if reader.id != author.id:
            _record(session, author, "share", entry, reader.id)
    return entry, True


def _record(session: Session, author: User, action: str, entry: Entry, target_id=None) -> None:
    """An access-log event for something the author did to their own entry."""
    audit.record(
        session=session,
        actor_id=author.id,
        action=action,
        patient_id=author.id,
        entry_id=entry.id,
        target_id=target_id,
    )


def _unique(users) -> list[User]:
    seen, result = set(), []
    for user in users:
        if user.id not in seen:
            seen.add(user.id)
            result.append(user)
    return result


def _reencrypt(session: Session, entry: Entry, body: dict, old_dek: bytes) -> None:
    """Make the next version under a new data key, re-wrapped for every remaining reader,
    and move the quotes of the notes on it to that key (`old_dek`: this version's key).

    A data key captured before (by a reader since revoked) does not open the new version,
    nor any quote on it.
    """
    grants = session.exec(select(Grant).where(Grant.entry_id == entry.id)).all()
    readers = {
        u.id: u
        for u in session.exec(select(User).where(col(User.id).in_([g.reader_id for g in grants])))
    }
    notes = session.exec(
        select(Annotation).where(
            Annotation.entry_id == entry.id, col(Annotation.quote_blob).is_not(None)
        )
    ).all()
    quotes = {note.id: _old_quote(entry, old_dek, note) for note in notes}
    entry.version += 1
    entry.updated_at = utcnow()
    dek = _seal_version(entry, body)
    for grant in grants:
        if grant.wrapped_key is not None:  # pending grants stay pending
            grant.wrapped_key = ENTRY.wrap(entry, dek, readers[grant.reader_id])
            session.add(grant)
    for note in notes:
        quote = quotes[note.id]
        note.quote_blob = None if quote is None else seal_quote(entry, dek, note.id, quote)
        session.add(note)
    _move_memo(session, entry, old_dek, dek)
    session.add(entry)


def _old_quote(entry: Entry, dek: bytes, note: Annotation) -> str | None:
    try:
        return open_quote(entry, dek, note.id, note.quote_blob)
    except crypto.CryptoError:  # damaged: it can never open again; the note keeps its words
        log.error("quote of annotation %s on entry %s did not open", note.id, entry.id)  # not-ui
        return None


def update(
    *,
    session: Session,
    entry: Entry,
    author: User,
    private_key: bytes,
    body: dict,
    base_digest: str,
    session_id: uuid.UUID | None = None,
) -> None:
    """Save an edit as a new version. If the saved text changed since the editor opened it
    (`base_digest` no longer matches), raise EditConflict and save nothing."""
    saved, dek = _read_with_key(session, entry, author.id, private_key)
    if body_digest(saved) != base_digest and saved != body:
        raise EditConflict(entry.version)
    entry.session_id = session_id
    _reencrypt(session, entry, body, dek)
    _record(session, author, "edit", entry)


def delete(*, session: Session, entry: Entry, author: User) -> None:
    """Destroy an entry: its ciphertext and every reader's wrapped key, and the notes on it
    with their keys (the notes quote the entry)."""
    for grant in session.exec(select(Grant).where(Grant.entry_id == entry.id)):
        session.delete(grant)
    notes = select(Annotation.id).where(Annotation.entry_id == entry.id)
    for key in session.exec(
        select(ItemKey).where(
            ItemKey.subject_kind == "annotation", col(ItemKey.subject_id).in_(notes)
        )
    ):
        session.delete(key)
    for note in session.exec(select(Annotation).where(Annotation.entry_id == entry.id)):
        session.delete(note)
    _record(session, author, "delete", entry)
    session.delete(entry)


# --- sharing -------------------------------------------------------------------------------------


def share(
    *, session: Session, entry: Entry, author: User, private_key: bytes, reader: User
) -> None:
    """Give `reader` a grant on the entry's current version (no-op if they have one)."""
    if grant_of(session=session, entry_id=entry.id, reader_id=reader.id) is not None:
        return
    dek = _dek_for(session, entry, author.id, private_key)
    session.add(
        Grant(entry_id=entry.id, reader_id=reader.id, wrapped_key=ENTRY.wrap(entry, dek, reader))
    )
    _record(session, author, "share", entry, reader.id)


def revoke(*, session: Session, entry: Entry, author: User, private_key: bytes, reader_id) -> None:
    """Delete the reader's grant and re-encrypt the entry for the rest, in one transaction."""
    if reader_id == author.id:
        raise ValueError("the author cannot revoke their own access")
    grant = grant_of(session=session, entry_id=entry.id, reader_id=reader_id)
    if grant is None:
        return
    body, dek = _read_with_key(session, entry, author.id, private_key)
    session.delete(grant)
    _drop_old_note_keys(session, entry, reader_id)
    session.flush()
    _reencrypt(session, entry, body, dek)
    _record(session, author, "revoke", entry, reader_id)


def _drop_old_note_keys(session: Session, entry: Entry, reader_id) -> None:
    """Whoever loses an entry loses the notes on it written before quotes moved under the
    entry's key (their quote is inside the note's own blob): their keys to those go."""
    old_notes = select(Annotation.id).where(
        Annotation.entry_id == entry.id, col(Annotation.quote_blob).is_(None)
    )
    for key in session.exec(
        select(ItemKey).where(
            ItemKey.subject_kind == "annotation",
            ItemKey.reader_id == reader_id,
            col(ItemKey.subject_id).in_(old_notes),
        )
    ):
        session.delete(key)


def complete_pending_grant(
    *, session: Session, entry: Entry, author: User, private_key: bytes, reader: User
) -> bool:
    """Give a pending grant (a reader who had no key when the entry was chosen for them) the
    entry's data key, wrapped to their public key (DESIGN §3 flow 10). Needs the author's
    private key, hence done on the author's next request. Returns whether a key was wrapped."""
    grant = grant_of(session=session, entry_id=entry.id, reader_id=reader.id)
    if grant is None or grant.wrapped_key is not None:
        return False
    dek = _dek_for(session, entry, author.id, private_key)
    grant.wrapped_key = ENTRY.wrap(entry, dek, reader)
    session.add(grant)
    _record(session, author, "share", entry, reader.id)
    return True


def queue_work(*, session: Session, patient_id) -> None:
    """Tell the patient's next request that work waits for their key (users.pending_work)."""
    session.exec(
        update_rows(User)
        .where(User.id == patient_id)
        .values(pending_work=True)
        .execution_options(synchronize_session=False)
    )


def rotate(*, session: Session, entry: Entry, author: User, private_key: bytes) -> None:
    """Finish a revocation made without the author's key (someone left, DESIGN §3 flow 5):
    re-encrypt the entry under a new data key for the readers it still has."""
    body, dek = _read_with_key(session, entry, author.id, private_key)
    _reencrypt(session, entry, body, dek)
    entry.needs_rotation = False
    session.add(entry)


def readers_of(*, session: Session, entry: Entry) -> list[tuple[User, bool]]:
    """Everyone who can read the entry (author first), with whether the grant is pending."""
    rows = session.exec(
        select(User, Grant)
        .join(Grant, Grant.reader_id == User.id)
        .where(Grant.entry_id == entry.id)
        .order_by(Grant.created_at)
    ).all()
    return [(user, grant.wrapped_key is None) for user, grant in rows]


# --- the words in a body ------------------------------------------------------------------------


def text_of(body: dict) -> str:
    """Every word the patient wrote in a body, one part a line (for search)."""
    return "\n".join(_parts_of(body))


def _parts_of(body: dict) -> list[str]:
    parts = []
    for value in body.values():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(str(a.get("answer", "")) for a in value if isinstance(a, dict))
    return parts
