"""Owner set-up, login, logout, recovery codes, reset; the helpers every login goes through
(`log_in`, `safe_next`, `limit_password_checks`). Registering from an invitation link is in
views/care.py."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from .. import db, policy
from ..i18n import gettext
from ..login import (
    NOT_YOUR_PASSWORD,
    WRONG_CODE,
    limit_logins_per_account,
    limit_logins_per_ip,
    limit_password_checks,
    log_in,
    logged_out,
    on_this_site,
    password_ok,
    recovery_page,
    registration_form,
    safe_next,
    session_expired,
)
from ..models import ClinicSetup
from ..services import accounts, care, mail, sessions, totp
from ..services.accounts import ValidationError
from . import form_text, render, see_other

bp = Blueprint("auth", __name__)

# In a user's share_defaults: the first-run welcome (views/welcome.py) was shown. Kept there,
# not in a column of its own: a key starting with "_" is never an entry kind.
WELCOMED = "_welcomed"

# --- the clinic owner's first account -----------------------------------------------------------


@bp.route("/setup", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
def setup():
    dbs = db.session()
    if accounts.user_count(session=dbs) > 0:
        abort(404)  # offered only on an empty database, never again
    if request.method == "GET":
        return render("auth/setup.html", form={}, errors={})
    try:
        registered = accounts.register(
            session=dbs, **registration_form(), role="therapist", is_owner=True
        )
        # One fixed row, in the same transaction: of set-ups racing, only one commits.
        dbs.add(ClinicSetup())
        dbs.flush()
    except ValidationError as exc:
        dbs.rollback()
        return render("auth/setup.html", form=request.form, errors=exc.errors, status=422)
    except IntegrityError:
        dbs.rollback()
        abort(404)  # someone else set the clinic up at this very moment
    return log_in(
        registered.user, registered.private_key, lambda: recovery_page(registered.recovery_code)
    )


# --- login and logout ---------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limit_logins_per_ip
@limit_logins_per_account
def login():
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("home.index"))
        next_value = request.args.get("next", "")
        return _login_page(
            next=next_value if on_this_site(next_value) else "",
            expired=session_expired() or request.args.get("expired") == "1",
            confirmed=request.args.get("confirmed") == "1",
        )
    dbs = db.session()
    found = accounts.authenticate(
        session=dbs, email=form_text("email", 300), password=form_text("password", 1000)
    )
    if found is None:
        message = gettext("That email and password do not match an account. Check both.")
        if mail.enabled():  # an account made from an invitation waits for its emailed link
            message += " " + gettext("If you have just joined, open the link we emailed you first.")
        return _login_page(
            form={"email": form_text("email", 300)},
            errors={"form": message},
            next=form_text("next", 500),
            status=422,
        )
    user, private_key = found
    target = safe_next(form_text("next", 500))
    if care.offers_for(session=dbs, user=user):  # invitations used with their address
        target = url_for("care.offers", next=target)
    if totp.enabled(user):
        return log_in(user, private_key, url_for("mfa.verify", next=target), mfa_pending=True)
    return log_in(user, private_key, target)


def _login_page(*, form=None, errors=None, next="", expired=False, confirmed=False, status=200):
    return render(
        "auth/login.html",
        form=form or {},
        errors=errors or {},
        expired=expired,
        confirmed=confirmed,
        next=next,
        status=status,
    )


@bp.post("/logout")
@policy.allow(policy.AUTHENTICATED)
def logout():
    dbs = db.session()
    sessions.end(session=dbs, device=current_user.unlocked.device)
    dbs.commit()
    keep = request.form.get("keep_unsent") == "1"  # set by offline.js, see logged_out
    return logged_out(see_other("auth.login"), keep_storage=keep)


# --- recovery codes ---------------------------------------------------------------------------


@bp.get("/recovery-code")
@policy.allow(policy.AUTHENTICATED)
def recovery_code():
    if current_user.user.recovery_confirmed_at:
        return redirect(url_for("home.index"))
    return _new_code_page()


def _new_code_page(errors: dict | None = None, status: int = 200):
    two_step = totp.enabled(current_user.user)
    page = "auth/recovery_code_missing.html"
    return render(page, errors=errors or {}, two_step=two_step, status=status)


@bp.post("/recovery-code/new")
@policy.allow(policy.AUTHENTICATED)
@limit_password_checks
def recovery_code_new():
    """A new recovery code resets the password without it, so it needs the password (and the
    login code, with two-step login on) again: a borrowed phone's session is not enough."""
    dbs = db.session()
    user = current_user.user
    errors = {}
    if not password_ok(form_text("password", 1000)):
        errors["password"] = str(NOT_YOUR_PASSWORD)
    elif (
        totp.enabled(user)
        and totp.verify(session=dbs, user=user, code=form_text("code", 40)) is None
    ):
        errors["code"] = str(WRONG_CODE)
    if errors:
        dbs.rollback()
        return _new_code_page(errors, status=422)
    code = accounts.new_recovery_code(
        session=dbs, user=user, private_key=current_user.private_key()
    )
    dbs.commit()
    return recovery_page(code)


@bp.post("/recovery-code/confirm")
@policy.allow(policy.AUTHENTICATED)
def recovery_code_confirm():
    if request.form.get("saved") != "yes":
        code = form_text("code", 100)
        if not accounts.recovery_code_matches(user=current_user.user, code=code):
            return redirect(url_for("auth.recovery_code"), code=303)
        errors = {"saved": gettext("Tick the box once you have saved the code somewhere safe.")}
        return recovery_page(code, status=422, errors=errors)
    dbs = db.session()
    user = current_user.user
    accounts.confirm_recovery_saved(session=dbs, user=user)
    first_run = not user.share_defaults.get(WELCOMED)
    if first_run:  # a new account: the welcome, once (a new dict, so the JSON column is saved)
        user.share_defaults = {**user.share_defaults, WELCOMED: True}
    dbs.commit()
    return see_other("welcome.index" if first_run else "home.index")


@bp.route("/reset", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limit_logins_per_ip
@limit_logins_per_account
def reset():
    if request.method == "GET":
        return render("auth/reset.html", form={}, errors={})
    dbs = db.session()
    try:
        user, private_key, code = accounts.reset_with_recovery_code(
            session=dbs,
            email=form_text("email", 300),
            code=form_text("code", 100),
            new=form_text("new", 1000),
            new2=form_text("new2", 1000),
        )
    except ValidationError as exc:
        dbs.rollback()
        form = {"email": form_text("email", 300)}
        return render("auth/reset.html", form=form, errors=exc.errors, status=422)
    # The recovery code replaces the password, not the second factor: with two-step login
    # on, the new session still has to give a login code before anything else.
    return log_in(user, private_key, lambda: recovery_page(code), mfa_pending=totp.enabled(user))
