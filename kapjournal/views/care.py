"""A therapist's invitations for new patients."""

from __future__ import annotations

import uuid

import segno
from flask import Blueprint, current_app, request, url_for
from flask_login import current_user

from .. import db, policy
from ..services import accounts, care, mail
from ..services.accounts import ValidationError
from . import form_text, render, see_other

bp = Blueprint("care", __name__)


def _invitations_page(*, form=None, errors=None, status=200):
    dbs = db.session()
    pending = care.pending_invitations(session=dbs, inviter=current_user.user)
    return render(
        "care/invitations.html",
        pending=[(inv, care.label_of(inv)) for inv in pending],
        form=form or {},
        errors=errors or {},
        smtp=mail.enabled(),
        status=status,
    )


@bp.get("/invitations")
@policy.allow("therapist")
def invitations():
    return _invitations_page()


@bp.post("/invitations")
@policy.allow("therapist")
def create_invitation():
    dbs = db.session()
    email = form_text("email", 300).strip()
    try:
        if email and accounts.email_problem(email):
            raise ValidationError({"email": accounts.email_problem(email)})
        issued = care.create_invitation(
            session=dbs, inviter=current_user.user, kind="patient", label=form_text("label", 200)
        )
    except ValidationError as exc:
        dbs.rollback()
        return _invitations_page(form=request.form, errors=exc.errors, status=422)
    dbs.commit()
    link = absolute_url(url_for("auth.register", token=issued.token))
    emailed = None
    if email and mail.enabled():
        emailed = mail.send(
            to=email,
            subject=f"{current_user.name} invites you to your therapy journal",
            body=_invitation_email(link),
        )
    qr = segno.make(link, error="m").svg_data_uri(scale=5, border=2)
    response = render(
        "care/invitation_created.html",
        invitation=issued.invitation,
        link=link,
        qr=qr,
        emailed=emailed,
        label=care.label_of(issued.invitation),
        status=201,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def absolute_url(path: str) -> str:
    base = current_app.config.get("BASE_URL") or request.url_root
    return base.rstrip("/") + path


def _invitation_email(link: str) -> str:
    days = current_app.config["INVITATION_DAYS"]
    return (
        f"Hello,\n\n{current_user.name} has invited you to keep your therapy journal in "
        f"{current_app.config['CLINIC_NAME']}.\n\nOpen this link to create your account "
        f"(it works once and expires in {days} days):\n\n{link}\n\n"
        "If you were not expecting this, you can ignore this email.\n"
    )


@bp.post("/invitations/<uuid:invitation_id>/cancel")
@policy.allow("therapist")
def cancel_invitation(invitation_id: uuid.UUID):
    dbs = db.session()
    invitation = policy.get_invitation_for(
        session=dbs, user=current_user.user, invitation_id=invitation_id
    )
    care.cancel_invitation(session=dbs, invitation=invitation)
    dbs.commit()
    return see_other("care.invitations")
