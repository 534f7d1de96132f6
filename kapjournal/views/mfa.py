"""Two-step login: the code step after the password, setting it up, backup codes, turning
it off. Required for therapists (policy.require_second_factor), offered to everyone."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, request, url_for
from flask_login import current_user

from .. import db, policy
from ..extensions import limiter
from ..login import (
    NOT_YOUR_PASSWORD,
    WRONG_CODE,
    limit_password_checks,
    log_in,
    logged_out,
    login_limits,
    password_ok,
    safe_next,
)
from ..models import utcnow
from ..services import accounts, sessions, totp
from . import form_text, render, see_other

bp = Blueprint("mfa", __name__, url_prefix="/mfa")

# A password-only session that has not given its code by then must start again.
PENDING_FOR = sessions.MFA_PENDING_FOR


def _account_key() -> str:
    return f"mfa:{current_user.id}" if current_user.is_authenticated else "mfa:anonymous"


def _pending() -> bool:
    return current_user.unlocked.device.mfa_pending


# --- the code step after the password -------------------------------------------------------


@bp.route("/verify", methods=["GET", "POST"])
@policy.allow(policy.AUTHENTICATED)
@limiter.limit(login_limits, methods=["POST"])
@limiter.limit(login_limits, methods=["POST"], key_func=_account_key)
def verify():
    target = safe_next(request.values.get("next", "")[:500])
    if not _pending():
        return redirect(target)
    dbs = db.session()
    if utcnow() - current_user.unlocked.device.created_at > PENDING_FOR:
        sessions.end(session=dbs, device=current_user.unlocked.device)
        dbs.commit()
        return logged_out(redirect(url_for("auth.login", expired="1"), code=303))
    if request.method == "GET":
        return render("mfa/verify.html", errors={}, next=target)
    user = current_user.user
    if totp.verify(session=dbs, user=user, code=form_text("code", 40)) is None:
        dbs.rollback()
        errors = {"code": str(WRONG_CODE)}
        return render("mfa/verify.html", errors=errors, next=target, status=422)
    dbs.commit()
    # A fresh session (new id and K_sess) replaces the password-only one.
    return log_in(user, current_user.private_key(), target)


# --- setting it up --------------------------------------------------------------------------


def _setup_page(*, errors=None, status=200):
    dbs = db.session()
    user = current_user.user
    secret = totp.pending_secret(session=dbs, user=user)
    dbs.commit()
    uri = totp.provisioning_uri(
        secret, account=accounts.email_of(user), issuer=current_app.config["CLINIC_NAME"]
    )
    response = render(
        "mfa/setup.html",
        qr=totp.qr_data_uri(uri),
        secret=totp.grouped(secret),
        required=totp.required(user),
        errors=errors or {},
        next=safe_next(request.values.get("next", "")[:500]),
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _backup_codes_page(codes: list[str], *, next_url: str):
    response = render("mfa/backup_codes.html", codes=codes, next=next_url)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/setup", methods=["GET", "POST"])
@policy.allow(policy.AUTHENTICATED)
@limit_password_checks
def setup():
    if totp.enabled(current_user.user):
        return redirect(url_for("mfa.index"))
    if request.method == "GET":
        return _setup_page()
    errors = (
        {} if password_ok(form_text("password", 1000)) else {"password": str(NOT_YOUR_PASSWORD)}
    )
    codes = None
    if not errors:
        try:
            codes = totp.confirm_setup(
                session=db.session(), user=current_user.user, code=form_text("code", 40)
            )
        except totp.CodeProblem as problem:
            errors["code"] = str(problem)
    if errors:
        db.session().rollback()
        return _setup_page(errors=errors, status=422)
    db.session().commit()
    return _backup_codes_page(codes, next_url=safe_next(form_text("next", 500)))


# --- on, off, backup codes ------------------------------------------------------------------


def _index_page(*, errors=None, status=200):
    user = current_user.user
    return render(
        "mfa/index.html",
        enabled=totp.enabled(user),
        required=totp.required(user),
        left=totp.backup_codes_left(session=db.session(), user=user),
        errors=errors or {},
        status=status,
    )


@bp.get("")
@policy.allow(policy.AUTHENTICATED)
def index():
    return _index_page()


@bp.post("/backup-codes")
@policy.allow(policy.AUTHENTICATED)
@limit_password_checks
def backup_codes():
    user = current_user.user
    if not totp.enabled(user):
        return see_other("mfa.setup")
    if not password_ok(form_text("codes-password", 1000)):
        return _index_page(errors={"codes-password": str(NOT_YOUR_PASSWORD)}, status=422)
    codes = totp.new_backup_codes(session=db.session(), user=user)
    db.session().commit()
    return _backup_codes_page(codes, next_url=url_for("mfa.index"))


@bp.post("/off")
@policy.allow(policy.AUTHENTICATED)
@limit_password_checks
def turn_off():
    user = current_user.user
    if not totp.enabled(user):
        return see_other("mfa.index")
    if not password_ok(form_text("off-password", 1000)):
        return _index_page(errors={"off-password": str(NOT_YOUR_PASSWORD)}, status=422)
    totp.turn_off(session=db.session(), user=user)
    db.session().commit()
    # A therapist goes straight on to set it up again (on a new phone).
    return see_other("mfa.setup" if totp.required(user) else "mfa.index")
