"""Export (DESIGN §11): a patient downloads their journal, a therapist the clinical record of
one patient. Each is a ZIP built in memory (never a file on the server's disk) from what the
requester can read, opened through their `Reader` (services/reading.py): a therapist's reads of
the patient's words are recorded like any page's, and the export itself is an `export` event
in the patient's access log.

The patient's ZIP: journal.html (to read or print), journal.json (the same, for import on
another server: docs/export-format.md), questionnaires.fhir.json (services/fhir.py) and
access-log.csv. The therapist's: record.html, record.json and questionnaires.fhir.json.

A journal of thousands of entries is read a page at a time (timeline.entries_page: a cursor,
never an OFFSET) and each file is written into the ZIP as it is read, so memory holds one page
of words at a time, besides the compressed ZIP.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

from flask import current_app
from markupsafe import Markup
from sqlmodel import Session, col, select

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import (
    ENTRY_KINDS,
    MEASURE_KINDS,
    Annotation,
    Entry,
    EntryMemo,
    Grant,
    User,
    aware,
    utcnow,
)
from . import (
    accounts,
    annotations,
    audit,
    chart,
    course,
    entry_forms,
    fhir,
    importing,
    instruments,
    journal,
    practices,
    reading,
    timeline,
    workspace,
)
from .importing import FORMAT, RECORD_FORMAT, VERSION, iso, note_json

BATCH = 100  # entries opened at a time
LOG_BATCH = 200  # access-log events read at a time
COURSE_KINDS = ("intention", "reflection", "check_in", "free", "capture")  # plan, card: their own
# No script may run in an exported file, whatever it holds: its own CSS, and the memos beside it.
_FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; media-src 'self'"


# --- reading a journal a page at a time ---------------------------------------------------------


def opened_pages(
    *, session: Session, reader: reading.Reader, patient: User, kinds=ENTRY_KINDS
) -> Iterator[list[reading.Item]]:
    """The entries of `patient` of `kinds` that the reader holds a live grant on, newest first,
    opened a page at a time."""
    for page in _pages(session, reader, patient, kinds):
        yield reading.open_entries(session=session, reader=reader, rows=page.rows)


@dataclass
class _Page:
    rows: list  # (entry, live, ...) rows of live grants
    before: timeline.Cursor | None  # where the page starts (None: the newest)
    oldest: datetime | None  # the time of its last row, when more pages follow


def _pages(session: Session, reader: reading.Reader, patient: User, kinds) -> Iterator[_Page]:
    cursor = None
    while True:
        rows, after = timeline.entries_page(
            session=session,
            patient_id=patient.id,
            reader_id=reader.id,
            kinds=kinds,
            before=cursor,
            size=BATCH,
        )
        oldest = aware(rows[-1].entry.created_at) if after is not None else None
        yield _Page([row for row in rows if row.live], cursor, oldest)
        if after is None:
            return
        cursor = after


@dataclass
class Chunk:
    """A page of the course of treatment: its periods (timeline.Period), the sessions still
    ahead (first page only), and entry id → the notes on its entries the reader may read."""

    periods: list
    upcoming: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)


def course_chunks(
    *, session: Session, reader: reading.Reader, patient: User, kinds, written_by=None
) -> Iterator[Chunk]:
    """The reader's entries of `kinds` in the periods between sessions, newest first, a page
    at a time (as timeline.course_page, in longer pages), with the notes on them the reader
    may read (those `written_by` someone only, if given)."""
    now = utcnow()
    for page in _pages(session, reader, patient, kinds):
        items = reading.open_entries(session=session, reader=reader, rows=page.rows)
        newest = page.before.at if page.before else None
        found = timeline.sessions_between(session, patient.id, oldest=page.oldest, newest=newest)
        past = [s for s in found if aware(s.scheduled_at) <= now]
        yield Chunk(
            periods=timeline.periods(past, items, first=page.before is None),
            upcoming=[s for s in found if aware(s.scheduled_at) > now] if newest is None else [],
            notes=_notes_on(session, reader, _opened(items), written_by),
        )


def _opened(items: list[reading.Item]) -> list:
    return [item.entry.id for item in items if item.body is not None]


def _notes_on(session: Session, reader: reading.Reader, entry_ids: list, written_by) -> dict:
    """entry id → the notes on it the reader may read (a patient: only those shared with
    them, annotations.open_all sees to it), of one author if `written_by`."""
    if not entry_ids:
        return {}
    query = annotations.readable(reader.id).where(col(Annotation.entry_id).in_(entry_ids))
    found: dict = {}
    for note in _open_notes(session, reader, query, written_by):
        found.setdefault(note.annotation.entry_id, []).append(note)
    return found


def _open_notes(session: Session, reader: reading.Reader, query, written_by) -> list:
    if written_by is not None:
        query = query.where(Annotation.author_id == written_by.id)
    notes = annotations.open_all(
        session=session, query=query, reader=reader.user, private_key=reader.private_key
    )
    return [note for note in notes if note.note is not None]


# --- what an entry says --------------------------------------------------------------------------


def sections_of(kind: str, body: dict) -> list[tuple[str, str]]:
    """The words of an entry body as (heading, text), in the order the entry page shows them
    (text exactly as written), then the prompt answers."""
    fields = entry_forms.labelled_fields(kind)
    found = [
        (label, body[name])
        for name, label in fields
        if isinstance(body.get(name), str) and body[name].strip()
    ]
    found += [
        (str(a.get("prompt", "")), str(a.get("answer", "")))
        for a in body.get("answers", [])
        if isinstance(a, dict)
    ]
    return found


@dataclass(frozen=True)
class Result:
    """A questionnaire result, as the exported tables show it."""

    entry: Entry
    body: dict
    name: str
    score: int
    max_score: int
    band: str
    difficulty: str


def _results(session: Session, reader: reading.Reader, patient: User) -> Iterator[Result]:
    for items in opened_pages(session=session, reader=reader, patient=patient, kinds=MEASURE_KINDS):
        for entry, body in ((i.entry, i.body) for i in items if i.body is not None):
            instrument, difficulty = instruments.INSTRUMENTS[entry.kind], body.get("difficulty")
            yield Result(
                entry,
                body,
                instrument.name,
                body["score"],
                instrument.max_score,
                str(instruments.band(instrument, body["score"]).label),
                "" if difficulty is None else dict(instruments.DIFFICULTY_ANSWERS)[difficulty],
            )


# --- the files in the ZIP ------------------------------------------------------------------------


@cache
def _css() -> str:
    return (Path(current_app.template_folder) / "export" / "journal.css").read_text()


def _head() -> Markup:
    """What an exported file's <head> needs besides its title: a CSP that lets no script run,
    and its CSS (the app's own templates may hold neither: tests/test_security.py)."""
    meta = Markup('<meta http-equiv="Content-Security-Policy" content="{}">').format(_FILE_CSP)
    css = Markup(_css())  # noqa: S704  (the app's own stylesheet, not anyone's words)
    return meta + Markup("\n<style>\n") + css + Markup("</style>")


def _common(patient: User, zone) -> dict:
    return {
        "head": _head(),
        "patient_name": accounts.name_of(patient),
        "clinic": current_app.config["CLINIC_NAME"],
        "exported_at": utcnow(),
        "zone_name": str(zone),
        "labels": entry_forms.KIND_LABELS,
        "session_labels": course.KIND_LABELS,
        "moods": dict(entry_forms.MOODS),
        "sections": sections_of,
        "notes_by": {},  # entry id → notes; the course chunks bring their own
    }


def _write_html(archive: zipfile.ZipFile, name: str, template: str, context: dict) -> None:
    """Render `template` as a stream into the ZIP: never the whole page in memory."""
    with _text_member(archive, name) as out:
        for piece in current_app.jinja_env.get_template(template).generate(**context):
            out.write(piece)


def _text_member(archive: zipfile.ZipFile, name: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(archive.open(name, "w"), encoding="utf-8", newline="")


def _write_json(archive: zipfile.ZipFile, name: str, document: dict, *, omit_empty=()) -> None:
    with _text_member(archive, name) as out:
        importing.write_json(out, document, omit_empty=omit_empty)


def _write_fhir(archive, session: Session, reader: reading.Reader, patient: User) -> None:
    results = ((r.entry, r.body) for r in _results(session, reader, patient))
    bundle = fhir.bundle(results, subject=accounts.name_of(patient), now=utcnow())
    _write_json(archive, "questionnaires.fhir.json", bundle, omit_empty={"entry"})


def _entries_json(session: Session, reader: reading.Reader, patient: User, kinds, written_by):
    """Every entry of `kinds` the reader holds a live grant on, newest first, with the notes on
    it the reader may read (of `written_by` only, if given: a therapist's record, which says
    whether each is private); one that did not open has a null body."""
    names, record = Names(session), written_by is not None
    for items in opened_pages(session=session, reader=reader, patient=patient, kinds=kinds):
        notes = _notes_on(session, reader, _opened(items), written_by)
        for item in items:
            found = notes.get(item.entry.id, [])
            yield importing.entry_json(
                item.entry,
                item.body,
                [note_json(n, names[n.annotation.author_id], visibility=record) for n in found],
            )


class Names(dict):
    """user id → display name, each looked up (and decrypted) once, when first asked for."""

    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def __missing__(self, user_id) -> str:
        found = accounts.names_of(session=self.session, user_ids=[user_id]).get(user_id, "")
        self[user_id] = found
        return found


# --- the access log as CSV -----------------------------------------------------------------------

LOG_COLUMNS = ("time", "who", "what", "entry", "entry_id", "times_that_day")
# As the access-log page words them (templates/journal/_log.html), each a whole phrase about
# one entry, in the language of the person downloading.
_VERBS = {
    "read": _l("read an entry"),
    "write": _l("wrote an entry"),
    "edit": _l("edited an entry"),
    "share": _l("shared an entry"),
    "revoke": _l("stopped sharing an entry"),
    "delete": _l("deleted an entry"),
    "annotate": _l("annotated an entry"),
    "annotate_private": _l("wrote a private note for the care team on an entry"),
    "resolve": _l("resolved a note on an entry"),
    "export": _l("exported an entry"),
    "leave": _l("gave up access to an entry"),
    "flag": _l("chose to talk about an entry"),
    "unflag": _l("no longer plans to talk about an entry"),
    "discuss": _l("talked through an entry"),
    "annotation_delete": _l("deleted a note on an entry"),
    "reply": _l("replied to a note on an entry"),
    "safety_check": _l(
        "looked at the safety check (only whether question 9 was answered above “Not at all”: "
        "not the answers, not the score) of an entry"
    ),
}
_WHOLE = {
    "annotate": _l("wrote a session note"),
    "annotate_private": _l("wrote a private session note for the care team"),
    "resolve": _l("resolved a session note"),
    "annotation_delete": _l("deleted a session note"),
    "flag": _l("chose to talk about a session note"),
    "unflag": _l("no longer plans to talk about a session note"),
    "discuss": _l("talked through a session note"),
    "reply": _l("replied to a session note"),
    "read_notes": _l("opened the notes and practices about you"),
    "practice": _l("wrote down a practice with you"),
    "practice_end": _l("ended one of your practices"),
    "export": _l("made a copy of what you shared with them"),
}


def _write_access_log(archive, session: Session, patient: User, zone) -> None:
    """The patient's whole access log, newest first, the rows of their access-log page."""
    with _text_member(archive, "access-log.csv") as out:
        writer = csv.writer(out)
        writer.writerow(LOG_COLUMNS)
        before = None
        while True:
            events = audit.for_patient(
                session=session, patient_id=patient.id, before=before, limit=LOG_BATCH
            )
            people = {e.actor_id for e in events} | {e.target_id for e in events}
            names = accounts.names_of(session=session, user_ids=people)
            entries = _entries_named(session, patient, {e.entry_id for e in events})
            writer.writerows(_log_row(e, patient, names, entries, zone) for e in events)
            if len(events) < LOG_BATCH:
                return
            before = events[-1].seq


def _entries_named(session: Session, patient: User, ids: set) -> dict:
    ids.discard(None)
    if not ids:
        return {}
    query = select(Entry.id, Entry.kind, Entry.created_at).where(
        Entry.author_id == patient.id, col(Entry.id).in_(list(ids))
    )
    return {entry_id: (kind, at) for entry_id, kind, at in session.exec(query)}


def _log_row(event: audit.LoggedEvent, patient: User, names: dict, entries: dict, zone) -> list:
    """One row of the CSV: its column names are machine English, its words in the language of
    the person downloading (the request's)."""
    mine = event.actor_id == patient.id
    who = _("You") if mine else names.get(event.actor_id, _("Someone"))
    if event.action == "export" and mine:
        what = _("downloaded your journal")
    elif event.entry_id is None and event.action in _WHOLE:
        what = str(_WHOLE[event.action])
    elif event.action in _VERBS:
        what = str(_VERBS[event.action])
    else:
        what = _("%(action)s an entry", action=event.action)
    if names.get(event.target_id):
        what = _("%(what)s with %(name)s", what=what, name=names[event.target_id])
    entry = _("an entry since deleted") if event.entry_id else ""
    if event.entry_id in entries:
        kind, at = entries[event.entry_id]
        label = (entry_forms.KIND_LABELS | instruments.LABELS).get(kind) or _("Entry")
        day = chart.day_text(aware(at).astimezone(zone).date())
        entry = _("%(label)s of %(day)s", label=label, day=day)
    when = aware(event.at).astimezone(zone).isoformat(timespec="seconds")
    row = [when, who, what, entry, str(event.entry_id or ""), event.count]
    return [_cell(value) for value in row]


def _cell(value):
    """A spreadsheet opening the file must not run a name or a label as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# --- the two archives ----------------------------------------------------------------------------


def _document(fmt: str, patient: User, zone, session: Session) -> dict:
    sessions = course.sessions_of(session=session, patient=patient)
    return {
        "format": fmt,
        "version": VERSION,
        "exported_at": iso(utcnow()),
        "time_zone": str(zone),
        "person": {"name": accounts.name_of(patient)},
        "sessions": [importing.session_json(s, patient) for s in reversed(sessions)],
    }


def journal_archive(*, session: Session, reader: reading.Reader, zone) -> io.BytesIO:
    """The patient's own journal as a ZIP in memory (see the module docstring), recorded as an
    `export` in their access log (the caller commits). `zone`: their time zone."""
    patient, names = reader.user, Names(session)
    audit.record(session=session, actor_id=patient.id, action="export", patient_id=patient.id)
    key = reader.private_key
    notes = workspace.shared_session_notes(session=session, patient=patient, private_key=key)
    kept = practices.for_reader(
        session=session, patient=patient, reader=patient, private_key=key, active_only=False
    )
    kept = [p for p in kept if p.body is not None]
    document = _document(FORMAT, patient, zone, session) | {
        "practices": [importing.practice_json(p) for p in kept],
        "session_notes": [
            note_json(n, names[n.annotation.author_id], visibility=False) for n in notes
        ],
        "entries": _entries_json(session, reader, patient, ENTRY_KINDS, None),
    }
    page = _common(patient, zone) | {
        "mode": "patient",
        "memo_name": memo_name,
        "authors": names,
        "plans": _all_of(session, reader, patient, "safety_plan"),
        "cards": _all_of(session, reader, patient, "support_card"),
        "chunks": course_chunks(
            session=session, reader=reader, patient=patient, kinds=COURSE_KINDS
        ),
        "session_notes": notes,
        "practices": kept,
        "results": _results(session, reader, patient),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        _write_json(archive, "journal.json", document)
        _write_html(archive, "journal.html", "export/journal.html", page)
        _write_fhir(archive, session, reader, patient)
        _write_access_log(archive, session, patient, zone)
        _write_memos(archive, session, reader, patient)
    buffer.seek(0)
    return buffer


# A voice memo's file name in the ZIP, by its type (services/capture.AUDIO_TYPES).
MEMO_SUFFIX = {"audio/ogg": "ogg", "audio/mp4": "m4a", "audio/x-m4a": "m4a", "audio/mpeg": "mp3"}
MEMO_SUFFIX |= {"audio/aac": "aac", "audio/wav": "wav", "audio/x-wav": "wav", "audio/3gpp": "3gp"}


def memo_name(entry_id, body: dict | None) -> str | None:
    """Where an entry's voice memo is in the ZIP (memos/ID.webm), or None without one."""
    memo = (body or {}).get("memo")
    if not isinstance(memo, dict):
        return None
    return f"memos/{entry_id}.{MEMO_SUFFIX.get(memo.get('type'), 'webm')}"


def _write_memos(archive: zipfile.ZipFile, session: Session, reader, patient: User) -> None:
    """The patient's voice memos as files beside journal.html (its entries link to them), each
    opened under its entry's data key here, in memory."""
    with_memo = (
        select(Entry, Grant.wrapped_key)
        .join(EntryMemo, EntryMemo.entry_id == Entry.id)
        .join(Grant, (Grant.entry_id == Entry.id) & (Grant.reader_id == patient.id))
        .where(Entry.author_id == patient.id)
    )
    for entry, wrapped in session.exec(with_memo):
        try:
            body = reading.open_entry(
                session=session, reader=reader, entry=entry, wrapped=wrapped, shown=False
            )
            audio = reading.open_memo(session=session, reader=reader, entry=entry, wrapped=wrapped)
        except journal.EntryUnreadable:
            continue  # reported by id; the entry's words are in the journal all the same
        archive.writestr(memo_name(entry.id, body), audio)


def _all_of(session: Session, reader: reading.Reader, patient: User, kind: str) -> list:
    """Every entry of one kind (the safety plan, the support card: one or a few), opened."""
    pages = opened_pages(session=session, reader=reader, patient=patient, kinds=[kind])
    return [item for items in pages for item in items]


def clinical_record(*, session: Session, reader: reading.Reader, patient: User, zone) -> io.BytesIO:
    """A therapist's record of one patient on their care team, as a ZIP in memory: what the
    patient shared with them (each entry opened is a read, recorded by the read path when the
    request ends), the notes they wrote themself (private and shared), and the questionnaire
    results shared with them. An `export` in the patient's access log; the caller commits."""
    therapist, names = reader.user, Names(session)
    audit.record(session=session, actor_id=therapist.id, action="export", patient_id=patient.id)
    query = annotations.readable(therapist.id).where(
        Annotation.patient_id == patient.id, col(Annotation.entry_id).is_(None)
    )
    notes = _open_notes(session, reader, query, therapist)
    document = _document(RECORD_FORMAT, patient, zone, session) | {
        "clinician": {"name": accounts.name_of(therapist)},
        "session_notes": [
            note_json(n, names[n.annotation.author_id], visibility=True) for n in notes
        ],
        "entries": _entries_json(session, reader, patient, None, therapist),
    }
    page = _common(patient, zone) | {
        "mode": "record",
        "therapist_name": accounts.name_of(therapist),
        "authors": names,
        "chunks": course_chunks(
            session=session, reader=reader, patient=patient, kinds=None, written_by=therapist
        ),
        "sessions": list(reversed(course.sessions_of(session=session, patient=patient))),
        "session_notes": notes,
        "results": _results(session, reader, patient),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        _write_json(archive, "record.json", document)
        _write_html(archive, "record.html", "export/record.html", page)
        _write_fhir(archive, session, reader, patient)
    buffer.seek(0)
    return buffer
