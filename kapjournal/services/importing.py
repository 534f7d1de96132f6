"""journal.json, both ways (DESIGN §11; the schema: docs/export-format.md): what an export
writes, and the import that reads it into a new account, perhaps on another kapjournal server.

Kept in one module so that what is written and what is read back never drift apart. An
import takes the entries (kind, words, dates) and the sessions they were written for; each
entry is encrypted anew for the importing account, readable by them alone (they choose whom to
share it with, as for any entry). Notes and practices stay behind: they are the care team's
words, of another clinic.

Importing the same file twice creates nothing twice: an entry's client id is derived from its
id in the file (journal.create is idempotent on it), a session's id from its id in the file and
the account; entries and sessions still in the account they came from are skipped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from sqlmodel import Session, col, select

from ..i18n import gettext as _
from ..models import (
    ENTRY_KINDS,
    MEASURE_KINDS,
    SESSION_KINDS,
    SESSION_STATUSES,
    Entry,
    TreatmentSession,
    User,
    aware,
)
from . import annotations, entry_forms, instruments, journal

FORMAT = "kapjournal/journal"
RECORD_FORMAT = "kapjournal/clinical-record"
VERSION = 1
MAX_BYTES = 16 * 1024 * 1024  # the largest journal.json an import reads
# Client ids and session ids of imported items are derived (uuid5) under this namespace.
_NAMESPACE = uuid.UUID("6f0d8f7e-3c1a-4f57-9a44-0b7c2b8e5d21")
_IN_CLAUSE = 500  # ids per IN (...) when looking for items already there


# --- writing (services/export.py builds the documents from these) --------------------------------


def iso(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 with its UTC offset."""
    if value is None:
        return None
    return aware(value).isoformat()


def session_json(found: TreatmentSession, patient: User) -> dict:
    """A session of the patient's course, and who added it."""
    return {
        "id": str(found.id),
        "kind": found.kind,
        "status": found.status,
        "scheduled_at": iso(found.scheduled_at),
        "added_by": "patient" if found.created_by_id == patient.id else "care_team",
    }


def note_json(note: annotations.Note, author: str, *, visibility: bool) -> dict:
    """A note opened for the reader, with its author's name (and, with `visibility`, whether
    it is private to the care team)."""
    found = {
        "id": str(note.id),
        "author": author,
        "written_at": iso(note.annotation.created_at),
        "quote": note.quote or None,
        "note": note.note,
        "reply": note.reply,
    }
    if visibility:  # in a therapist's record, which holds their private notes too
        found["visibility"] = note.annotation.visibility
    return found


def practice_json(opened) -> dict:
    """A practice (practices.Opened) and the days it was ticked."""
    return {
        "id": str(opened.practice.id),
        **{name: opened.body.get(name, "") for name in ("what", "how_often", "why")},
        "recorded_at": iso(opened.practice.created_at),
        "ended_at": iso(opened.practice.ended_at),
        "days_done": [day.isoformat() for day in opened.days],
    }


def entry_json(entry: Entry, body: dict | None, notes: list[dict]) -> dict:
    """An entry; `body` None: it did not open when exported (an import skips it)."""
    return {
        "id": str(entry.id),
        "kind": entry.kind,
        "created_at": iso(entry.created_at),
        "updated_at": iso(entry.updated_at),
        "session_id": str(entry.session_id) if entry.session_id else None,
        "body": body,
        "notes": notes,
    }


def write_json(out: TextIO, document: dict, *, omit_empty=()) -> None:
    """A JSON object to `out`; values that are iterators (entries, results) are written
    item by item as they come. An empty one named in `omit_empty` is left out (FHIR allows no
    empty array)."""
    out.write("{")
    first = True
    for key, value in document.items():
        streamed = isinstance(value, Iterator)
        if streamed:
            value = _peeked(value)
            if value is None and key in omit_empty:
                continue
        out.write(("\n  " if first else ",\n  ") + json.dumps(key) + ": ")
        first = False
        if streamed:
            _write_array(out, value or ())
        else:
            out.write(json.dumps(value, ensure_ascii=False))
    out.write("\n}\n")


def _peeked(values: Iterator) -> Iterator | None:
    """`values` again, or None if there are none."""
    for first in values:
        return _chain(first, values)
    return None


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _write_array(out, values: Iterable) -> None:
    out.write("[")
    for n, value in enumerate(values):
        out.write(("\n    " if n == 0 else ",\n    ") + json.dumps(value, ensure_ascii=False))
    out.write("\n  ]")


# --- reading -------------------------------------------------------------------------------------


class Refused(Exception):
    """The file cannot be imported. The message says why in plain words (in the page's
    language), and never quotes the file (it names an entry by its number in the file)."""


# A list of the file that is not a list of objects, by its key (a machine name), in words.
_NOT_IN_FORM = {
    "sessions": lambda: _("The sessions in this journal.json are not in the expected form."),
    "entries": lambda: _("The entries in this journal.json are not in the expected form."),
}


@dataclass(frozen=True)
class SessionIn:
    id: uuid.UUID
    kind: str
    status: str
    scheduled_at: datetime


@dataclass(frozen=True)
class EntryIn:
    id: uuid.UUID
    kind: str
    created_at: datetime
    updated_at: datetime
    session_id: uuid.UUID | None
    body: dict | None


@dataclass(frozen=True)
class Journal:
    sessions: list[SessionIn]
    entries: list[EntryIn]


def parse(raw: bytes) -> Journal:
    """A journal.json of this format version, checked through; Refused if anything in it is
    not what an export writes."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(
            _("This file could not be read as a journal.json (it is not JSON).")
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise Refused(_("This is not a journal.json from a kapjournal download."))
    version = document.get("version")
    if version != VERSION:
        named = version if isinstance(version, int) and not isinstance(version, bool) else "?"
        raise Refused(
            _(
                "This journal.json is in format version %(named)s; this server reads version "
                "%(version)s. Download your journal again from a server of the same version.",
                named=named,
                version=VERSION,
            )
        )
    sessions = [_session_in(n, s) for n, s in enumerate(_list(document, "sessions"), 1)]
    known = {s.id for s in sessions}
    entries = [_entry_in(n, e, known) for n, e in enumerate(_list(document, "entries"), 1)]
    return Journal(sessions=sessions, entries=entries)


def _list(document: dict, key: str) -> list:
    found = document.get(key, [])
    if not isinstance(found, list) or not all(isinstance(x, dict) for x in found):
        raise Refused(_NOT_IN_FORM[key]())
    return found


def _uuid(value, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise Refused(_("%(what)s has no valid id.", what=what)) from None


def _time(value, what: str) -> datetime:
    try:
        found = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise Refused(_("%(what)s has no valid date.", what=what)) from None
    return aware(found)


def _session_in(number: int, item: dict) -> SessionIn:
    what = _("Session %(number)d in the file", number=number)
    if item.get("kind") not in SESSION_KINDS or item.get("status") not in SESSION_STATUSES:
        raise Refused(_("%(what)s is of an unknown kind or status.", what=what))
    return SessionIn(
        id=_uuid(item.get("id"), what),
        kind=item["kind"],
        status=item["status"],
        scheduled_at=_time(item.get("scheduled_at"), what),
    )


def _entry_in(number: int, item: dict, sessions: set) -> EntryIn:
    what = _("Entry %(number)d in the file", number=number)
    kind = item.get("kind")
    if kind not in ENTRY_KINDS:
        raise Refused(_("%(what)s is of an unknown kind.", what=what))
    session_id = item.get("session_id")
    if session_id is not None:
        session_id = _uuid(session_id, what)
        if session_id not in sessions:
            raise Refused(_("%(what)s belongs to a session that is not in the file.", what=what))
    body = item.get("body")
    return EntryIn(
        id=_uuid(item.get("id"), what),
        kind=kind,
        created_at=_time(item.get("created_at"), what),
        updated_at=_time(item.get("updated_at", item.get("created_at")), what),
        session_id=session_id,
        body=None if body is None else _checked_body(kind, body, what),
    )


def _text_fields(kind: str) -> set[str]:
    if kind == "intention":
        return {name for name, _, _ in entry_forms.INTENTION_FIELDS}
    if kind in entry_forms.FIELDS_OF:
        return {name for name, _, _ in entry_forms.FIELDS_OF[kind]}
    return {"text"}


def _checked_body(kind: str, body, what: str) -> dict:
    """The body as the app itself would have written it, or Refused."""
    if not isinstance(body, dict):
        raise Refused(_("%(what)s has no words in the expected form.", what=what))
    if kind in MEASURE_KINDS:
        return _checked_answers(kind, body, what)
    texts = _text_fields(kind)
    for key, value in body.items():
        ok = (
            (key in texts and isinstance(value, str))
            or (key == "mood" and type(value) is int and 1 <= value <= len(entry_forms.MOODS))
            or (key == "answers" and _prompt_answers(value))
        )
        if not ok:
            raise Refused(
                _("%(what)s holds something a %(kind)s entry does not have.", what=what, kind=kind)
            )
    if journal.body_too_large(body):
        raise Refused(_("%(what)s is longer than 64 KB, which no entry here may be.", what=what))
    return body


def _prompt_answers(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(a, dict)
        and set(a) == {"prompt", "answer"}
        and all(isinstance(v, str) for v in a.values())
        for a in value
    )


def _checked_answers(kind: str, body: dict, what: str) -> dict:
    instrument = instruments.INSTRUMENTS[kind]
    items, difficulty = body.get("items"), body.get("difficulty")
    whole = isinstance(items, list) and all(type(a) is int for a in items)
    try:
        total = instruments.score(instrument, items) if whole else None
    except ValueError:  # not one answer from 0 to 3 for every item
        total = None
    complete = (
        set(body) == {"items", "difficulty", "score"}
        and total is not None
        and type(body["score"]) is int
        and body["score"] == total
        and (difficulty is None or (type(difficulty) is int and 0 <= difficulty <= 3))
    )
    if not complete:
        raise Refused(_("%(what)s is not a complete %(name)s.", what=what, name=instrument.name))
    return body


# --- importing -----------------------------------------------------------------------------------


@dataclass
class Imported:
    """What an import did: new entries and sessions, entries already in the account (an
    earlier import of the same file, or the account the file came from), and entries that
    did not open when the file was made (left out)."""

    entries: int = 0
    sessions: int = 0
    already: int = 0
    unreadable: int = 0


def import_journal(*, session: Session, patient: User, journal_in: Journal) -> Imported:
    """Create the journal's entries in the patient's account, each encrypted anew for them
    alone with its kind, words and dates, and the sessions they were written for (as sessions
    the patient added). Idempotent (see the module docstring); the caller commits, and on an
    IntegrityError (the same file imported at the same moment) rolls back and runs it again."""
    done = Imported()
    sessions = _import_sessions(session, patient, journal_in, done)
    here = _already_here(session, Entry, patient, [e.id for e in journal_in.entries])
    for item in journal_in.entries:
        if item.body is None:
            done.unreadable += 1
            continue
        if item.id in here:
            done.already += 1
            continue
        entry, created = journal.create(
            session=session,
            author=patient,
            kind=item.kind,
            body=item.body,
            client_id=uuid.uuid5(_NAMESPACE, f"entry/{item.id}"),
            session_id=sessions.get(item.session_id),
        )
        if not created:
            done.already += 1
            continue
        entry.created_at, entry.updated_at = item.created_at, item.updated_at
        session.add(entry)
        done.entries += 1
    session.flush()
    return done


def _import_sessions(session: Session, patient: User, journal_in: Journal, done: Imported):
    """file session id → the account's session id, for the sessions entries were written for."""
    wanted = {e.session_id for e in journal_in.entries if e.session_id and e.body is not None}
    found = [s for s in journal_in.sessions if s.id in wanted]
    here = _already_here(session, TreatmentSession, patient, [s.id for s in found])
    mapping = {}
    for item in found:
        if item.id in here:
            mapping[item.id] = item.id
            continue
        mapping[item.id] = uuid.uuid5(_NAMESPACE, f"session/{patient.id}/{item.id}")
        if session.get(TreatmentSession, mapping[item.id]) is not None:
            continue  # imported before
        session.add(
            TreatmentSession(
                id=mapping[item.id],
                patient_id=patient.id,
                created_by_id=patient.id,
                kind=item.kind,
                status=item.status,
                scheduled_at=item.scheduled_at,
            )
        )
        done.sessions += 1
    session.flush()
    return mapping


def _already_here(session: Session, model, patient: User, ids: list) -> set:
    """Which of `ids` are the patient's own entries or sessions already (the same journal)."""
    owner = model.author_id if model is Entry else model.patient_id
    found: set = set()
    for start in range(0, len(ids), _IN_CLAUSE):
        chunk = ids[start : start + _IN_CLAUSE]
        query = select(model.id).where(owner == patient.id, col(model.id).in_(chunk))
        found.update(session.exec(query))
    return found
