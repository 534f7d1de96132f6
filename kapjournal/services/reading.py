"""The one read path (DESIGN §6): open what a page shows, for one person, and record the reads.

A `Reader` is one person reading during one request: their user, a way to unlock their private
key (called only when a data key is not in this device's cache), the device's cache of data
keys, and the reads this request made of someone else's words. Pages open entries here, with
one query for the wrapped keys that are not cached; when the page has been delivered, the web
layer calls `finish`, which records the reads (once per reader, item and day: services/audit)
and keeps the cache. Nothing here decides who may read: callers pass what policy allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from .. import crypto
from ..models import Entry, EntryMemo, Grant, User
from . import audit, journal, sealed

KEY_CACHE_LIMIT = 400  # data keys kept per device session: the latest pages, not a journal


@dataclass
class Item:
    """An entry opened for a reader; `body` is None when it did not open (tampered: the page
    says so, and the log names it by id)."""

    entry: Entry
    body: dict | None


@dataclass
class Reader:
    """One person reading during one request."""

    user: User
    unlock: Callable[[], bytes]  # the raw private key; called at most once, only on a miss
    load_cache: Callable[[], dict] = dict  # this device's cache of data keys
    store_cache: Callable[[dict], None] | None = None
    reads: dict = field(default_factory=dict)  # (patient, subject, action) → entry id or None
    _cache: dict | None = None
    _key: object = None
    cache_changed: bool = False

    @property
    def id(self):
        return self.user.id

    def private_key(self):
        """The private key, unlocked and expanded once for this request."""
        if self._key is None:
            self._key = sealed.loaded(self.unlock())
        return self._key

    @property
    def cache(self) -> dict:
        if self._cache is None:
            self._cache = self.load_cache()
        return self._cache

    def remember(self, slot: str, dek: bytes) -> None:
        if self.cache.get(slot) != dek:
            self.cache[slot] = dek
            self.cache_changed = True

    def saw(self, entry: Entry) -> None:
        """This page shows `entry`: a read, if the words are someone else's."""
        if entry.author_id != self.user.id:
            self.reads[(entry.author_id, entry.id, "read")] = entry.id

    def saw_notes(self, patient_id) -> None:
        """This page shows the care team's notes or practices for a patient."""
        if patient_id != self.user.id:
            self.reads[(patient_id, patient_id, "read_notes")] = None


# --- opening entries ------------------------------------------------------------------------------


def live():
    """SQL: whether the reader's Grant (joined to the entry) is live, i.e. holds a key. Pages
    select `(Entry, live())` rows and give them to `open_entries`."""
    return col(Grant.wrapped_key).is_not(None)


def open_entries(*, session: Session, reader: Reader, rows) -> list[Item]:
    """Open a page of entries, given as (Entry, live) rows for the reader: one query for the
    wrapped keys of live entries whose data key is not cached, none on a warm cache; the
    private key is unlocked only then. Each entry shown is a read when it is not the
    reader's own."""
    rows = [(row[0], row[1]) for row in rows]  # (entry, live), whatever else a row carries
    missing = [e.id for e, live in rows if live and journal.slot(e) not in reader.cache]
    wraps = {}
    if missing:
        wraps = dict(
            session.exec(
                select(Grant.entry_id, Grant.wrapped_key).where(
                    Grant.reader_id == reader.id, col(Grant.entry_id).in_(missing)
                )
            ).all()
        )
    items = []
    for entry, live in rows:
        body = None
        if live:
            body = _open(reader, entry, wraps.get(entry.id))
        items.append(Item(entry=entry, body=body))
        if body is not None:
            reader.saw(entry)
    return items


def open_entry(
    *,
    session: Session,
    reader: Reader,
    entry: Entry,
    wrapped: bytes | None = None,
    shown: bool = True,
):
    """One entry's body for the reader (who policy allowed to read it); the wrapped key is
    read only on a cache miss, unless given. EntryUnreadable if it does not open. `shown`:
    the page shows it (a read); False when it is opened only to act on it (e.g. to find the
    passage a note is about) and the response shows none of it."""
    if wrapped is None and journal.slot(entry) not in reader.cache:
        grant = journal.grant_of(session=session, entry_id=entry.id, reader_id=reader.id)
        wrapped = grant.wrapped_key if grant else None
    body = _open(reader, entry, wrapped)
    if body is None:
        raise journal.EntryUnreadable(str(entry.id))
    if shown:
        reader.saw(entry)
    return body


def open_memo(*, session: Session, reader: Reader, entry: Entry, wrapped: bytes | None) -> bytes:
    """The audio of an entry's voice memo for the reader (who policy allowed to read the
    entry), a read of the entry when it is someone else's. EntryUnreadable if there is none
    or it does not open (logged by id)."""
    memo = session.get(EntryMemo, entry.id)
    dek = data_key(reader, entry, wrapped) if memo is not None else None
    if dek is None:
        raise journal.EntryUnreadable(str(entry.id))
    try:
        audio = journal.open_memo(entry, dek, memo)
    except crypto.CryptoError:
        journal.ENTRY.report(entry, reader.id)
        raise journal.EntryUnreadable(str(entry.id)) from None
    reader.saw(entry)
    return audio


def data_key(reader: Reader, entry: Entry, wrapped: bytes | None) -> bytes | None:
    """The entry's data key for the reader (cache, else their wrap); None if it does not open."""
    dek = reader.cache.get(journal.slot(entry))
    if dek is None:
        try:
            dek = journal.ENTRY.unwrap(entry, wrapped, reader.id, reader.private_key)
        except sealed.Unreadable:
            return None
        reader.remember(journal.slot(entry), dek)
    return dek


def _open(reader: Reader, entry: Entry, wrapped: bytes | None) -> dict | None:
    dek = data_key(reader, entry, wrapped)
    if dek is None:
        return None
    try:
        return journal.open_entry(
            entry, wrapped_key=None, reader_id=reader.id, private_key=None, dek=dek
        )[0]
    except journal.EntryUnreadable:
        return None


# --- the end of the request ----------------------------------------------------------------------


def finish(*, session: Session, reader: Reader) -> bool:
    """Record this request's reads (once per reader, subject and day) and keep the key cache;
    whether anything was written (the caller commits)."""
    wrote = False
    if reader.reads:
        audit.record_reads(
            session=session,
            reader_id=reader.id,
            reads=[
                (patient, entry, action) for (patient, _, action), entry in reader.reads.items()
            ],
        )
        reader.reads.clear()
        wrote = True
    if reader.cache_changed and reader.store_cache is not None:
        newest = list(reader.cache.items())[-KEY_CACHE_LIMIT:]
        reader.store_cache(dict(newest))
        reader.cache_changed = False
        wrote = True
    return wrote
