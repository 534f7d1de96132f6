"""Words typed in a panic are not lost ("Trust at the edges"), in a real Chromium at phone size:
a sentence typed into a new reflection and abandoned at once (0 ms: a nav link, "Need help
now?", Back) is there when the patient comes back, and IndexedDB holds it only encrypted.
A search: its words never reach a URL, the history or the service worker's cache. Sharing
with a supporter asks in place, naming them; stopping takes one tap."""

from __future__ import annotations

import secrets
import uuid

from conftest import make_user
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import User
from kapjournal.services import journal

from .test_journal_journey import READ_STORAGE, patient_and_therapist
from .test_offline import DEVICE_STORAGE, ready_for_offline
from .test_pwa import assert_accessible
from .test_registration import heading, log_in, nav

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    Axe = expect = None

SENTENCE = "The walls are breathing and I am scared, writing this before I call Sam"
WORDS = ("walls", "breathing", "scared", "Sam")


def patient_at_a_new_reflection(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.get_by_role("link", name="Write a reflection").click()
    expect(heading(page)).to_have_text("How was it?")
    return page


def the_text(page):
    return page.get_by_label("Whatever comes to mind")


def come_back_to_a_new_reflection(page) -> None:
    """From wherever the patient went: their journal, then "Write a reflection" again."""
    if heading(page).text_content() != "Your journal":
        nav(page).get_by_role("link", name="Journal", exact=True).click()
    expect(heading(page)).to_have_text("Your journal")
    page.get_by_role("link", name="Write a reflection").click()
    expect(heading(page)).to_have_text("How was it?")


def assert_words_kept_only_encrypted(page) -> None:
    stored = page.evaluate(READ_STORAGE)
    assert len(stored["drafts"]) == 1 and stored["drafts"][0]["id"] == "new-reflection"
    dump = str(stored)
    assert not [word for word in WORDS if word in dump], dump
    assert [k["extractable"] for k in stored["keys"]] == [False]
    assert stored["local"] == []


def test_words_typed_then_a_nav_link_at_once_are_kept(live_app, phone):
    page = patient_at_a_new_reflection(live_app, phone)
    the_text(page).press_sequentially(SENTENCE)
    nav(page).get_by_role("link", name="Journal", exact=True).click()  # 0 ms: no wait at all
    # Landed (a slow machine must not have the helper click Journal again mid-navigation).
    expect(heading(page)).to_have_text("Your journal")
    come_back_to_a_new_reflection(page)
    expect(the_text(page)).to_have_value(SENTENCE)
    expect(page.locator(".draft-status")).to_have_text("Draft restored from this phone.")
    assert_words_kept_only_encrypted(page)


def test_words_typed_then_need_help_now_at_once_are_kept(live_app, phone):
    page = patient_at_a_new_reflection(live_app, phone)
    the_text(page).press_sequentially(SENTENCE)
    page.get_by_role("banner").get_by_role("link", name="Need help now?").click()
    expect(heading(page)).to_have_text("Need help now?")
    # Not Back: a page kept whole in the back/forward cache would show the words anyway.
    page.goto("/journal")
    come_back_to_a_new_reflection(page)
    expect(the_text(page)).to_have_value(SENTENCE)
    assert_words_kept_only_encrypted(page)


def test_words_typed_then_back_at_once_are_kept(live_app, phone):
    page = patient_at_a_new_reflection(live_app, phone)
    the_text(page).press_sequentially(SENTENCE)
    page.go_back()
    expect(heading(page)).to_have_text("Your journal")
    come_back_to_a_new_reflection(page)
    expect(the_text(page)).to_have_value(SENTENCE)
    assert_words_kept_only_encrypted(page)


def test_words_typed_on_a_freshly_loaded_form_then_a_link_at_once_are_kept(live_app, phone):
    page = patient_at_a_new_reflection(live_app, phone)
    page.goto("/entries/new?kind=reflection")  # a full load: the scripts start from nothing
    expect(heading(page)).to_have_text("How was it?")
    the_text(page).fill(SENTENCE)
    nav(page).get_by_role("link", name="Journal", exact=True).click()
    come_back_to_a_new_reflection(page)
    expect(the_text(page)).to_have_value(SENTENCE)
    assert_words_kept_only_encrypted(page)


# --- search ------------------------------------------------------------------------------------

SHELL_URLS = """async () => {
  const urls = [];
  for (const name of await caches.keys()) {
    for (const req of await (await caches.open(name)).keys()) urls.push(req.url);
  }
  return urls;
}"""


def test_search_words_stay_out_of_urls_history_and_the_service_worker_cache(live_app, phone):
    therapist = make_user(live_app, role="therapist", email="t@example.org", name="Dr. T")
    patient = make_user(
        live_app, role="patient", email="p@example.org", name="Pat", invited_by=therapist
    )
    canary = f"kjq{secrets.token_hex(6)}"
    with live_app.app_context(), Session(db.engine()) as dbs:
        journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="reflection",
            body={"text": f"A {canary} on the windowsill.", "answers": []},
            client_id=uuid.uuid4(),
        )
        dbs.commit()
    page = phone.new_page()
    requests = []
    page.on("request", lambda r: requests.append((r.method, r.url, r.post_data or "")))
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    ready_for_offline(page)  # the service worker sees every request from here on
    page.get_by_role("link", name="Search", exact=True).click()
    expect(heading(page)).to_have_text("Search your journal")
    depth = page.evaluate("history.length")
    page.get_by_label("Words to find").fill(canary)
    expect(page.get_by_text("1 entry found.")).to_be_visible()
    expect(page.get_by_text(f"A {canary} on the windowsill.")).to_be_visible()
    page.get_by_role("button", name="Search").click()  # the button too: still no URL
    expect(page.get_by_text("1 entry found.")).to_be_visible()
    assert page.url.endswith("/journal/search") and canary not in page.url
    assert page.evaluate("history.length") == depth
    searches = [(m, u) for m, u, body in requests if canary in body]
    assert searches and {m for m, _ in searches} == {"POST"}
    assert not [u for _, u, _ in requests if canary in u]
    urls = page.evaluate(SHELL_URLS)
    assert urls and not [u for u in urls if canary in u or "search" in u]
    stored = page.evaluate(DEVICE_STORAGE)
    assert canary not in str(stored)


# IndexedDB busy (another tab of the app writing, a slow phone): that tab holds the drafts store
# for 0.6 s, so the save of the words is still waiting when the patient leaves the page.
HOLD_DRAFTS = """(ms) => new Promise((started) => {
  const r = indexedDB.open("kapjournal");
  r.onsuccess = () => {
    const store = r.result.transaction("drafts", "readwrite").objectStore("drafts");
    const end = Date.now() + ms;
    const spin = () => { if (Date.now() < end) store.get("none").onsuccess = spin; };
    spin();
    started();
  };
})"""


def another_tab_holds_the_drafts(phone, ms: int = 600) -> None:
    tab = phone.new_page()
    tab.goto("/help")
    tab.evaluate(HOLD_DRAFTS, ms)


def test_leaving_for_help_waits_for_a_slow_save(live_app, phone):
    page = patient_at_a_new_reflection(live_app, phone)
    page.wait_for_function("() => window.kapjournalStore")
    another_tab_holds_the_drafts(phone)
    the_text(page).press_sequentially(SENTENCE)
    page.get_by_role("banner").get_by_role("link", name="Need help now?").click()
    expect(heading(page)).to_have_text("Need help now?")
    page.goto("/journal")
    come_back_to_a_new_reflection(page)
    expect(the_text(page)).to_have_value(SENTENCE)
    assert_words_kept_only_encrypted(page)


def test_going_back_waits_for_a_slow_save(live_app, phone):
    page = patient_at_a_new_reflection(live_app, phone)
    page.wait_for_function("() => window.kapjournalStore")
    another_tab_holds_the_drafts(phone)
    the_text(page).press_sequentially(SENTENCE)
    page.go_back()
    expect(heading(page)).to_have_text("Your journal")
    come_back_to_a_new_reflection(page)
    expect(the_text(page)).to_have_value(SENTENCE)
    assert_words_kept_only_encrypted(page)


# --- sharing with a supporter --------------------------------------------------------------------


def test_sharing_with_a_supporter_asks_in_place_naming_them_and_stopping_is_one_tap(
    live_app, phone
):
    patient, _ = patient_and_therapist(live_app)
    sue = make_user(
        live_app, role="support", email="sue@example.org", name="Sue Porter", supporting=patient
    )
    with live_app.app_context(), Session(db.engine()) as dbs:
        entry, _ = journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="reflection",
            body={"text": "The hard part of today.", "answers": []},
            client_id=uuid.uuid4(),
        )
        dbs.commit()
        entry_id = entry.id
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.goto(f"/entries/{entry_id}")
    who = page.get_by_role("region", name="Who can read this")
    page.get_by_role("button", name=f"Share with {sue.name}").click()
    question = page.get_by_role("region", name=f"Share this reflection with {sue.name}?")
    expect(question).to_contain_text("its text, your mood and your answers to the questions")
    expect(question.get_by_role("heading")).to_be_focused()
    expect(who).to_have_count(0)  # the question stands in its place, on the same page
    assert page.url.endswith(f"/entries/{entry_id}")
    assert_accessible(Axe(), page, "the question before sharing with a supporter")
    question.get_by_role("link", name="Cancel").click()
    expect(who.get_by_role("listitem")).to_have_count(1)  # still only "You"

    page.get_by_role("button", name=f"Share with {sue.name}").click()
    question.get_by_role("button", name=f"Share with {sue.name}").click()
    expect(who.get_by_role("listitem")).to_have_count(2)
    expect(who.get_by_role("listitem").nth(1)).to_contain_text(sue.name)
    nav(page).get_by_role("link", name="Journal", exact=True).click()
    expect(page.locator("article.entry-card")).to_contain_text(f"Shared with {sue.name}")

    page.goto(f"/entries/{entry_id}")
    # No dialog: one would be dismissed here, and the sharing would go on.
    who.get_by_role("button", name=f"Stop sharing with {sue.name}").click()
    expect(who.get_by_role("listitem")).to_have_count(1)
    expect(who.get_by_role("button", name=f"Share with {sue.name}")).to_be_visible()
