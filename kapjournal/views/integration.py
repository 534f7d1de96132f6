"""The integration session, for the therapist: the agenda of what they flagged (all at once or
one at a time), notes taken in the session, practices recorded with the patient; and the
patient ticking a practice on their home screen. Components (talked through, a tick) answer
htmx with their own block and record only themselves."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from flask import Blueprint, abort, request, url_for

from .. import db, pages, policy, web
from ..models import User
from ..services import accounts, annotations, course, entry_forms, practices, workspace
from ..services.accounts import ValidationError
from . import back_to, form_text, in_place, next_path, render, see_other, ticked, viewer_zone

bp = Blueprint("integration", __name__)


def _me() -> User:
    return web.me()


def _today_start() -> datetime:
    """Midnight today in the viewer's zone: items talked through since then stay on the
    agenda, ticked."""
    return datetime.combine(datetime.now(viewer_zone()).date(), time(), tzinfo=viewer_zone())


# --- the session view ----------------------------------------------------------------


def _session_page(patient, *, errors=None, form=None, status=200):
    dbs = db.session()
    reader = web.reader()
    since = _today_start()
    items = workspace.agenda(session=dbs, reader=reader, patient=patient, since=since)
    notes = workspace.session_notes(
        session=dbs, therapist=_me(), patient=patient, private_key=reader.private_key, since=since
    )
    current = practices.for_reader(
        session=dbs, patient=patient, reader=_me(), private_key=reader.private_key
    )
    if notes or current or any(i.kind == "note" for i in items):
        reader.saw_notes(patient.id)
    safety_flags = pages.safety_flags(_me(), reader, patient)
    dbs.commit()  # routine safety checks were marked seen
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
        authors=pages.authors_of(all_notes),
        labels=entry_forms.KIND_LABELS,
        session_labels=course.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        today=datetime.now(viewer_zone()).date(),
        errors=errors or {},
        form=form or {},
        safety_flags=safety_flags,
        **pages.trends(reader, patient),
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
    done = ticked("discussed")
    entry = None
    if form_text("kind", 10) == "entry":
        entry, flag = policy.get_agenda_entry_for(
            session=dbs, user=_me(), patient=patient, entry_id=item_id
        )
        workspace.set_entry_discussed(session=dbs, flag=flag, by=_me(), discussed=done)
        item = workspace.AgendaItem(kind="entry", id=entry.id, discussed_at=flag.discussed_at)
    else:
        note = policy.get_agenda_note_for(session=dbs, user=_me(), patient=patient, note_id=item_id)
        annotations.set_discussed(session=dbs, note=note, by=_me(), discussed=done)
        item = workspace.AgendaItem(kind="note", id=note.id, discussed_at=note.discussed_at)
    dbs.commit()
    if not in_place():
        return back_to(url_for("integration.session_view", patient_id=patient.id))
    item.entry = entry
    progress = workspace.agenda_progress(
        session=dbs, therapist=_me(), patient=patient, since=_today_start()
    )
    return render(
        "workspace/_agenda_item.html",
        block="discussed",
        item=item,
        patient=patient,
        back=next_path(),
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
    return see_other("integration.session_view", patient_id=patient.id, _anchor="notes")


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
    return see_other("integration.session_view", patient_id=patient.id, _anchor="practices")


@bp.post("/practices/<uuid:practice_id>/end")
@policy.allow("therapist")
def end_practice(practice_id: uuid.UUID):
    dbs = db.session()
    practice = policy.get_practice_for(
        session=dbs, user=_me(), practice_id=practice_id, need="edit"
    )
    practices.end(session=dbs, practice=practice, by=_me())
    dbs.commit()
    return back_to(url_for("patients.show", patient_id=practice.patient_id))


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
    tickable = pages.tickable_days(practice)
    if day in tickable and practice.ended_at is None:
        if ticked("done"):
            practices.tick(session=dbs, practice=practice, day=day)
        else:
            practices.untick(session=dbs, practice=practice, day=day)
        dbs.commit()
    if not in_place():
        return back_to(url_for("journal.timeline", _anchor=f"practice-{practice.id}"))
    days = practices.days_of(session=dbs, practice=practice)
    return render(
        "workspace/_practice.html",
        block="practice_ticks",
        p=practices.Opened(practice=practice, body=None, days=days),
        today=tickable[0],
        tick_days={practice.id: tickable},
    )
