"""The app shell's kept markup (kapjournal/shell.py, `{% shell … %}` in base.html): rendered
once per language, role and tab, it holds only the app's own words and links. A person's data
(their id, their CSRF token, their name) stays outside it, and each language, role and tab gets
its own."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import client_for

ROOT = Path(__file__).resolve().parent.parent
# What a kept fragment may depend on: nothing that tells one person from another.
ALLOWED_KEYS = {"html_lang()", "current_user.role", "tabs|length", "current_tab", ""}
ALLOWED_KEYS |= {"config.CLINIC_NAME", "reviewed"}  # the crisis lines' review date
SHELL_TAG = re.compile(r"{%-?\s*shell\b(.*?)-?%}", re.S)


def test_only_the_base_layout_keeps_markup_and_only_by_language_role_and_tab():
    uses = {}
    for path in sorted((ROOT / "templates").rglob("*.html")):
        for found in SHELL_TAG.finditer(path.read_text()):
            uses.setdefault(path.relative_to(ROOT / "templates").as_posix(), []).append(
                found.group(1)
            )
    # The layout, and the crisis page (the same words for everyone who reads its language).
    assert set(uses) == {"base.html", "pwa/help.html"}, uses
    for keys in uses.values():
        for key in keys:
            parts = {part.strip() for part in key.split(",")}
            assert parts <= ALLOWED_KEYS, key
    for name in uses:
        source = (ROOT / "templates" / name).read_text()
        for body in re.findall(r"{%\s*shell\b.*?%}(.*?){%\s*endshell\s*%}", source, re.S):
            included = re.findall(r'{%\s*include\s+"([^"]+)"', body)
            assert set(included) <= {"_crisis_lines.html"}, (name, included)
            for personal in ("current_user", "csrf_token", "{{ g.", "session["):
                assert personal not in body.replace("current_user.role", ""), (name, personal)


def _nav(html: str) -> str:
    return re.search(r'<nav class="app-nav.*?</nav>', html, re.S).group(0)


def test_each_person_gets_their_own_logout_form_and_each_role_and_language_its_own_tabs(
    app, patient, therapist, supporter
):
    seen = {}
    for persona in (patient, therapist, supporter, patient):
        client = client_for(app, persona)
        page = client.get("/help").get_data(as_text=True)
        home = client.get("/account").get_data(as_text=True)
        nav = _nav(home)
        assert f'data-owner="{persona.id}"' in nav
        token = re.search(r'name="csrf_token" value="([^"]+)"', nav).group(1)
        assert token not in seen.values()  # a session's own token, never another's
        seen[persona.email + str(len(seen))] = token
        assert 'aria-current="page"' in nav and "Account" in nav
        assert "Need help now?" in page
    patient_nav = _nav(client_for(app, patient).get("/account").get_data(as_text=True))
    therapist_nav = _nav(client_for(app, therapist).get("/account").get_data(as_text=True))
    assert "Journal" in patient_nav and "Journal" not in therapist_nav
    assert "Invite a patient" in therapist_nav and "Invite a patient" not in patient_nav


def test_a_spanish_page_keeps_its_own_shell_beside_the_english_one(app, patient):
    english = client_for(app, patient)
    spanish = client_for(app, patient)
    spanish.set_cookie("lang", "es")
    for _ in range(2):  # the second time from what was kept
        en = english.get("/help", headers={"Accept-Language": "en"}).get_data(as_text=True)
        es = spanish.get("/help?lang=es").get_data(as_text=True)
        assert "Need help now?" in en and "¿Necesita ayuda ahora?" not in en
        assert "Need help now?" not in es
        assert '<html lang="es">' in es and '<html lang="en">' in en
        english_footer = re.search(r'<footer class="site-footer">.*?</footer>', en, re.S)
        spanish_footer = re.search(r'<footer class="site-footer">.*?</footer>', es, re.S)
        assert english_footer.group(0) != spanish_footer.group(0)
    tab = re.search(r'aria-current="page"', _nav(english.get("/journal").get_data(as_text=True)))
    assert tab is not None
    journal_nav = _nav(english.get("/journal").get_data(as_text=True))
    account_nav = _nav(english.get("/account").get_data(as_text=True))
    current = re.compile(r'<a href="([^"]+)" aria-current="page">')
    assert current.search(journal_nav).group(1) == "/journal"
    assert current.search(account_nav).group(1) == "/account"
