"""What several pages show, built in one place outside the blueprints (no view imports another
view). Each function takes the request's `Reader` (web.reader()) and returns template context;
everything shown is opened through the read path (services/reading.py), which records the
reads of someone else's words when the page has been delivered."""

from __future__ import annotations

from datetime import datetime

from flask import abort
from sqlmodel import col, select

from . import db, policy, web
from .i18n import gettext as _
from .models import MEASURE_KINDS, Entry, User, utcnow
from .services import (
    accounts,
    annotations,
    audit,
    capture,
    care,
    chart,
    entry_forms,
    instruments,
    journal,
    measures,
    practices,
    reading,
    session_day,
    sharing,
    support,
    timeline,
    workspace,
)
from .services.instruments import INSTRUMENTS, Instrument
from .views import in_viewer_zone, render, viewer_zone


def today():
    """Today in the viewer's zone."""
    return datetime.now(viewer_zone()).date()


# --- a course of treatment, a page at a time ---------------------------------------------------


def course(reader: reading.Reader, patient: User, *, before=None, kinds=None) -> dict:
    """A page of `patient`'s entries that the reader may read, in the periods between sessions,
    with how many notes the reader can open on each."""
    dbs = db.session()
    page = timeline.course_page(
        session=dbs, reader=reader, patient=patient, before=before, kinds=kinds
    )
    return {
        "page": page,
        "note_counts": page.note_counts,
        "labels": entry_forms.KIND_LABELS,
        "session_labels": _session_labels(),
        "moods": dict(entry_forms.MOODS),
    }


def _session_labels() -> dict:
    from .services import course as course_service

    return course_service.KIND_LABELS


def journal_home(*, before=None):
    """The patient's home page (at /journal, and /home for a patient): their course of
    treatment, a page at a time ("Show earlier" brings the next; htmx appends it in place)."""
    reader = web.reader()
    context = course(reader, reader.user, before=before)
    page = context["page"]
    if page.first:
        context |= patient_home(reader, page)
    return render(
        "journal/timeline.html",
        block="page" if not page.first else None,
        shared_with=shared_with(reader.user, page.items),
        **context,
    )


def shared_with(patient: User, items) -> dict:
    """For the author's own lists: whom each entry is shared with, in words."""
    ids = [item.entry.id for item in items]
    return sharing.in_words_by_entry(session=db.session(), author=patient, entry_ids=ids)


def patient_home(reader: reading.Reader, page: timeline.Page) -> dict:
    """What the patient's first page adds: questionnaires due, practices to tick, and the
    session notes their therapist shared with them."""
    dbs = db.session()
    me = reader.user
    due = measures.due_from(
        latest=measures.latest_taken_all(session=dbs, patient=me), upcoming=page.upcoming
    )
    found = practices.for_reader(
        session=dbs, patient=me, reader=me, private_key=reader.private_key, keys=reader
    )
    notes = workspace.shared_session_notes(
        session=dbs, patient=me, private_key=reader.private_key, keys=reader
    )
    return {
        "due": due,
        "practices": found,
        "shared_notes": notes,
        "today": today(),
        "tick_days": {p.id: tickable_days(p.practice) for p in found},
        "authors": authors_of(notes),
        "session_days": session_days(reader, page),  # helper DAY
        **after_the_session(reader, page),  # helper CAPTURE
    }


# --- after the session: capture and seal (helper CAPTURE) ----------------------------------------


def after_the_session(reader: reading.Reader, page: timeline.Page) -> dict:
    """The patient's home after a ketamine session: the capture mode while it is the
    after-hours of one (from the sessions the page loaded already), and what the cooling-off
    seal held, once it has ended, for them to decide on ("From yesterday's session"). One
    query when nothing is held."""

    dbs = db.session()
    past = [p.session for p in page.periods if p.session is not None]
    rows = capture.ready(session=dbs, patient=reader.user)
    held = reading.open_entries(session=dbs, reader=reader, rows=[(e, True) for e, _ in rows])
    return {
        "capture_session": capture.in_window(past),
        "capture_sealed": capture.seal_on(reader.user),
        "capture_hours": capture.hours(),
        "held": [
            (item, capture.held_readers(session=dbs, hold=hold))
            for item, (_, hold) in zip(held, rows, strict=True)
        ],
        "held_choices": share_choices(reader.user, "capture") if rows else [],
        "feelings": dict(capture.FEELINGS),
    }


def tickable_days(practice) -> list:
    """The days the patient may tick this practice, in their zone, newest first."""
    return practices.tickable_days(today(), started=in_viewer_zone(practice.created_at).date())


def practices_of(reader: reading.Reader, patient: User) -> list:
    """The patient's practices and how they went, for their care team (a read of the care
    team's notes and practices, once a day)."""
    found = practices.for_reader(
        session=db.session(),
        patient=patient,
        reader=reader.user,
        private_key=reader.private_key,
        keys=reader,
    )
    if found:
        reader.saw_notes(patient.id)
    return found


def authors_of(notes) -> dict:
    ids = {n.annotation.author_id for n in notes}
    return accounts.names_of(session=db.session(), user_ids=ids)


# --- one entry -----------------------------------------------------------------------------------


def entry_body(reader: reading.Reader, entry: Entry, wrapped) -> dict:
    """The entry's body for the reader (a read, if not theirs); 500 if it does not open (the
    log names it by id, the page shows nothing in its place)."""
    try:
        return reading.open_entry(session=db.session(), reader=reader, entry=entry, wrapped=wrapped)
    except journal.EntryUnreadable:
        abort(500)


def own_entry_notes(reader: reading.Reader, entry: Entry, body: dict) -> dict:
    """The shared notes on the patient's own entry, beside their paragraphs (never a private
    one: the patient holds no key to those)."""
    me = reader.user
    if me.role != "patient" or entry.author_id != me.id:
        return {"notes": []}
    notes = annotations.for_entry(
        session=db.session(), entry=entry, reader=me, private_key=reader.private_key, keys=reader
    )
    if not notes:
        return {"notes": []}
    paragraphs = annotations.paragraphs_of(entry.kind, body)
    return {
        "notes": notes,
        "paragraphs": paragraphs,
        "placement": annotations.place(notes, paragraphs),
        "authors": authors_of(notes),
        "patient_name": accounts.name_of(me),
    }


def share_choices(patient: User, kind: str | None = None) -> list[tuple[User, str]]:
    """Whom the patient may share an entry of `kind` with: their therapists, then (unless it
    is a questionnaire) their support people."""
    dbs = db.session()
    people = care.therapists_of(session=dbs, patient=patient)
    if kind is None or policy.may_share_kind_with_supporters(kind):
        people += support.supporters_of(session=dbs, patient=patient)
    return [(person, accounts.name_of(person)) for person in people]


def default_readers(patient: User, kind: str) -> list[User]:
    """Whom an entry of `kind` goes to when the patient wrote it without choosing (the offline
    page, a capture): their therapists, if they share that kind by default; else no one."""
    if not measures.shares_by_default(patient, kind):
        return []
    return [person for person, _ in share_choices(patient, kind) if person.role == "therapist"]


def sharing_panel(patient: User, entry: Entry) -> dict:
    """Who reads the author's entry (pending ones marked), and whom they may still add."""
    readers, addable = sharing.people_around(session=db.session(), patient=patient, entry=entry)
    return {"readers": readers, "addable": addable}


# --- questionnaires ------------------------------------------------------------------------------


def trends(reader: reading.Reader, patient: User, *, scale: str | None = None, before=None) -> dict:
    """Each scale the reader may read, newest 20 results (or, for `scale`, the 20 before
    `before`): a chart drawn on the server, the same numbers as a table, and progress in
    plain words. Opening another person's results is a read."""
    dbs = db.session()
    markers = [
        chart.Marker(at=s.scheduled_at, label=_("Ketamine session"))
        for s in measures.ketamine_sessions(session=dbs, patient=patient, until=utcnow())
    ]
    scales = []
    for key in MEASURE_KINDS:
        cursor = before if key == scale else None
        rows, earlier = timeline.entries_page(
            session=dbs, patient_id=patient.id, reader_id=reader.id, kinds=[key], before=cursor
        )
        items = reading.open_entries(session=dbs, reader=reader, rows=rows)
        results = measures.by_instrument(items)[key]
        scales.append(_scale(INSTRUMENTS[key], results, markers, earlier))
    return {"scales": scales}


def _scale(instrument: Instrument, results, markers, earlier) -> dict:
    readable = [r for r in results if r.body is not None]
    drawn = chart.trend_chart(
        title=_("%(name)s scores over time", name=instrument.name),
        max_score=instrument.max_score,
        bands=instrument.bands,
        points=[chart.Point(at=r.at, score=r.score) for r in readable],
        markers=markers,
        zone=viewer_zone(),
        chart_id=f"chart-{instrument.key}",
    )
    return {
        "instrument": instrument,
        "chart": drawn,
        "progress": instruments.progress([r.score for r in readable]),
        "readable": readable,
        "unreadable": len(results) - len(readable),
        "earlier": earlier,
    }


def safety_flags(therapist: User, reader: reading.Reader, patient: User) -> list:
    """The patient's PHQ-9 safety flags waiting for the care team. Routine checks are marked
    seen on the way (the caller commits)."""
    found = measures.open_flags(
        session=db.session(),
        therapist=therapist,
        patient_ids=[patient.id],
        private_key=reader.private_key,
    )
    return found.get(patient.id, [])


def safety_plan(reader: reading.Reader) -> tuple[Entry, dict | None] | None:
    """The patient's own newest safety plan and its body (None if it did not open)."""
    dbs = db.session()
    entry = measures.safety_plan_entry(session=dbs, patient=reader.user)
    if entry is None:
        return None
    try:
        return entry, reading.open_entry(session=dbs, reader=reader, entry=entry)
    except journal.EntryUnreadable:
        return entry, None


# --- the access log ------------------------------------------------------------------------------

LOG_PAGE = 50


def access_log(patient: User, *, entry_id=None, before: int | None = None) -> dict:
    """A page of the patient's access log (newest first, cut at an event number), with the
    names of the people in it."""
    dbs = db.session()
    events = audit.for_patient(
        session=dbs, patient_id=patient.id, entry_id=entry_id, before=before, limit=LOG_PAGE + 1
    )
    earlier = events[LOG_PAGE - 1].seq if len(events) > LOG_PAGE else None
    events = events[:LOG_PAGE]
    people = {e.actor_id for e in events} | {e.target_id for e in events}
    names = accounts.names_of(session=dbs, user_ids=people)
    someone = _("Someone")
    rows = [(e, names.get(e.actor_id, someone), names.get(e.target_id, "")) for e in events]
    return {"events": rows, "earlier": earlier, "verbs": log_verbs(), "whole": log_whole()}


# What the access log says each event did, `%(what)s` standing for what it was done to ("an
# entry", "this entry"): "Dr. Ward read an entry". Translated whole, so that a language may
# put the words in its own order.
def log_verbs() -> dict:
    return {
        "read": _("read %(what)s"),
        "write": _("wrote %(what)s"),
        "edit": _("edited %(what)s"),
        "share": _("shared %(what)s"),
        "revoke": _("stopped sharing %(what)s"),
        "delete": _("deleted %(what)s"),
        "annotate": _("annotated %(what)s"),
        "annotate_private": _("wrote a private note for the care team on %(what)s"),
        "resolve": _("resolved a note on %(what)s"),
        "export": _("exported %(what)s"),
        "leave": _("gave up access to %(what)s"),
        "flag": _("chose to talk about %(what)s"),
        "unflag": _("no longer plans to talk about %(what)s"),
        "discuss": _("talked through %(what)s"),
        "annotation_delete": _("deleted a note on %(what)s"),
        "reply": _("replied to a note on %(what)s"),
    }


# Events about no entry (the therapist workspace) read as a whole phrase.
def log_whole() -> dict:
    return {
        "annotate": _("wrote a session note"),
        "annotate_private": _("wrote a private session note for the care team"),
        "resolve": _("resolved a session note"),
        "annotation_delete": _("deleted a session note"),
        "flag": _("chose to talk about a session note"),
        "unflag": _("no longer plans to talk about a session note"),
        "discuss": _("talked through a session note"),
        "reply": _("replied to a session note"),
        "read_notes": _("opened the notes and practices about you"),
        "practice": _("wrote down a practice with you"),
        "practice_end": _("ended one of your practices"),
        "export": _("made a printable copy of what you shared"),
    }


def latest_entries(patient: User, *, kinds=None) -> list:
    """The patient's newest entries (one page), for choosing what to share with someone."""
    dbs = db.session()
    query = (
        select(Entry)
        .where(Entry.author_id == patient.id, col(Entry.kind).not_in(MEASURE_KINDS))
        .order_by(col(Entry.created_at).desc())
        .limit(timeline.PAGE_SIZE)
    )
    if kinds:
        query = query.where(col(Entry.kind).in_(kinds))
    return list(dbs.exec(query))


# --- session day: checklist and ride (helper DAY) -------------------------------------------------


def session_days(reader: reading.Reader, page: timeline.Page) -> list[dict]:
    """The patient's session days shown on their home now (the checklist the evening before,
    "I'm home" afterwards), each as the context of its component. No statement unless a
    ketamine session on the page is near."""
    if not session_day.nearby(page.sessions.values()):
        return []
    found = session_day.for_patient(
        session=db.session(),
        patient=reader.user,
        private_key=reader.private_key,
        zone=viewer_zone(),
    )
    return [session_day_context(day) for day in found]


def session_day_context(day: session_day.Day, *, saved: bool = False) -> dict:
    """What one session-day component shows: the clinic's instructions and the list's own
    items, the patient's supporters to name (before), the names of those named."""
    dbs = db.session()
    supporters = []
    if day.phase == "before":
        supporters = support.names(support.supporters_of(session=dbs, patient=web.me()))
    named = {day.day.ride_id, day.day.companion_id} - {None} if day.day else set()
    return {
        "d": day,
        "instructions": session_day.instructions(),
        "own_items": session_day.OWN_ITEMS,
        "supporters": supporters,
        "names": accounts.names_of(session=dbs, user_ids=named) if named else {},
        "pickup_at": session_day.pickup_at(day.session),
        "saved": saved,
    }


def supporter_days(supporter: User, *, patient_id=None) -> dict:
    """The session days the supporter was named for (of one patient, with `patient_id`), as
    the supporter's pages show them: the time, what is asked, the "I'm home" mark. Decided in
    policy.py: a supporter not named gets none."""
    dbs = db.session()
    rows = policy.session_days_for_supporter(session=dbs, user=supporter, patient_id=patient_id)
    names = accounts.names_of(session=dbs, user_ids={day.patient_id for _, day in rows})
    return {
        "days": [(ts, day, names.get(day.patient_id, _("Someone"))) for ts, day in rows],
        "me": supporter.id,
        "pickup": {ts.id: session_day.pickup_at(ts) for ts, _ in rows},
    }
