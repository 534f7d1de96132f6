"""Owner set-up, login, logout, recovery codes, reset; the helpers every login goes through
(`log_in`, `safe_next`, `limit_password_checks`). Registering from an invitation link is in
views/care.py."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from flask import Blueprint, abort, current_app, g, redirect, request, session, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from .. import db, policy
from ..extensions import limiter, login_manager
from ..login import Viewer, logged_out, session_expired, set_login_cookie
from ..models import ClinicSetup
from ..services import accounts, care, mail, sessions, totp
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


def _checker_key() -> str:
    """Per-account key of a password re-check: the logged-in account (else the form's email)."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return _account_key()


_checks_per_ip = limiter.shared_limit(login_limits, scope="password-check", methods=["POST"])
_checks_per_account = limiter.shared_limit(
    login_limits, scope="password-check/account", key_func=_checker_key, methods=["POST"]
)


def limit_password_checks(view: Callable) -> Callable:
    """Rate-limit a view whose POST checks the password again (each check is a 64 MiB
    Argon2id run): the login limits, per IP and per account, one budget shared by every view
    so decorated."""
    return _checks_per_ip(_checks_per_account(view))


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


def safe_next(value: str | None, default: str | None = None) -> str:
    """`value` if it is a path on this site (see `on_this_site`), else `default` (the home
    page). Every `next` or `back` value the app follows goes through here."""
    return value if on_this_site(value) else (default or url_for("home.index"))


def on_this_site(value: str | None) -> bool:
    """Whether `value` is a path on this site (query and fragment allowed). Refused: a control
    character or white space anywhere, also once percent-decoded (browsers drop tabs and
    newlines, so slash-tab-slash-host would become //host); a scheme or a host, after reading
    backslashes as slashes as browsers do; anything not starting with exactly one slash."""
    if not value or not _a_path_here(value, spaces=False):
        return False
    return _a_path_here(unquote(value), spaces=True)  # what a second decoding would make


def _a_path_here(value: str, *, spaces: bool) -> bool:
    for ch in value:
        if unicodedata.category(ch)[0] == "C" or (ch.isspace() and not (spaces and ch == " ")):
            return False
    candidate = value.replace("\\", "/")
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return False
    if parts.scheme or parts.netloc:
        return False
    return candidate.startswith("/") and not candidate.startswith("//")


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


def registration_form() -> dict:
    return {
        "email": form_text("email", 300),
        "name": form_text("name", 200),
        "password": form_text("password", 1000),
        "password2": form_text("password2", 1000),
    }


# --- login and logout ---------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@_limit_per_ip
@_limit_per_account
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
        message = "That email and password do not match an account. Check both."
        if mail.enabled():  # an account made from an invitation waits for its emailed link
            message += " If you have just joined, open the link we emailed you first."
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
        errors["password"] = NOT_YOUR_PASSWORD
    elif (
        totp.enabled(user)
        and totp.verify(session=dbs, user=user, code=form_text("code", 40)) is None
    ):
        errors["code"] = WRONG_CODE
    if errors:
        dbs.rollback()
        return _new_code_page(errors, status=422)
    code = accounts.new_recovery_code(
        session=dbs, user=user, private_key=current_user.private_key()
    )
    dbs.commit()
    return recovery_page(code)


NOT_YOUR_PASSWORD = "That is not your password."  # noqa: S105  (a message)
WRONG_CODE = "That code did not work. Type the code your app shows now."


def password_ok(password: str) -> bool:
    """Whether `password` is the logged-in user's (one Argon2id run): asked again before
    anything that could take the account over (DESIGN §5)."""
    user = current_user.user
    found = accounts.authenticate(
        session=db.session(), email=accounts.email_of(user), password=password
    )
    return found is not None and found[0].id == user.id


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
