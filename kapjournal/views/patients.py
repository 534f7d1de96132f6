"""A therapist's view of one patient: their course of treatment and what they shared (a page at
a time), their questionnaires, a printable copy, and scheduling sessions."""

from __future__ import annotations

import uuid

from flask import Blueprint, request
from sqlmodel import col

from .. import db, pages, policy, web
from ..models import Annotation
from ..services import accounts, annotations, course, entry_forms, session_day, workspace
from ..services import timeline as course_pages
from ..services.accounts import ValidationError
from . import form_text, render, see_other, viewer_zone

bp = Blueprint("patients", __name__, url_prefix="/patients")


def _kinds() -> list[str]:
    return [k for k in request.args.getlist("kind") if k in entry_forms.KIND_LABELS]


def _patient(patient_id: uuid.UUID):
    return policy.get_patient_for(session=db.session(), user=web.me(), patient_id=patient_id)


def _page(patient, *, errors=None, form=None, status=200):
    dbs = db.session()
    reader = web.reader()
    before = course_pages.Cursor.parse(request.args.get("before"))
    context = pages.course(reader, patient, before=before, kinds=_kinds() or None)
    first = before is None
    safety_flags = pages.safety_flags(web.me(), reader, patient) if first else []
    shared = (
        workspace.shared_since(session=dbs, therapist=web.me(), patient_ids=[patient.id])
        if first
        else {}
    )
    current = pages.practices_of(reader, patient) if first else []
    dbs.commit()  # routine safety checks were marked seen
    return render(
        "patients/show.html",
        block="page" if before is not None else None,
        patient=patient,
        name=accounts.name_of(patient),
        flagged=context["page"].flagged,
        practices=current,
        kinds=_kinds(),
        safety_flags=safety_flags,
        shared=shared.get(patient.id),
        checklist=session_day.done_of(session=dbs, sessions=context["page"].sessions.values())
        if first
        else None,
        errors=errors or {},
        form=form or {},
        status=status,
        **context,
    )


@bp.get("/<uuid:patient_id>")
@policy.allow("therapist")
def show(patient_id: uuid.UUID):
    return _page(_patient(patient_id))


@bp.get("/<uuid:patient_id>/progress")
@policy.allow("therapist")
def progress(patient_id: uuid.UUID):
    """The patient's questionnaire results: charts and tables, and open safety flags."""
    patient = _patient(patient_id)
    reader = web.reader()
    safety_flags = pages.safety_flags(web.me(), reader, patient)
    db.session().commit()
    before = course_pages.Cursor.parse(request.args.get("before"))
    return render(
        "patients/progress.html",
        patient=patient,
        name=accounts.name_of(patient),
        safety_flags=safety_flags,
        **pages.trends(reader, patient, scale=request.args.get("scale"), before=before),
    )


@bp.post("/<uuid:patient_id>/sessions")
@policy.allow("therapist")
def schedule(patient_id: uuid.UUID):
    dbs = db.session()
    patient = _patient(patient_id)
    try:
        course.schedule(
            session=dbs,
            patient=patient,
            created_by=web.me(),
            kind=form_text("kind", 20),
            when=form_text("scheduled_at", 40),
            zone=viewer_zone(),
        )
    except ValidationError as exc:
        dbs.rollback()
        return _page(patient, errors=exc.errors, form=request.form, status=422)
    dbs.commit()
    return see_other("patients.show", patient_id=patient.id)


@bp.get("/<uuid:patient_id>/print")
@policy.allow("therapist")
def print_view(patient_id: uuid.UUID):
    """What the patient shared, in full, with the notes beside it, laid out for paper: a page of
    entries at a time (the newest, or those before `before`)."""
    dbs = db.session()
    me = web.me()
    reader = web.reader()
    patient = _patient(patient_id)
    before = course_pages.Cursor.parse(request.args.get("before"))
    context = pages.course(reader, patient, before=before, kinds=_kinds() or None)
    items = context["page"].items
    query = annotations.readable(me.id).where(
        col(Annotation.entry_id).in_([item.entry.id for item in items])
    )
    notes = annotations.open_all(
        session=dbs, query=query, reader=me, private_key=reader.private_key
    )
    by_entry: dict = {}
    for note in notes:
        by_entry.setdefault(note.annotation.entry_id, []).append(note)
    laid_out = {}
    for item in items:
        if item.body is not None:
            paragraphs = annotations.paragraphs_of(item.entry.kind, item.body)
            placement = annotations.place(by_entry.get(item.entry.id, []), paragraphs)
            laid_out[item.entry.id] = (paragraphs, placement)
    workspace.record_printout(session=dbs, therapist=me, patient=patient)
    dbs.commit()
    return render(
        "patients/print.html",
        patient=patient,
        name=accounts.name_of(patient),
        laid_out=laid_out,
        authors=pages.authors_of(notes),
        kinds=_kinds(),
        **context,
    )
