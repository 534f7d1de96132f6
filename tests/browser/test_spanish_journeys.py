"""The main journeys once in Spanish, in a real Chromium set to Spanish at 360 px (issue 16): a
patient writes a reflection and shares it with their therapist; a patient answers the PHQ-9
saying "Several days" to question 9 and gets their safety plan and the crisis lines first; a
supporter reads what was shared with them. Every page is in Spanish (`<html lang="es">`, the
catalogue's words on the buttons and headings), fits the screen and has no accessibility
violation (axe-core, light and dark). The labels are looked up in the Spanish catalogue, so the
test follows the translation and fails if a label is missing from it or left in English."""

from __future__ import annotations

import re

from babel.support import Translations
from conftest import PASSWORD, make_user, write_entry

from kapjournal import i18n
from kapjournal.services import instruments

from .conftest import PHONE
from .test_languages import SPANISH_PHONE
from .test_pwa import assert_accessible
from .test_registration import heading

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    Axe = expect = None

ENTRY_URL = re.compile(r"/entries/[0-9a-f-]{36}$")
RESULT_URL = re.compile(r"/measures/results/[0-9a-f-]{36}$")
WITH_THOUGHTS = [2, 2, 2, 2, 2, 2, 2, 1, 1]  # 16, "Moderadamente grave"; question 9: "Several days"
ANSWER = dict(instruments.ANSWERS)  # the validated English wording, shown as published
assert SPANISH_PHONE["viewport"] == PHONE["viewport"]


def es(msgid: str, **values) -> str:
    """`msgid` in Spanish, from the catalogue the app uses; fails if it is not translated."""
    i18n.compile_catalogues()
    catalogue = Translations.load(str(i18n.TRANSLATIONS), ["es"])
    text = catalogue.ugettext(msgid)
    assert text != msgid, f"not in Spanish: {msgid!r}"
    return text % values if values else text


def in_spanish(page, where: str, axe) -> None:
    """The page is Spanish, fits 360 px with the crisis link in reach, and axe finds nothing."""
    assert page.locator("html").get_attribute("lang") == "es", where
    page.wait_for_load_state("load")
    help_link = page.get_by_role("banner").get_by_role("link", name=es("Need help now?"))
    expect(help_link).to_be_visible()
    box = help_link.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360, (where, box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360, where
    assert_accessible(axe, page, f"{where}, in Spanish")


def log_in_in_spanish(page, email: str) -> None:
    page.goto("/login")
    expect(heading(page)).to_have_text(es("Log in"))
    page.get_by_label(es("Email")).fill(email)
    page.get_by_label(es("Password")).fill(PASSWORD)
    page.get_by_role("button", name=es("Log in")).click()


def care_team(app):
    therapist = make_user(
        app, role="therapist", email="tess@example.org", name="Dra. Tess Ward", is_owner=True
    )
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quiñones", invited_by=therapist
    )
    return therapist, patient


def test_a_patient_writes_and_shares_a_reflection_in_spanish(live_app, new_context):
    therapist, patient = care_team(live_app)
    page = new_context(**SPANISH_PHONE).new_page()
    axe = Axe()
    log_in_in_spanish(page, patient.email)
    expect(heading(page)).to_have_text(es("Your journal"))
    in_spanish(page, "the journal", axe)

    page.get_by_role("link", name=es("Write a reflection")).click()
    expect(heading(page)).to_have_text(es("How was it?"))
    in_spanish(page, "writing a reflection", axe)
    page.get_by_label(es("Whatever comes to mind")).fill("El cuarto se llenó de luz.")
    page.get_by_role("group", name=es("Who may read it")).get_by_label(therapist.name).check()
    page.get_by_label(es("Good"), exact=True).check()
    page.get_by_role("button", name=es("Save")).click()

    expect(page).to_have_url(ENTRY_URL)
    expect(heading(page)).to_have_text(es("Reflection"))
    expect(page.get_by_text("El cuarto se llenó de luz.")).to_be_visible()
    who = page.get_by_role("region", name=es("Who can read this"))
    expect(who.get_by_role("listitem")).to_have_count(2)
    expect(who.get_by_role("listitem").nth(1)).to_contain_text(therapist.name)
    in_spanish(page, "the saved reflection", axe)


def test_the_phq9_with_thoughts_of_self_harm_in_spanish_brings_the_safety_plan_first(
    live_app, new_context
):
    _, patient = care_team(live_app)
    page = new_context(**SPANISH_PHONE).new_page()
    axe = Axe()
    log_in_in_spanish(page, patient.email)
    expect(heading(page)).to_have_text(es("Your journal"))
    page.goto("/measures")
    expect(heading(page)).to_have_text(es("How you are doing"))
    page.get_by_role("link", name=es("Answer the %(name)s", name="PHQ-9")).first.click()
    # The validated questions stay in English, marked as English, with a note in Spanish.
    expect(page.locator('legend [lang="en"]').first).to_be_visible()
    in_spanish(page, "the PHQ-9 form", axe)
    for number, answer in enumerate(WITH_THOUGHTS, 1):
        legend = es("%(number)d of %(count)d.", number=number, count=9)
        group = page.get_by_role("group", name=re.compile("^" + re.escape(legend)))
        group.get_by_label(ANSWER[answer], exact=True).check()
    page.get_by_role("button", name=es("Save my answers")).click()

    expect(page).to_have_url(RESULT_URL)
    safety = page.get_by_role("region", name=es("You don't have to carry this alone"))
    expect(safety).to_be_visible()
    for href in ("tel:988", "tel:911"):
        expect(safety.locator(f'a[href="{href}"]').first).to_be_visible()
    expect(page.get_by_role("region", name=es("Score"))).to_be_visible()
    in_spanish(page, "the PHQ-9 result with its safety section", axe)
    page.goto("/measures")  # the chart and its table, with the longest Spanish severity
    expect(page.locator("main table").first).to_contain_text(es("Moderately severe"))
    in_spanish(page, "Progress with a result", axe)


def test_a_supporter_reads_what_was_shared_in_spanish(live_app, new_context):
    _, patient = care_team(live_app)
    supporter = make_user(
        live_app, role="support", email="sam@example.org", name="Sam Ayuda", supporting=patient
    )
    write_entry(live_app, patient, "Gracias por quedarte conmigo.", readers=[supporter])
    write_entry(live_app, patient, "Solo para mí.")
    page = new_context(**SPANISH_PHONE).new_page()
    axe = Axe()
    log_in_in_spanish(page, supporter.email)
    page.get_by_role("link", name=patient.name).first.click()
    expect(heading(page)).to_have_text(es("Supporting %(name)s", name=patient.name))
    in_spanish(page, "the supporter's view", axe)
    expect(page.get_by_text("Solo para mí.")).to_have_count(0)

    page.get_by_role("link", name=es("Reflection")).click()
    expect(page.get_by_text("Gracias por quedarte conmigo.")).to_be_visible()
    expect(page.get_by_text(es("By %(name)s", name=patient.name))).to_be_visible()
    expect(page.get_by_role("link", name=es("Edit"))).to_have_count(0)
    in_spanish(page, "a shared reflection, read by the supporter", axe)
