"""Offline capture in a real Chromium at phone size (DESIGN §6): a reflection or check-in written
with the network off is kept on the phone, encrypted, and reaches the server exactly once when
the network is back — also when the session expired in between, with two tabs open, after a
double tap, or after the server failed; logout asks before it drops entries not yet sent, and
leaves no journal text on the device."""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import PASSWORD, make_user
from sqlmodel import Session, select

from kapjournal import db
from kapjournal.models import DeviceSession, Entry, utcnow
from kapjournal.services import accounts, journal

from .conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, Recorder
from .test_journal_journey import ENTRY_URL, patient_and_therapist
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

NEW_ENTRY = "/entries/new"
OFFLINE_SAVED = "Saved on this phone. It will be sent when you're back online."

# What drafts.js keeps: counts, and every record with its binary parts as base64.
READ_QUEUE = """async () => {
  const db = await new Promise((ok, no) => {
    const r = indexedDB.open("kapjournal");
    r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error);
  });
  const all = (name) => new Promise((ok, no) => {
    if (!db.objectStoreNames.contains(name)) return ok([]);
    const r = db.transaction(name).objectStore(name).getAll();
    r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error);
  });
  const b64 = (v) =>
    btoa(String.fromCharCode(...new Uint8Array(ArrayBuffer.isView(v) ? v.buffer : v)));
  const dump = async (name) =>
    (await all(name)).map((r) => ({ ...r, iv: b64(r.iv), data: b64(r.data) }));
  const result = {
    queue: await dump("queue"), drafts: await dump("drafts"), keys: (await all("keys")).length,
  };
  db.close();
  return result;
}"""

# Every place a page can keep something: Cache Storage, IndexedDB, web storage.
DEVICE_STORAGE = """async () => {
  const out = {
    caches: [], idb: [],
    local: Object.entries(localStorage), session: Object.entries(sessionStorage),
  };
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const req of await cache.keys()) {
      out.caches.push([req.url, await (await cache.match(req)).text()]);
    }
  }
  const b64 = (v) =>
    btoa(String.fromCharCode(...new Uint8Array(ArrayBuffer.isView(v) ? v.buffer : v)));
  const plain = (v) => JSON.stringify(v, (k, x) =>
    x instanceof ArrayBuffer || ArrayBuffer.isView(x) ? "b64:" + b64(x) : x);
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((ok, no) => {
      const r = indexedDB.open(info.name);
      r.onsuccess = () => ok(r.result);
      r.onerror = () => no(r.error);
    });
    for (const store of db.objectStoreNames) {
      const rows = await new Promise((ok) => {
        const r = db.transaction(store).objectStore(store).getAll();
        r.onsuccess = () => ok(r.result);
      });
      out.idb.push([info.name, store, rows.map(plain)]);
    }
    db.close();
  }
  return out;
}"""


def queue_note(page):
    return page.locator("#queue-note")


def ready_for_offline(page) -> None:
    """Wait until the service worker is active (its precache filled) and controls the page."""
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    if not page.evaluate("!!navigator.serviceWorker.controller"):
        page.reload()
    assert page.evaluate("!!navigator.serviceWorker.controller")


def texts_on_server(app, patient) -> list[str]:
    """The text of every entry the patient has, decrypted with their password."""
    with app.app_context(), Session(db.engine()) as dbs:
        user, private_key = accounts.authenticate(
            session=dbs, email=patient.email, password=PASSWORD
        )
        entries = dbs.exec(select(Entry).where(Entry.author_id == user.id)).all()
        bodies = [
            journal.read(session=dbs, entry=entry, reader_id=user.id, private_key=private_key)
            for entry in entries
        ]
        return sorted(body.get("text", "") for body in bodies)


def wait_for_texts(app, patient, expected: list[str]) -> None:
    deadline = time.monotonic() + 5
    while texts_on_server(app, patient) != sorted(expected):
        assert time.monotonic() < deadline, texts_on_server(app, patient)
        time.sleep(0.1)
    time.sleep(0.3)  # and nothing more arrives
    assert texts_on_server(app, patient) == sorted(expected)


def expire_sessions(app, patient) -> None:
    """The patient was idle longer than the timeout (the server ends it on the next request)."""
    with app.app_context(), Session(db.engine()) as dbs:
        for device in dbs.exec(select(DeviceSession).where(DeviceSession.user_id == patient.id)):
            device.last_seen_at = utcnow() - timedelta(hours=2)
            dbs.add(device)
        dbs.commit()


def write_offline(page, words: str) -> None:
    """With the network off: open the reflection form from the journal, write, save."""
    page.get_by_role("link", name="Write a reflection").click()
    expect(heading(page)).to_have_text("How was it?")
    expect(page.get_by_text("You can write here without a connection.")).to_be_visible()
    page.get_by_label("Whatever comes to mind").fill(words)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".draft-status")).to_have_text(OFFLINE_SAVED)
    expect(queue_note(page)).to_have_text(OFFLINE_SAVED)
    expect(page.get_by_label("Whatever comes to mind")).to_have_value("")


def assert_queue_is_encrypted(page, words: str, count: int = 1) -> None:
    stored = page.evaluate(READ_QUEUE)
    assert len(stored["queue"]) == count, stored
    for word in words.split():
        assert word not in str(stored)


def test_reflection_and_check_in_written_offline_reach_the_server_once_when_back_online(
    live_app, phone
):
    patient, _ = patient_and_therapist(live_app)
    words = "Tidepool lanterns humming softly"
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    ready_for_offline(page)

    phone.set_offline(True)
    write_offline(page, words)
    page.evaluate("scrollTo(0, 0)")
    assert_fits_the_screen(page)
    assert_queue_is_encrypted(page, words)
    assert texts_on_server(live_app, patient) == []
    # Another page offline: the offline page says the entry waits, and offers a check-in.
    page.get_by_role("link", name="Your journal").click()
    expect(heading(page)).to_have_text("You are offline")
    expect(queue_note(page)).to_have_text(OFFLINE_SAVED)
    page.get_by_role("link", name="a quick check-in").click()
    expect(heading(page)).to_have_text("Quick check-in")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".draft-status")).to_have_text("Write something first.")
    page.get_by_role("group", name="How are you right now?").get_by_label("Okay").check()
    page.get_by_label("One line about it (optional)").fill("Steady, a bit tired.")
    page.get_by_role("button", name="Save").click()
    expect(queue_note(page)).to_have_text(
        "2 entries saved on this phone. They will be sent when you're back online."
    )
    assert_queue_is_encrypted(page, words, count=2)

    phone.set_offline(False)  # the `online` event sends them
    expect(queue_note(page)).to_have_text("Sent 2 entries. They are in your journal.")
    wait_for_texts(live_app, patient, [words, "Steady, a bit tired."])
    page.reload()
    expect(heading(page)).to_have_text("Quick check-in")
    assert page.evaluate(READ_QUEUE)["queue"] == []
    wait_for_texts(live_app, patient, [words, "Steady, a bit tired."])


def test_entry_written_offline_waits_for_a_login_when_the_session_expired_meanwhile(
    live_app, phone
):
    patient, _ = patient_and_therapist(live_app)
    words = "Marigold compass quietly"
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    ready_for_offline(page)
    phone.set_offline(True)
    write_offline(page, words)

    expire_sessions(live_app, patient)
    phone.set_offline(False)
    expect(queue_note(page)).to_have_text("Saved on this phone. Log in and it will be sent.")
    assert texts_on_server(live_app, patient) == []

    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    expect(queue_note(page)).to_have_text("Sent. It is in your journal. Open it")
    wait_for_texts(live_app, patient, [words])


def test_words_typed_while_the_session_expired_are_sent_after_logging_in_again(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    words = "Velvet orchard after the session"
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.get_by_role("link", name="Write a reflection").click()
    page.get_by_label("Whatever comes to mind").fill(words)
    expire_sessions(live_app, patient)
    page.get_by_role("button", name="Save").click()

    expect(heading(page)).to_have_text("Log in")
    expect(queue_note(page)).to_have_text("Saved on this phone. Log in and it will be sent.")
    assert_queue_is_encrypted(page, words)
    page.get_by_label("Email").fill(patient.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(queue_note(page)).to_have_text("Sent. It is in your journal. Open it")
    wait_for_texts(live_app, patient, [words])


def test_a_draft_left_on_a_shared_phone_is_not_shown_to_the_next_person(live_app, phone):
    patient, therapist = patient_and_therapist(live_app)
    other = make_user(
        live_app, role="patient", email="bea@example.org", name="Bea", invited_by=therapist
    )
    page = phone.new_page()
    log_in(page, patient.email)
    page.get_by_role("link", name="Write a reflection").click()
    page.get_by_label("Whatever comes to mind").fill("Only mine to see.")
    expect(page.locator(".draft-status")).to_have_text("Saved on this phone.")
    expire_sessions(live_app, patient)  # no logout: the draft stays on the phone

    log_in(page, other.email)
    page.get_by_role("link", name="Write a reflection").click()
    expect(heading(page)).to_have_text("How was it?")
    page.wait_for_timeout(300)
    expect(page.get_by_label("Whatever comes to mind")).to_have_value("")
    expect(page.locator(".draft-status")).to_have_text("")


def test_two_open_tabs_send_an_offline_entry_only_once(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    words = "Juniper staircase breathing"
    first = phone.new_page()
    log_in(first, patient.email)
    expect(heading(first)).to_have_text("Your journal")
    ready_for_offline(first)
    second = phone.new_page()
    second.goto("/journal")
    expect(heading(second)).to_have_text("Your journal")

    phone.set_offline(True)
    write_offline(first, words)
    phone.set_offline(False)  # both tabs hear `online`; both try
    second.evaluate("Promise.all([window.kapjournalQueue.send(), window.kapjournalQueue.send()])")
    wait_for_texts(live_app, patient, [words])
    for page in (first, second):
        page.reload()
    wait_for_texts(live_app, patient, [words])


def test_double_tap_or_the_same_entry_arriving_three_times_at_once_makes_one_entry(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    page = phone.new_page()
    log_in(page, patient.email)
    page.get_by_role("link", name="Write a reflection").click()
    page.get_by_label("Whatever comes to mind").fill("Tapped twice.")
    page.get_by_role("button", name="Save").dblclick()
    expect(page).to_have_url(ENTRY_URL)
    wait_for_texts(live_app, patient, ["Tapped twice."])

    page.get_by_role("link", name="Write", exact=True).click()
    expect(heading(page)).to_have_text("How was it?")
    # Three requests at the same moment, past the tab lock (say, two browsers): one entry.
    urls = page.evaluate("""async () => {
      const form = document.querySelector("form[data-draft]");
      const body = new URLSearchParams(new FormData(form));
      body.set("text", "Three at once");
      const send = () => fetch("/entries/new", { method: "POST", body }).then((r) => r.url);
      return Promise.all([send(), send(), send()]);
    }""")
    assert len(set(urls)) == 1 and ENTRY_URL.search(urls[0])
    wait_for_texts(live_app, patient, ["Tapped twice.", "Three at once"])


def test_words_survive_a_server_error_and_are_sent_on_the_next_page(live_app, gateway, phone):
    patient, _ = patient_and_therapist(live_app)
    words = "Saffron harbour after rain"
    page = phone.new_page()
    log_in(page, patient.email)
    page.get_by_role("link", name="Write a reflection").click()
    page.get_by_label("Whatever comes to mind").fill(words)

    gateway.down[NEW_ENTRY] = 502
    save_when_ready(page)
    expect(queue_note(page)).to_have_text(
        "Saved on this phone. It could not be sent yet; it will be tried again."
    )
    page.goto("/journal")  # the next page load tries again: the server still fails
    expect(queue_note(page)).to_contain_text("could not be sent yet")
    assert_queue_is_encrypted(page, words)
    del gateway.down[NEW_ENTRY]  # the server is back: the page tries again by itself
    expect(queue_note(page)).to_have_text("Sent. It is in your journal. Open it", timeout=10_000)
    wait_for_texts(live_app, patient, [words])


def save_when_ready(page) -> None:
    """Tap Save once the page's scripts have taken over the form (drafts.js is loaded), as
    they have long before a person has finished typing."""
    page.wait_for_function("() => 'kapjournalQueue' in window")
    page.get_by_role("button", name="Save").click()


def queue_an_unsent_entry(page, gateway, words: str) -> None:
    """With the server down (a 503 for new entries until `gateway.down` is emptied), an
    entry that cannot be sent yet; then the journal page."""
    gateway.down[NEW_ENTRY] = 503
    page.get_by_role("link", name="Write a reflection").click()
    page.get_by_label("Whatever comes to mind").fill(words)
    save_when_ready(page)
    expect(queue_note(page)).to_contain_text("Saved on this phone.")
    page.goto("/journal")
    expect(queue_note(page)).to_contain_text("Saved on this phone.")


def logout_dialog(page):
    return page.get_by_role("dialog", name="You have 1 unsent entry on this phone")


def test_logout_with_an_unsent_entry_can_keep_it_for_its_writers_next_login(
    live_app, gateway, phone
):
    patient, therapist = patient_and_therapist(live_app)
    other = make_user(
        live_app, role="patient", email="bea@example.org", name="Bea", invited_by=therapist
    )
    words = "Cobalt meadow whispering"
    page = phone.new_page()
    log_in(page, patient.email)
    queue_an_unsent_entry(page, gateway, words)
    nav(page).get_by_role("button", name="Log out").click()
    dialog = logout_dialog(page)
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Send them first").click()
    expect(dialog.get_by_role("status")).to_have_text(re.compile("could not be sent now"))
    with page.expect_response(lambda r: r.url.endswith("/logout")) as logout:
        dialog.get_by_role("button", name="Log out and keep them").click()
    assert logout.value.all_headers()["clear-site-data"] == '"cache"'
    expect(heading(page)).to_have_text("Log in")

    stored = page.evaluate(DEVICE_STORAGE)
    assert stored["local"] == [] and [k for k, _ in stored["session"]] in (
        [],
        ["htmx-current-path-for-history"],
    )
    queue = page.evaluate(READ_QUEUE)
    assert len(queue["queue"]) == 1 and queue["drafts"] == []
    assert words.split()[0] not in str(stored)

    del gateway.down[NEW_ENTRY]
    # Someone else logs in on this phone: the entry is not theirs and is not sent.
    log_in(page, other.email)
    expect(heading(page)).to_have_text("Your journal")
    expect(queue_note(page)).to_have_text(
        "One entry on this phone was written in another account. "
        "It will be sent when that person logs in."
    )
    nav(page).get_by_role("button", name="Log out").click()
    logout_dialog(page).get_by_role("button", name="Log out and keep them").click()
    expect(heading(page)).to_have_text("Log in")
    log_in(page, patient.email)
    expect(queue_note(page)).to_have_text("Sent. It is in your journal. Open it")
    wait_for_texts(live_app, patient, [words])
    assert texts_on_server(live_app, other) == []


def test_logout_can_send_first_or_discard_unsent_entries(live_app, gateway, phone):
    patient, _ = patient_and_therapist(live_app)
    page = phone.new_page()
    log_in(page, patient.email)
    queue_an_unsent_entry(page, gateway, "Sent before leaving")
    nav(page).get_by_role("button", name="Log out").click()
    del gateway.down[NEW_ENTRY]  # the server is back
    with page.expect_response(lambda r: r.url.endswith("/logout")) as logout:
        logout_dialog(page).get_by_role("button", name="Send them first").click()
    assert logout.value.all_headers()["clear-site-data"] == '"cache", "storage"'
    expect(heading(page)).to_have_text("Log in")
    wait_for_texts(live_app, patient, ["Sent before leaving"])

    log_in(page, patient.email)
    queue_an_unsent_entry(page, gateway, "Thrown away on purpose")
    # Logging this device out from the account page asks the same question.
    nav(page).get_by_role("link", name="Account").click()
    expect(heading(page)).to_have_text("Your account")  # not More's own Log out, on its way out
    page.locator("form[data-logout]").get_by_role("button", name="Log out", exact=True).last.click()
    logout_dialog(page).get_by_role("button", name="Discard them").click()
    expect(heading(page)).to_have_text("Log in")
    del gateway.down[NEW_ENTRY]
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    expect(queue_note(page)).to_have_count(0)
    wait_for_texts(live_app, patient, ["Sent before leaving"])


def _profile_hits(folder: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(folder)}: {n[:20]!r}" for n in needles if n in data]
    return hits


@pytest.fixture
def profile():
    """A Chromium profile on disk, so its HTTP cache and storage can be searched."""
    folder = Path(tempfile.mkdtemp(prefix="kapjournal-profile-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_after_logout_no_journal_text_is_left_on_the_device(
    live_app, live_server, profile, browser
):
    patient, _ = patient_and_therapist(live_app)
    canary = "Quokka-periwinkle-" + base64.b32encode(b"kapjournal!").decode().strip("=")
    recorder = Recorder()
    context = browser.browser_type.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        base_url=live_server,
        **PHONE,
    )
    context.on("console", recorder.on_console)
    context.on("weberror", recorder.on_page_error)
    try:
        page = context.pages[0] if context.pages else context.new_page()
        log_in(page, patient.email)
        expect(heading(page)).to_have_text("Your journal")
        ready_for_offline(page)
        page.get_by_role("link", name="Write a reflection").click()
        page.get_by_label("Whatever comes to mind").fill(canary + " written online")
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(ENTRY_URL)
        page.reload()  # a full load of the entry page, not only an htmx swap
        expect(page.get_by_text(canary + " written online")).to_be_visible()
        page.goto("/journal")
        expect(page.get_by_text(canary + " written online")).to_be_visible()
        # And one written offline, sent later.
        context.set_offline(True)
        write_offline(page, canary + " written offline")
        context.set_offline(False)
        expect(queue_note(page)).to_contain_text("Sent.")
        page.goto("/journal/search")
        page.get_by_label("Words to find").fill(canary[:8])  # posted: never in a URL
        expect(page.get_by_text(canary + " written offline")).to_be_visible()

        nav(page).get_by_role("button", name="Log out").click()
        expect(heading(page)).to_have_text("Log in")
        stored = page.evaluate(DEVICE_STORAGE)
    finally:
        context.close()
    needles = [canary.encode(), canary.encode("utf-16-le"), base64.b64encode(canary.encode())]
    text = str(stored)
    assert not [n for n in needles if n.decode("latin-1") in text], stored
    assert stored["local"] == []
    assert [rows for _, store, rows in stored["idb"] if store != "keys" and rows] == []
    assert _profile_hits(profile, needles) == []
    assert recorder.problems() == []
