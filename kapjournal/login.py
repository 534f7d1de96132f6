"""Who is asking: the device session behind the login cookie, as Flask-Login's current user."""

from __future__ import annotations

from functools import cached_property

from flask import Flask, Response, current_app, g, redirect, request, session, url_for
from flask_login import UserMixin
from flask_login.utils import make_next_param

from . import db
from .extensions import login_manager
from .services import accounts, sessions


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
