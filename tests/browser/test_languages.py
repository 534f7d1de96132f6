"""Spanish on a phone, in a real Chromium set to Spanish: the login page speaks Spanish and fits
360 px, with no accessibility violation; "¿Necesita ayuda ahora?" opens the crisis page in
Spanish (988, press 2; text AYUDA), and it still opens with the network gone, from the service
worker's copy of the Spanish page. Choosing English on the login page works without a script
too. The fixtures fail the test on any CSP violation or uncaught error."""

from __future__ import annotations

import re

from .conftest import PHONE
from .test_pwa import assert_accessible
from .test_registration import assert_fits_the_screen, heading

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    Axe = expect = None

SPANISH_PHONE = {**PHONE, "locale": "es-US"}


def test_a_spanish_phone_gets_spanish_pages_and_the_spanish_crisis_page_offline(
    live_app, new_context
):
    context = new_context(**SPANISH_PHONE)
    page = context.new_page()
    axe = Axe()
    page.goto("/login")
    expect(heading(page)).to_have_text("Iniciar sesión")
    assert page.locator("html").get_attribute("lang") == "es"
    assert_fits_the_screen_in_spanish(page)
    assert_accessible(axe, page, "login, in Spanish")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    # The service worker has the Spanish crisis page (in whichever cache is current). Polled with
    # evaluate, which awaits the promise (wait_for_function would take the promise as truthy).
    for _ in range(100):
        if page.evaluate("caches.match('/help?lang=es').then((hit) => !!hit)"):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the Spanish crisis page never reached the service worker's cache")

    page.get_by_role("banner").get_by_role("link", name="¿Necesita ayuda ahora?").click()
    expect(heading(page)).to_have_text("¿Necesita ayuda ahora?")
    expect(page.get_by_role("link", name=re.compile("oprima 2"))).to_be_visible()
    assert_accessible(axe, page, "crisis page, in Spanish")

    context.set_offline(True)
    page.goto("/help?lang=es")
    expect(heading(page)).to_have_text("¿Necesita ayuda ahora?")
    expect(page.get_by_role("link", name=re.compile("oprima 2"))).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("AYUDA"))).to_be_visible()
    context.set_offline(False)

    page.goto("/login")
    page.get_by_role("button", name="English").click()
    expect(heading(page)).to_have_text("Log in")
    assert page.locator("html").get_attribute("lang") == "en"
    assert_fits_the_screen(page)


def assert_fits_the_screen_in_spanish(page) -> None:
    """As assert_fits_the_screen, for the header's help link in Spanish."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    link = page.get_by_role("banner").get_by_role("link", name="¿Necesita ayuda ahora?")
    expect(link).to_be_visible()
    box = link.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= height, box
    assert page.evaluate("document.documentElement.scrollWidth") <= width
