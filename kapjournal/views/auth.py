"""Owner set-up, registration from an invitation, login, logout, recovery codes, reset."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, g, redirect, request, session, url_for
from flask_login import current_user

from .. import db, policy
from ..extensions import limiter, login_manager
from ..login import Viewer, logged_out, session_expired, set_login_cookie
from ..models import User
from ..services import accounts, care, sessions, totp
from ..services.accounts import ValidationError
from . import form_text, render, see_other

bp = Blueprint("auth", __name__)

# Pages a logged-in user may reach before confirming their recovery code.
_BEFORE_RECOVERY_CONFIRMED = {
    "auth.recovery_code",
    "auth.recovery_code_new",
    "auth.recovery_code_confirm",
    "auth.logout",
    "static",
}


def login_limits() -> str:
    return current_app.config["LOGIN_LIMITS"]


def _account_key() -> str:
    """Rate-limit key per account: a keyed hash of the email, never the email itself."""
    return accounts.keyring().lookup(accounts.normalize_email(form_text("email", 300))).hex()


_limit_per_ip = limiter.limit(login_limits, methods=["POST"])
_limit_per_account = limiter.limit(login_limits, methods=["POST"], key_func=_account_key)


@bp.before_app_request
def require_confirmed_recovery_code():
    if not current_user.is_authenticated or current_user.user.recovery_confirmed_at:
        return None
    if current_user.unlocked.device.mfa_pending:
        return None  # the second step comes first (policy.require_second_factor)
    endpoint = request.endpoint or ""
    if endpoint in _BEFORE_RECOVERY_CONFIRMED or endpoint.startswith("pwa."):
        return None
    return redirect(url_for("auth.recovery_code"))


def log_in(user, private_key, target, *, mfa_pending: bool = False):
    """Open a device session, rotate the session id and CSRF token, go to `target` (a path, or
    a function rendering the page, called after the rotation so its forms get the new token).
    With `mfa_pending` the new session may only reach the second-factor step."""
    dbs = db.session()
    old = request.cookies.get(current_app.config["LOGIN_COOKIE_NAME"])
    previous = sessions.resume(session=dbs, cookie_value=old) if old else None
    if previous is not None:
        sessions.end(session=dbs, device=previous.device)
    cookie = sessions.open_session(
        session=dbs,
        user=user,
        private_key=private_key,
        device_label=_device_label(),
        mfa_pending=mfa_pending,
    )
    dbs.commit()
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    # The page rendered now (the recovery code) already belongs to the new session.
    login_manager._update_request_context_with_user(
        Viewer(sessions.resume(session=dbs, cookie_value=cookie))
    )
    response = target() if callable(target) else redirect(target, code=303)
    set_login_cookie(response, cookie)
    g.login_cookie_set = True
    return response


_PLATFORMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "Mac"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
_BROWSERS = (
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)


def _device_label() -> str:
    """A rough "Browser on Platform" for the devices list (Werkzeug no longer parses it)."""
    agent = request.user_agent.string or ""
    browser = next((name for mark, name in _BROWSERS if mark in agent), "A browser")
    platform = next((name for mark, name in _PLATFORMS if mark in agent), "")
    return f"{browser} on {platform}" if platform else browser


def safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return url_for("home.index")


def recovery_page(code: str, status: int = 200, errors: dict | None = None):
    response = render("auth/recovery_code.html", code=code, errors=errors or {}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


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
    except ValidationError as exc:
        dbs.rollback()
        return render("auth/setup.html", form=request.form, errors=exc.errors, status=422)
    return log_in(
        registered.user, registered.private_key, lambda: recovery_page(registered.recovery_code)
    )


def registration_form() -> dict:
    return {
        "email": form_text("email", 300),
        "name": form_text("name", 200),
        "password": form_text("password", 1000),
        "password2": form_text("password2", 1000),
    }


# --- registration from an invitation -----------------------------------------------------------


@bp.route("/invite/<token>", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limiter.limit(login_limits, methods=["POST"])
def register(token: str):
    dbs = db.session()
    try:
        invitation = care.find_usable(session=dbs, token=token, kind="patient")
    except care.InvitationError as exc:
        status = 404 if exc.problem is care.InvitationProblem.UNKNOWN else 410
        return render("auth/invitation_invalid.html", problem=exc.problem.value, status=status)
    therapist_name = accounts.name_of(dbs.get(User, invitation.inviter_id))
    if current_user.is_authenticated:
        return _accept_as_logged_in(invitation, therapist_name)
    context = {"token": token, "therapist_name": therapist_name}
    if request.method == "GET":
        return render("auth/register.html", form={}, errors={}, **context)
    try:
        registered = accounts.register(session=dbs, **registration_form(), role="patient")
    except ValidationError as exc:
        dbs.rollback()
        return render(
            "auth/register.html", form=request.form, errors=exc.errors, status=422, **context
        )
    care.accept_patient_invitation(session=dbs, invitation=invitation, patient=registered.user)
    return log_in(
        registered.user, registered.private_key, lambda: recovery_page(registered.recovery_code)
    )


def _accept_as_logged_in(invitation, therapist_name: str):
    """A patient who already has an account joins another therapist's care team."""
    if current_user.role != "patient":
        return render("auth/invitation_wrong_account.html", status=409)
    if request.method == "GET":
        return render("auth/invitation_accept.html", therapist_name=therapist_name)
    care.accept_patient_invitation(
        session=db.session(), invitation=invitation, patient=current_user.user
    )
    db.session().commit()
    return see_other("home.index")


# --- login and logout ---------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@_limit_per_ip
@_limit_per_account
def login():
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("home.index"))
        return render(
            "auth/login.html",
            form={},
            errors={},
            expired=session_expired() or request.args.get("expired") == "1",
            next=request.args.get("next", ""),
        )
    dbs = db.session()
    found = accounts.authenticate(
        session=dbs, email=form_text("email", 300), password=form_text("password", 1000)
    )
    if found is None:
        errors = {"form": "That email and password do not match an account. Check both."}
        return render(
            "auth/login.html",
            form={"email": form_text("email", 300)},
            errors=errors,
            expired=False,
            next=form_text("next", 500),
            status=422,
        )
    user, private_key = found
    target = safe_next(form_text("next", 500))
    if totp.enabled(user):
        return log_in(user, private_key, url_for("mfa.verify", next=target), mfa_pending=True)
    return log_in(user, private_key, target)


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
    return render("auth/recovery_code_missing.html")


@bp.post("/recovery-code/new")
@policy.allow(policy.AUTHENTICATED)
def recovery_code_new():
    dbs = db.session()
    code = accounts.new_recovery_code(
        session=dbs, user=current_user.user, private_key=current_user.private_key()
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
        errors = {"saved": "Tick the box once you have saved the code somewhere safe."}
        return recovery_page(code, status=422, errors=errors)
    dbs = db.session()
    accounts.confirm_recovery_saved(session=dbs, user=current_user.user)
    dbs.commit()
    return see_other("home.index")


@bp.route("/reset", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@_limit_per_ip
@_limit_per_account
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
