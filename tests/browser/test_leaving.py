"""Leaving, in a real Chromium on a 360-px phone: a patient who shared an entry with their
therapist finds "Delete my account" from the tab bar, is told what happens, gets a clear
error for a slip of the finger, deletes, and cannot log in again; the therapist's open tab on
the shared entry then shows the one "not here" page, the same as for an entry that never was."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from conftest import PASSWORD

from .conftest import PHONE, TABLET
from .test_journal_journey import ENTRY_URL, patient_and_therapist
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

WORDS = "I told my sister about the session. She listened."


def test_a_patient_deletes_their_account_on_a_phone(live_app, new_context):
    patient, therapist = patient_and_therapist(live_app)
    page = new_context(**PHONE).new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.goto("/entries/new?kind=reflection")
    page.get_by_label("Whatever comes to mind").fill(WORDS)
    page.get_by_role("group", name="Who may read it").get_by_label(therapist.name).check()
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(ENTRY_URL)
    as_therapist = new_context(**TABLET).new_page()
    log_in(as_therapist, therapist.email)
    expect(heading(as_therapist)).to_have_text(f"Hello, {therapist.name}")
    as_therapist.goto(urlsplit(page.url).path)
    expect(as_therapist.get_by_text(WORDS)).to_be_visible()

    nav(page).get_by_role("link", name="Account and care team").click()
    expect(heading(page)).to_have_text("Your account")
    page.get_by_role("link", name="Delete my account").click()
    expect(heading(page)).to_have_text("Delete your account")
    assert_fits_the_screen(page)
    expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    expect(page.get_by_role("link", name="download your journal")).to_be_visible()

    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("Type “delete my account”").fill("delete my acount")
    page.get_by_role("button", name="Delete my account").click()
    expect(heading(page)).to_have_text("Delete your account")  # nothing deleted yet
    expect(page.get_by_label("Type “delete my account”")).to_have_attribute("aria-invalid", "true")
    assert_fits_the_screen(page)

    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("Type “delete my account”").fill("delete my account")
    page.get_by_role("button", name="Delete my account").click()
    expect(heading(page)).to_have_text("Your account is deleted")
    expect(page.get_by_role("link", name="Need help now?").first).to_be_visible()
    assert_fits_the_screen(page)

    page.goto("/login")
    page.get_by_label("Email").fill(patient.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(heading(page)).to_have_text("Log in")
    expect(page.get_by_text("do not match")).to_be_visible()

    # The therapist's tab on the shared entry, reloaded, and an entry that never was.
    as_therapist.reload()
    expect(heading(as_therapist)).to_have_text("Page not found")
    gone = as_therapist.get_by_role("main").inner_text()
    assert "It may have been deleted" in gone and WORDS not in as_therapist.content()
    as_therapist.goto(f"/entries/{uuid.uuid4()}")
    assert as_therapist.get_by_role("main").inner_text() == gone
