"""A support member's journey in a real Chromium at phone size (issue #5, "Done means"): the
patient writes a support card and invites someone; the supporter registers from the link on
their phone and reads the card and a shared entry; the patient removes them; the supporter's
next page is a 404. Then the same link journey with JavaScript off."""

from __future__ import annotations

import re

from conftest import PASSWORD, make_user

from .conftest import PHONE
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

HELPS = "Sit with me quietly and make tea."
RIDE = "Jordan drives me home and stays until bedtime."
SHARED = "The kitchen felt warm, not sad."
PRIVATE = "Only for me, this one."


def patient_and_therapist(app):
    therapist = make_user(
        app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    return patient, therapist


def write_card_and_entries(page) -> None:
    """The patient writes their support card and two reflections, from "My supporters"."""
    nav(page).get_by_role("link", name="My supporters").click()
    expect(heading(page)).to_have_text("My supporters")
    assert_fits_the_screen(page)
    page.get_by_role("link", name="Write your support card").click()
    expect(heading(page)).to_have_text("How to support me")
    assert_fits_the_screen(page)
    page.get_by_label("What helps me").fill(HELPS)
    page.get_by_label("The ride home and the rest of the day").fill(RIDE)
    page.get_by_role("button", name="Save").click()
    expect(heading(page)).to_have_text("Support card")
    expect(page.get_by_text(HELPS)).to_be_visible()
    for words in (SHARED, PRIVATE):
        nav(page).get_by_role("link", name="Write").click()
        page.get_by_label("Whatever comes to mind").fill(words)
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text(words)).to_be_visible()


def invite(page, name: str) -> str:
    """Invite `name` to read the card (ticked already) and the SHARED entry; the link."""
    nav(page).get_by_role("link", name="My supporters").click()
    page.get_by_label("Their name").fill(name)
    expect(page.get_by_role("checkbox", name="Your support card")).to_be_checked()
    page.get_by_role("checkbox", name=re.compile(re.escape(SHARED))).check()
    expect(page.get_by_role("checkbox", name=re.compile(re.escape(PRIVATE)))).not_to_be_checked()
    page.get_by_role("button", name="Create invitation link").click()
    expect(heading(page)).to_have_text(f"Invitation ready for {name}")
    assert_fits_the_screen(page)
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    qr = page.get_by_role("img", name="QR code of the invitation link")
    expect(qr).to_be_visible()
    return page.get_by_label("Invitation link").input_value()


def register(page, link: str, *, name: str, email: str) -> None:
    page.goto(link)
    expect(heading(page)).to_have_text("Pat Quinn invited you")
    assert_fits_the_screen(page)
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    expect(heading(page)).to_have_text("Save your recovery code")
    page.get_by_label("I have saved my recovery code somewhere safe").check()
    page.get_by_role("button", name="Continue").click()
    # A new supporter is welcomed once, in words that fit someone without a journal.
    expect(heading(page)).to_have_text(f"Welcome, {name}")
    expect(page.get_by_text("You do not keep a journal here")).to_be_visible()
    assert_fits_the_screen(page)
    nav(page).get_by_role("link", name="Home").click()
    expect(heading(page)).to_have_text(f"Hello, {name}")
    assert_fits_the_screen(page)


def test_patient_invites_supporter_reads_on_a_phone_then_patient_revokes(
    live_app, live_server, new_context
):
    patient, therapist = patient_and_therapist(live_app)
    as_patient = new_context(**PHONE).new_page()
    log_in(as_patient, patient.email)
    write_card_and_entries(as_patient)
    link = invite(as_patient, "Sam")
    assert link.startswith(f"{live_server}/invite/support/")

    as_sam = new_context(**PHONE).new_page()
    register(as_sam, link, name="Sam Helper", email="sam@example.org")
    as_sam.get_by_role("link", name="Pat Quinn").click()
    expect(heading(as_sam)).to_have_text("Supporting Pat Quinn")
    # Chosen before Sam had a key: waiting until Pat's next request wraps it for Sam.
    expect(
        as_sam.get_by_text("Pat Quinn has shared a support card with you; it will appear when")
    ).to_be_visible()
    expect(as_sam.get_by_text("1 more entry will appear")).to_be_visible()

    as_patient.goto("/journal")  # Pat's next request
    as_sam.reload()
    card = as_sam.get_by_role("region", name="How to support Pat Quinn")
    expect(card.get_by_text(HELPS)).to_be_visible()
    expect(card.get_by_text(RIDE)).to_be_visible()
    expect(card.get_by_text("no driving until the next day")).to_be_visible()
    expect(card.get_by_role("link", name=re.compile(r"\b988\b")).first).to_be_visible()
    assert_fits_the_screen(as_sam)
    for hidden in (PRIVATE, therapist.name, "Edit"):
        expect(as_sam.get_by_text(hidden)).to_have_count(0)

    as_sam.get_by_role("link", name="Reflection").click()
    expect(as_sam.get_by_text(SHARED)).to_be_visible()
    expect(as_sam.get_by_text("By Pat Quinn")).to_be_visible()
    expect(as_sam.get_by_role("link", name="Edit")).to_have_count(0)
    assert_fits_the_screen(as_sam)
    entry_url = as_sam.url

    # Pat sees what Sam can read, and removes Sam at once.
    nav(as_patient).get_by_role("link", name="My supporters").click()
    as_patient.get_by_role("link", name="Sam Helper").click()
    reads = as_patient.get_by_role("region", name="What Sam Helper can read")
    expect(reads.get_by_role("listitem")).to_have_count(2)
    assert_fits_the_screen(as_patient)
    as_patient.once("dialog", lambda dialog: dialog.accept())
    as_patient.get_by_role("button", name="Remove Sam Helper").click()
    expect(heading(as_patient)).to_have_text("My supporters")
    expect(as_patient.get_by_text("Nobody yet.")).to_be_visible()

    response = as_sam.reload()
    assert response.status == 404
    expect(heading(as_sam)).to_have_text("Page not found")
    expect(as_sam.get_by_text(SHARED)).to_have_count(0)
    assert_fits_the_screen(as_sam)
    assert as_sam.goto(entry_url).status == 404
    nav(as_sam).get_by_role("link", name="Home").click()
    expect(as_sam.get_by_text("Pat Quinn")).to_have_count(0)


def test_the_link_works_with_javascript_off(live_app, new_context):
    patient, _ = patient_and_therapist(live_app)
    as_patient = new_context(**PHONE, java_script_enabled=False).new_page()
    log_in(as_patient, patient.email)
    write_card_and_entries(as_patient)
    link = invite(as_patient, "Sam")
    as_sam = new_context(**PHONE, java_script_enabled=False).new_page()
    register(as_sam, link, name="Sam Helper", email="sam@example.org")
    as_patient.goto("/journal")  # Pat's next request wraps the keys of what Pat chose
    as_sam.get_by_role("link", name="Pat Quinn").click()
    expect(as_sam.get_by_text(HELPS)).to_be_visible()
    as_sam.get_by_role("button", name="Stop supporting Pat Quinn").click()  # no confirm box
    expect(heading(as_sam)).to_have_text("Hello, Sam Helper")
    expect(as_sam.get_by_text("Pat Quinn")).to_have_count(0)
