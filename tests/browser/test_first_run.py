"""A journal app on the phone, in a real Chromium at 360 px (light and dark, axe-core on every
page): a new patient's welcome and its three optional steps (the browser's install prompt
behind a button, written steps for Safari, reminders); a supporter who is told their card is
on its way and sees the next ketamine session once the patient allows it; chart labels of at
least 12 px; a phone number one tap from a call; and, after a login has ended, one message
when saving, not two. Set KAPJOURNAL_SCREENSHOTS to a folder to keep screenshots."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import PASSWORD, make_user
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import User, utcnow
from kapjournal.services import course, journal, push, support
from kapjournal.services.chart import WIDTH

from .conftest import PHONE, TABLET
from .test_measures_journey import answered_earlier, care_team
from .test_offline import expire_sessions, queue_note, wait_for_texts
from .test_pwa import assert_accessible
from .test_registration import (
    assert_fits_the_screen,
    heading,
    invite_a_patient,
    log_in,
    nav,
    register_with_one_mistake,
    save_recovery_code,
)

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    Axe = expect = None

PRIVATE_KEY, PUBLIC_KEY = push.new_vapid_keys()
SCREENSHOTS = os.environ.get("KAPJOURNAL_SCREENSHOTS")
CARD = {
    "helps": "Sit with me quietly and make tea.",
    "after_session": "Jordan drives me home and stays until bedtime.",
    "who_to_call": "My sister Kim, 555 0100.",
}
# A browser's install prompt, as Chromium gives it to the page (headless Chromium offers none).
OFFER_TO_INSTALL = """() => {
  const offer = new Event("beforeinstallprompt", { cancelable: true });
  window.prompted = 0;
  offer.prompt = () => { window.prompted += 1; return Promise.resolve(); };
  offer.userChoice = Promise.resolve({ outcome: "accepted", platform: "web" });
  window.dispatchEvent(offer);
  return offer.defaultPrevented;
}"""


@pytest.fixture
def live_app(make_app):
    """The app with reminders set up (VAPID keys), so a patient's first run has three steps."""
    return make_app(VAPID_PRIVATE_KEY=PRIVATE_KEY, VAPID_PUBLIC_KEY=PUBLIC_KEY)


def look(page, axe, name: str) -> None:
    """axe-core in light and dark, nothing sideways, and screenshots in both schemes."""
    assert_accessible(axe, page, name)
    assert_fits_the_screen(page)
    if SCREENSHOTS:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=Path(SCREENSHOTS) / f"{name}-{scheme}.png", full_page=True)
        page.emulate_media(color_scheme="light")


# --- 4. the first run -----------------------------------------------------------------------------


def test_a_new_patient_is_welcomed_and_walks_the_three_steps_on_a_phone(live_app, new_context):
    therapist = make_user(
        live_app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    link = invite_a_patient(new_context(**TABLET).new_page(), therapist)
    page = new_context(**PHONE).new_page()
    axe = Axe()
    register_with_one_mistake(page, link, therapist)
    expect(page.get_by_text("the only way to unlock your journal")).to_be_visible()
    save_recovery_code(page)

    expect(heading(page)).to_have_text("Welcome, Pat Quinn")
    expect(page.get_by_role("heading", name="It is encrypted")).to_be_visible()
    expect(page.get_by_role("link", name="Go to my journal")).to_be_visible()
    look(page, axe, "welcome")

    page.get_by_role("link", name="Start with step 1 of 3").click()
    expect(heading(page)).to_have_text("Your safety plan")
    expect(page.get_by_role("progressbar", name="Step 1 of 3")).to_be_visible()
    expect(page.get_by_role("link", name="Write my safety plan")).to_be_visible()
    look(page, axe, "welcome-step-1")

    page.get_by_role("link", name="Skip this step").click()
    expect(heading(page)).to_have_text("Add the journal to your home screen")
    expect(page.get_by_role("progressbar", name="Step 2 of 3")).to_be_visible()
    expect(page.get_by_text("Scroll down and tap “Add to Home Screen”.")).to_be_visible()
    install = page.get_by_role("button", name="Add to home screen")
    expect(install).to_be_hidden()  # no prompt offered (yet): only the written steps
    look(page, axe, "welcome-step-2")
    page.wait_for_load_state("load")
    assert page.evaluate(OFFER_TO_INSTALL) is True  # kept for the button, not shown at once
    expect(install).to_be_visible()
    install.click()
    expect(page.get_by_role("status").filter(has_text="Added.")).to_have_text(
        "Added. You will find the journal on your home screen."
    )
    assert page.evaluate("window.prompted") == 1
    expect(install).to_be_hidden()

    page.get_by_role("link", name="Next step").click()
    expect(heading(page)).to_have_text("Turn on reminders")
    expect(page.get_by_role("progressbar", name="Step 3 of 3")).to_be_visible()
    expect(page.get_by_role("region", name="Reminders")).to_be_visible()
    look(page, axe, "welcome-step-3")

    page.get_by_role("link", name="Done: go to my journal").click()
    expect(heading(page)).to_have_text("Your journal")


def test_welcome_pages_work_without_javascript(live_app, new_context):
    patient = make_user(live_app, role="patient", email="pat@example.org", name="Pat Quinn")
    page = new_context(**PHONE, java_script_enabled=False).new_page()
    log_in(page, patient.email)
    page.goto("/welcome")
    page.get_by_role("link", name="Start with step 1 of 3").click()
    page.get_by_role("link", name="Skip this step").click()
    expect(heading(page)).to_have_text("Add the journal to your home screen")
    expect(page.get_by_text("Tap “Add”.")).to_be_visible()
    page.get_by_role("link", name="Next step").click()
    page.get_by_role("link", name="Done: go to my journal").click()
    expect(heading(page)).to_have_text("Your journal")


# --- 7. the supporter -----------------------------------------------------------------------------


def card_and_invitation(app, patient) -> tuple[str, datetime]:
    """The patient's support card, chosen for an invitation; the invitation's path."""
    with app.app_context(), Session(db.engine()) as dbs:
        author = dbs.get(User, patient.id)
        card, _ = journal.create(
            session=dbs,
            author=author,
            kind="support_card",
            body=CARD,
            client_id=uuid.uuid4(),
            readers=[],
        )
        issued = support.invite(session=dbs, patient=author, name="Sam", entries=[card])
        later = utcnow() + timedelta(days=6)
        course.schedule(
            session=dbs,
            patient=author,
            created_by=author,
            kind="ketamine",
            when=later.strftime("%Y-%m-%dT10:00"),
            zone=UTC,
        )
        dbs.commit()
        return f"/invite/support/{issued.token}", later.replace(hour=10, minute=0)


def test_a_supporter_is_told_the_card_is_coming_then_sees_it_and_the_next_session(
    live_app, new_context
):
    _, patient = care_team(live_app)
    link, session_at = card_and_invitation(live_app, patient)
    axe = Axe()

    sam = new_context(**PHONE).new_page()
    sam.goto(link)
    sam.get_by_label("Your name").fill("Sam Helper")
    sam.get_by_label("Email", exact=True).fill("sam@example.org")
    sam.get_by_label("Password", exact=True).fill(PASSWORD)
    sam.get_by_label("Repeat the password").fill(PASSWORD)
    sam.get_by_role("button", name="Create my account").click()
    expect(heading(sam)).to_have_text("Save your recovery code")
    expect(sam.get_by_text("back into your account and to what is shared with you")).to_be_visible()
    expect(sam.get_by_text("unlock your journal")).to_have_count(0)
    sam.get_by_label("I have saved my recovery code somewhere safe").check()
    sam.get_by_role("button", name="Continue").click()

    expect(heading(sam)).to_have_text("Welcome, Sam Helper")
    expect(sam.get_by_text("You do not keep a journal here")).to_be_visible()
    look(sam, axe, "welcome-supporter")
    sam.get_by_role("link", name="See what Pat Quinn shares with you").click()
    expect(heading(sam)).to_have_text("Supporting Pat Quinn")
    expect(
        sam.get_by_text(
            "Pat Quinn has shared a support card with you; it will appear when Pat Quinn next "
            "opens the app."
        )
    ).to_be_visible()
    expect(sam.get_by_text("Next ketamine session")).to_have_count(0)
    look(sam, axe, "supporter-card-waiting")

    pat = new_context(**PHONE).new_page()
    log_in(pat, patient.email)  # Pat's next request wraps the card for Sam
    expect(heading(pat)).to_have_text("Your journal")
    nav(pat).get_by_role("link", name="More").click()
    pat.get_by_role("link", name="My supporters").click()
    setting = pat.get_by_label(
        "Let my supporters see when my next ketamine session is, so they can plan the ride home"
    )
    expect(setting).not_to_be_checked()
    setting.check()
    pat.get_by_role("region", name="Your next ketamine session").get_by_role(
        "button", name="Save"
    ).click()
    expect(pat.get_by_text("On: your supporters see the date and time")).to_be_visible()
    expect(setting).to_be_checked()
    look(pat, axe, "my-supporters-setting")

    sam.reload()
    when = session_at.strftime("%a %-d %b, %H:%M")
    expect(sam.get_by_text(f"Next ketamine session: {when}")).to_be_visible()
    card = sam.get_by_role("region", name="How to support Pat Quinn")
    expect(card.get_by_text(CARD["helps"])).to_be_visible()
    call = card.get_by_role("link", name="555 0100")
    expect(call).to_have_attribute("href", "tel:5550100")
    look(sam, axe, "supporter-next-session")


# --- 5. questionnaires that look finished --------------------------------------------------------


def test_chart_labels_are_at_least_12_px_on_a_phone_and_the_result_compares(live_app, new_context):
    _, patient = care_team(live_app)
    answered_earlier(live_app, patient, "phq9", [1] * 9, [1, 1, 1, 1, 0, 0, 0, 0, 0])
    page = new_context(**PHONE).new_page()
    axe = Axe()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    nav(page).get_by_role("link", name="Progress").click()
    expect(heading(page)).to_have_text("How you are doing")
    labels = page.locator("svg.chart text")
    expect(labels.first).to_be_visible()
    sizes = page.evaluate(
        """(width) => [...document.querySelectorAll("svg.chart text")].map((text) => {
          const svg = text.ownerSVGElement.getBoundingClientRect();
          const size = parseFloat(getComputedStyle(text).fontSize) * svg.width / width;
          return [text.textContent, size, text.getBoundingClientRect().height];
        })""",
        WIDTH,
    )
    assert sizes and all(size >= 12 and height >= 12 for _, size, height in sizes), sizes
    look(page, axe, "progress-chart")

    page.get_by_role("link", name=re.compile(r"^\d+ \w{3}")).last.click()
    expect(heading(page)).to_have_text("Your PHQ-9 result")
    expect(page.get_by_text(re.compile(r"^4, down from 9 on \d+ \w{3}"))).to_be_visible()
    expect(page.locator("figure.chart svg[role=img]")).to_have_count(1)
    look(page, axe, "result-compared")

    nav(page).get_by_role("link", name="Progress").click()
    page.get_by_role("link", name="Answer the PHQ-9").first.click()
    page.get_by_role("button", name="One question per screen").click()
    bar = page.get_by_role("progressbar", name="0 of 9 answered")
    expect(bar).to_be_visible()
    style = bar.evaluate(
        "(e) => [getComputedStyle(e).appearance, getComputedStyle(e).backgroundColor]"
    )
    assert style[0] == "none", style  # the theme's bar, not the browser's
    page.get_by_label("Several days", exact=True).check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("progressbar", name="1 of 9 answered")).to_be_visible()
    look(page, axe, "one-question-progress")


# --- 8. one message after a login has ended ----------------------------------------------------


def test_saving_after_the_login_ended_says_one_thing_and_sends_after_logging_in(live_app, phone):
    patient = make_user(live_app, role="patient", email="pat@example.org", name="Pat Quinn")
    words = "Lanterns on the quiet water"
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.get_by_role("link", name="Write a reflection").click()
    page.get_by_label("Whatever comes to mind").fill(words)
    page.wait_for_function("() => 'kapjournalQueue' in window")
    # The phone slept: the login ended on the server, and the browser let its session cookie
    # (the one holding the form's CSRF token) go, as a phone does when it closes the app.
    expire_sessions(live_app, patient)
    phone.clear_cookies(name="kj_csrf")
    page.get_by_role("button", name="Save").click()

    said = "Saved on this phone. Log in and it will be sent."
    expect(queue_note(page)).to_have_text(said)
    expect(page.locator(".draft-status")).to_have_text(said)
    expect(page.get_by_text("Something was wrong with that request")).to_have_count(0)
    expect(page.get_by_text("This form had expired")).to_have_count(0)
    expect(heading(page)).to_have_text("How was it?")
    expect(page.get_by_label("Whatever comes to mind")).to_have_value("")  # its words wait

    log_in(page, patient.email)
    expect(queue_note(page)).to_have_text("Sent. It is in your journal. Open it")
    wait_for_texts(live_app, patient, [words])


def test_the_offline_page_offers_help_and_writing_but_no_log_in(live_app, phone):
    page = phone.new_page()
    page.goto("/offline")
    expect(heading(page)).to_have_text("You are offline")
    expect(page.get_by_role("navigation")).to_have_count(0)
    expect(page.get_by_role("link", name="Log in")).to_have_count(0)
    expect(page.get_by_role("link", name="a reflection")).to_be_visible()
    assert_fits_the_screen(page)
