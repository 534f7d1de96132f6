"""Invitations: a therapist's invitations for new patients; registering from an invitation link
(a therapist's, or a patient's for a supporter: views/support.py), confirming the address it
gave, and the invitations offered to an account that already had that address."""

from __future__ import annotations

import uuid

import segno
from flask import Blueprint, current_app, redirect, request, url_for
from flask_login import current_user

from .. import db, joining, policy, web
from .. import login as auth_views
from ..extensions import limiter
from ..i18n import gettext as _
from ..models import Invitation, User
from ..services import accounts, care, mail, support
from ..services.accounts import ValidationError
from . import form_text, render, see_other

bp = Blueprint("care", __name__)

# --- a therapist's invitations -----------------------------------------------------------------


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
    link = web.absolute_url(url_for("care.register", token=issued.token))
    emailed = None
    if email and mail.enabled():  # in the therapist's language: the invitee has no account yet
        emailed = mail.send(
            to=email,
            subject=_("%(name)s invites you to your therapy journal", name=current_user.name),
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


def _invitation_email(link: str) -> str:
    days = current_app.config["INVITATION_DAYS"]
    paragraphs = [
        _("Hello,"),
        _(
            "%(name)s has invited you to keep your therapy journal in %(clinic)s.",
            name=current_user.name,
            clinic=current_app.config["CLINIC_NAME"],
        ),
        _("Open this link to create your account (it works once and expires in 1 day):")
        if days == 1
        else _(
            "Open this link to create your account (it works once and expires in %(num)d days):",
            num=days,
        ),
        link,
        _("If you were not expecting this, you can ignore this email."),
    ]
    return "\n\n".join(paragraphs) + "\n"


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


# --- registering from a therapist's link -------------------------------------------------------


@bp.route("/invite/<token>", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limiter.limit(auth_views.login_limits, methods=["POST"])
def register(token: str):
    dbs = db.session()
    try:
        invitation = care.find_usable(session=dbs, token=token, kind="patient")
    except care.InvitationError as exc:
        return joining.invalid_link(exc.problem, "patient")
    therapist_name = accounts.name_of(dbs.get(User, invitation.inviter_id))
    if current_user.is_authenticated:
        return _accept_as_logged_in(invitation, therapist_name)
    context = {"token": token, "therapist_name": therapist_name}
    if request.method == "GET":
        return render("auth/register.html", form={}, errors={}, **context)
    return joining.register_from_link(invitation, "auth/register.html", context)


def _accept_as_logged_in(invitation: Invitation, therapist_name: str):
    """A patient who already has an account joins another therapist's care team."""
    if current_user.role != "patient":
        return render("auth/invitation_wrong_account.html", status=409)
    if request.method == "GET":
        return render("auth/invitation_accept.html", therapist_name=therapist_name)
    try:
        joining.accept_invitation(invitation, current_user.user)
    except care.InvitationError as exc:  # another request used the link first
        db.session().rollback()
        return joining.invalid_link(exc.problem, "patient")
    db.session().commit()
    return see_other("home.index")


# --- confirming a new account's address --------------------------------------------------------


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limiter.limit(auth_views.login_limits, methods=["POST"])
def confirm(token: str):
    """The emailed link. Opening it shows a button (a mail scanner that follows links confirms
    nothing); pressing it, once, lets the account log in and joins what it registered from."""
    dbs = db.session()
    if request.method == "GET":
        try:
            care.find_usable(session=dbs, token=token, kind=accounts.CONFIRM_KIND)
        except care.InvitationError as exc:
            return joining.invalid_link(exc.problem, accounts.CONFIRM_KIND)
        return render("auth/confirm.html", problem=None, token=token)
    try:
        user, joined = care.confirm_address(session=dbs, token=token)
        for invitation in joined:
            joining.accept_invitation(invitation, user)
    except care.InvitationError as exc:
        dbs.rollback()
        return joining.invalid_link(exc.problem, accounts.CONFIRM_KIND)
    dbs.commit()
    return redirect(url_for("auth.login", confirmed="1"), code=303)


# --- invitations offered to an existing account ------------------------------------------------


@bp.get("/invitations/for-you")
@policy.allow(policy.AUTHENTICATED)
def offers():
    """Shown after login when someone used an invitation with this account's address."""
    dbs = db.session()
    found = care.offers_for(session=dbs, user=current_user.user)
    names = accounts.names_of(session=dbs, user_ids={inv.inviter_id for _, inv in found})
    return render(
        "care/offers.html",
        items=[(offer, inv, names.get(inv.inviter_id, "")) for offer, inv in found],
        later=auth_views.safe_next(request.args.get("next", "")[:500]),
    )


@bp.post("/invitations/for-you/<uuid:offer_id>")
@policy.allow(policy.AUTHENTICATED)
def decide_offer(offer_id: uuid.UUID):
    """Accept or decline an offered invitation, once (a second press changes nothing)."""
    dbs = db.session()
    me = current_user.user
    offer = policy.get_invitation_for(
        session=dbs, user=me, invitation_id=offer_id, kind=care.OFFER_KIND
    )
    accept = request.form.get("decision") == "accept"
    invitation = care.take_offer(session=dbs, offer=offer, user=me, accept=accept)
    if invitation is None:  # decided already, in another tab or request
        dbs.rollback()
        return see_other("care.offers")
    if accept:
        joining.accept_invitation(invitation, me)
    dbs.commit()
    if care.offers_for(session=dbs, user=me):
        return see_other("care.offers")
    if accept and invitation.kind == support.KIND:
        return see_other("support.patient", patient_id=invitation.inviter_id)
    return see_other("home.index")
