"""Choosing the language: a one-button form on the login, invitation and account pages. A
logged-in user's choice is kept on their account; before logging in, in a cookie."""

from __future__ import annotations

from flask import Blueprint, redirect, request
from flask_login import current_user

from .. import db, i18n, policy, web
from . import form_text, safe_next

bp = Blueprint("language", __name__)

ONE_YEAR = 365 * 24 * 3600


@bp.post("/language")
@policy.allow(policy.PUBLIC)
def choose():
    """Show the app in the language chosen (an unknown one changes nothing), back on the page
    the form was on."""
    chosen = i18n.supported(form_text("lang", 8))
    response = redirect(safe_next(form_text("back", 500), "/"), code=303)
    if chosen is None:
        return response
    if current_user.is_authenticated:
        me = web.me()
        me.locale = chosen
        dbs = db.session()
        dbs.add(me)
        dbs.commit()
    response.set_cookie(
        i18n.COOKIE,
        chosen,
        max_age=ONE_YEAR,
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )
    return response
