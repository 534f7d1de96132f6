"""Joining from an invitation link, for the pages that take one (views/care.py for a
therapist's link, views/support.py for a patient's): registering, accepting with an account one
has, and the calm page for a link that cannot be used. Outside the blueprints, so that no view
imports another."""

from __future__ import annotations

from flask import current_app, request, url_for

from . import db, i18n
from .i18n import gettext as _
from .login import log_in, recovery_page, registration_form
from .models import Invitation, User
from .services import accounts, care, mail, support
from .services.accounts import ValidationError
from .views import render
from .web import absolute_url

# The calm page for a link that cannot be used, by kind of link.
_INVALID_PAGES = {
    "patient": "auth/invitation_invalid.html",
    support.KIND: "support/invitation_invalid.html",
    accounts.CONFIRM_KIND: "auth/confirm.html",
}


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
    form = registration_form()
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
    return log_in(new.user, new.private_key, lambda: recovery_page(new.recovery_code))


def _joining_email(joined: care.Joined, address: str) -> bool:
    """The email only the address's owner reads: a confirmation link for a new account, a
    notice for an account the address already had. In the recipient's language: the one a new
    account registered in (stored on it), or the one an existing account chose."""
    with i18n.force_locale(joined.user.locale or "en"):
        subject, body = _joining_text(joined)
    return mail.send(to=address, subject=subject, body=body)


def _joining_text(joined: care.Joined) -> tuple[str, str]:
    clinic = current_app.config["CLINIC_NAME"]
    if joined.registered is not None:
        link = absolute_url(url_for("care.confirm", token=joined.confirm_token))
        days = current_app.config["INVITATION_DAYS"]
        body = _(
            "Hello,\n\nSomeone, we hope you, used an invitation to %(clinic)s to create an "
            "account with this email address.\n\nTo finish joining, open this link (it works "
            "once and expires in %(days)d days), then log in with the password you chose:\n\n"
            "%(link)s\n\nIf it was not you, ignore this email: without the link, the account "
            "cannot be used.\n",
            clinic=clinic,
            days=days,
            link=link,
        )
        return _("Finish joining %(clinic)s", clinic=clinic), body
    if joined.offered:
        then = _("If it was you, log in and you will be asked to accept it.")
    else:
        then = _(
            "Your account cannot accept this kind of invitation; if it was you, tell the "
            "person who invited you."
        )
    body = _(
        "Hello,\n\nSomeone used an invitation to %(clinic)s with your email address, which "
        "already has an account there.\n\n%(then)s\n\nIf it was not you, you need not do "
        "anything: nothing changes unless you accept.\n",
        clinic=clinic,
        then=then,
    )
    return _("An invitation to %(clinic)s was used with your address", clinic=clinic), body
