"""The first page after login, by role."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from .. import db, policy
from ..services import accounts, care
from . import journal, render

bp = Blueprint("home", __name__)


@bp.get("/home")
@policy.allow(policy.AUTHENTICATED)
def index():
    dbs = db.session()
    user = current_user.user
    if user.role == "therapist":
        patients = care.patients_of(session=dbs, therapist=user)
        return render(
            "home/therapist.html",
            patients=[(p, accounts.name_of(p)) for p in patients],
            pending=len(care.pending_invitations(session=dbs, inviter=user)),
        )
    if user.role == "patient":
        return journal.timeline()  # a patient's home is their journal
    return render("home/support.html")
