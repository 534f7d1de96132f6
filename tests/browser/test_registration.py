"""The patient's first visit, in a real Chromium at phone size: the therapist's invitation, the
registration form (with a mistake), the recovery code, home, logout and login again, with and
without JavaScript. On every page: "Need help now?" on screen and no sideways scrolling."""

from __future__ import annotations

import os
import re
from pathlib import Path

from conftest import PASSWORD, TWO_STEP, fresh_totp_code, make_user

from .conftest import PHONE, TABLET

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

# Set KAPJOURNAL_SCREENSHOTS to a folder to keep screenshots of the pages worth looking at.
SCREENSHOTS = os.environ.get("KAPJOURNAL_SCREENSHOTS")
RECOVERY_CODE = re.compile(r"^[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$")


def heading(page):
    return page.get_by_role("heading", level=1)


def nav(page):
    """The main navigation, used as a person would: `nav(page).get_by_role("link",
    name="Account").click()` taps it in the header's bar or the tab bar; on a phone, what the
    tab bar has no room for is one tap further, on the More page (a patient) or the account
    page (logging out, for a therapist or a supporter)."""
    return MainNav(page)


# What a text field with the focus (the keyboard up, the tab bar hidden) looks like.
_TYPING = "() => !!document.activeElement?.matches('input, textarea, select')"


class MainNav:
    def __init__(self, page):
        self.page = page
        self.bar = page.get_by_role("navigation", name="Main")

    def get_by_role(self, role: str, **options) -> NavPlace:
        return NavPlace(self, role, options)


class NavPlace:
    """A link or button of the main navigation, wherever it is on this screen."""

    def __init__(self, nav: MainNav, role: str, options: dict):
        self.nav, self.role, self.options = nav, role, options

    def click(self) -> None:
        page, bar = self.nav.page, self.nav.bar
        if not bar.is_visible() and page.evaluate(_TYPING):
            page.evaluate("() => document.activeElement.blur()")  # done typing: keyboard down
        bar.wait_for()
        here = bar.get_by_role(self.role, **self.options).filter(visible=True)
        more = bar.get_by_role("link", name="More", exact=True).filter(visible=True)
        account = bar.get_by_role("link", name="Account").filter(visible=True)
        # Waits out a page still being swapped in: one of the three is on every signed-in page.
        expect(here.or_(more).or_(account).first).to_be_visible()
        if here.count():
            here.first.click()
            return
        in_main = page.get_by_role("main").get_by_role(self.role, **self.options)
        if heading(page).inner_text() in ("More", "Your account") and in_main.count():
            in_main.last.click()  # already there: tapping More again would reload it under us
            return
        (more if more.count() else account).first.click()
        expect(heading(page)).to_have_text(re.compile(r"^(More|Your account)$"))
        page.get_by_role("main").get_by_role(self.role, **self.options).last.click()


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=Path(SCREENSHOTS) / f"{name}.png", full_page=True)


def assert_fits_the_screen(page) -> None:
    """'Need help now?' is visible without scrolling, and the page never scrolls sideways."""
    page.wait_for_load_state("load")  # the stylesheet is in: a layout without it proves nothing
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    help_link = page.get_by_role("banner").get_by_role("link", name="Need help now?")
    expect(help_link).to_be_visible()
    box = help_link.bounding_box()
    where = f"{page.url}: 'Need help now?' at {box}"
    assert box["x"] >= 0 and box["y"] >= 0, where
    assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, where
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} scrolls sideways: {scroll_width}px > {width}px"


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    expect(heading(page)).to_have_text("Log in")
    assert_fits_the_screen(page)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    if email.casefold() in TWO_STEP:  # a therapist: the code from their authenticator app
        app, persona = TWO_STEP[email.casefold()]
        expect(heading(page)).to_have_text("Two-step login")
        assert_fits_the_screen(page)
        page.get_by_label("Code").fill(fresh_totp_code(app, persona))
        page.get_by_role("button", name="Continue").click()


def log_out(page) -> None:
    nav(page).get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(heading(page)).to_have_text("Log in")
    assert_fits_the_screen(page)


def invite_a_patient(page, therapist) -> str:
    """The therapist logs in, creates an invitation and reads the link off the page."""
    log_in(page, therapist.email)
    expect(heading(page)).to_have_text(f"Hello, {therapist.name}")
    assert_fits_the_screen(page)
    nav(page).get_by_role("link", name="Invite a patient").click()
    expect(heading(page)).to_have_text("Invite a patient")
    assert_fits_the_screen(page)
    page.get_by_label("A note for you (optional)").fill("Pat")
    page.get_by_role("button", name="Create invitation link").click()
    expect(heading(page)).to_have_text("Invitation ready for Pat")
    assert_fits_the_screen(page)
    link_field = page.get_by_label("Invitation link")
    expect(link_field).to_have_attribute("readonly", "")
    qr = page.get_by_role("img", name="QR code of the invitation link")
    expect(qr).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=qr.element_handle())
    return link_field.input_value()


def register_with_one_mistake(page, link: str, therapist) -> None:
    page.goto(link)
    expect(heading(page)).to_have_text("Create your account")
    expect(page.get_by_text(f"{therapist.name} invited you")).to_be_visible()
    assert_fits_the_screen(page)
    page.get_by_label("Your name").fill("Pat Quinn")
    page.get_by_label("Email").fill("pat@example.org")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD + " typo")
    page.get_by_role("button", name="Create my account").click()

    # The error shows under its field, and a screen reader reads it with the field.
    repeat = page.get_by_label("Repeat the password")
    mismatch = re.compile("The two passwords are not the same")
    expect(repeat).to_have_attribute("aria-invalid", "true")
    expect(repeat).to_have_accessible_description(mismatch)
    error = page.get_by_text(mismatch)
    expect(error).to_be_visible()
    assert error.get_attribute("id") in repeat.get_attribute("aria-describedby").split()
    field, message = repeat.bounding_box(), error.bounding_box()
    assert 0 <= message["y"] - (field["y"] + field["height"]) < 40, "error is not by its field"
    expect(page.get_by_label("Email")).to_have_value("pat@example.org")
    expect(page.get_by_label("Your name")).to_have_value("Pat Quinn")
    assert_fits_the_screen(page)

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create my account").click()


def save_recovery_code(page) -> None:
    expect(heading(page)).to_have_text("Save your recovery code")
    code = page.locator("#recovery-code-text").inner_text().strip()
    assert RECOVERY_CODE.match(code), code
    assert_fits_the_screen(page)
    screenshot(page, "recovery")
    page.get_by_label("I have saved my recovery code somewhere safe").check()
    page.get_by_role("button", name="Continue").click()


def test_invited_patient_registers_on_a_phone_and_logs_out_and_in(
    live_app, live_server, new_context, phone
):
    therapist = make_user(
        live_app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    link = invite_a_patient(new_context(**TABLET).new_page(), therapist)
    assert link.startswith(f"{live_server}/invite/")

    page = phone.new_page()
    register_with_one_mistake(page, link, therapist)
    save_recovery_code(page)

    # A new account is welcomed once; the journal is one tap away.
    expect(heading(page)).to_have_text("Welcome, Pat Quinn")
    assert_fits_the_screen(page)
    page.get_by_role("link", name="Go to my journal").click()

    # Home is the patient's journal: it greets them; their account names their care team.
    expect(heading(page)).to_have_text("Your journal")
    expect(page.get_by_text("Hello, Pat Quinn")).to_be_visible()
    assert_fits_the_screen(page)
    screenshot(page, "home")
    nav(page).get_by_role("link", name="Account").click()
    care_team = page.get_by_role("region", name="Your care team")
    expect(care_team.get_by_role("listitem")).to_contain_text([therapist.name])

    log_out(page)
    page.go_back()  # the account page is asked for again, and refused
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(heading(page)).to_have_text("Log in")
    expect(page.get_by_text("Pat Quinn")).to_have_count(0)
    page.goto("/home")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    assert_fits_the_screen(page)

    log_in(page, "pat@example.org")
    expect(heading(page)).to_have_text("Your journal")
    assert_fits_the_screen(page)

    page.get_by_role("link", name="Need help now?").click()
    expect(page).to_have_url(re.compile(r"/help$"))
    expect(heading(page)).to_have_text("Need help now?")
    expect(page.get_by_role("link", name=re.compile(r"\b988\b")).first).to_be_visible()
    assert_fits_the_screen(page)


def test_patient_logs_in_and_out_with_javascript_off(live_app, new_context):
    therapist = make_user(live_app, role="therapist", email="tess@example.org", name="Dr. Tess")
    patient = make_user(
        live_app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    page = new_context(**PHONE, java_script_enabled=False).new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    assert_fits_the_screen(page)
    log_out(page)
    page.goto("/home")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    assert_fits_the_screen(page)


def test_whole_recovery_code_is_readable_on_a_phone(live_app, phone):
    therapist = make_user(live_app, role="therapist", email="tess@example.org", name="Dr. Tess")
    patient = make_user(
        live_app,
        role="patient",
        email="pat@example.org",
        name="Pat Quinn",
        invited_by=therapist,
        confirmed=False,
    )
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Make a recovery code")
    page.get_by_label("Your password").fill(PASSWORD)  # a new code is asked for with it
    page.get_by_role("button", name="Show me a new recovery code").click()
    expect(heading(page)).to_have_text("Save your recovery code")
    assert_fits_the_screen(page)
    code = page.locator("#recovery-code-text")
    assert RECOVERY_CODE.match(code.inner_text().strip())
    hidden = code.evaluate("field => field.scrollWidth - field.clientWidth")
    assert hidden <= 0, f"{hidden}px of the recovery code are scrolled out of view"
