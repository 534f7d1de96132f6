"""Languages (issue 16, DESIGN §11): which language each request is shown in, and the
catalogues Flask-Babel reads.

The language is, in this order: an explicit `?lang=` on the URL (the crisis page's link carries
it, so that the service worker keeps each language's copy apart); the user's choice, stored on
their account; the choice made on the login or invitation page before logging in (a cookie);
the browser's Accept-Language; English. Catalogues live in kapjournal/translations as `.po`
files; `make run` and `make test` compile them into the `.mo` files Flask-Babel reads (not
committed: they are built from the `.po`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import flask_babel
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, has_request_context, request, url_for
from flask.globals import _cv_request  # Flask's own context variable for the request
from flask_babel import get_locale
from flask_login import current_user

LANGUAGES = {"en": "English", "es": "Español"}  # each named in its own language
DEFAULT = "en"
COOKIE = "lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"


def supported(code: str | None) -> str | None:
    """`code` if it is a language the app speaks, else None."""
    return code if code in LANGUAGES else None


def select_locale() -> str:
    """The language of this request (see the module's docstring); English outside a request
    (the command line, a job), unless the code forced one (`force_locale`)."""
    if not has_request_context():
        return DEFAULT
    chosen = supported(request.args.get("lang"))
    if chosen is None and current_user.is_authenticated:
        chosen = supported(current_user.user.locale)
    chosen = chosen or supported(request.cookies.get(COOKIE))
    return chosen or request.accept_languages.best_match(list(LANGUAGES), default=DEFAULT)


def html_lang() -> str:
    """The `<html lang>` of the page being rendered."""
    return _current()[0]


# --- this request's catalogue, looked up once ------------------------------------------------
# Flask-Babel finds the catalogue anew on every `_()`, through several context proxies (about
# 10 µs a call); a translated page makes hundreds. Templates use these instead: the language and
# catalogue are found once per request (and per `force_locale` block), then each string is a
# dictionary lookup.

_CACHE: ContextVar[tuple] = ContextVar("kapjournal_i18n", default=(None, None, "", None))
_FORCED: ContextVar[str | None] = ContextVar("kapjournal_i18n_forced", default=None)


def _current() -> tuple[str, object]:
    """(language code, catalogue) of this request, or of the enclosing `force_locale`."""
    owner = _cv_request.get(None)
    forced = _FORCED.get()
    cached_owner, cached_forced, code, found = _CACHE.get()
    if owner is not None and cached_owner is owner and cached_forced == forced:
        return code, found
    code, found = str(get_locale() or DEFAULT), flask_babel.get_translations()
    if owner is not None:
        _CACHE.set((owner, forced, code, found))
    return code, found


@contextmanager
def force_locale(code: str | None) -> Iterator[None]:
    """Flask-Babel's `force_locale` (an email or a push text in its recipient's language),
    seen by the templates' cached catalogue too. Use this one, never Flask-Babel's directly."""
    code = supported(code) or DEFAULT
    token = _FORCED.set(code)
    try:
        with flask_babel.force_locale(code):
            yield
    finally:
        _FORCED.reset(token)


def _gettext(string: str) -> str:
    return _current()[1].ugettext(string)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return _current()[1].ungettext(singular, plural, n)


def _pgettext(context: str, string: str) -> str:
    return _current()[1].upgettext(context, string)


def _npgettext(context: str, singular: str, plural: str, n: int) -> str:
    return _current()[1].unpgettext(context, singular, plural, n)


def help_url() -> str:
    """The crisis page in the language of this page: English is plain /help, others carry
    their `lang`, so that offline the service worker serves the copy in the right language."""
    code = html_lang()
    return url_for("pwa.help") if code == DEFAULT else url_for("pwa.help", lang=code)


def compile_catalogues(directory: Path = TRANSLATIONS) -> list[Path]:
    """Compile each `.po` catalogue whose `.mo` is missing or older (what `pybabel compile`
    does, in process: for test runs that do not go through make). Returns what it wrote."""
    written = []
    for po in sorted(directory.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalogue = read_po(source)
        partial = mo.with_name(f".{mo.name}.{os.getpid()}")  # parallel test workers
        with partial.open("wb") as target:
            write_mo(target, catalogue)
        os.replace(partial, mo)
        written.append(mo)
    return written


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    app.add_template_global(html_lang, "html_lang")
    app.add_template_global(LANGUAGES, "languages")
    app.add_template_global(help_url, "help_url")


def install_template_callables(app: Flask) -> None:
    """After Flask-Babel's init_app: the templates' `_`, `ngettext`… use the request's cached
    catalogue (same newstyle semantics as Flask-Babel's own)."""
    app.jinja_env.install_gettext_callables(
        gettext=_gettext,
        ngettext=_ngettext,
        newstyle=True,
        pgettext=_pgettext,
        npgettext=_npgettext,
    )
