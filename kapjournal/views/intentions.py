"""Intentions over time: each session's intention beside the reflections that followed it, for
the patient (their own) and for a therapist on their care team (only what the patient shared
with them; each entry shown is a read in the patient's access log). Printable, a page of entries
at a time."""

from __future__ import annotations

import uuid

from flask import Blueprint, request, url_for

from .. import db, policy, web
from ..i18n import gettext as _
from ..models import User
from ..services import accounts, course, entry_forms, intentions
from ..services import timeline as course_pages
from . import render

bp = Blueprint("intentions", __name__)


def _page(patient: User, *, own: bool, here: str):
    before = course_pages.Cursor.parse(request.args.get("before"))
    found = intentions.page(
        session=db.session(), reader=web.reader(), patient=patient, before=before
    )
    return render(
        "intentions/over_time.html",
        block="page" if before is not None else None,
        page=found,
        own=own,
        patient=patient,
        name=accounts.name_of(patient),
        here=here,
        session_labels=course.KIND_LABELS,
        intention_fields=entry_forms.INTENTION_FIELDS[1:],
        statuses={"done": _("done"), "cancelled": _("cancelled")},  # a session's, when not planned
    )


@bp.get("/journal/intentions")
@policy.allow("patient")
def mine():
    """The patient's own intentions and reflections, session by session."""
    return _page(web.me(), own=True, here=url_for("intentions.mine"))


@bp.get("/patients/<uuid:patient_id>/intentions")
@policy.allow("therapist")
def of_patient(patient_id: uuid.UUID):
    """What the patient shared with this therapist of their intentions and reflections."""
    patient = policy.get_patient_for(session=db.session(), user=web.me(), patient_id=patient_id)
    here = url_for("intentions.of_patient", patient_id=patient.id)
    return _page(patient, own=False, here=here)
