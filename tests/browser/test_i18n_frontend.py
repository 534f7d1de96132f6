"""Issue 16, the front end in a real Chromium: a Spanish phone with the network gone gets the
Spanish offline page and writing form from the service worker, and the scripts speak Spanish
there too (their catalogue comes from the service worker's cache), as does a reminder pushed
without a title; with <html dir="rtl"> the shell is mirrored, not broken; the copy button still
copies. The fixtures fail a test on any CSP violation or uncaught error."""

from __future__ import annotations

import json

from .conftest import PHONE
from .test_offline import ready_for_offline
from .test_registration import heading
from .test_shell import a_clinic, box, logged_in, tab_bar

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

SPANISH_PHONE = {**PHONE, "locale": "es-US"}


def wait_for_cached(page, path: str) -> None:
    for _ in range(100):
        if page.evaluate("(p) => caches.match(p).then((hit) => !!hit)", path):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{path} never reached the service worker's cache")


def test_a_spanish_phone_offline_gets_spanish_offline_pages_and_spanish_script_messages(
    live_app, new_context
):
    context = new_context(**SPANISH_PHONE)
    page = context.new_page()
    page.goto("/login")
    expect(heading(page)).to_have_text("Iniciar sesión")
    ready_for_offline(page)
    for path in ("/offline?lang=es", "/write-offline?kind=reflection&lang=es", "/i18n/es.json"):
        wait_for_cached(page, path)

    context.set_offline(True)
    page.goto("/journal")
    expect(heading(page)).to_have_text("Está sin conexión")
    assert page.locator("html").get_attribute("lang") == "es"
    page.get_by_role("link", name="una reflexión").click()
    expect(heading(page)).to_have_text("¿Cómo le fue?")
    page.goto("/entries/new?kind=reflection")  # the real form's address: its Spanish stand-in
    expect(heading(page)).to_have_text("¿Cómo le fue?")
    page.get_by_label("Lo que le venga a la mente").fill("Una tarde tranquila.")
    page.get_by_role("button", name="Guardar").click()
    expect(page.locator(".draft-status")).to_have_text(
        "Guardado en este teléfono. Se enviará cuando vuelva a tener conexión."
    )
    page.goto("/capture")
    expect(heading(page)).to_have_text("Después de su sesión")
    page.goto("/help")  # plain /help: the language of the last page seen online
    expect(heading(page)).to_have_text("¿Necesita ayuda ahora?")
    context.set_offline(False)


def test_right_to_left_mirrors_the_shell_without_breaking_it(live_app, new_context):
    clinic = a_clinic(live_app)
    page = logged_in(new_context, clinic.patient, 360)
    page.goto("/journal")
    expect(heading(page)).to_have_text("Your journal")
    bar = tab_bar(page)
    width = page.viewport_size["width"]

    def places():
        first = box(bar.get_by_role("link", name="Journal", exact=True))
        last = box(bar.get_by_role("link", name="More", exact=True))
        help_link = box(page.get_by_role("banner").get_by_role("link", name="Need help now?"))
        brand = box(page.locator(".brand"))
        return first, last, help_link, brand

    first, last, help_link, brand = places()
    assert first["x"] < last["x"] and brand["x"] < help_link["x"]
    page.evaluate("document.documentElement.dir = 'rtl'")
    r_first, r_last, r_help, r_brand = places()
    assert r_first["x"] > r_last["x"]  # the tabs read from the right
    assert r_help["x"] < r_brand["x"]  # "Need help now?" on the left, the brand on the right
    assert r_help["x"] >= 0 and r_help["x"] + r_help["width"] <= width
    assert abs((r_first["x"] + r_first["width"]) - (width - first["x"])) <= 1  # a mirror image
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    bar_box = box(bar)
    assert bar_box["x"] == 0 and bar_box["width"] == width  # still the whole width


def test_the_copy_button_still_copies_with_its_code_loaded_only_where_needed(live_app, new_context):
    """copy.js left app.js (the first visit's 20 KB budget had no room for the language
    loader): offline.js loads it on a page with a copy or share button, swapped in by htmx."""
    clinic = a_clinic(live_app)
    page = logged_in(new_context, clinic.patient, 360)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    assert not page.evaluate(
        "performance.getEntriesByType('resource').some((r) => r.name.endsWith('/copy.js'))"
    )
    page.goto("/supporters")
    page.get_by_label("Their name").fill("Sam")
    page.get_by_role("button", name="Create invitation link").click()
    expect(heading(page)).to_have_text("Invitation ready for Sam")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    link = page.get_by_label("Invitation link").input_value()
    assert page.evaluate("navigator.clipboard.readText()") == link
    expect(page.locator("#live")).to_have_text("Copied to clipboard")


def test_a_push_without_a_title_gets_the_default_title_in_the_phones_language(
    live_app, live_server, new_context
):
    """The server writes reminders in their reader's language; a message with no title gets
    the service worker's own, from its cached catalogue, in the last page's language."""
    context = new_context(**SPANISH_PHONE)
    context.grant_permissions(["notifications"], origin=live_server)
    page = context.new_page()
    page.goto("/login")
    expect(heading(page)).to_have_text("Iniciar sesión")
    ready_for_offline(page)
    wait_for_cached(page, "/i18n/es.json")
    cdp = context.new_cdp_session(page)
    registrations = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(e["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    for _ in range(50):
        if registrations:
            break
        page.wait_for_timeout(100)
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": live_server,
            "registrationId": registrations[0]["registrationId"],
            "data": json.dumps({"body": "…", "url": "/journal", "tag": "t-1"}),
        },
    )
    shown = []
    for _ in range(50):
        shown = page.evaluate(
            """() => navigator.serviceWorker.ready
              .then((r) => r.getNotifications()).then((ns) => ns.map((n) => n.title))"""
        )
        if shown:
            break
        page.wait_for_timeout(100)
    assert shown == ["Su diario"]
