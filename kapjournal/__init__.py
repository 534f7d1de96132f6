"""kapjournal: an encrypted journal for ketamine-assisted psychotherapy."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from flask import Flask, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from . import crypto, db, i18n, login, pipeline, shell, web
from .extensions import babel, csrf, htmx, limiter

ROOT = Path(__file__).resolve().parent.parent

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; "
    "manifest-src 'self'; worker-src 'self'; connect-src 'self'"
)
# Responses that are the same for everyone and hold nothing personal may be revalidated;
# everything else is never stored by the browser or a proxy.
_PUBLIC_CACHEABLE = {
    "static",
    "pwa.help",
    "pwa.offline",
    "pwa.manifest",
    "pwa.service_worker",
    "pwa.catalogue",  # the scripts' messages, the same for everyone
}


def create_app(config: dict | None = None) -> Flask:
    """Build the app: config → extensions → database → blueprints → errors → headers."""
    crypto.check_available()
    app = Flask(
        __name__,
        instance_path=str((config or {}).get("INSTANCE_PATH") or ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    settings = config_module.defaults(Path(app.instance_path))
    settings.update(config or {})
    config_module.finalize(settings, Path(app.instance_path))
    app.config.update(settings)
    crypto.set_argon2_concurrency(app.config["ARGON2_CONCURRENCY"])
    _trust_proxies(app)

    _init_extensions(app)
    db.init_app(app)
    login.init_app(app)
    _register_blueprints(app)
    from .views import errors

    errors.init_app(app)
    pipeline.init_app(app)  # the one before-request pipeline, and the end of each request
    shell.init_app(app)
    app.after_request(_security_headers)
    _quiet_secret_urls()
    from . import cli

    cli.init_app(app)
    return app


def _trust_proxies(app: Flask) -> None:
    """Take the client's address (for rate limits) and scheme from X-Forwarded-For/-Proto,
    as set by the KAPJOURNAL_TRUSTED_PROXIES reverse proxies in front of the app; with none,
    those headers are ignored: anyone can send them."""
    count = app.config["TRUSTED_PROXIES"]
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)


def _init_extensions(app: Flask) -> None:
    app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"] or "memory://"
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    csrf.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)
    i18n.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale)
    i18n.install_template_callables(app)
    app.session_interface = web.CsrfCookie()
    # Uploads never touch the disk in clear (voice memos, an imported journal).
    app.request_class = type(
        "Request",  # not-ui (a class name)
        (web.InMemoryUploads, app.request_class),
        {},
    )


def _register_blueprints(app: Flask) -> None:
    from . import views
    from .views import (
        account,
        auth,
        capture,
        care,
        export,
        home,
        integration,
        intentions,
        journal,
        language,
        leaving,
        measures,
        mfa,
        offline,
        patients,
        push,
        pwa,
        session_day,
        support,
        welcome,
        workspace,
    )

    modules = (pwa, auth, mfa, home, account, care, journal, patients, support, workspace)
    modules += (capture, export, integration, intentions, language, leaving, measures)
    modules += (offline, push, session_day, welcome)
    for module in modules:
        app.register_blueprint(module.bp)
    views.init_app(app)


def _security_headers(response):
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    # No Referer at all, so invitation tokens and entry ids never travel in one. Flask-WTF's
    # HTTPS Referer check is off for that reason (config WTF_CSRF_SSL_STRICT); the CSRF token
    # lives in a __Host- cookie that no subdomain or plain-HTTP page can plant.
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    microphone = "(self)" if request.endpoint in web.MICROPHONE else "()"
    headers["Permissions-Policy"] = (
        f"camera=(), microphone={microphone}, geolocation=(), interest-cohort=()"
    )
    headers.add("Vary", "HX-Request")  # not-ui (a header name)
    if request.endpoint not in _PUBLIC_CACHEABLE or response.status_code >= 400:
        headers["Cache-Control"] = "no-store"  # an error page has the personal navigation
    if current_app.config["PRODUCTION"]:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    return response


class _RedactTokens(logging.Filter):
    """Access logs must not keep invitation tokens (the database keeps only their hash)."""

    _pattern = re.compile(r"(/invite/)[^\s?\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.args:
            record.msg = record.msg % record.args
            record.args = ()
        if isinstance(record.msg, str):
            record.msg = self._pattern.sub(r"\1[redacted]", record.msg)
        return True


def _quiet_secret_urls() -> None:
    for name in ("werkzeug", "gunicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactTokens) for f in logger.filters):
            logger.addFilter(_RedactTokens())
