"""A therapist's view of one patient: their course of treatment and what they shared."""

from __future__ import annotations

import uuid

from flask import Blueprint, request
from flask_login import current_user

from .. import db, policy
from ..services import accounts, audit, course, entry_forms
from ..services.accounts import ValidationError
from . import form_text, render, see_other, timeline_for, viewer_zone

bp = Blueprint("patients", __name__, url_prefix="/patients")


def _page(patient, *, errors=None, form=None, status=200):
    dbs = db.session()
    kinds = [k for k in request.args.getlist("kind") if k in entry_forms.KIND_LABELS]
    groups, items = timeline_for(patient, kinds or None)
    for item in items:  # what a therapist reads is in the patient's access log
        audit.record(
            session=dbs,
            actor_id=current_user.id,
            action="read",
            patient_id=patient.id,
            entry_id=item.entry.id,
        )
    dbs.commit()
    return render(
        "patients/show.html",
        patient=patient,
        name=accounts.name_of(patient),
        groups=groups,
        count=len(items),
        labels=entry_forms.KIND_LABELS,
        session_labels=course.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        kinds=kinds,
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
