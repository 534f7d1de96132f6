"""The first page after login, by role: a therapist's caseload (a page at a time, safety flags
first), a patient's journal, a supporter's list of the people they support."""

from __future__ import annotations

from flask import Blueprint, request

from .. import db, pages, policy, web
from ..services import (
    care,
    course,
    entry_forms,
    instruments,
    session_day,
    support,
    workspace,
)
from ..services import timeline as course_pages
from . import render

bp = Blueprint("home", __name__)


@bp.get("/home")
@policy.allow(policy.AUTHENTICATED)
def index():
    dbs = db.session()
    user = web.me()
    if user.role == "patient":
        return pages.journal_home()  # a patient's home is their journal
    if user.role == "therapist":
        before = course_pages.Cursor.parse(request.args.get("before"))
        rows, earlier = workspace.caseload(
            session=dbs, therapist=user, private_key=web.reader().private_key, before=before
        )
        dbs.commit()  # routine safety checks were marked seen
        return render(
            "home/therapist.html",
            block="page" if before is not None else None,
            caseload=rows,
            earlier=earlier,
            labels=entry_forms.KIND_LABELS | instruments.LABELS,
            session_labels=course.KIND_LABELS,
            pending=len(care.pending_invitations(session=dbs, inviter=user)),
            checklists=session_day.done_for(session=dbs, patient_ids=[r.patient.id for r in rows]),
        )
    people = support.names(support.patients_of(session=dbs, supporter=user))
    return render("home/support.html", people=people, **pages.supporter_days(user))


@bp.get("/more")
@policy.allow(policy.AUTHENTICATED)
def more():
    """On a phone, what does not fit in the tab bar: the rest of the app, and logging out."""
    return render("home/more.html")
