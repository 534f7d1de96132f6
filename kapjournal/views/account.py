"""The account page: my logged-in devices, password change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import Blueprint, request
from flask_login import current_user

from .. import db, i18n, policy
from ..i18n import gettext
from ..login import limit_password_checks, logged_out
from ..models import aware
from ..services import accounts, care, sessions
from ..services.accounts import ValidationError
from . import form_text, render, see_other

bp = Blueprint("account", __name__, url_prefix="/account")


def in_utc(value: datetime, fmt: str) -> str:
    """A stored time as UTC (the devices list says "UTC"), in the page's language, `fmt` in
    strftime style: "2 Dec 2026, 03:14" or "2 dic 2026, 03:14"."""
    return i18n.format_moment(aware(value).astimezone(UTC), fmt)


def device_name(label: str | None) -> str:
    """A device's label as login.py stored it ("Firefox on Linux", "A browser": English, from
    the User-Agent) in the page's language. The stored value is left as it is; browser and
    platform names are names."""
    browser, on, platform = (label or "").partition(" on ")
    if not browser or browser == "A browser":
        browser = gettext("A browser")
    return (
        gettext("%(browser)s on %(platform)s", browser=browser, platform=platform)
        if on
        else browser
    )


@bp.get("")
@policy.allow(policy.AUTHENTICATED)
def index():
    dbs = db.session()
    user = current_user.user
    devices = sessions.for_user(session=dbs, user=user)
    care_team = []
    if user.role == "patient":
        care_team = [
            (t, accounts.name_of(t)) for t in care.therapists_of(session=dbs, patient=user)
        ]
    return render(
        "account/index.html",
        devices=devices,
        email=accounts.email_of(user),
        current_device=current_user.device_id,
        care_team=care_team,
        in_utc=in_utc,
        device_name=device_name,
    )


@bp.post("/devices/<uuid:device_id>/logout")
@policy.allow(policy.AUTHENTICATED)
def end_device(device_id: uuid.UUID):
    dbs = db.session()
    device = policy.get_device_session_for(session=dbs, user=current_user.user, device_id=device_id)
    sessions.end(session=dbs, device=device)
    dbs.commit()
    if device_id != current_user.device_id:
        return see_other("account.index")
    keep = request.form.get("keep_unsent") == "1"  # set by offline.js, see logged_out
    return logged_out(see_other("auth.login"), keep_storage=keep)


@bp.route("/password", methods=["GET", "POST"])
@policy.allow(policy.AUTHENTICATED)
@limit_password_checks
def password():
    if request.method == "GET":
        return render("account/password.html", errors={}, done=False)
    dbs = db.session()
    try:
        accounts.change_password(
            session=dbs,
            user=current_user.user,
            current=form_text("current", 1000),
            new=form_text("new", 1000),
            new2=form_text("new2", 1000),
            keep_session_id=current_user.device_id,
        )
    except ValidationError as exc:
        dbs.rollback()
        return render("account/password.html", errors=exc.errors, done=False, status=422)
    dbs.commit()
    return render("account/password.html", errors={}, done=True)
