"""The therapist's workspace (notes on shared entries, "bring to session" flags, the
integration session view, practices, leaving a care team) and the patient's side of it
(replying to a shared note, ticking a practice, taking a therapist off their care team)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

from .. import db, policy
from ..models import Annotation, User
from ..services import (
    accounts,
    annotations,
    audit,
    care,
    course,
    entry_forms,
    journal,
    practices,
    workspace,
)
from ..services.accounts import ValidationError
from . import form_text, in_viewer_zone, render, see_other, viewer_zone
from . import measures as measures_views
from .auth import safe_next

bp = Blueprint("workspace", __name__)


def _me() -> User:
    return current_user.user


def _back(default: str):
    """303 to the page a form came from (its `next` field, if a path on this site), or to
    `default`."""
    return redirect(safe_next(form_text("next", 500), default), code=303)


def _today_start() -> datetime:
    """Midnight today in the viewer's zone: items talked through since then stay on the
    agenda, ticked."""
    return datetime.combine(datetime.now(viewer_zone()).date(), time(), tzinfo=viewer_zone())


def _flag(name: str) -> bool:
    return request.form.get(name) in ("1", "yes", "on")


def _in_place() -> bool:
    """Whether a component's own htmx request (not a boosted form) posted this: it gets its
    block back and records only the action, never re-reading the page it came from."""
    return bool(request.htmx) and not request.htmx.boosted


def _next_path() -> str:
    """The page a component sits on, without its anchor (to render its `next` field again)."""
    return form_text("next", 500).partition("#")[0]


# --- notes on an entry (therapist) -----------------------------------------------------------


def _notes_page(entry, *, errors=None, form=None, open_p=None, status=200):
    dbs = db.session()
    private_key = current_user.private_key()
    try:
        body = journal.read(session=dbs, entry=entry, reader_id=_me().id, private_key=private_key)
    except journal.EntryUnreadable:
        abort(500)
    paragraphs = annotations.paragraphs_of(entry.kind, body)
    notes = annotations.for_entry(session=dbs, entry=entry, reader=_me(), private_key=private_key)
    audit.record(
        session=dbs, actor_id=_me().id, action="read", patient_id=entry.author_id, entry_id=entry.id
    )
    dbs.commit()
    patient = dbs.get(User, entry.author_id)
    return render(
        "workspace/notes.html",
        entry=entry,
        body=body,
        paragraphs=paragraphs,
        placement=annotations.place(notes, paragraphs),
        patient=patient,
        patient_name=accounts.name_of(patient),
        authors=_authors(notes),
        flag=workspace.flag_of(session=dbs, entry=entry, therapist=_me()),
        labels=entry_forms.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        mode="therapist",
        errors=errors or {},
        form=form or {},
        open_p=open_p,
        status=status,
    )


def _authors(notes) -> dict:
    ids = {n.annotation.author_id for n in notes}
    return accounts.names_of(session=db.session(), user_ids=ids)


@bp.get("/entries/<uuid:entry_id>/notes")
@policy.allow("therapist")
def notes_page(entry_id: uuid.UUID):
    entry = policy.get_entry_for(
        session=db.session(), user=_me(), entry_id=entry_id, need="annotate"
    )
    return _notes_page(entry)


@bp.post("/entries/<uuid:entry_id>/notes")
@policy.allow("therapist")
def annotate(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="annotate")
    private_key = current_user.private_key()
    try:
        body = journal.read(session=dbs, entry=entry, reader_id=_me().id, private_key=private_key)
    except journal.EntryUnreadable:
        abort(500)
    try:
        index = int(request.form.get("paragraph", ""))
    except ValueError:
        index = -1
    paragraphs = annotations.paragraphs_of(entry.kind, body)
    paragraph = annotations.find_paragraph(paragraphs, index, form_text("digest", 100))
    try:
        if paragraph is None:
            raise ValidationError(
                {
                    "note": "The patient changed this passage while you wrote. Your note is kept "
                    "here: copy it to the passage it belongs to."
                }
            )
        annotations.create(
            session=dbs,
            patient=dbs.get(User, entry.author_id),
            author=_me(),
            note=form_text("note", 20_000),
            visibility=form_text("visibility", 20),
            entry=entry,
            paragraph=paragraph,
            bring_to_session=_flag("bring_to_session"),
            private_key=private_key,
        )
    except ValidationError as exc:
        dbs.rollback()
        if paragraph is not None:
            index = paragraph.index
        elif paragraphs:  # keep the words under the nearest passage there is now
            index = min(max(index, 0), len(paragraphs) - 1)
        return _notes_page(entry, errors=exc.errors, form=request.form, open_p=index, status=422)
    dbs.commit()
    return see_other("workspace.notes_page", entry_id=entry.id, _anchor=f"p-{paragraph.index}")


@bp.post("/entries/<uuid:entry_id>/flag")
@policy.allow("therapist")
def flag_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="annotate")
    flagged = _flag("flagged")
    workspace.set_entry_flag(session=dbs, entry=entry, therapist=_me(), flagged=flagged)
    dbs.commit()
    if _in_place():
        return render(
            "workspace/_entry_flag.html",
            block="entry_flag",
            entry_id=entry.id,
            flagged=flagged,
            place="page" if form_text("place", 10) == "page" else "card",
            next=form_text("next", 500),
        )
    return _back(url_for("workspace.notes_page", entry_id=entry.id))


# --- one note ---------------------------------------------------------------------------------


def _note_home(note: Annotation) -> str:
    if note.entry_id is not None:
        return url_for("workspace.notes_page", entry_id=note.entry_id, _anchor=f"n-{note.id}")
    return url_for("workspace.session_view", patient_id=note.patient_id, _anchor="notes")


def _get_note(note_id: uuid.UUID, need: str) -> Annotation:
    return policy.get_annotation_for(
        session=db.session(), user=_me(), annotation_id=note_id, need=need
    )


@bp.route("/notes/<uuid:note_id>/edit", methods=["GET", "POST"])
@policy.allow("therapist")
def edit_note(note_id: uuid.UUID):
    dbs = db.session()
    note = _get_note(note_id, "edit")
    private_key = current_user.private_key()
    if request.method == "GET":
        opened = annotations.open_one(
            session=dbs, note=note, reader_id=_me().id, private_key=private_key
        )
        form = {"note": opened.note, "visibility": note.visibility}
        return _edit_page(note, opened, form=form)
    try:
        annotations.update(
            session=dbs,
            note=note,
            editor=_me(),
            private_key=private_key,
            text=form_text("note", 20_000),
            visibility=form_text("visibility", 20),
        )
    except ValidationError as exc:
        dbs.rollback()
        opened = annotations.open_one(
            session=dbs, note=note, reader_id=_me().id, private_key=private_key
        )
        return _edit_page(note, opened, form=request.form, errors=exc.errors, status=422)
    dbs.commit()
    return redirect(_note_home(note), code=303)


def _edit_page(note, opened, *, form, errors=None, status=200):
    patient = db.session().get(User, note.patient_id)
    return render(
        "workspace/note_edit.html",
        note=note,
        opened=opened,
        form=form,
        errors=errors or {},
        patient_name=accounts.name_of(patient),
        back=_note_home(note),
        status=status,
    )


@bp.post("/notes/<uuid:note_id>/resolve")
@policy.allow("therapist")
def resolve_note(note_id: uuid.UUID):
    note = _get_note(note_id, "edit")
    annotations.set_resolved(session=db.session(), note=note, by=_me(), resolved=_flag("resolved"))
    db.session().commit()
    return _note_controls(note) if _in_place() else _back(_note_home(note))


@bp.post("/notes/<uuid:note_id>/flag")
@policy.allow("therapist")
def flag_note(note_id: uuid.UUID):
    note = _get_note(note_id, "mark")
    annotations.set_flag(session=db.session(), note=note, by=_me(), flagged=_flag("flagged"))
    db.session().commit()
    return _note_controls(note) if _in_place() else _back(_note_home(note))


def _note_controls(note: Annotation):
    """A note's badges and buttons, for htmx: the note itself is not opened again."""
    return render(
        "workspace/_note.html",
        block="note_controls",
        note=annotations.Note(annotation=note, note=None),
        mode="session" if form_text("mode", 10) == "session" else "therapist",
        back=_next_path(),
    )


@bp.post("/notes/<uuid:note_id>/delete")
@policy.allow("therapist")
def delete_note(note_id: uuid.UUID):
    note = _get_note(note_id, "edit")
    home = _note_home(note).partition("#")[0]
    annotations.delete(session=db.session(), note=note, by=_me())
    db.session().commit()
    return redirect(home, code=303)


@bp.post("/notes/<uuid:note_id>/reply")
@policy.allow("patient")
def reply(note_id: uuid.UUID):
    dbs = db.session()
    note = _get_note(note_id, "reply")
    back = (
        url_for("journal.show_entry", entry_id=note.entry_id, _anchor=f"n-{note.id}")
        if note.entry_id
        else url_for("journal.timeline", _anchor=f"n-{note.id}")
    )
    private_key = current_user.private_key()
    try:
        annotations.reply(
            session=dbs,
            note=note,
            patient=_me(),
            private_key=private_key,
            text=form_text("reply", 20_000),
        )
    except annotations.AlreadyReplied:
        dbs.rollback()
        return redirect(back, code=303)
    except ValidationError as exc:
        dbs.rollback()
        opened = annotations.open_one(
            session=dbs, note=note, reader_id=_me().id, private_key=private_key
        )
        author = dbs.get(User, note.author_id)
        return render(
            "workspace/reply.html",
            note=note,
            opened=opened,
            author_name=accounts.name_of(author),
            errors=exc.errors,
            form=request.form,
            back=back,
            status=422,
        )
    dbs.commit()
    return redirect(back, code=303)


# --- the integration session ----------------------------------------------------------------


def _session_page(patient, *, errors=None, form=None, status=200):
    dbs = db.session()
    private_key = current_user.private_key()
    since = _today_start()
    items = workspace.agenda(
        session=dbs, therapist=_me(), patient=patient, private_key=private_key, since=since
    )
    notes = workspace.session_notes(
        session=dbs, therapist=_me(), patient=patient, private_key=private_key, since=since
    )
    current = practices.for_reader(
        session=dbs, patient=patient, reader=_me(), private_key=private_key
    )
    if notes or current or any(i.kind == "note" for i in items):
        audit.record(session=dbs, actor_id=_me().id, action="read_notes", patient_id=patient.id)
    dbs.commit()
    one = request.args.get("view") == "one"
    try:
        position = min(max(int(request.args.get("item", "1")), 1), max(len(items), 1))
    except ValueError:
        position = 1
    all_notes = notes + [n for i in items if i.placement for n in _placed(i.placement)]
    all_notes += [i.note for i in items if i.note]
    return render(
        "workspace/session.html",
        patient=patient,
        name=accounts.name_of(patient),
        items=items,
        one=one,
        position=position,
        shown=[items[position - 1]] if one and items else items,
        notes=notes,
        practices=current,
        treatment_session=workspace.current_integration(session=dbs, patient=patient),
        authors=_authors(all_notes),
        labels=entry_forms.KIND_LABELS,
        session_labels=course.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        today=datetime.now(viewer_zone()).date(),
        errors=errors or {},
        form=form or {},
        **measures_views.for_therapist(patient),
        status=status,
    )


def _placed(placement) -> list:
    found = [n for notes in placement.by_paragraph.values() for n in notes]
    return found + placement.changed


def _patient(patient_id: uuid.UUID) -> User:
    return policy.get_patient_for(session=db.session(), user=_me(), patient_id=patient_id)


@bp.get("/patients/<uuid:patient_id>/session")
@policy.allow("therapist")
def session_view(patient_id: uuid.UUID):
    return _session_page(_patient(patient_id))


@bp.post("/patients/<uuid:patient_id>/session/discussed")
@policy.allow("therapist")
def discussed(patient_id: uuid.UUID):
    dbs = db.session()
    patient = _patient(patient_id)
    try:
        item_id = uuid.UUID(form_text("id", 60))
    except ValueError:
        abort(404)
    done = _flag("discussed")
    entry = None
    if form_text("kind", 10) == "entry":
        entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=item_id, need="annotate")
        flag = workspace.flag_of(session=dbs, entry=entry, therapist=_me())
        if flag is None or entry.author_id != patient.id:
            abort(404)
        workspace.set_entry_discussed(session=dbs, flag=flag, by=_me(), discussed=done)
        item = workspace.AgendaItem(kind="entry", id=entry.id, discussed_at=flag.discussed_at)
    else:
        note = _get_note(item_id, "mark")
        if note.patient_id != patient.id:
            abort(404)
        annotations.set_discussed(session=dbs, note=note, by=_me(), discussed=done)
        item = workspace.AgendaItem(kind="note", id=note.id, discussed_at=note.discussed_at)
    dbs.commit()
    if not _in_place():
        return _back(url_for("workspace.session_view", patient_id=patient.id))
    item.entry = entry
    progress = workspace.agenda_progress(
        session=dbs, therapist=_me(), patient=patient, since=_today_start()
    )
    return render(
        "workspace/_agenda_item.html",
        block="discussed",
        item=item,
        patient=patient,
        back=_next_path(),
        progress=progress,
    )


@bp.post("/patients/<uuid:patient_id>/session/notes")
@policy.allow("therapist")
def session_note(patient_id: uuid.UUID):
    dbs = db.session()
    patient = _patient(patient_id)
    current = workspace.current_integration(session=dbs, patient=patient)
    try:
        annotations.create(
            session=dbs,
            patient=patient,
            author=_me(),
            note=form_text("note", 20_000),
            visibility=form_text("visibility", 20),
            treatment_session_id=current.id if current else None,
        )
    except ValidationError as exc:
        dbs.rollback()
        return _session_page(patient, errors=exc.errors, form=request.form, status=422)
    dbs.commit()
    return see_other("workspace.session_view", patient_id=patient.id, _anchor="notes")


@bp.post("/patients/<uuid:patient_id>/session/done")
@policy.allow("therapist")
def finish_session(patient_id: uuid.UUID):
    dbs = db.session()
    patient = _patient(patient_id)
    current = workspace.current_integration(session=dbs, patient=patient)
    if current is not None:
        course.set_status(session=dbs, treatment_session=current, status="done")
        dbs.commit()
    return see_other("patients.show", patient_id=patient.id)


# --- practices ------------------------------------------------------------------------------


@bp.post("/patients/<uuid:patient_id>/practices")
@policy.allow("therapist")
def add_practice(patient_id: uuid.UUID):
    dbs = db.session()
    patient = _patient(patient_id)
    current = workspace.current_integration(session=dbs, patient=patient)
    try:
        practices.create(
            session=dbs,
            patient=patient,
            therapist=_me(),
            body=practices.parse(request.form),
            treatment_session_id=current.id if current else None,
        )
    except ValidationError as exc:
        dbs.rollback()
        errors = {f"practice-{name}": message for name, message in exc.errors.items()}
        return _session_page(patient, errors=errors, form=request.form, status=422)
    dbs.commit()
    return see_other("workspace.session_view", patient_id=patient.id, _anchor="practices")


@bp.post("/practices/<uuid:practice_id>/end")
@policy.allow("therapist")
def end_practice(practice_id: uuid.UUID):
    dbs = db.session()
    practice = policy.get_practice_for(
        session=dbs, user=_me(), practice_id=practice_id, need="edit"
    )
    practices.end(session=dbs, practice=practice, by=_me())
    dbs.commit()
    return _back(url_for("patients.show", patient_id=practice.patient_id))


def _tickable_days(practice) -> list[date]:
    """The days the patient may tick this practice, in their zone, newest first."""
    return practices.tickable_days(
        datetime.now(viewer_zone()).date(), started=in_viewer_zone(practice.created_at).date()
    )


@bp.post("/practices/<uuid:practice_id>/tick")
@policy.allow("patient")
def tick(practice_id: uuid.UUID):
    dbs = db.session()
    practice = policy.get_practice_for(
        session=dbs, user=_me(), practice_id=practice_id, need="tick"
    )
    try:
        day = date.fromisoformat(form_text("day", 20))
    except ValueError:
        day = None
    tickable = _tickable_days(practice)
    if day in tickable and practice.ended_at is None:
        if _flag("done"):
            practices.tick(session=dbs, practice=practice, day=day)
        else:
            practices.untick(session=dbs, practice=practice, day=day)
        dbs.commit()
    if not _in_place():
        return _back(url_for("journal.timeline", _anchor=f"practice-{practice.id}"))
    days = practices.days_of(session=dbs, practice=practice)
    return render(
        "workspace/_practice.html",
        block="practice_ticks",
        p=practices.Opened(practice=practice, body=None, days=days),
        today=tickable[0],
        tick_days={practice.id: tickable},
    )


# --- leaving a care team --------------------------------------------------------------------


@bp.route("/patients/<uuid:patient_id>/leave", methods=["GET", "POST"])
@policy.allow("therapist")
def leave_patient(patient_id: uuid.UUID):
    dbs = db.session()
    patient = _patient(patient_id)
    if request.method == "GET":
        return render(
            "workspace/leave.html", patient=patient, name=accounts.name_of(patient), mine=False
        )
    care.remove_from_care_team(session=dbs, patient=patient, therapist=_me())
    dbs.commit()
    return see_other("home.index")


@bp.route("/care-team/<uuid:therapist_id>/remove", methods=["GET", "POST"])
@policy.allow("patient")
def remove_therapist(therapist_id: uuid.UUID):
    dbs = db.session()
    therapist = policy.get_care_team_therapist_for(
        session=dbs, user=_me(), therapist_id=therapist_id
    )
    if request.method == "GET":
        return render(
            "workspace/leave.html", therapist=therapist, name=accounts.name_of(therapist), mine=True
        )
    care.remove_from_care_team(
        session=dbs, patient=_me(), therapist=therapist, private_key=current_user.private_key()
    )
    dbs.commit()
    return see_other("journal.timeline")


# --- for the patient's own pages (views.journal) ---------------------------------------------


def patient_home(items) -> dict:
    """What the patient's home adds from their sessions: practices to tick, the session notes
    their therapist shared, and how many notes each entry has. Constant queries; the private
    key is unlocked only if there is something to open."""
    dbs = db.session()
    me = _me()
    today = datetime.now(viewer_zone()).date()
    found = practices.for_reader(
        session=dbs, patient=me, reader=me, private_key=current_user.private_key
    )
    notes = workspace.shared_session_notes(
        session=dbs, patient=me, private_key=current_user.private_key
    )
    return {
        "practices": found,
        "shared_notes": notes,
        "today": today,
        "tick_days": {p.id: _tickable_days(p.practice) for p in found},
        "authors": _authors(notes),
        "note_counts": annotations.counts_by_entry(
            session=dbs, entry_ids=[i.entry.id for i in items], reader_id=me.id
        ),
    }


def patient_entry_notes(entry, body: dict) -> dict:
    """The shared notes on the patient's own entry, placed beside their paragraphs (never a
    private note: the patient holds no key to those, and `open_all` filters them too)."""
    me = _me()
    if me.role != "patient" or entry.author_id != me.id:
        return {"notes": []}
    notes = annotations.for_entry(
        session=db.session(), entry=entry, reader=me, private_key=current_user.private_key
    )
    if not notes:
        return {"notes": []}
    paragraphs = annotations.paragraphs_of(entry.kind, body)
    return {
        "notes": notes,
        "paragraphs": paragraphs,
        "placement": annotations.place(notes, paragraphs),
        "authors": _authors(notes),
        "patient_name": current_user.name,
    }
