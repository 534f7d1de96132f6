"""The first page after login, by role."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from .. import db, policy
from ..services import care, course, entry_forms, instruments, support, workspace
from . import journal, render

bp = Blueprint("home", __name__)


@bp.get("/home")
@policy.allow(policy.AUTHENTICATED)
def index():
    dbs = db.session()
    user = current_user.user
    if user.role == "therapist":
        rows = workspace.caseload(session=dbs, therapist=user, private_key=current_user.private_key)
        dbs.commit()  # routine safety checks were marked seen
        return render(
            "home/therapist.html",
            caseload=rows,
            labels=entry_forms.KIND_LABELS | instruments.LABELS,
            session_labels=course.KIND_LABELS,
            pending=len(care.pending_invitations(session=dbs, inviter=user)),
        )
    if user.role == "patient":
        return journal.timeline()  # a patient's home is their journal
    people = support.names(support.patients_of(session=dbs, supporter=user))
    return render("home/support.html", people=people)
