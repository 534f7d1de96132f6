"""Public pages: the front door, crisis help, offline page, PWA manifest, service worker."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    request,
    send_from_directory,
    url_for,
)
from flask_login import current_user
from sqlalchemy import text

from .. import db, i18n, policy
from ..i18n import gettext as _
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
    response = render("pwa/help.html", reviewed=i18n.format_moment(reviewed, "%-d %B %Y"))
    response.headers["Cache-Control"] = "no-cache"
    response.vary.update(("Accept-Language", "Cookie"))  # not-ui: header names
    return response


@bp.get("/offline")
@policy.allow(policy.PUBLIC)
def offline():
    response = render("pwa/offline.html")
    response.headers["Cache-Control"] = "no-cache"
    response.vary.update(("Accept-Language", "Cookie"))  # not-ui: header names
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
    clinic = current_app.config["CLINIC_NAME"]
    data = {
        "name": _("%(clinic)s journal", clinic=clinic) if clinic != "kapjournal" else clinic,
        "short_name": _("Journal"),
        "description": _("Your private journal for ketamine-assisted therapy."),
        "lang": i18n.html_lang(),
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f6f3ec",
        "theme_color": "#f6f3ec",  # the top bar, as the light theme-color meta says
        "icons": icons,
        "shortcuts": [
            {
                "name": _("New reflection"),
                "url": "/entries/new?kind=reflection",
                "icons": icons[:1],
            },
            {"name": _("Need help now"), "url": i18n.help_url(), "icons": icons[:1]},
        ],
    }
    response = jsonify(data)
    response.mimetype = "application/manifest+json"
    response.headers["Cache-Control"] = "no-cache"
    response.vary.update(("Accept-Language", "Cookie"))  # not-ui: header names
    return response


@bp.get("/i18n/<lang>.json")
@policy.allow(policy.PUBLIC)
def catalogue(lang: str):
    """The scripts' messages in one language (static/js/app.js's `t()`; the service worker
    keeps a copy for the offline pages). The same for everyone: revalidated by its ETag."""
    if i18n.supported(lang) is None:
        abort(404)
    data, etag = i18n.js_catalogue(lang)
    response = make_response(data)
    response.mimetype = "application/json"
    response.set_etag(etag)
    response.headers["Cache-Control"] = "no-cache"
    return response.make_conditional(request)


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
