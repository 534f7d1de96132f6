"""A therapist's view of one patient: their course of treatment and what they shared."""

from __future__ import annotations

import uuid

from flask import Blueprint, request
from flask_login import current_user
from sqlmodel import col

from .. import db, policy
from ..models import Annotation
from ..services import accounts, annotations, audit, course, entry_forms, practices, workspace
from ..services.accounts import ValidationError
from . import form_text, render, see_other, timeline_for, viewer_zone
from . import measures as measures_views

bp = Blueprint("patients", __name__, url_prefix="/patients")


def _kinds() -> list[str]:
    return [k for k in request.args.getlist("kind") if k in entry_forms.KIND_LABELS]


def _page(patient, *, errors=None, form=None, status=200):
    dbs = db.session()
    kinds = _kinds()
    groups, items = timeline_for(patient, kinds or None)
    for item in items:  # what a therapist reads is in the patient's access log
        audit.record(
            session=dbs,
            actor_id=current_user.id,
            action="read",
            patient_id=patient.id,
            entry_id=item.entry.id,
        )
    me = current_user.user
    current = practices.for_reader(
        session=dbs, patient=patient, reader=me, private_key=current_user.private_key
    )
    if current:
        audit.record(session=dbs, actor_id=me.id, action="read_notes", patient_id=patient.id)
    dbs.commit()
    flags = workspace.entry_flags(session=dbs, therapist_id=me.id, patient_ids=[patient.id])
    return render(
        "patients/show.html",
        patient=patient,
        name=accounts.name_of(patient),
        groups=groups,
        count=len(items),
        note_counts=annotations.counts_by_entry(
            session=dbs, entry_ids=[i.entry.id for i in items], reader_id=me.id
        ),
        flagged={f.entry_id for f in flags},
        practices=current,
        labels=entry_forms.KIND_LABELS,
        session_labels=course.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        kinds=kinds,
        **measures_views.for_therapist(patient),
        errors=errors or {},
        form=form or {},
        status=status,
    )


@bp.get("/<uuid:patient_id>")
@policy.allow("therapist")
def show(patient_id: uuid.UUID):
    patient = policy.get_patient_for(
        session=db.session(), user=current_user.user, patient_id=patient_id
    )
    return _page(patient)


@bp.post("/<uuid:patient_id>/sessions")
@policy.allow("therapist")
def schedule(patient_id: uuid.UUID):
    dbs = db.session()
    patient = policy.get_patient_for(session=dbs, user=current_user.user, patient_id=patient_id)
    try:
        course.schedule(
            session=dbs,
            patient=patient,
            created_by=current_user.user,
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
    """Every shared entry in full, with the notes beside it, laid out for paper."""
    dbs = db.session()
    me = current_user.user
    patient = policy.get_patient_for(session=dbs, user=me, patient_id=patient_id)
    kinds = _kinds()
    groups, items = timeline_for(patient, kinds or None)
    query = annotations.readable(me.id).where(
        col(Annotation.entry_id).in_([item.entry.id for item in items])
    )
    notes = annotations.open_all(
        session=dbs, query=query, reader=me, private_key=current_user.private_key
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
        audit.record(
            session=dbs,
            actor_id=me.id,
            action="read",
            patient_id=patient.id,
            entry_id=item.entry.id,
        )
    audit.record(session=dbs, actor_id=me.id, action="export", patient_id=patient.id)
    dbs.commit()
    return render(
        "patients/print.html",
        patient=patient,
        name=accounts.name_of(patient),
        groups=groups,
        laid_out=laid_out,
        authors=accounts.names_of(session=dbs, user_ids={n.annotation.author_id for n in notes}),
        labels=entry_forms.KIND_LABELS,
        session_labels=course.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        kinds=kinds,
    )
