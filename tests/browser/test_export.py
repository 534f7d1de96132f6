"""Downloading the journal in a real Chromium at phone size (360 px): the password is asked
for, the ZIP is saved like any download, and its journal.html, opened from the phone's disk
with no server behind it, shows the entries with their line breaks, fits the screen and runs
no script. The fixtures fail the test on any CSP violation or uncaught error."""

from __future__ import annotations

import re
import zipfile

from conftest import PASSWORD, make_user

from .conftest import PHONE
from .test_journal_journey import ENTRY_URL, patient_and_therapist
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

WORDS = "The heron stood still by the canal.\nI stood still too.\n\nThen I walked home."


def write_a_reflection(page, words: str) -> None:
    page.goto("/entries/new?kind=reflection")
    expect(heading(page)).to_have_text("How was it?")
    page.get_by_label("Whatever comes to mind").fill(words)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(ENTRY_URL)


def test_patient_downloads_the_journal_on_a_phone_and_reads_it_from_the_file(
    live_app, phone, tmp_path
):
    patient, _therapist = patient_and_therapist(live_app)
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    write_a_reflection(page, WORDS)

    # From the tab bar, as a patient finds it: More, Account, Download my journal.
    nav(page).get_by_role("link", name="Account and care team").click()
    expect(heading(page)).to_have_text("Your account")
    page.get_by_role("link", name="Download my journal").click()
    expect(heading(page)).to_have_text("Download your journal")
    assert_fits_the_screen(page)
    page.get_by_label("Your password").fill("not my password at all")
    page.get_by_role("button", name="Download my journal").click()
    expect(page.get_by_text("That is not your password.")).to_be_visible()
    assert_fits_the_screen(page)

    page.get_by_label("Your password").fill(PASSWORD)
    with page.expect_download() as started:
        page.get_by_role("button", name="Download my journal").click()
    download = started.value
    assert re.fullmatch(r"journal-\d{4}-\d{2}-\d{2}\.zip", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    expect(heading(page)).to_have_text("Download your journal")  # the page stays

    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path)
    assert names == {"journal.html", "journal.json", "questionnaires.fhir.json", "access-log.csv"}

    reader = phone.new_page()
    reader.goto((tmp_path / "journal.html").as_uri())
    expect(reader.get_by_role("heading", level=1)).to_have_text(f"{patient.name}\u2019s journal")
    entry = reader.locator("article.entry").first
    expect(entry.get_by_role("heading", level=4)).to_contain_text("Reflection · ")
    assert entry.locator(".text").first.inner_text() == WORDS  # line breaks kept
    # The crisis lines come along, one tap away at the top, even with no server to ask.
    help_lines = reader.get_by_role("region", name="Need help now?")
    expect(help_lines.get_by_role("link", name=re.compile("call 988"))).to_be_visible()
    width = reader.viewport_size["width"]
    assert reader.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
    assert reader.locator("script").count() == 0


def test_another_patient_imports_the_downloaded_journal_from_the_phone(
    live_app, new_context, tmp_path
):
    patient, _therapist = patient_and_therapist(live_app)
    page = new_context(**PHONE).new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    write_a_reflection(page, WORDS)
    page.goto("/account/export")
    page.get_by_label("Your password").fill(PASSWORD)
    with page.expect_download() as started:
        page.get_by_role("button", name="Download my journal").click()
    saved = tmp_path / "journal.zip"
    started.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        archive.extract("journal.json", tmp_path)

    newcomer = make_user(live_app, role="patient", email="nia@example.org", name="Nia")
    phone = new_context(**PHONE).new_page()
    log_in(phone, newcomer.email)
    expect(heading(phone)).to_have_text("Your journal")
    phone.goto("/account/import")
    expect(heading(phone)).to_have_text("Import a journal")
    assert_fits_the_screen(phone)
    phone.get_by_label("Your journal.json").set_input_files(tmp_path / "journal.json")
    phone.get_by_role("button", name="Import").click()
    expect(phone.get_by_role("status")).to_have_text("1 entry was added to your journal.")
    assert_fits_the_screen(phone)
    phone.get_by_role("link", name="Go to your journal").click()
    expect(heading(phone)).to_have_text("Your journal")
    expect(phone.get_by_text("The heron stood still by the canal.")).to_be_visible()
