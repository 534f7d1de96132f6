"""The therapist's notes on shared entries and "bring to session" flags, leaving a care team,
and the patient's side of it (replying to a shared note, taking a therapist off their care
team). The integration session itself is views/integration.py."""

from __future__ import annotations

import uuid

from flask import Blueprint, redirect, request, url_for

from .. import db, pages, policy, web
from ..i18n import gettext as _
from ..models import Annotation, User
from ..services import accounts, annotations, care, entry_forms, journal, reading, workspace
from ..services.accounts import ValidationError
from . import back_to, form_text, in_place, next_path, render, see_other, ticked

bp = Blueprint("workspace", __name__)


def _me() -> User:
    return web.me()


# --- notes on an entry (therapist) -----------------------------------------------------------


def _notes_page(entry, wrapped=None, *, errors=None, form=None, open_p=None, status=200):
    """The therapist's reading page of a shared entry: its paragraphs with the notes beside
    them (reading it is in the patient's access log, once a day)."""
    dbs = db.session()
    reader = web.reader()
    body = pages.entry_body(reader, entry, wrapped)
    paragraphs = annotations.paragraphs_of(entry.kind, body)
    notes = annotations.for_entry(
        session=dbs, entry=entry, reader=_me(), private_key=reader.private_key
    )
    dbs.commit()  # an old note's quote may have moved under the entry's key
    patient = dbs.get(User, entry.author_id)
    return render(
        "workspace/notes.html",
        entry=entry,
        body=body,
        paragraphs=paragraphs,
        placement=annotations.place(notes, paragraphs),
        patient=patient,
        patient_name=accounts.name_of(patient),
        authors=pages.authors_of(notes),
        flag=workspace.flag_of(session=dbs, entry=entry, therapist=_me()),
        labels=entry_forms.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        mode="therapist",
        errors=errors or {},
        form=form or {},
        open_p=open_p,
        status=status,
    )


@bp.get("/entries/<uuid:entry_id>/notes")
@policy.allow("therapist")
def notes_page(entry_id: uuid.UUID):
    entry, wrapped = policy.get_entry_to_read_for(
        session=db.session(), user=_me(), entry_id=entry_id, need="annotate"
    )
    return _notes_page(entry, wrapped)


@bp.post("/entries/<uuid:entry_id>/notes")
@policy.allow("therapist")
def annotate(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="annotate")
    reader = web.reader()
    try:  # to find the passage the note is about: nothing of it is shown by this answer
        body = reading.open_entry(session=dbs, reader=reader, entry=entry, shown=False)
    except journal.EntryUnreadable:
        return _notes_page(entry)  # the 500 page, as for reading it
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
                    "note": _(
                        "The patient changed this passage while you wrote. Your note is kept "
                        "here: copy it to the passage it belongs to."
                    )
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
            bring_to_session=ticked("bring_to_session"),
            private_key=reader.private_key,
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
    flagged = ticked("flagged")
    workspace.set_entry_flag(session=dbs, entry=entry, therapist=_me(), flagged=flagged)
    dbs.commit()
    if in_place():
        return render(
            "workspace/_entry_flag.html",
            block="entry_flag",
            entry_id=entry.id,
            flagged=flagged,
            place="page" if form_text("place", 10) == "page" else "card",
            next=form_text("next", 500),
        )
    return back_to(url_for("workspace.notes_page", entry_id=entry.id))


# --- one note ---------------------------------------------------------------------------------


def _note_home(note: Annotation) -> str:
    if note.entry_id is not None:
        return url_for("workspace.notes_page", entry_id=note.entry_id, _anchor=f"n-{note.id}")
    return url_for("integration.session_view", patient_id=note.patient_id, _anchor="notes")


def _get_note(note_id: uuid.UUID, need: str) -> Annotation:
    return policy.get_annotation_for(
        session=db.session(), user=_me(), annotation_id=note_id, need=need
    )


@bp.route("/notes/<uuid:note_id>/edit", methods=["GET", "POST"])
@policy.allow("therapist")
def edit_note(note_id: uuid.UUID):
    dbs = db.session()
    note = _get_note(note_id, "edit")
    private_key = web.reader().private_key
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
    annotations.set_resolved(session=db.session(), note=note, by=_me(), resolved=ticked("resolved"))
    db.session().commit()
    return _note_controls(note) if in_place() else back_to(_note_home(note))


@bp.post("/notes/<uuid:note_id>/flag")
@policy.allow("therapist")
def flag_note(note_id: uuid.UUID):
    note = _get_note(note_id, "mark")
    annotations.set_flag(session=db.session(), note=note, by=_me(), flagged=ticked("flagged"))
    db.session().commit()
    return _note_controls(note) if in_place() else back_to(_note_home(note))


def _note_controls(note: Annotation):
    """A note's badges and buttons, for htmx: the note itself is not opened again."""
    return render(
        "workspace/_note.html",
        block="note_controls",
        note=annotations.Note(annotation=note, note=None),
        mode="session" if form_text("mode", 10) == "session" else "therapist",
        back=next_path(),
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
    private_key = web.reader().private_key
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


# --- leaving a care team --------------------------------------------------------------------


@bp.route("/patients/<uuid:patient_id>/leave", methods=["GET", "POST"])
@policy.allow("therapist")
def leave_patient(patient_id: uuid.UUID):
    dbs = db.session()
    patient = policy.get_patient_for(session=dbs, user=_me(), patient_id=patient_id)
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
        session=dbs, patient=_me(), therapist=therapist, private_key=web.reader().private_key
    )
    dbs.commit()
    return see_other("journal.timeline")
