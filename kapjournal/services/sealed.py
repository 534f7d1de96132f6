"""Sealed items: the one way every encrypted item keeps its words (DESIGN §3).

Entries, notes, practices and safety checks (and whatever comes next) follow one pattern: a
fresh data key for each version; every blob sealed under it (AES-256-GCM) with associated data
that binds the blob to its item, version and people, so a blob moved elsewhere fails to open
instead of showing someone else's words; the key wrapped (HPKE) to each reader with associated
data that names the reader. A kind of item only says what its associated data is.

Entries keep their readers' wrapped keys in Grant rows (the grant is the right to read); every
other kind in ItemKey rows, named by `Kind.name`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from .. import crypto
from ..models import ItemKey, User
from . import accounts

log = logging.getLogger(__name__)


class Unreadable(Exception):
    """A wrap or a blob did not open: tampered, swapped or corrupt. The message names the
    item by id only; the log line says which item, version and reader."""


def lazily(private_key) -> Callable[[], Any]:
    """The private key as a callable that loads it at most once, and only if called (a page
    whose items' keys are all in the device's cache never unlocks it)."""
    found = []

    def key():
        if not found:
            found.append(loaded(private_key))
        return found[0]

    return key


def loaded(private_key):
    """A private key for unwrapping: raw bytes, a loaded key, or a callable giving either
    (called only now, when a key is really needed)."""
    key = private_key() if callable(private_key) else private_key
    return crypto.load_private(key) if isinstance(key, bytes) else key


@dataclass(frozen=True)
class Kind:
    """One kind of sealed item: its name and the associated data of its blobs and wraps."""

    name: str
    body_ad: Callable[[Any], dict]
    wrap_ad: Callable[[Any, Any], dict]

    def seal(self, item, dek: bytes, content, ad: dict | None = None) -> bytes:
        """`content` (a dict, as sorted JSON; or text) sealed under `dek`; `ad` defaults to the
        item's body associated data."""
        if isinstance(content, str):
            raw = content.encode("utf-8")
        else:
            raw = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return crypto.seal(dek, raw, self.body_ad(item) if ad is None else ad)

    def open(self, item, dek: bytes, blob: bytes | None = None, ad: dict | None = None) -> dict:
        """The JSON content of a blob (the item's body by default). CryptoError or ValueError
        if it does not open."""
        return json.loads(self.open_text(item, dek, blob, ad))

    def open_text(self, item, dek: bytes, blob: bytes | None = None, ad: dict | None = None):
        """The text of a blob (the item's body by default); CryptoError if it does not open."""
        raw = crypto.open_sealed(
            dek, item.body_blob if blob is None else blob, self.body_ad(item) if ad is None else ad
        )
        return raw.decode("utf-8")

    def wrap(self, item, dek: bytes, reader: User) -> bytes:
        return crypto.wrap_key(dek, accounts.public_key(reader), self.wrap_ad(item, reader.id))

    def unwrap(self, item, wrapped: bytes | None, reader_id, private_key) -> bytes:
        """The item's data key from a reader's wrap; Unreadable (logged) if it does not open."""
        try:
            return crypto.unwrap_key(
                wrapped or b"", loaded(private_key), self.wrap_ad(item, reader_id)
            )
        except crypto.CryptoError:
            self.report(item, reader_id)
            raise Unreadable(str(item.id)) from None

    def slot(self, item) -> str:
        """An item version's place in a device's key cache (services/reading.py): each version
        has its own data key."""
        return f"{self.name}:{item.id}:{getattr(item, 'version', 1)}"

    def open_for(self, item, wrapped: bytes | None, reader_id, private_key, dek=None, keys=None):
        """The item's body for a reader (from their wrap, or `dek` if already known), with the
        data key: (body, dek). `keys`: the request's reading.Reader, whose device key cache is
        asked first and keeps the key unwrapped (no private key on a warm cache). Unreadable
        (logged) if anything does not open."""
        slot = self.slot(item) if keys is not None else None
        if dek is None and slot is not None:
            dek = keys.cache.get(slot)
        if dek is None:
            dek = self.unwrap(item, wrapped, reader_id, private_key)
            if slot is not None:
                keys.remember(slot, dek)
        try:
            return self.open(item, dek), dek
        except (crypto.CryptoError, ValueError):
            self.report(item, reader_id)
            raise Unreadable(str(item.id)) from None

    def report(self, item, reader_id) -> None:
        log.error(
            "%s %s (version %s) did not open for reader %s",  # not-ui: a log line
            self.name,
            item.id,
            getattr(item, "version", 1),
            reader_id,
        )

    # --- readers' keys kept in ItemKey rows (every kind but entries) -----------------------

    def give(self, session: Session, item, dek: bytes, readers: Iterable[User]) -> None:
        """Wrap `dek` to each reader (ItemKey rows); the caller flushes."""
        for reader in _unique(readers):
            session.add(
                ItemKey(
                    subject_kind=self.name,
                    subject_id=item.id,
                    reader_id=reader.id,
                    wrapped_key=self.wrap(item, dek, reader),
                )
            )

    def take_back(self, session: Session, item_id, reader_id=None) -> None:
        """Delete the wrapped keys of an item (of one reader only, with `reader_id`)."""
        statement = delete(ItemKey).where(
            ItemKey.subject_kind == self.name, ItemKey.subject_id == item_id
        )
        if reader_id is not None:
            statement = statement.where(ItemKey.reader_id == reader_id)
        session.exec(statement.execution_options(synchronize_session=False))

    def held(self, model, reader_id):
        """The items of `model` that `reader_id` holds a key for, with the wrapped key: a
        statement to narrow and order."""
        return (
            select(model, ItemKey.wrapped_key)
            .join(ItemKey, ItemKey.subject_id == model.id)
            .where(ItemKey.subject_kind == self.name, ItemKey.reader_id == reader_id)
        )

    def wrapped_for(self, session: Session, item_id, reader_id) -> bytes | None:
        return session.exec(
            select(ItemKey.wrapped_key).where(
                ItemKey.subject_kind == self.name,
                ItemKey.subject_id == item_id,
                ItemKey.reader_id == reader_id,
            )
        ).first()

    def holders(self, session: Session, item_ids) -> set:
        """(item id, reader id) pairs of the keys held on these items."""
        rows = session.exec(
            select(ItemKey.subject_id, ItemKey.reader_id).where(
                ItemKey.subject_kind == self.name, col(ItemKey.subject_id).in_(list(item_ids))
            )
        )
        return set(rows.all())


def _unique(users: Iterable[User]) -> list[User]:
    seen: dict = {}
    for user in users:
        seen.setdefault(user.id, user)
    return list(seen.values())
