"""The app on a phone as an installed PWA, in a real Chromium: Chromium's installability check
passes (Chrome DevTools Protocol, in a persistent profile), the manifest has no errors and the
app shortcuts; iOS gets its icon, name and status bar; axe-core finds no accessibility
violation on any page a patient sees, after htmx swaps, in light and dark mode; the pages fit
at 360 px and at 200 % zoom, and keep still with reduced motion; a reminder pushed to the
service worker shows as a notification; reminders are offered only with VAPID keys."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import User
from kapjournal.services import care, journal, push

from .conftest import CHROMIUM, CHROMIUM_ARGS, PHONE
from .test_journal_journey import patient_and_therapist, schedule_ketamine_session
from .test_offline import queue_an_unsent_entry
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from axe_playwright_python.base import AxeResults
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    Axe = AxeResults = expect = None

PRIVATE_KEY, PUBLIC_KEY = push.new_vapid_keys()
ZOOM_200 = {**PHONE, "viewport": {"width": 180, "height": 370}}  # 360 px at 200 % zoom


@pytest.fixture
def live_app(make_app):
    """The app with reminders configured (VAPID keys)."""
    return make_app(VAPID_PRIVATE_KEY=PRIVATE_KEY, VAPID_PUBLIC_KEY=PUBLIC_KEY)


@pytest.fixture
def profile():
    folder = Path(tempfile.mkdtemp(prefix="kapjournal-profile-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- installability -------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_chromium_finds_the_app_installable_with_its_shortcuts(
    live_app, live_server, browser, profile
):
    context = browser.browser_type.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        base_url=live_server,
        **PHONE,
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto("/login")
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        cdp = context.new_cdp_session(page)
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        found = cdp.send("Page.getAppManifest")
        assert found["errors"] == []
        manifest = json.loads(found["data"])

        # iOS: "Add to Home Screen" uses these instead of the manifest.
        assert (
            page.locator('meta[name="apple-mobile-web-app-capable"]').get_attribute("content")
            == "yes"
        )
        assert (
            page.locator('meta[name="apple-mobile-web-app-title"]').get_attribute("content")
            == "Journal"
        )
        assert (
            page.locator('meta[name="apple-mobile-web-app-status-bar-style"]').get_attribute(
                "content"
            )
            == "default"
        )
        assert (
            page.locator('meta[name="theme-color"][media*="light"]').get_attribute("content")
            == manifest["theme_color"]
        )
        touch_icon = page.locator('link[rel="apple-touch-icon"]').get_attribute("href")
        response = page.request.get(touch_icon)
        assert response.ok and png_size(response.body()) == (180, 180)
    finally:
        context.close()

    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/" and manifest["scope"] == "/"
    assert {(i["sizes"], i["purpose"]) for i in manifest["icons"]} == {
        ("192x192", "any"),
        ("512x512", "any"),
        ("512x512", "maskable"),
    }
    shortcuts = {s["name"]: s["url"] for s in manifest["shortcuts"]}
    assert shortcuts == {"New reflection": "/entries/new?kind=reflection", "Need help now": "/help"}


# --- accessibility: axe-core on every page a patient sees ------------------------------------


def assert_accessible(axe, page, where: str) -> None:
    """axe-core on the page as it is, in light mode, then its colours again in dark mode."""
    page.wait_for_load_state()
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-settling')")
    if not page.evaluate("() => typeof window.axe === 'object'"):  # once per document
        page.evaluate(axe.axe_script)
    for scheme, rules in (("light", None), ("dark", ["color-contrast"])):
        # Reduced motion: the colours switch at once, with no transition half-way.
        page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
        options = {"resultTypes": ["violations"], **({"runOnly": rules} if rules else {})}
        results = AxeResults(page.evaluate("(o) => axe.run(document, o)", options))
        report = results.generate_report()
        assert results.violations_count == 0, f"{where}, {scheme} ({page.url}):\n{report}"
    page.emulate_media(color_scheme="light", reduced_motion="no-preference")


def a11y_walk(axe, page, patient, entry_id, invitation: str) -> list[str]:
    """Visit every page a patient sees, by clicking where the app offers a link (htmx swaps),
    and check each one; returns the URLs seen."""
    seen = []

    def check(where):
        expect(heading(page)).to_be_visible()
        assert_accessible(axe, page, where)
        seen.append(page.url)

    def follow(link, where=None):
        before = page.url
        link.click()
        page.wait_for_url(lambda url: url != before)
        check(where or before)

    for path in (
        "/login",
        f"/invite/{invitation}",
        "/help",
        "/offline",
        "/write-offline?kind=reflection",
        "/write-offline?kind=check_in",
        "/reset",
        "/no-such-page",
    ):
        page.goto(path)
        check(path)
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    check("journal")
    for name in ("Quick check-in", "Set an intention", "Free entry", "Add a session", "Search"):
        follow(page.get_by_role("link", name=name, exact=True), name)
        page.go_back()
        expect(heading(page)).to_have_text("Your journal")
    follow(page.get_by_role("link", name="Who read what"))
    page.go_back()
    follow(page.get_by_role("link", name="Write a reflection"))
    page.get_by_role("button", name="Save").click()  # empty: 422 with the error
    expect(page.locator(".field-error")).to_be_visible()
    check("reflection with an error")
    page.get_by_label("Whatever comes to mind").fill("A calm afternoon.")
    follow(page.get_by_role("button", name="Save"), "entry")
    follow(page.get_by_role("link", name="Edit"))
    page.go_back()
    follow(page.get_by_role("link", name="Delete"))
    page.goto("/journal/search")
    page.get_by_label("Words to find").fill("calm")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#results")).to_contain_text("found")
    check("search results")
    page.goto(f"/entries/{entry_id}")
    check("shared entry")
    follow(nav(page).get_by_role("link", name="My supporters"))
    follow(nav(page).get_by_role("link", name="Account"))
    expect(page.locator("[data-push-state]")).to_have_text("Reminders are off for this phone.")
    check("account with reminders")
    for name in (
        "Change your password",
        "Two-step login",
        "What to share with your therapist by default",
    ):
        follow(page.get_by_role("link", name=name))
        page.go_back()
        expect(heading(page)).to_have_text("Your account")
    return seen


def test_no_accessibility_violations_on_any_patient_page_in_light_and_dark_mode(
    live_app, new_context
):
    patient, therapist = patient_and_therapist(live_app)
    schedule_ketamine_session(live_app, patient, therapist)
    with live_app.app_context(), Session(db.engine()) as dbs:
        entry, _ = journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="reflection",
            body={"text": "Written before.", "mood": 4},
            client_id=uuid.uuid4(),
            readers=[dbs.get(User, therapist.id)],
        )
        issued = care.create_invitation(
            session=dbs, inviter=dbs.get(User, therapist.id), kind="patient"
        )
        dbs.commit()
        entry_id, invitation = entry.id, issued.token
    page = new_context(**PHONE).new_page()
    seen = a11y_walk(Axe(), page, patient, entry_id, invitation)
    assert len(set(seen)) >= 25


def test_logout_question_and_offline_pages_are_accessible(live_app, gateway, new_context):
    patient, _ = patient_and_therapist(live_app)
    context = new_context(**PHONE)
    page = context.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    axe = Axe()
    # An entry the server does not take yet, then logout: the question.
    queue_an_unsent_entry(page, gateway, "Kept for later.")
    nav(page).get_by_role("button", name="Log out").click()
    dialog = page.get_by_role("dialog", name="You have 1 unsent entry on this phone")
    expect(dialog).to_be_visible()
    assert_accessible(axe, page, "logout question")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    # Offline: the writing form and the offline page.
    context.set_offline(True)
    page.goto("/entries/new?kind=reflection")
    expect(page.get_by_text("You can write here without a connection.")).to_be_visible()
    assert_accessible(axe, page, "offline form")
    page.goto("/journal")
    expect(heading(page)).to_have_text("You are offline")
    assert_accessible(axe, page, "offline page")
    context.set_offline(False)


# --- small screens, zoom, dark mode, reduced motion -------------------------------------------


def test_pages_fit_a_phone_at_200_percent_zoom(live_app, new_context):
    patient, _ = patient_and_therapist(live_app)
    page = new_context(**ZOOM_200).new_page()
    for path in ("/login", "/help", "/write-offline?kind=reflection"):
        page.goto(path)
        assert_fits_the_screen(page)
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")  # logged in before going on
    for path in (
        "/journal",
        "/entries/new?kind=reflection",
        "/entries/new?kind=check_in",
        "/account",
    ):
        page.goto(path)
        expect(heading(page)).to_be_visible()
        assert_fits_the_screen(page)


def test_dark_mode_and_reduced_motion_are_respected(live_app, new_context):
    page = new_context(**PHONE, color_scheme="dark", reduced_motion="reduce").new_page()
    page.goto("/login")
    style = page.evaluate("""() => {
      const body = getComputedStyle(document.body);
      const button = getComputedStyle(document.querySelector('button[type=submit]'));
      return { bg: body.backgroundColor, fg: body.color, transition: button.transitionDuration };
    }""")
    assert style == {"bg": "rgb(20, 27, 31)", "fg": "rgb(228, 232, 230)", "transition": "0s"}


def test_the_journal_first_loads_in_at_most_60_kb_compressed_with_icons_and_styles(
    live_app, new_context
):
    """Issue 13's budget: the journal page with everything it loads (HTML, CSS, scripts, the
    icon sprite, images; no web font), nothing from the browser's cache, gzip-compressed."""
    patient, _therapist = patient_and_therapist(live_app)
    for n in range(20):  # a full first page of entries
        with live_app.app_context(), Session(db.engine()) as session:
            journal.create(
                session=session,
                author=session.get(User, patient.id),
                kind="reflection",
                body={"text": f"Day {n}: the walk by the river, slowly. " * 8, "answers": []},
                client_id=uuid.uuid4(),
                readers=[],
            )
            session.commit()
    page = new_context(**PHONE).new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.context.new_cdp_session(page).send("Network.setCacheDisabled", {"cacheDisabled": True})
    loaded = {}
    page.on("response", lambda r: loaded.setdefault(r.url, r))
    page.goto("/journal")
    page.wait_for_load_state("networkidle")
    # Each body fetched again (a response the page moved on from has no body to read).
    bodies = {url: page.request.get(url).body() for url, r in loaded.items() if r.ok}
    sizes = {url: len(gzip.compress(body, 9)) for url, body in bodies.items()}
    assert any(url.endswith("/journal") for url in sizes)
    assert any("sprite.svg" in url for url in sizes) and any(".css" in url for url in sizes)
    assert sum(sizes.values()) <= 60_000, sizes


def test_a_first_visit_loads_at_most_20_kb_of_compressed_javascript(live_app, new_context):
    page = new_context(**PHONE).new_page()
    scripts = {}
    page.on(
        "response",
        lambda r: r.request.resource_type == "script" and scripts.setdefault(r.url, r),
    )
    page.goto("/login")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.wait_for_load_state("networkidle")
    size = sum(len(gzip.compress(r.body(), 9)) for r in scripts.values())
    assert size <= 20_000, {url: len(r.body()) for url, r in scripts.items()}
    # The drafts and queue code waits for a page that needs it.
    assert not page.evaluate("() => 'kapjournalQueue' in window")
    assert not any(url.endswith("/drafts.js") for url in scripts)


# --- reminders ------------------------------------------------------------------------------------


def test_pushed_reminder_shows_as_a_notification_with_where_it_leads(
    live_app, live_server, new_context
):
    patient, _ = patient_and_therapist(live_app)
    context = new_context(**PHONE)
    context.grant_permissions(["notifications"], origin=live_server)
    page = context.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    cdp = context.new_cdp_session(page)
    registrations = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(e["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    deadline = 50
    while not registrations and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    message = {
        "title": "A gentle check-in",
        "body": "How are you today? A quick check-in takes a minute.",
        "url": "/entries/new?kind=check_in",
        "tag": "check_in_1-x",
    }
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": live_server,
            "registrationId": registrations[0]["registrationId"],
            "data": json.dumps(message),
        },
    )
    shown, tries = [], 50
    while not shown and tries:
        page.wait_for_timeout(100)
        tries -= 1
        shown = page.evaluate(
            """() => navigator.serviceWorker.ready
              .then((r) => r.getNotifications())
              .then((ns) => ns.map((n) => [n.title, n.body, n.tag, n.data.url]))"""
        )
    assert shown == [[message["title"], message["body"], message["tag"], message["url"]]]


def test_reminders_option_says_so_when_the_browser_cannot_subscribe(
    live_app, live_server, new_context
):
    patient, _ = patient_and_therapist(live_app)
    context = new_context(**PHONE)
    context.grant_permissions(["notifications"], origin=live_server)
    page = context.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    nav(page).get_by_role("link", name="Account").click()
    reminders = page.get_by_role("region", name="Reminders")
    expect(reminders.get_by_role("status")).to_have_text("Reminders are off for this phone.")
    # A private window has no push service: the page says so plainly, and nothing is stored.
    reminders.get_by_role("button", name="Turn on reminders on this phone").click()
    expect(reminders.get_by_role("status")).to_have_text(
        "Could not turn reminders on. "
        "This browser's push service did not answer; please try again later."
    )
    expect(reminders.get_by_role("button", name="Turn on reminders on this phone")).to_be_enabled()
