"""Leaving: deleting one's account (after the password and a typed confirmation), and a
patient deleting many of their entries at once (all of one session, or everything written
before a date). See services/deletion.py for what goes and what a backup still holds."""

from __future__ import annotations

import uuid
from datetime import datetime, time

from flask import Blueprint, request

from .. import db, policy, web
from ..i18n import gettext as _
from ..login import NOT_YOUR_PASSWORD, limit_password_checks, logged_out, password_ok
from ..services import accounts, care, course, deletion
from . import form_text, render, viewer_zone

bp = Blueprint("leaving", __name__)


# --- the account ---------------------------------------------------------------------------------


def _account_page(*, errors=None, status=200):
    dbs = db.session()
    me = web.me()
    sole = deletion.sole_patients_of(session=dbs, therapist=me) if me.role == "therapist" else []
    return render(
        "leaving/delete_account.html",
        sole=[(p, accounts.name_of(p)) for p in sole],
        phrase=deletion.phrase(),
        errors=errors or {},
        status=status,
    )


@bp.route("/account/delete", methods=["GET", "POST"])
@policy.allow(policy.AUTHENTICATED)
@limit_password_checks
def delete_account():
    """What deleting the account does, then (POST) doing it: the password, the typed words,
    and for a therapist who is some patient's only therapist, leaving their care team now."""
    if request.method == "GET":
        return _account_page()
    errors = {}
    if not deletion.confirmed(form_text("confirm", 100)):
        errors["confirm"] = _("Type “%(phrase)s” to confirm.", phrase=deletion.phrase())
    if not password_ok(form_text("password", 1000)):
        errors["password"] = NOT_YOUR_PASSWORD
    dbs = db.session()
    me = web.me()
    sole = deletion.sole_patients_of(session=dbs, therapist=me) if me.role == "therapist" else []
    if sole and request.form.get("leave_patients") != "1":
        errors["leave_patients"] = _(
            "Tick this to leave their care team; they see it in their log."
        )
    if errors:
        dbs.rollback()
        return _account_page(errors=errors, status=422)
    for patient in sole:
        care.remove_from_care_team(session=dbs, patient=patient, therapist=me)
    role = me.role
    deletion.delete_account(session=dbs, user=me)  # with it, every device session of theirs
    dbs.commit()
    return logged_out(render("leaving/goodbye.html", role=role))


# --- many entries at once ------------------------------------------------------------------------


def _choice():
    """The session (one of the patient's own) or the day named in the form, or errors."""
    dbs = db.session()
    errors = {}
    chosen_session, before = None, None
    value = form_text("session_id", 60)
    day = form_text("before", 20)
    if value:
        try:
            session_id = uuid.UUID(value)
        except ValueError:
            session_id = None
        found = policy.get_treatment_session_for(
            session=dbs, user=web.me(), session_id=session_id or uuid.uuid4()
        )
        chosen_session = found
    elif day:
        try:
            local_day = datetime.strptime(day, "%Y-%m-%d").date()
            before = datetime.combine(local_day, time(), tzinfo=viewer_zone())
        except ValueError:
            errors["before"] = _("Enter a date like 2026-11-30.")
    else:
        errors["session_id"] = _("Choose a session, or a date.")
    return chosen_session, before, errors


@bp.route("/entries/delete-many", methods=["GET", "POST"])
@policy.allow("patient")
def delete_many():
    """Choose (a session, or a date), then see how many entries that is, then confirm."""
    dbs = db.session()
    me = web.me()
    context = {
        "sessions": course.sessions_of(session=dbs, patient=me),
        "session_labels": course.KIND_LABELS,
    }
    if request.method == "GET":
        return render("leaving/delete_many.html", form={}, errors={}, count=None, **context)
    chosen, before, errors = _choice()
    if errors:
        return render(
            "leaving/delete_many.html",
            form=request.form,
            errors=errors,
            count=None,
            status=422,
            **context,
        )
    query = deletion.entries_to_delete(
        session=dbs, patient=me, session_id=chosen.id if chosen else None, before=before
    )
    if request.form.get("confirm") != "1":
        count = len(dbs.exec(query).all())
        return render(
            "leaving/delete_many.html",
            form=request.form,
            errors={},
            count=count,
            chosen=chosen,
            before=before,
            **context,
        )
    deleted = deletion.delete_entries(session=dbs, patient=me, query=query)
    dbs.commit()
    return render("leaving/deleted.html", deleted=deleted)
