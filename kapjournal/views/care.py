"""Invitations: a therapist's invitations for new patients; registering from an invitation link
(a therapist's, or a patient's for a supporter: views/support.py), confirming the address it
gave, and the invitations offered to an account that already had that address."""

from __future__ import annotations

import uuid

import segno
from flask import Blueprint, current_app, redirect, request, url_for
from flask_login import current_user

from .. import db, policy
from ..extensions import limiter
from ..models import Invitation, User
from ..services import accounts, care, mail, support
from ..services.accounts import ValidationError
from . import auth as auth_views
from . import form_text, render, see_other

bp = Blueprint("care", __name__)

# The calm page for a link that cannot be used, by kind of link.
_INVALID_PAGES = {
    "patient": "auth/invitation_invalid.html",
    support.KIND: "support/invitation_invalid.html",
    accounts.CONFIRM_KIND: "auth/confirm.html",
}


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
    link = absolute_url(url_for("care.register", token=issued.token))
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
    """`path` on KAPJOURNAL_BASE_URL (required in production: never the request's Host)."""
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


# --- registering from a therapist's link -------------------------------------------------------


@bp.route("/invite/<token>", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limiter.limit(auth_views.login_limits, methods=["POST"])
def register(token: str):
    dbs = db.session()
    try:
        invitation = care.find_usable(session=dbs, token=token, kind="patient")
    except care.InvitationError as exc:
        return invalid_link(exc.problem, "patient")
    therapist_name = accounts.name_of(dbs.get(User, invitation.inviter_id))
    if current_user.is_authenticated:
        return _accept_as_logged_in(invitation, therapist_name)
    context = {"token": token, "therapist_name": therapist_name}
    if request.method == "GET":
        return render("auth/register.html", form={}, errors={}, **context)
    return register_from_link(invitation, "auth/register.html", context)


def _accept_as_logged_in(invitation: Invitation, therapist_name: str):
    """A patient who already has an account joins another therapist's care team."""
    if current_user.role != "patient":
        return render("auth/invitation_wrong_account.html", status=409)
    if request.method == "GET":
        return render("auth/invitation_accept.html", therapist_name=therapist_name)
    try:
        accept_invitation(invitation, current_user.user)
    except care.InvitationError as exc:  # another request used the link first
        db.session().rollback()
        return invalid_link(exc.problem, "patient")
    db.session().commit()
    return see_other("home.index")


def invalid_link(problem: care.InvitationProblem, kind: str):
    """The calm page for a forged (404), used or expired (410) link, naming no one."""
    status = 404 if problem is care.InvitationProblem.UNKNOWN else 410
    return render(_INVALID_PAGES[kind], problem=problem.value, status=status)


def accept_invitation(invitation: Invitation, user: User) -> None:
    """Join what the invitation leads to: a care team, or a patient's support people. It must
    be unused (claimed now) or held for `user` already, else care.InvitationError. The caller
    commits."""
    if invitation.kind == support.KIND:
        support.accept(session=db.session(), invitation=invitation, supporter=user)
    else:
        care.accept_patient_invitation(session=db.session(), invitation=invitation, patient=user)


def register_from_link(invitation: Invitation, template: str, context: dict):
    """The registration form of a link (`template`), posted by someone not logged in.

    With email configured the answer is the same page, after the same work, whether the
    address had an account (it is offered the invitation at its next login) or not (the new
    account waits for the emailed link). Without email a new account is logged in at once,
    and an address with an account gets a 422 that says no more than it must (README)."""
    dbs = db.session()
    form = auth_views.registration_form()
    by_email = mail.enabled()
    try:
        joined = care.join(session=dbs, invitation=invitation, form=form, by_email=by_email)
        if not by_email:
            accept_invitation(invitation, joined.user)
    except ValidationError as exc:
        dbs.rollback()
        return render(template, form=request.form, errors=exc.errors, status=422, **context)
    except care.InvitationError as exc:  # another request used the link first
        dbs.rollback()
        return invalid_link(exc.problem, invitation.kind)
    if by_email:
        dbs.commit()
        sent = _joining_email(joined, form["email"].strip())
        return render("auth/check_email.html", email=form["email"].strip(), sent=sent)
    new = joined.registered
    return auth_views.log_in(
        new.user, new.private_key, lambda: auth_views.recovery_page(new.recovery_code)
    )


def _joining_email(joined: care.Joined, address: str) -> bool:
    """The email only the address's owner reads: a confirmation link for a new account, a
    notice for an account the address already had."""
    clinic = current_app.config["CLINIC_NAME"]
    if joined.registered is not None:
        link = absolute_url(url_for("care.confirm", token=joined.confirm_token))
        days = current_app.config["INVITATION_DAYS"]
        body = (
            f"Hello,\n\nSomeone, we hope you, used an invitation to {clinic} to create an "
            "account with this email address.\n\nTo finish joining, open this link (it works "
            f"once and expires in {days} days), then log in with the password you chose:\n\n"
            f"{link}\n\nIf it was not you, ignore this email: without the link, the account "
            "cannot be used.\n"
        )
        return mail.send(to=address, subject=f"Finish joining {clinic}", body=body)
    if joined.offered:
        then = "If it was you, log in and you will be asked to accept it."
    else:
        then = "Your account cannot accept this kind of invitation; if it was you, tell the "
        then += "person who invited you."
    body = (
        f"Hello,\n\nSomeone used an invitation to {clinic} with your email address, which "
        f"already has an account there.\n\n{then}\n\nIf it was not you, you need not do "
        "anything: nothing changes unless you accept.\n"
    )
    subject = f"An invitation to {clinic} was used with your address"
    return mail.send(to=address, subject=subject, body=body)


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
            return invalid_link(exc.problem, accounts.CONFIRM_KIND)
        return render("auth/confirm.html", problem=None, token=token)
    try:
        user, joined = care.confirm_address(session=dbs, token=token)
        for invitation in joined:
            accept_invitation(invitation, user)
    except care.InvitationError as exc:
        dbs.rollback()
        return invalid_link(exc.problem, accounts.CONFIRM_KIND)
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
        accept_invitation(invitation, me)
    dbs.commit()
    if care.offers_for(session=dbs, user=me):
        return see_other("care.offers")
    if accept and invitation.kind == support.KIND:
        return see_other("support.patient", patient_id=invitation.inviter_id)
    return see_other("home.index")
