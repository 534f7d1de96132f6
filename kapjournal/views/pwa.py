"""Public pages: the front door, crisis help, offline page, PWA manifest, service worker."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, send_from_directory, url_for
from flask_babel import format_date
from flask_login import current_user
from sqlalchemy import text

from .. import db, i18n, policy
from ..services import accounts, crisis
from . import render

bp = Blueprint("pwa", __name__)


@bp.get("/")
@policy.allow(policy.PUBLIC)
def index():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    if accounts.user_count(session=db.session()) == 0:
        return redirect(url_for("auth.setup"))
    return redirect(url_for("auth.login"))


@bp.get("/help")
@policy.allow(policy.PUBLIC)
def help():
    """The crisis lines, in the page's language; no login. Its language follows `?lang=`, the
    account, the cookie or Accept-Language, so caches keep copies apart by them."""
    reviewed = crisis.all_lines()["reviewed"]
    spoken = format_date(reviewed, "long") if i18n.html_lang() != "en" else None
    response = render("pwa/help.html", reviewed=spoken or reviewed.strftime("%-d %B %Y"))
    response.headers["Cache-Control"] = "no-cache"
    response.vary.update(("Accept-Language", "Cookie"))
    return response


@bp.get("/offline")
@policy.allow(policy.PUBLIC)
def offline():
    response = render("pwa/offline.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/manifest.webmanifest")
@policy.allow(policy.PUBLIC)
def manifest():
    icons = [
        {
            "src": url_for("static", filename=f"icons/{name}"),
            "sizes": size,
            "type": "image/png",
            "purpose": purpose,
        }
        for name, size, purpose in (
            ("icon-192.png", "192x192", "any"),
            ("icon-512.png", "512x512", "any"),
            ("maskable-512.png", "512x512", "maskable"),
        )
    ]
    data = {
        "name": current_app.config["CLINIC_NAME"] + " journal"
        if current_app.config["CLINIC_NAME"] != "kapjournal"
        else "kapjournal",
        "short_name": "Journal",
        "description": "Your private journal for ketamine-assisted therapy.",
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f6f3ec",
        "theme_color": "#f6f3ec",  # the top bar, as the light theme-color meta says
        "icons": icons,
        "shortcuts": [
            {"name": "New reflection", "url": "/entries/new?kind=reflection", "icons": icons[:1]},
            {"name": "Need help now", "url": "/help", "icons": icons[:1]},
        ],
    }
    response = jsonify(data)
    response.mimetype = "application/manifest+json"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/sw.js")
@policy.allow(policy.PUBLIC)
def service_worker():
    response = send_from_directory(current_app.static_folder, "sw.js", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = "/"
    return response


@bp.get("/healthz")
@policy.allow(policy.PUBLIC)
def healthz():
    try:
        db.session().exec(text("SELECT 1"))
    except Exception:  # any database failure means "not healthy"
        return jsonify(status="database unavailable"), 503
    return jsonify(status="ok")
