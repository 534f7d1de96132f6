"""The journal in a real Chromium at phone size: writing, sharing and unsharing a reflection that
the therapist reads; a draft that survives closing the page (encrypted in IndexedDB, nothing in
plaintext), is cleared once sent, is wiped by logout and cannot silently overwrite a newer
version; a rejected form that keeps the words; an edit made in two tabs. The fixtures fail a
test on any CSP violation or uncaught error in the page."""

from __future__ import annotations

import re
import time
import uuid
from zoneinfo import ZoneInfo

from conftest import PASSWORD, make_user
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import Entry, User
from kapjournal.services import accounts, course, journal

from .conftest import PHONE, TABLET
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

BIG_TABLET = {**TABLET, "viewport": {"width": 800, "height": 1100}}
ENTRY_URL = re.compile(r"/entries/[0-9a-f-]{36}$")

# Everything drafts.js keeps, with the binary parts as base64. Call it only once drafts.js has
# opened the database: opening a missing one here would create it without its stores.
READ_STORAGE = """async () => {
  const db = await new Promise((ok, no) => {
    const r = indexedDB.open("kapjournal");
    r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error);
  });
  const all = (name) => new Promise((ok, no) => {
    const r = db.transaction(name).objectStore(name).getAll();
    r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error);
  });
  const b64 = (v) =>
    btoa(String.fromCharCode(...new Uint8Array(ArrayBuffer.isView(v) ? v.buffer : v)));
  const drafts = (await all("drafts")).map((r) => ({ ...r, iv: b64(r.iv), data: b64(r.data) }));
  const keys = (await all("keys")).map((k) => ({
    type: k.type, extractable: k.extractable, name: k.algorithm.name,
    length: k.algorithm.length, usages: k.usages,
  }));
  db.close();
  return {
    drafts, keys, stores: [...db.objectStoreNames],
    local: Object.entries(localStorage), session: Object.entries(sessionStorage),
  };
}"""


def patient_and_therapist(app):
    therapist = make_user(
        app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    return patient, therapist


def schedule_ketamine_session(app, patient, therapist) -> uuid.UUID:
    """A ketamine session on 4 March 2026 at 10:00 UTC."""
    with app.app_context(), Session(db.engine()) as dbs:
        found = course.schedule(
            session=dbs,
            patient=dbs.get(User, patient.id),
            created_by=dbs.get(User, therapist.id),
            kind="ketamine",
            when="2026-03-04T10:00",
            zone=ZoneInfo("UTC"),
        )
        dbs.commit()
        return found.id


def write_entry(app, patient, text: str) -> uuid.UUID:
    with app.app_context(), Session(db.engine()) as dbs:
        entry, _ = journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="reflection",
            body={"text": text},
            client_id=uuid.uuid4(),
        )
        dbs.commit()
        return entry.id


def edit_elsewhere(app, patient, entry_id: uuid.UUID, text: str) -> None:
    """The patient changes the entry from another device."""
    with app.app_context(), Session(db.engine()) as dbs:
        user, private_key = accounts.authenticate(
            session=dbs, email=patient.email, password=PASSWORD
        )
        entry = dbs.get(Entry, entry_id)
        saved = journal.read(session=dbs, entry=entry, reader_id=user.id, private_key=private_key)
        journal.update(
            session=dbs,
            entry=entry,
            author=user,
            private_key=private_key,
            body={"text": text},
            base_digest=journal.body_digest(saved),
        )
        dbs.commit()


def draft_status(page):
    return page.locator(".draft-status")


def wait_for_drafts(page, promise, check) -> dict:
    """Poll the page's storage (drafts.js writes it after the page settles) until `check`."""
    deadline = time.monotonic() + 5
    while True:
        stored = page.evaluate(READ_STORAGE)
        if check(stored["drafts"]):
            return stored
        assert time.monotonic() < deadline, f"{promise}: {stored['drafts']}"
        page.wait_for_timeout(100)


def test_patient_shares_a_reflection_the_therapist_reads_until_sharing_stops(live_app, new_context):
    patient, therapist = patient_and_therapist(live_app)
    session_id = schedule_ketamine_session(live_app, patient, therapist)
    text = "Felt like floating 🌊\nthen the room came back."

    phone = new_context(**PHONE, timezone_id="Pacific/Auckland")
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    assert_fits_the_screen(page)
    assert {c["name"]: c["value"] for c in phone.cookies()}.get("tz") == "Pacific/Auckland"

    page.get_by_role("link", name="Write a reflection").click()
    expect(heading(page)).to_have_text("How was it?")
    assert_fits_the_screen(page)
    page.get_by_label("Whatever comes to mind").fill(text)
    # The session is shown in the phone's zone (the tz cookie): 10:00 UTC is 23:00 in Auckland.
    session = page.get_by_label("Session (optional)")
    expect(session.locator(f'option[value="{session_id}"]')).to_have_text(
        "Ketamine session · Wed 4 Mar 2026, 23:00"
    )
    session.select_option(str(session_id))
    page.get_by_role("group", name="Who may read it").get_by_label(therapist.name).check()
    prompt = page.locator("details.prompt-chip > summary").first  # a chip opens its answer
    question = prompt.inner_text()
    prompt.click()
    page.get_by_label(question).fill("The colours.")
    page.get_by_role("group", name="Mood").get_by_label("Good", exact=True).check()
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(ENTRY_URL)
    expect(heading(page)).to_have_text("Reflection")
    assert page.locator(".entry-body .entry-text").first.text_content() == text
    expect(page.get_by_role("heading", name=question)).to_be_visible()
    expect(page.get_by_text("Mood: Good")).to_be_visible()
    who = page.get_by_role("region", name="Who can read this")
    expect(who.get_by_role("listitem")).to_have_count(2)
    expect(who.get_by_role("listitem").first).to_have_text("You")
    expect(who.get_by_role("listitem").nth(1)).to_contain_text(therapist.name)
    assert_fits_the_screen(page)
    entry_url = page.url

    reader = new_context(**BIG_TABLET, timezone_id="UTC").new_page()
    log_in(reader, therapist.email)
    expect(heading(reader)).to_have_text(f"Hello, {therapist.name}")
    reader.get_by_role("link", name=patient.name).click()
    expect(heading(reader)).to_have_text(patient.name)
    group = reader.get_by_role("region", name="Ketamine session · Wed 4 Mar 2026, 10:00")
    group.get_by_role("link", name="Reflection").click()
    expect(reader).to_have_url(entry_url)
    expect(reader.get_by_text(f"By {patient.name}")).to_be_visible()
    assert reader.locator(".entry-body .entry-text").first.text_content() == text

    # One tap, no question (a dialog would be dismissed, and the sharing would go on).
    who.get_by_role("button", name=f"Stop sharing with {therapist.name}").click()
    expect(who.get_by_role("button", name=re.compile("Stop sharing"))).to_have_count(0)
    expect(who.get_by_role("listitem")).to_have_count(1)

    response = reader.reload()
    assert response.status == 404
    expect(heading(reader)).to_have_text("Page not found")
    expect(reader.get_by_text("Felt like floating")).to_have_count(0)


def test_draft_survives_closing_the_page_encrypted_and_is_cleared_once_sent(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    words = "Lantern harbour whispering"
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")

    page.get_by_role("link", name="Write a reflection").click()
    client_id = page.locator("input[name=client_id]").input_value()
    page.get_by_label("Whatever comes to mind").fill(words)
    expect(draft_status(page)).to_have_text("Saved on this phone.")
    # Away and back again by boosted (htmx) navigation: the draft comes back.
    nav(page).get_by_role("link", name="Journal", exact=True).click()
    expect(heading(page)).to_have_text("Your journal")
    page.get_by_role("link", name="Write a reflection").click()
    expect(draft_status(page)).to_have_text("Draft restored from this phone.")
    expect(page.get_by_label("Whatever comes to mind")).to_have_value(words)

    stored = page.evaluate(READ_STORAGE)
    assert set(stored["stores"]) >= {"drafts", "keys"}
    assert len(stored["drafts"]) == 1 and len(stored["drafts"][0]["iv"]) == 16  # 12 bytes
    dump = str(stored)
    for word in [*words.split(), client_id]:
        assert word not in dump
    assert stored["keys"] == [
        {
            "type": "secret",
            "extractable": False,
            "name": "AES-GCM",
            "length": 256,
            "usages": ["encrypt", "decrypt"],
        }
    ]
    # Web storage holds nothing of the draft: htmx keeps only the current path there.
    assert stored["local"] == []
    assert [k for k, _ in stored["session"]] in ([], ["htmx-current-path-for-history"])

    page.close()
    page = phone.new_page()
    page.goto("/entries/new?kind=reflection")
    expect(draft_status(page)).to_have_text("Draft restored from this phone.")
    expect(page.get_by_label("Whatever comes to mind")).to_have_value(words)
    expect(page.locator("input[name=client_id]")).to_have_value(client_id)
    assert_fits_the_screen(page)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(ENTRY_URL)
    expect(page.get_by_text(words)).to_be_visible()
    wait_for_drafts(page, "the sent draft is deleted", lambda drafts: drafts == [])

    nav(page).get_by_role("link", name="Journal", exact=True).click()
    expect(heading(page)).to_have_text("Your journal")
    expect(page.locator("article.entry-card")).to_have_count(1)
    page.get_by_role("link", name="Write a reflection").click()
    expect(heading(page)).to_have_text("How was it?")
    expect(page.get_by_label("Whatever comes to mind")).to_have_value("")
    expect(page.locator("input[name=client_id]")).not_to_have_value(client_id)
    expect(draft_status(page)).to_have_text("")


def _log_out_answering(page, answer: str) -> None:
    nav(page).get_by_role("button", name="Log out").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("1 unfinished draft")
    dialog.get_by_role("button", name=answer).click()
    expect(heading(page)).to_have_text("Log in")


def _log_in_again(page, patient) -> None:
    page.get_by_label("Email").fill(patient.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(heading(page)).to_have_text("Your journal")


def test_logout_asks_before_wiping_a_draft_and_drafting_works_after_logging_back_in(
    live_app, phone
):
    patient, _ = patient_and_therapist(live_app)
    page = phone.new_page()
    log_in(page, patient.email)
    page.get_by_role("link", name="Write a reflection").click()
    page.get_by_label("Whatever comes to mind").fill("Before logging out.")
    expect(draft_status(page)).to_have_text("Saved on this phone.")

    # Keeping it: the draft survives the logout and comes back after logging in again.
    _log_out_answering(page, "Log out and keep them")
    _log_in_again(page, patient)
    page.get_by_role("link", name="Write a reflection").click()
    text = page.get_by_label("Whatever comes to mind")
    expect(text).to_have_value("Before logging out.")

    # Discarding it, on request only: then it is gone, and a new draft is kept again
    # (logging in again without a page reload: htmx swaps).
    _log_out_answering(page, "Discard them")
    _log_in_again(page, patient)
    page.get_by_role("link", name="Write a reflection").click()
    text = page.get_by_label("Whatever comes to mind")
    expect(text).to_have_value("")
    text.fill("After logging in again.")
    expect(draft_status(page)).to_have_text("Saved on this phone.")
    page.reload()
    expect(draft_status(page)).to_have_text("Draft restored from this phone.")
    expect(text).to_have_value("After logging in again.")


def test_intention_without_its_sentence_comes_back_with_the_hopes_and_the_error(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    hopes = "To feel at home in my body again."
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.get_by_role("link", name="Set an intention").click()
    expect(heading(page)).to_have_text("Set an intention")
    page.get_by_label("What I hope for").fill(hopes)
    with page.expect_response(lambda r: r.request.method == "POST") as sent:
        page.get_by_role("button", name="Save").click()
    assert sent.value.status == 422

    intention = page.get_by_label("My intention, in one sentence")
    expect(intention).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#{intention.get_attribute('aria-describedby')}")
    expect(error).to_have_text("Write your intention.")
    expect(error).to_be_visible()
    expect(page.get_by_label("What I hope for")).to_have_value(hopes)
    assert_fits_the_screen(page)
    # The draft stays on the phone, no longer waiting to be cleared, and unreadable.
    stored = wait_for_drafts(
        page,
        "the rejected draft is kept",
        lambda drafts: [(d["id"], d["pending"]) for d in drafts] == [("new-intention", 0)],
    )
    assert "home in my body" not in str(stored)

    intention.fill("Be kind to myself.")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(ENTRY_URL)
    expect(page.get_by_text("Be kind to myself.")).to_be_visible()
    expect(page.get_by_text(hopes)).to_be_visible()
    wait_for_drafts(page, "the sent draft is deleted", lambda drafts: drafts == [])


def test_edit_saved_in_another_tab_shows_both_versions_and_keeps_mine_on_request(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    entry_id = write_entry(live_app, patient, "The first words.")
    first = phone.new_page()
    log_in(first, patient.email)
    expect(heading(first)).to_have_text("Your journal")
    second = phone.new_page()
    for page in (first, second):
        page.goto(f"/entries/{entry_id}/edit")
        expect(heading(page)).to_have_text("Edit your reflection")
        expect(page.get_by_label("Whatever comes to mind")).to_have_value("The first words.")

    first.get_by_label("Whatever comes to mind").fill("Written in the first tab.")
    first.get_by_role("button", name="Save").click()
    expect(first).to_have_url(ENTRY_URL)
    expect(first.get_by_text("Written in the first tab.")).to_be_visible()

    second.get_by_label("Whatever comes to mind").fill("Written in the second tab.")
    second.get_by_role("button", name="Save").click()
    expect(heading(second)).to_have_text("This entry changed while you were editing")
    expect(second.get_by_label("Your text")).to_have_value("Written in the second tab.")
    expect(second.get_by_text("Written in the first tab.")).to_be_visible()
    assert_fits_the_screen(second)
    second.get_by_role("button", name="Keep my version").click()
    expect(second).to_have_url(ENTRY_URL)
    expect(second.get_by_text("Written in the second tab.")).to_be_visible()

    first.reload()
    expect(first.get_by_text("Written in the second tab.")).to_be_visible()
    expect(first.get_by_text("Written in the first tab.")).to_have_count(0)


def test_edit_draft_older_than_the_saved_entry_leads_to_the_conflict_page(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    entry_id = write_entry(live_app, patient, "The first words.")
    page = phone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.goto(f"/entries/{entry_id}/edit")
    page.get_by_label("Whatever comes to mind").fill("Drafted on the phone.")
    expect(draft_status(page)).to_have_text("Saved on this phone.")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(ENTRY_URL)

    edit_elsewhere(live_app, patient, entry_id, "Changed on the laptop.")
    page.goto(f"/entries/{entry_id}/edit")
    expect(draft_status(page)).to_have_text("Draft restored from this phone.")
    expect(page.get_by_label("Whatever comes to mind")).to_have_value("Drafted on the phone.")
    page.get_by_role("button", name="Save").click()
    # The draft remembers the version it was written against: no silent overwrite.
    expect(heading(page)).to_have_text("This entry changed while you were editing")
    expect(page.get_by_label("Your text")).to_have_value("Drafted on the phone.")
    expect(page.get_by_text("Changed on the laptop.")).to_be_visible()
