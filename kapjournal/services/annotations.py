"""Therapists' notes on a patient's shared entries, and notes taken in an integration session
(DESIGN §2, §3 flow 7).

Each note is encrypted like an entry: its own data key per version, the note in an AES-GCM
blob bound to the note's id, version, author and patient, and the key wrapped (ItemKey rows)
to every therapist on the patient's care team and, for a `shared` note only, to the patient.
Supporters never get a key. The patient's one reply is sealed under the same data key. The
quoted passage is the patient's words, so it is sealed under the entry's own data key
(`quote_blob`, re-sealed with each entry version): only whoever can read the entry reads it.
Notes written before that keep the quote inside their blob until a therapist who can read the
entry opens or saves them.

A note on an entry is anchored by paragraph: the entry's text split on blank lines, the
paragraph's index, and the paragraph's text as it was (inside the blob). When the patient
edits other paragraphs the note stays with its passage; when the passage itself changed, the
page says so and shows the original quote.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field

from flask_babel import format_number
from sqlalchemy import bindparam
from sqlalchemy import update as update_rows
from sqlmodel import Session, col, func, select

from .. import crypto
from ..i18n import gettext as _
from ..models import Annotation, Entry, ItemKey, User, utcnow
from . import audit, care, entry_forms, journal, sealed
from .accounts import ValidationError

log = logging.getLogger(__name__)

KIND = "annotation"  # ItemKey.subject_kind
VISIBILITIES = ("shared", "private")
NOTE_MAX = 10_000
REPLY_MAX = 5_000
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")


class AlreadyReplied(Exception):
    """The patient has replied to this note already (one reply each)."""


# --- paragraphs -----------------------------------------------------------------------------------


@dataclass
class Paragraph:
    index: int
    text: str
    heading: str = ""  # the field or prompt it starts, shown above it

    @property
    def digest(self) -> str:
        """Names the passage in a form (never stored), to notice it changed meanwhile."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:20]


def find_paragraph(paragraphs: list[Paragraph], index: int, digest: str) -> Paragraph | None:
    """The paragraph a form was about: at `index` if unchanged, else wherever it moved."""
    if 0 <= index < len(paragraphs) and paragraphs[index].digest == digest:
        return paragraphs[index]
    return next((p for p in paragraphs if p.digest == digest), None)


def paragraphs_of(kind: str, body: dict) -> list[Paragraph]:
    """An entry's text as numbered paragraphs (split on blank lines), field by field in the
    order the entry shows them, then prompt answers. The numbering is what notes anchor to."""
    fields = entry_forms.labelled_fields(kind)
    sections = [(label, body.get(name)) for name, label in fields]
    sections += [
        (str(a.get("prompt", "")), a.get("answer"))
        for a in body.get("answers", [])
        if isinstance(a, dict)
    ]
    found: list[Paragraph] = []
    for heading, text in sections:
        if not isinstance(text, str):
            continue
        parts = [p.strip() for p in _BLANK_LINE.split(text) if p.strip()]
        for n, part in enumerate(parts):
            found.append(Paragraph(len(found), part, heading if n == 0 else ""))
    return found


# --- associated data and keys -------------------------------------------------------------------


def _body_ad(note: Annotation) -> dict:
    return {
        "p": "annotation/body",
        "annotation": str(note.id),
        "version": note.version,
        "author": str(note.author_id),
        "patient": str(note.patient_id),
        "entry": str(note.entry_id),
    }


def _reply_ad(note: Annotation) -> dict:
    return {
        "p": "annotation/reply",
        "annotation": str(note.id),
        "version": note.version,
        "patient": str(note.patient_id),
    }


def _wrap_ad(note: Annotation, reader_id) -> dict:
    return {
        "p": "annotation/dek",
        "annotation": str(note.id),
        "version": note.version,
        "author": str(note.author_id),
        "reader": str(reader_id),
    }


NOTE = sealed.Kind(KIND, _body_ad, _wrap_ad)


def _readers(session: Session, patient: User, visibility: str) -> list[User]:
    """The care team, and the patient too when the note is shared. Never a supporter."""
    readers = care.therapists_of(session=session, patient=patient)
    return [*readers, patient] if visibility == "shared" else readers


def _seal_version(session: Session, note: Annotation, body: dict, reply: str | None) -> None:
    """Encrypt the note (and reply) as its current version under a fresh data key, and give
    exactly the right readers that key."""
    patient = session.get(User, note.patient_id)
    dek = crypto.random_key()
    note.body_blob = NOTE.seal(note, dek, body)
    note.reply_blob = None if reply is None else NOTE.seal(note, dek, reply, _reply_ad(note))
    session.add(note)
    NOTE.take_back(session, note.id)
    NOTE.give(session, note, dek, _readers(session, patient, note.visibility))


def _keys_of(note_id):
    return select(ItemKey).where(ItemKey.subject_kind == KIND, ItemKey.subject_id == note_id)


def _check(note: str, visibility: str) -> None:
    errors = {}
    if not note.strip():
        errors["note"] = _("Write the note first.")
    elif len(note) > NOTE_MAX:
        errors["note"] = _("Use at most %(n)s characters.", n=format_number(NOTE_MAX))
    if visibility not in VISIBILITIES:
        errors["visibility"] = _("Choose who may read the note.")
    if errors:
        raise ValidationError(errors)


# --- writing ------------------------------------------------------------------------------------


def create(
    *,
    session: Session,
    patient: User,
    author: User,
    note: str,
    visibility: str,
    entry: Entry | None = None,
    paragraph: Paragraph | None = None,
    treatment_session_id=None,
    bring_to_session: bool = False,
    private_key=None,
) -> Annotation:
    """A note on a paragraph of `entry`, or (without an entry) a note taken in a session; the
    caller checked the author may annotate. The quoted paragraph is sealed under the entry's
    data key, opened with the author's `private_key` (without it, inside the note: the form
    from before). The caller commits."""
    _check(note, visibility)
    made = Annotation(
        patient_id=patient.id,
        author_id=author.id,
        entry_id=entry.id if entry else None,
        session_id=treatment_session_id,
        paragraph_index=paragraph.index if paragraph else None,
        visibility=visibility,
        bring_to_session=bring_to_session,
    )
    quote = paragraph.text if paragraph else ""
    found = _entry_key(session, entry, author.id, private_key) if quote else None
    if found is not None:
        made.quote_blob = journal.seal_quote(*found, made.id, quote)
    body = {"note": note} if found is not None else {"note": note, "quote": quote}
    _seal_version(session, made, body, None)
    session.flush()
    _record(session, made, author, _annotate_action(made))
    return made


def _entry_key(session: Session, entry: Entry | None, reader_id, private_key):
    """(entry, data key) if `reader_id` can read the entry now, else None."""
    if entry is None or private_key is None:
        return None
    found = journal.data_keys(
        session=session, entry_ids=[entry.id], reader_id=reader_id, private_key=private_key
    )
    return found.get(entry.id)


def update(
    *, session: Session, note: Annotation, editor: User, private_key, text: str, visibility: str
) -> None:
    """Change the note's words or who may read it: a new version under a new data key, so a
    patient who loses a note (made private) loses its key too. A quote still inside the note
    moves under the entry's key if the editor can read the entry."""
    _check(text, visibility)
    opened = open_one(session=session, note=note, reader_id=editor.id, private_key=private_key)
    note.version += 1
    note.visibility = visibility
    note.updated_at = utcnow()
    body = {"note": text}
    if note.entry_id is not None and note.quote_blob is None:
        found = _entry_key(session, session.get(Entry, note.entry_id), editor.id, private_key)
        if found is None:
            body["quote"] = opened.quote
        else:
            note.quote_blob = journal.seal_quote(*found, note.id, opened.quote)
    elif note.entry_id is None:
        body["quote"] = ""
    _seal_version(session, note, body, opened.reply)
    _record(session, note, editor, _annotate_action(note))


def set_resolved(*, session: Session, note: Annotation, by: User, resolved: bool) -> None:
    note.resolved_at = utcnow() if resolved else None
    session.add(note)
    _record(session, note, by, "resolve")


def set_flag(*, session: Session, note: Annotation, by: User, flagged: bool) -> None:
    """Bring the note to the next integration session (or not)."""
    note.bring_to_session = flagged
    note.discussed_at = None
    session.add(note)
    _record(session, note, by, "flag" if flagged else "unflag")


def set_discussed(*, session: Session, note: Annotation, by: User, discussed: bool) -> None:
    note.discussed_at = utcnow() if discussed else None
    session.add(note)
    _record(session, note, by, "discuss")


def delete(*, session: Session, note: Annotation, by: User) -> None:
    """Destroy the note, its reply and every reader's key."""
    NOTE.take_back(session, note.id)
    _record(session, note, by, "annotation_delete")
    session.delete(note)


def reply(*, session: Session, note: Annotation, patient: User, private_key, text: str) -> None:
    """The patient's one reply to a shared note, under the note's data key."""
    if note.reply_blob is not None:
        raise AlreadyReplied(str(note.id))
    if not text.strip():
        raise ValidationError({"reply": _("Write your reply first.")})
    if len(text) > REPLY_MAX:
        raise ValidationError(
            {"reply": _("Use at most %(n)s characters.", n=format_number(REPLY_MAX))}
        )
    wrapped = NOTE.wrapped_for(session, note.id, patient.id)
    try:
        dek = NOTE.unwrap(note, wrapped, patient.id, private_key)
    except sealed.Unreadable:
        raise crypto.CryptoError("annotation does not open") from None
    note.reply_blob = NOTE.seal(note, dek, text, _reply_ad(note))
    note.updated_at = utcnow()
    session.add(note)
    _record(session, note, patient, "reply")


def _annotate_action(note: Annotation) -> str:
    """The patient's log names a private note as one (they cannot open it, and a bare
    "annotated" with no note in sight would look like a glitch)."""
    return "annotate_private" if note.visibility == "private" else "annotate"


def _record(session: Session, note: Annotation, actor: User, action: str) -> None:
    audit.record(
        session=session,
        actor_id=actor.id,
        action=action,
        patient_id=note.patient_id,
        entry_id=note.entry_id,
    )


# --- reading ------------------------------------------------------------------------------------


@dataclass
class Note:
    """A note opened for one reader; `note` is None when it did not open (tampered)."""

    annotation: Annotation
    note: str | None
    quote: str = ""
    reply: str | None = None
    placed: int | None = None  # the paragraph it shows beside now; None: passage changed

    @property
    def id(self):
        return self.annotation.id


@dataclass
class Placement:
    by_paragraph: dict[int, list[Note]] = field(default_factory=dict)
    changed: list[Note] = field(default_factory=list)


def _open(note: Annotation, wrapped: bytes | None, reader_id, private_key, keys=None) -> Note:
    try:
        body, dek = NOTE.open_for(note, wrapped, reader_id, private_key, keys=keys)
        reply = None
        if note.reply_blob is not None:
            reply = NOTE.open_text(note, dek, note.reply_blob, _reply_ad(note))
    except (sealed.Unreadable, crypto.CryptoError, ValueError):
        NOTE.report(note, reader_id)
        return Note(annotation=note, note=None)
    return Note(annotation=note, note=body["note"], quote=body.get("quote", ""), reply=reply)


def readable(reader_id):
    """Notes `reader_id` holds a key for, with the wrapped key: a statement to narrow."""
    return (
        select(Annotation, ItemKey.wrapped_key)
        .join(ItemKey, ItemKey.subject_id == Annotation.id)
        .where(ItemKey.subject_kind == KIND, ItemKey.reader_id == reader_id)
        .order_by(col(Annotation.created_at))
    )


def open_all(
    *,
    session: Session,
    query,
    reader: User,
    private_key,
    params: dict | None = None,
    keys=None,
) -> list[Note]:
    """Run a `readable(...)` query and open each note for `reader` (one key load), with its
    quote if `reader` can read the entry. A patient only ever gets shared notes, whatever
    the query. Opened by a therapist, a note from before quotes moved under the entry's key
    is saved again without its quote inside (the caller commits)."""
    rows = session.exec(query, params=params or {}).all()
    if reader.role == "patient":
        rows = [(n, w) for n, w in rows if n.visibility == "shared" and n.patient_id == reader.id]
    if not rows:
        return []
    key = sealed.lazily(private_key)
    notes = [_open(note, wrapped, reader.id, key, keys) for note, wrapped in rows]
    _add_quotes(session, notes, reader.id, key, move_out=reader.role == "therapist")
    return notes


def open_one(*, session: Session, note: Annotation, reader_id, private_key) -> Note:
    wrapped = NOTE.wrapped_for(session, note.id, reader_id)
    opened = _open(note, wrapped, reader_id, private_key)
    if opened.note is None:
        raise crypto.CryptoError("annotation does not open")
    _add_quotes(session, [opened], reader_id, private_key, move_out=False)
    return opened


def _add_quotes(session: Session, notes: list[Note], reader_id, key, *, move_out: bool) -> None:
    """Open the quotes kept under their entry's key, for the entries the reader can read
    (one query, one unwrap per entry); with `move_out`, move old quotes there too."""
    wanted = {
        n.annotation.entry_id
        for n in notes
        if n.note is not None
        and n.annotation.entry_id is not None
        and (n.annotation.quote_blob is not None or move_out)
    }
    if not wanted:
        return
    keys = journal.data_keys(
        session=session, entry_ids=wanted, reader_id=reader_id, private_key=key
    )
    for note in notes:
        found = keys.get(note.annotation.entry_id)
        if found is None or note.note is None:
            continue
        if note.annotation.quote_blob is not None:
            try:
                note.quote = journal.open_quote(*found, note.id, note.annotation.quote_blob)
            except crypto.CryptoError:
                log.error(
                    "quote of annotation %s did not open for %s",  # not-ui: a server log line
                    note.id,
                    reader_id,
                )
        elif move_out:
            _move_quote_out(session, note, *found)


def _move_quote_out(session: Session, note: Note, entry: Entry, entry_key: bytes) -> None:
    """Save an old note again: a new version without the quote inside, the quote under the
    entry's key. Of two requests doing it at once, one conditional UPDATE lets one win."""
    annotation = note.annotation
    # PostgreSQL: a note another request is moving (or editing) is left to it, rather than
    # waited for while this request may hold the access log's lock that one needs.
    claimed = session.exec(
        select(Annotation.id)
        .where(Annotation.id == annotation.id, Annotation.version == annotation.version)
        .with_for_update(skip_locked=True)
    ).first()
    if claimed is None:
        return
    won = session.exec(
        update_rows(Annotation)
        .where(Annotation.id == annotation.id, Annotation.version == annotation.version)
        .values(version=annotation.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return
    annotation.version += 1
    annotation.quote_blob = journal.seal_quote(entry, entry_key, annotation.id, note.quote)
    _seal_version(session, annotation, {"note": note.note}, note.reply)


# Every view of an entry with notes beside it runs this: built once.
_ON_ENTRY = readable(bindparam("reader")).where(Annotation.entry_id == bindparam("entry"))


def for_entry(
    *, session: Session, entry: Entry, reader: User, private_key, keys=None
) -> list[Note]:
    """The notes on an entry that `reader` may read, oldest first (`keys`: see open_all)."""
    return open_all(
        session=session,
        query=_ON_ENTRY,
        params={"reader": reader.id, "entry": entry.id},
        reader=reader,
        private_key=private_key,
        keys=keys,
    )


def place(notes: list[Note], paragraphs: list[Paragraph]) -> Placement:
    """Put each note beside its paragraph: where it was, or where its quote moved to; else
    among the notes whose passage changed."""
    texts = [p.text for p in paragraphs]
    placement = Placement()
    for note in notes:
        where = note.annotation.paragraph_index
        if note.note is None or where is None:
            placement.changed.append(note)
            continue
        if not (0 <= where < len(texts) and texts[where] == note.quote):
            where = next((i for i, text in enumerate(texts) if text == note.quote), None)
        if where is None:
            where = next((i for i, t in enumerate(texts) if note.quote and note.quote in t), None)
        note.placed = where
        if where is None:
            placement.changed.append(note)
        else:
            placement.by_paragraph.setdefault(where, []).append(note)
    return placement


def counts_by_entry(*, session: Session, entry_ids: list, reader_id) -> dict:
    """How many notes `reader_id` can read on each entry (no decryption)."""
    if not entry_ids:
        return {}
    rows = session.exec(
        select(Annotation.entry_id, func.count())
        .join(ItemKey, ItemKey.subject_id == Annotation.id)
        .where(
            ItemKey.subject_kind == KIND,
            ItemKey.reader_id == reader_id,
            col(Annotation.entry_id).in_(entry_ids),
        )
        .group_by(Annotation.entry_id)
    ).all()
    return dict(rows)
