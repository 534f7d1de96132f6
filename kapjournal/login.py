"""Who is asking, and how people log in: the device session behind the login cookie (as
Flask-Login's current user), opening a new one (`log_in`), the rate limits on everything that
checks a password, and the one check of every `next` a page follows (`safe_next`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from flask import Flask, Response, current_app, g, redirect, request, session, url_for
from flask_login import UserMixin, current_user
from flask_login.utils import make_next_param

from . import db
from .extensions import limiter, login_manager
from .i18n import lazy_gettext as _l
from .services import accounts, sessions
from .views import form_text, on_this_site, render, safe_next  # noqa: F401  (re-exported)


class Viewer(UserMixin):
    """The logged-in user of this request, with the means to unlock their private key."""

    def __init__(self, unlocked: sessions.Unlocked):
        self.unlocked = unlocked
        self.user = unlocked.user

    def get_id(self) -> str:
        return str(self.user.id)

    @property
    def id(self):
        return self.user.id

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def device_id(self):
        return self.unlocked.device.id

    @cached_property
    def name(self) -> str:
        return accounts.name_of(self.user)

    def private_key(self) -> bytes:
        """The user's private key, unlocked with K_sess for this request only."""
        return self.unlocked.private_key()


def _load_from_cookie(req) -> Viewer | None:
    value = req.cookies.get(current_app.config["LOGIN_COOKIE_NAME"])
    if not value:
        return None
    unlocked = sessions.resume(session=db.session(), cookie_value=value)
    if unlocked is None:
        g.login_ended = True  # expired, logged out elsewhere, or forged: drop the cookie
        return None
    return Viewer(unlocked)


def set_login_cookie(response: Response, value: str) -> None:
    cfg = current_app.config
    response.set_cookie(
        cfg["LOGIN_COOKIE_NAME"],
        value,
        max_age=cfg["ABSOLUTE_HOURS"] * 3600,
        path="/",
        secure=cfg["COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def clear_login_cookie(response: Response) -> None:
    cfg = current_app.config
    response.delete_cookie(
        cfg["LOGIN_COOKIE_NAME"], path="/", secure=cfg["COOKIE_SECURE"], httponly=True
    )


def logged_out(response: Response, *, keep_storage: bool = False) -> Response:
    """Finish a logout: forget the cookie, the CSRF session and the browser's caches.

    `keep_storage`: the patient chose to keep entries not sent yet on the phone (offline.js
    asks, and says so in the logout form). Then only the HTTP cache is cleared, since
    "storage" would wipe IndexedDB where they wait, encrypted; the script has already
    removed everything else it kept."""
    session.clear()
    clear_login_cookie(response)
    g.login_cookie_set = True
    response.headers["Clear-Site-Data"] = '"cache"' if keep_storage else '"cache", "storage"'
    return response


def _drop_dead_cookie(response: Response) -> Response:
    if g.get("login_ended") and not g.get("login_cookie_set"):
        clear_login_cookie(response)
    return response


def _to_login() -> Response:
    """A login-required page without a live session: to the login page, and back afterwards.
    When the session had just ended, the login page says so (the dead cookie is dropped on
    this response, so the login page could not tell by itself)."""
    target = url_for("auth.login")
    args = {"next": make_next_param(target, request.url)}
    if g.get("login_ended"):
        args["expired"] = "1"
    return redirect(url_for("auth.login", **args))


def init_app(app: Flask) -> None:
    app.config.setdefault("SESSION_PROTECTION", None)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.request_loader(_load_from_cookie)
    login_manager.unauthorized_handler(_to_login)
    app.after_request(_drop_dead_cookie)


def session_expired() -> bool:
    """True when this request came with a login cookie whose session had ended."""
    return bool(g.get("login_ended")) and request.method == "GET"


# --- rate limits on everything that checks a password ---------------------------------------


def login_limits() -> str:
    return current_app.config["LOGIN_LIMITS"]


def _account_key() -> str:
    """Rate-limit key per account: a keyed hash of the email, never the email itself."""
    return accounts.keyring().lookup(accounts.normalize_email(form_text("email", 300))).hex()


limit_logins_per_ip = limiter.limit(login_limits, methods=["POST"])
limit_logins_per_account = limiter.limit(login_limits, methods=["POST"], key_func=_account_key)


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


# --- logging in ---------------------------------------------------------------------------------


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


def recovery_page(code: str, status: int = 200, errors: dict | None = None):
    """The new recovery code, shown once (never cached)."""
    response = render("auth/recovery_code.html", code=code, errors=errors or {}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def registration_form() -> dict:
    """The fields of every registration form (owner set-up, invitation links)."""
    return {
        "email": form_text("email", 300),
        "name": form_text("name", 200),
        "password": form_text("password", 1000),
        "password2": form_text("password2", 1000),
    }


# Lazy: in the language of the request that shows them (wrap in str() to use them).
NOT_YOUR_PASSWORD = _l("That is not your password.")
WRONG_CODE = _l("That code did not work. Type the code your app shows now.")


def password_ok(password: str) -> bool:
    """Whether `password` is the logged-in user's (one Argon2id run): asked again before
    anything that could take the account over (DESIGN §5)."""
    user = current_user.user
    found = accounts.authenticate(
        session=db.session(), email=accounts.email_of(user), password=password
    )
    return found is not None and found[0].id == user.id
