"""Languages (issue 16 groundwork): the language is the user's choice (kept on their account),
else the one chosen before logging in, else the browser's, else English; `<html lang>` says
which; the login, invitation and crisis pages speak Spanish, the crisis page with 988's Spanish
options as 988 publishes them; and the Spanish catalogue has every marked string, none fuzzy."""

from __future__ import annotations

import gc
import importlib.util
import re
import weakref
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from conftest import client_for, csrf_token, login, post, write_entry
from flask import render_template_string
from flask_babel import gettext
from sqlmodel import Session
from test_invitations import invite

from kapjournal import db, i18n
from kapjournal.models import User

ROOT = Path(__file__).resolve().parent.parent
SPANISH = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


def page_of(client, path: str, **kw) -> str:
    response = client.get(path, **kw)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def lang_of(page: str) -> str:
    return re.search(r'<html lang="([^"]+)">', page).group(1)


def locale_of(app, persona) -> str | None:
    with app.app_context(), Session(db.engine()) as session:
        return session.get(User, persona.id).locale


# --- choosing the language -----------------------------------------------------------------------


def test_english_when_the_browser_asks_for_nothing_we_speak(client):
    for headers in ({}, {"Accept-Language": "fr-FR,de;q=0.8"}, ENGLISH):
        page = page_of(client, "/login", headers=headers)
        assert lang_of(page) == "en"
        assert '<h1 tabindex="-1">Log in</h1>' in page and 'href="/help"' in page


def test_the_browsers_spanish_gives_spanish_pages_with_html_lang_es(client):
    page = page_of(client, "/login", headers=SPANISH)
    assert lang_of(page) == "es"
    assert '<h1 tabindex="-1">Iniciar sesión</h1>' in page
    assert "¿Necesita ayuda ahora?" in page and 'href="/help?lang=es"' in page
    assert '<label for="f-email">Correo electrónico</label>' in page
    assert 'lang="en">English</button>' in page  # the way back, named in its own language


def test_choosing_spanish_on_the_login_page_works_without_javascript(client):
    page = page_of(client, "/login", headers=ENGLISH)
    assert 'action="/language"' in page and 'lang="es">Español</button>' in page
    refused = client.post("/language", data={"lang": "es", "back": "/login"})
    assert refused.status_code == 400  # no CSRF token
    chosen = post(client, "/language", {"lang": "es", "back": "/login"}, token_from="/login")
    assert chosen.status_code == 303 and chosen.headers["Location"].endswith("/login")
    assert lang_of(page_of(client, "/login", headers=ENGLISH)) == "es"  # the choice wins
    back = post(client, "/language", {"lang": "en", "back": "/login"}, token_from="/login")
    assert back.status_code == 303
    assert lang_of(page_of(client, "/login", headers=SPANISH)) == "en"


def test_an_unknown_language_or_a_next_elsewhere_changes_nothing_and_stays_here(client):
    response = post(client, "/language", {"lang": "xx", "back": "/login"}, token_from="/login")
    assert response.status_code == 303 and "Set-Cookie" not in response.headers
    away = post(client, "/language", {"lang": "es", "back": "//evil.example"}, token_from="/login")
    assert away.status_code == 303 and "evil" not in away.headers["Location"]


def test_a_logged_in_choice_is_kept_on_the_account_and_follows_to_another_device(app, patient):
    phone = app.test_client()
    login(phone, patient)
    assert locale_of(app, patient) is None
    assert 'lang="es">Español</button>' in page_of(phone, "/account")
    chosen = post(phone, "/language", {"lang": "es", "back": "/account"}, token_from="/account")
    assert chosen.status_code == 303
    assert locale_of(app, patient) == "es"
    laptop = app.test_client()  # another device, a browser set to English, no cookie
    login(laptop, patient)
    laptop.delete_cookie(i18n.COOKIE)
    page = page_of(laptop, "/journal", headers=ENGLISH)
    assert lang_of(page) == "es" and "Cerrar sesión" in page
    post(laptop, "/language", {"lang": "en", "back": "/account"}, token_from="/account")
    assert locale_of(app, patient) == "en"


def test_the_invitation_pages_offer_the_language_and_speak_it(as_therapist):
    _, _, token = invite(as_therapist)
    visitor = as_therapist.application.test_client()
    page = page_of(visitor, f"/invite/{token}", headers=ENGLISH)
    assert 'action="/language"' in page and 'lang="es">Español</button>' in page
    chosen = post(
        visitor, "/language", {"lang": "es", "back": f"/invite/{token}"}, token_from="/login"
    )
    assert chosen.headers["Location"].endswith(f"/invite/{token}")
    assert lang_of(page_of(visitor, f"/invite/{token}")) == "es"


def test_a_wrong_password_is_told_in_spanish(client, patient):
    token = csrf_token(client, "/login")
    response = client.post(
        "/login",
        data={"email": patient.email, "password": "not the password", "csrf_token": token},
        headers=SPANISH,
    )
    assert response.status_code == 422
    assert "no coinciden con ninguna cuenta" in response.get_data(as_text=True)


# --- the crisis page -----------------------------------------------------------------------------


def test_the_spanish_crisis_page_has_988_press_2_and_text_ayuda_as_published(client):
    response = client.get("/help?lang=es", headers=ENGLISH)  # the URL's language wins
    page = response.get_data(as_text=True)
    assert lang_of(page) == "es" and '<h1 tabindex="-1">¿Necesita ayuda ahora?</h1>' in page
    assert re.search(r'href="tel:988"><span>[^<]*oprima 2[^<]*</span> <strong>988</strong>', page)
    assert re.search(r'href="sms:988\?&amp;body=AYUDA"><span>[^<]*AYUDA[^<]*</span>', page)
    assert 'href="tel:911"' in page
    assert "revisadas por última vez el 2 de diciembre de 2026" in page
    assert {"Accept-Language", "Cookie"} <= set(response.vary)


def test_the_english_crisis_page_is_unchanged(client):
    page = client.get("/help", headers=ENGLISH).get_data(as_text=True)
    assert lang_of(page) == "en" and "oprima" not in page
    assert "988 Suicide &amp; Crisis Lifeline — call" in page


# --- the catalogue -------------------------------------------------------------------------------


def marked_strings() -> set[str]:
    """Every string marked for translation in the code and templates, as `make i18n-extract`
    finds them (babel.cfg)."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {
        "_": None,
        "gettext": None,
        "ngettext": (1, 2),
        "pgettext": ((1, "c"), 2),
        "_l": None,
        "lazy_gettext": None,
    }
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_the_spanish_catalogue_has_every_marked_string_translated_and_none_fuzzy():
    with (i18n.TRANSLATIONS / "es/LC_MESSAGES/messages.po").open("rb") as source:
        catalogue = read_po(source)
    # a plural entry by its singular (as marked_strings names it), translated in every form
    entries = {(m.id if isinstance(m.id, str) else m.id[0]): m for m in catalogue if m.id}
    marked = marked_strings()
    assert len(marked) > 30
    assert sorted(marked - set(entries)) == []  # missing
    assert sorted(set(entries) - marked) == []  # obsolete
    assert [m.id for m in entries.values() if not all(m.string) or not m.string] == []
    assert [m.id for m in entries.values() if m.fuzzy] == [] and not catalogue.fuzzy
    assert [(m.id, errors) for m, errors in catalogue.check()] == []  # placeholders match


# --- nothing left unmarked -------------------------------------------------------------------


def _scanner():
    spec = importlib.util.spec_from_file_location("i18n_scan", ROOT / "tools" / "i18n_scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_template_and_module_has_its_user_facing_words_marked():
    assert _scanner().unmarked() == []


def test_the_scan_finds_an_unmarked_word_in_a_template_and_in_python(tmp_path):
    scan = _scanner()
    page = tmp_path / "page.html"
    page.write_text(
        '<h1>{{ _("Your journal") }}</h1>\n<p title="Shared">Nothing yet</p>\n'
        "{% for label in ['What I hope for'] %}{{ label }}{% endfor %}\n"
    )
    assert scan.scan_template(page) == [
        (2, "Nothing"),
        (2, "Shared"),
        (2, "yet"),
        (3, "What I hope for"),
    ]
    module = tmp_path / "view.py"
    module.write_text(
        '"""A docstring is for developers."""\n'
        "from flask_babel import gettext as _\n"
        'def f(flash):\n    flash(_("Saved."))\n    flash("Write the note first.")\n'
        '    log.info("Some words for the log here")\n'
    )
    assert scan.scan_python(module) == [(5, "Write the note first.")]


# --- the templates' catalogue, looked up once per request ----------------------------------------


def test_a_forced_language_reaches_the_templates_and_ends_with_its_block(app):
    page = "{{ _('Journal') }} {{ html_lang() }}"
    with app.test_request_context("/", headers=ENGLISH):
        assert render_template_string(page) == "Journal en"
        with i18n.force_locale("es"):  # an email to a Spanish-speaking recipient
            assert render_template_string(page) == "Diario es"
        assert render_template_string(page) == "Journal en"
    with app.test_request_context("/", headers=SPANISH):  # a new request looks it up anew
        assert render_template_string(page) == "Diario es"


def test_every_forced_language_goes_through_i18n_force_locale():
    """Flask-Babel's own force_locale would leave the templates' cached catalogue as it was."""
    direct = [
        path.name
        for path in (ROOT / "kapjournal").rglob("*.py")
        if path.name != "i18n.py"
        and re.search(
            r"flask_babel import[^\n]*force_locale|flask_babel\.force_locale", path.read_text()
        )
    ]
    assert direct == []


def test_outside_a_request_strings_are_english_unless_a_language_is_forced(app):
    """A job or the command line (a reminder sent by `flask reminders send`) has no request."""
    with app.app_context():
        assert gettext("Journal") == "Journal"
        with i18n.force_locale("es"):
            assert gettext("Journal") == "Diario"


# --- every page a Spanish speaker opens ---------------------------------------------------------

# Words of English prose that Spanish never uses: one of them in a page's visible text (or in
# what a screen reader says of it) is a sentence left in English.
ENGLISH_WORDS = re.compile(
    r"\b(?:the|your|you|and|with|this|that|have|what|when|who|will|not|here|there|from|"
    r"please|yet|been|could|would|should|shared|entry|entries|write|save|delete)\b",
    re.I,
)


def heard(page: str) -> str:
    """What a reader sees or hears of a page, without what is English on purpose: elements
    marked lang="en" (the validated PHQ-9 and GAD-7 wording), scripts and styles."""
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    page = re.sub(r'(?s)<(?!html\b)(\w+)[^>]*\blang="en"[^>]*>.*?</\1>', " ", page)
    spoken = " ".join(re.findall(r'\b(?:aria-label|alt|title|placeholder)="([^"]*)"', page))
    return " ".join(re.sub(r"<[^>]+>", " ", page).split()) + " " + spoken


def test_every_page_a_spanish_speaker_opens_is_in_spanish(app, patient, therapist, supporter):
    from test_security import get_pages

    shared = write_entry(app, patient, "Hoy respiré despacio.", readers=[therapist, supporter])
    pages = {
        "patient": [
            f"/entries/{shared}",
            f"/entries/{shared}/edit",
            f"/entries/{shared}/log",
            f"/supporters/{supporter.id}",
        ],
        "therapist": [
            f"/patients/{patient.id}",
            f"/patients/{patient.id}/progress",
            f"/entries/{shared}",
            f"/entries/{shared}/notes",
        ],
        "support": [f"/supporting/{patient.id}", f"/entries/{shared}"],
    }
    english = []
    people = {p.role: p for p in (patient, therapist, supporter)}
    for role, own in pages.items():
        client = client_for(app, people[role])
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = SPANISH["Accept-Language"]
        seen = {path: client.get(path) for path in own}
        seen |= get_pages(app, client)
        for path, response in seen.items():
            if response.mimetype != "text/html" or response.status_code >= 300:
                continue
            text = heard(response.get_data(as_text=True))
            found = sorted({word.lower() for word in ENGLISH_WORDS.findall(text)})
            if found:
                english.append((role, path, found))
    assert english == []


def test_the_cached_catalogue_keeps_nothing_of_a_request_after_it_ends(app):
    """A request's body (journal words in a form) must not outlive the request in memory
    because the translation cache still points at it."""
    with app.test_request_context("/", method="POST", data={"text": "Words of a journal."}):
        from flask import request

        assert render_template_string("{{ _('Journal') }}") == "Journal"
        gone = weakref.ref(request._get_current_object())
    gc.collect()
    assert gone() is None
