"""Languages (issue 16, DESIGN §11): which language each request is shown in, and the
catalogues Flask-Babel reads.

The language is, in this order: an explicit `?lang=` on the URL (the crisis page's link carries
it, so that the service worker keeps each language's copy apart); the user's choice, stored on
their account; the choice made on the login or invitation page before logging in (a cookie);
the browser's Accept-Language; English. Catalogues live in kapjournal/translations as `.po`
files; `make run` and `make test` compile them into the `.mo` files Flask-Babel reads (not
committed: they are built from the `.po`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from functools import cache
from pathlib import Path

import flask_babel
from babel import Locale
from babel.dates import format_datetime as babel_datetime
from babel.dates import tokenize_pattern
from babel.messages.extract import extract_javascript
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.plural import _plural_tags
from flask import Flask, current_app, has_request_context, request, url_for
from flask.globals import _cv_request  # Flask's own context variable for the request
from flask_babel import get_locale
from flask_babel.speaklater import LazyString
from flask_login import current_user

# Each named in its own language, never translated (so the scanner is told: not-ui).
LANGUAGES = {"en": "English", "es": "Español"}  # not-ui
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

_FORCED: ContextVar[str | None] = ContextVar("kapjournal_i18n_forced", default=None)
_KEPT = "_kapjournal_i18n"  # where a request context keeps (forced, code, catalogue)


def _current() -> tuple[str, object]:
    """(language code, catalogue) of this request, or of the enclosing `force_locale`. Kept
    on the request context itself, so it ends with the request (nothing of it outlives it)."""
    owner = _cv_request.get(None)
    forced = _FORCED.get()
    kept = getattr(owner, _KEPT, None)
    if kept is not None and kept[0] == forced:
        return kept[1], kept[2]
    if owner is None:  # a job or the command line (English, or a forced language)
        return str(get_locale() or DEFAULT), flask_babel.get_translations()
    code = forced or select_locale()
    found = _catalogue(code)
    setattr(owner, _KEPT, (forced, code, found))
    return code, found


def _catalogue(code: str):
    """The app's catalogue for `code`, loaded once (by Flask-Babel) and kept on the app."""
    kept = current_app.extensions.setdefault("kapjournal_catalogues", {})
    found = kept.get(code)
    if found is None:
        with flask_babel.force_locale(code):
            found = kept[code] = flask_babel.get_translations()
    return found


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


# The templates' plurals: Jinja's newstyle gettext puts `num` and the variables in itself.
def _ngettext(singular: str, plural: str, n: int) -> str:
    return _current()[1].ungettext(singular, plural, n)


def _npgettext(context: str, singular: str, plural: str, n: int) -> str:
    return _current()[1].unpgettext(context, singular, plural, n)


# The gettext family of the Python side (views, services, lazy labels) and, called without
# variables, of the templates: Flask-Babel's semantics (keyword variables are %-formatted,
# `num` is given to plurals) through the request's cached catalogue. Flask-Babel's own finds
# the catalogue anew on every call (~15 µs).
def gettext(string: str, **variables) -> str:
    found = _current()[1].ugettext(string)
    return found % variables if variables else found


def ngettext(singular: str, plural: str, num: int, **variables) -> str:
    variables.setdefault("num", num)
    return _current()[1].ungettext(singular, plural, num) % variables


def pgettext(context: str, string: str, **variables) -> str:
    found = _current()[1].upgettext(context, string)
    return found % variables if variables else found


def lazy_gettext(string: str, **variables) -> LazyString:
    """A label defined at import time, translated each time it is shown."""
    return LazyString(gettext, string, **variables)


def help_url() -> str:
    """The crisis page in the language of this page: English is plain /help, others carry
    their `lang`, so that offline the service worker serves the copy in the right language."""
    code = html_lang()
    return url_for("pwa.help") if code == DEFAULT else url_for("pwa.help", lang=code)


def lang_args() -> dict[str, str]:
    """`url_for` arguments that keep the page's language on a link to a page the service
    worker keeps per language (the offline pages): none for English, `lang` for the others."""
    code = html_lang()
    return {} if code == DEFAULT else {"lang": code}


# --- dates and times -----------------------------------------------------------------------------

# strftime directives (the `|local` filter's argument) as CLDR pattern letters, which Babel
# renders in the page's language: "%a %-d %b %Y, %H:%M" is "Wed 2 Dec 2026, 06:30" in English
# (as strftime wrote it), "mié 2 dic 2026, 06:30" in Spanish.
_STRFTIME = {
    "a": "EEE",
    "A": "EEEE",
    "d": "dd",
    "-d": "d",
    "e": "d",
    "b": "MMM",
    "h": "MMM",
    "B": "MMMM",
    "m": "MM",
    "-m": "M",
    "y": "yy",
    "Y": "y",
    "H": "HH",
    "-H": "H",
    "I": "hh",
    "-I": "h",
    "M": "mm",
    "S": "ss",
    "p": "a",
}
_DIRECTIVE = re.compile(r"%(-?[a-zA-Z%])")
# Per language, what a full month name needs around it ("2 de diciembre de 2026").
_MONTH_WORDS = {
    "es": ((re.compile(r"\bd MMMM\b"), "d 'de' MMMM"), (re.compile(r"MMMM y"), "MMMM 'de' y"))
}


def _quoted(text: str) -> str:
    """Literal text in a CLDR pattern: letters inside single quotes, a quote doubled."""
    if not text:
        return ""
    if not re.search(r"[A-Za-z']", text):
        return text
    return "'" + text.replace("'", "''") + "'"


@cache
def cldr_pattern(fmt: str, language: str = DEFAULT) -> str:
    """The CLDR pattern for a strftime format (the directives in _STRFTIME only; anything
    else is a programming error, raised as ValueError)."""
    out, last = [], 0
    for match in _DIRECTIVE.finditer(fmt):
        out.append(_quoted(fmt[last : match.start()]))
        code = match.group(1)
        if code == "%":
            out.append("%")
        elif code in _STRFTIME:
            out.append(_STRFTIME[code])
        else:
            raise ValueError(f"strftime directive %{code} has no CLDR equivalent here")
        last = match.end()
    out.append(_quoted(fmt[last:]))
    pattern = "".join(out)
    for found, instead in _MONTH_WORDS.get(language, ()):
        pattern = found.sub(instead, pattern)
    return pattern


def format_moment(value: datetime | date, fmt: str) -> str:
    """`value` (a date, or a datetime already in the zone to show) in the page's language,
    from a strftime-style format. Outside a request: English."""
    language = html_lang()  # the request's, a forced one (an email), or English outside both
    return format_cldr(value, cldr_pattern(fmt, language))


# What Babel's format_datetime does for the pattern letters _STRFTIME produces, with the
# locale's names looked up once: a timeline shows dozens of times, and Babel parses the locale
# and walks its generic formatter on every call (~20 µs; this is ~3 µs). The test compares
# both on every format, in every language, over a year of days and hours.
def _names(kind: str, width: str, language: str) -> dict:
    found = getattr(Locale.parse(language), kind)["format"][width]
    return dict(found.items())


def _field(letter: str, count: int, language: str):
    if letter == "E":
        days = _names("days", "wide" if count == 4 else "abbreviated", language)
        return lambda v: days[v.weekday()]
    if letter == "M" and count >= 3:
        months = _names("months", "wide" if count == 4 else "abbreviated", language)
        return lambda v: months[v.month]
    if letter == "a":
        periods = _names("day_periods", "abbreviated", language)
        return lambda v: periods["pm" if v.hour >= 12 else "am"]
    numbers = {
        "d": lambda v: v.day,
        "M": lambda v: v.month,
        "H": lambda v: v.hour,
        "h": lambda v: v.hour % 12 or 12,
        "m": lambda v: v.minute,
        "s": lambda v: v.second,
    }
    if letter == "y":
        return (lambda v: f"{v.year % 100:02d}") if count == 2 else (lambda v: str(v.year))
    number = numbers[letter]  # a KeyError for any other letter: _compiled_cldr leaves it to Babel
    return lambda v: f"{number(v):0{count}d}"


@cache
def _compiled_cldr(pattern: str, language: str) -> tuple:
    """A CLDR pattern as a tuple of callables (datetime → text), one per literal or field;
    a field _field does not know is left to Babel."""
    parts = []
    for kind, value in tokenize_pattern(pattern):
        if kind == "chars":
            parts.append(lambda v, text=value: text)
            continue
        try:
            parts.append(_field(value[0], value[1], language))
        except KeyError:
            return (lambda v: babel_datetime(v, pattern, locale=language),)
    return tuple(parts)


def format_cldr(value: datetime | date, pattern: str) -> str:
    """`value` by a CLDR pattern ("EEE d MMM") in the page's language: the templates'
    `dateformat` filter (Flask-Babel's, which parses the locale on every call)."""
    language = html_lang()
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return "".join(part(value) for part in _compiled_cldr(str(pattern), language))


def format_day(day: date | datetime, *, year: bool = True) -> str:
    """A day as chart labels and comparisons say it: "18 Nov 2026" ("18 nov 2026"), or
    without the year: "18 Nov". For other slices' Python (services/chart.py, measures,
    export): call it where an English month abbreviation is built by hand today."""
    return format_moment(day, "%-d %b %Y" if year else "%-d %b")


# --- the JavaScript messages ---------------------------------------------------------------------

STATIC = Path(__file__).resolve().parent.parent / "static"
# What the scripts call to mark their words (static/js/app.js defines them): t("Text", {n: 1})
# and tn("one entry", "%(n)d entries", n).
_JS_KEYWORDS = {"t": "_", "tn": "ngettext"}


def extract_js(fileobj, keywords, comment_tags, options) -> Iterator[tuple]:
    """babel.cfg's extractor for static/**.js: Babel's JavaScript extractor, reading `t()` and
    `tn()`, reported as `_()` and `ngettext()`, so that any extraction with the default
    keywords (pybabel, the catalogue test) finds the scripts' messages."""
    name = getattr(fileobj, "name", "")
    if str(name).endswith(".min.js"):
        return  # vendored (htmx): not ours, and its one-letter functions are not messages
    found = extract_javascript(fileobj, list(_JS_KEYWORDS), comment_tags, options)
    for lineno, funcname, messages, comments in found:
        yield lineno, _JS_KEYWORDS.get(funcname, funcname), messages, comments


def _script_files() -> list[Path]:
    files = [STATIC / "sw.js", *sorted((STATIC / "js").glob("*.js"))]
    return [f for f in files if not f.name.endswith(".min.js")]


@cache
def _js_messages(stamp: tuple) -> tuple[str, ...]:
    """The msgids the scripts use (singular msgid for a plural), for one state of the files."""
    found = []
    for path in _script_files():
        with path.open("rb") as source:
            for _lineno, _func, messages, _comments in extract_js(source, (), (), {}):
                first = messages[0] if isinstance(messages, tuple) else messages
                if first and first not in found:
                    found.append(first)
    return tuple(found)


@cache
def _catalogue_json(language: str, stamp: tuple) -> tuple[bytes, str]:
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    messages: dict[str, object] = {}
    if po.exists():
        with po.open("rb") as source:
            catalogue = read_po(source)
        for msgid in _js_messages(stamp[:-1]):
            message = catalogue.get(msgid)
            if message is None or message.fuzzy:
                continue
            if isinstance(message.string, tuple | list):
                if all(message.string):
                    messages[msgid] = list(message.string)
            elif message.string:
                messages[msgid] = message.string
    tags = Locale.parse(language).plural_form.tags | {"other"}
    body = {"lang": language, "plural": [t for t in _plural_tags if t in tags]}
    body["messages"] = messages
    data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
    return data, hashlib.sha256(data).hexdigest()[:16]


def js_catalogue(language: str) -> tuple[bytes, str]:
    """The scripts' messages in `language` as JSON ({"lang", "plural": the CLDR categories in
    the order of the catalogue's plural forms, "messages": msgid → msgstr, or the list of
    forms for a plural}) and its ETag. Rebuilt when a script or the catalogue changes."""
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    stamp = tuple(f.stat().st_mtime_ns for f in _script_files())
    stamp += (po.stat().st_mtime_ns if po.exists() else 0,)
    return _catalogue_json(language, stamp)


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
    app.add_template_global(lang_args, "lang_args")
    app.after_request(_content_language)


def _content_language(response):
    """Each page says its language (the service worker keeps the last one, to choose the
    offline pages' language)."""
    if response.mimetype == "text/html" and "Content-Language" not in response.headers:
        response.headers["Content-Language"] = html_lang()
    return response


def install_template_callables(app: Flask) -> None:
    """After Flask-Babel's init_app: the templates' `_`, `ngettext`… use the request's cached
    catalogue (same newstyle semantics as Flask-Babel's own), and `dateformat` the compiled
    patterns."""
    app.jinja_env.filters["dateformat"] = format_cldr
    app.jinja_env.install_gettext_callables(
        gettext=gettext,
        ngettext=_ngettext,
        newstyle=True,
        pgettext=pgettext,
        npgettext=_npgettext,
    )
