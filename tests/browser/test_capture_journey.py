"""After a ketamine session, on a phone (360 px) in a real Chromium with its fake microphone: a
voice memo recorded with MediaRecorder, kept on the phone (encrypted) while offline, sent once
when the network is back, held by the cooling-off seal, shared the next day, and played by the
therapist."""

from __future__ import annotations

import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import make_user
from sqlalchemy import update
from sqlmodel import Session, select

from kapjournal import db
from kapjournal.models import CoolingOff, Entry, EntryMemo, User, utcnow
from kapjournal.services import course

from .conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, Recorder
from .test_offline import OFFLINE_SAVED, READ_QUEUE, queue_note
from .test_registration import assert_fits_the_screen, heading, log_in

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

SLOW = 20_000  # a login (Argon2id) on a busy machine
FAKE_MICROPHONE = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
WORDS = "Saltmarsh heron standing still"
PLAYABLE = (
    "() => { const a = document.querySelector('audio');"
    " return a.readyState >= 1 && a.duration > 0; }"
)


@pytest.fixture
def phone_with_microphone(browser, live_server):
    """A phone whose microphone is Chromium's fake device (a beep), granted without asking: a
    second Chromium from the same Playwright, launched with the fake-media switches."""
    chromium = browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + FAKE_MICROPHONE
    )
    recorder = Recorder()
    context = chromium.new_context(base_url=live_server, **PHONE)
    context.set_default_timeout(8_000)
    context.on("console", recorder.on_console)
    context.on("weberror", recorder.on_page_error)
    yield context
    context.close()
    chromium.close()
    assert recorder.problems() == []


def people_with_a_session_an_hour_ago(app):
    therapist = make_user(
        app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    with app.app_context(), Session(db.engine()) as dbs:
        user = dbs.get(User, patient.id)
        user.share_defaults = {"capture": True}  # captures go to the therapist by default
        dbs.add(user)
        began = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        course.schedule(
            session=dbs,
            patient=user,
            created_by=dbs.get(User, therapist.id),
            kind="ketamine",
            when=began,
            zone=ZoneInfo("UTC"),
        )
        dbs.commit()
    return patient, therapist


def captures_on_server(app, patient) -> list[tuple]:
    with app.app_context(), Session(db.engine()) as dbs:
        rows = dbs.exec(
            select(Entry, EntryMemo)
            .outerjoin(EntryMemo, EntryMemo.entry_id == Entry.id)
            .where(Entry.author_id == patient.id, Entry.kind == "capture")
        ).all()
        return [(entry.id, memo is not None) for entry, memo in rows]


def wait_for_one_capture(app, patient):
    deadline = time.monotonic() + 8
    while not captures_on_server(app, patient):
        assert time.monotonic() < deadline, "the capture never arrived"
        time.sleep(0.1)
    time.sleep(0.5)  # and nothing more arrives
    found = captures_on_server(app, patient)
    assert len(found) == 1 and found[0][1], found
    return found[0][0]


def test_a_memo_recorded_offline_is_sent_once_held_shared_next_day_and_played(
    live_app, live_server, phone_with_microphone
):
    patient, therapist = people_with_a_session_an_hour_ago(live_app)
    page = phone_with_microphone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal", timeout=SLOW)
    expect(page.get_by_role("heading", name="After your session")).to_be_visible()
    page.get_by_role("link", name="Capture a moment").click()
    expect(heading(page)).to_have_text("After your session")
    assert_fits_the_screen(page)

    record = page.get_by_role("button", name="Record", exact=True)
    expect(record).to_be_visible()
    box = record.bounding_box()
    assert box["height"] >= 44 and box["width"] >= 44
    record.click()
    expect(page.get_by_text("Recording…")).to_be_visible()
    page.wait_for_timeout(2_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_text("Recorded 0:0")).to_be_visible()
    assert page.evaluate("document.querySelector('#f-memo').files[0].size") > 1000
    feelings = page.get_by_role("group", name="How do your body and mood feel? (tap any)")
    feelings.get_by_label("Open").check()
    page.get_by_label("A few words (optional)").fill(WORDS)

    phone_with_microphone.set_offline(True)
    page.get_by_role("button", name="Keep it").click()
    expect(page.locator(".draft-status")).to_have_text(OFFLINE_SAVED)
    stored = page.evaluate(READ_QUEUE)
    assert len(stored["queue"]) == 1 and stored["queue"][0].get("memo")
    for word in WORDS.split():
        assert word not in str(stored)
    assert captures_on_server(live_app, patient) == []

    phone_with_microphone.set_offline(False)  # the `online` event sends it
    expect(queue_note(page)).to_contain_text("Sent.")
    entry_id = wait_for_one_capture(live_app, patient)

    # Held by the seal: the therapist sees a count, never the memo.
    therapist_page = phone_with_microphone.browser.new_context(
        base_url=live_server, **PHONE
    ).new_page()
    log_in(therapist_page, therapist.email)
    expect(heading(therapist_page)).to_have_text(f"Hello, {therapist.name}", timeout=SLOW)
    therapist_page.get_by_role("link", name=patient.name).click()
    expect(heading(therapist_page)).to_have_text(patient.name)
    expect(therapist_page.get_by_text("1 item from after a ketamine session")).to_be_visible()
    assert therapist_page.goto(f"/entries/{entry_id}/memo").status == 404

    # The next day, the patient shares it.
    with live_app.app_context(), Session(db.engine()) as dbs:
        dbs.exec(update(CoolingOff).values(until=utcnow() - timedelta(minutes=1)))
        dbs.commit()
    page.goto("/journal")
    held = page.get_by_role("region", name="From yesterday’s session")  # noqa: RUF001
    expect(held).to_contain_text(WORDS)
    expect(held.get_by_label("Dr. Tess Ward (your therapist)")).to_be_checked()
    assert_fits_the_screen(page)
    held.get_by_role("button", name="Share").click()
    expect(heading(page)).to_have_text("Your journal")
    expect(page.get_by_role("region", name="From yesterday’s session")).to_have_count(0)  # noqa: RUF001

    # The therapist plays it.
    therapist_page.goto(f"/entries/{entry_id}")
    expect(therapist_page.get_by_text(WORDS)).to_be_visible()
    audio = therapist_page.locator("audio")
    expect(audio).to_have_count(1)
    therapist_page.wait_for_function(PLAYABLE)
    assert_fits_the_screen(therapist_page)
    therapist_page.context.close()


def test_offline_the_capture_page_still_opens_and_what_is_kept_there_is_sent_once(
    live_app, phone_with_microphone
):
    patient, _therapist = people_with_a_session_an_hour_ago(live_app)
    page = phone_with_microphone.new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal", timeout=SLOW)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")

    phone_with_microphone.set_offline(True)  # no signal, before the capture page was opened
    page.goto("/capture")
    expect(heading(page)).to_have_text("After your session")
    expect(page.get_by_text("You can capture this without a connection")).to_be_visible()
    assert_fits_the_screen(page)
    page.get_by_role("button", name="Record", exact=True).click()
    expect(page.get_by_text("Recording…")).to_be_visible()
    page.wait_for_timeout(1_500)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_text("Recorded 0:0")).to_be_visible()
    page.get_by_role("group", name="How do your body and mood feel? (tap any)").get_by_label(
        "Heavy"
    ).check()
    page.get_by_label("A few words (optional)").fill(WORDS)
    page.get_by_role("button", name="Keep it").click()
    expect(page.locator(".draft-status")).to_have_text(OFFLINE_SAVED)
    stored = page.evaluate(READ_QUEUE)
    assert len(stored["queue"]) == 1 and stored["queue"][0].get("memo")
    assert WORDS.split()[0] not in str(stored)
    assert captures_on_server(live_app, patient) == []

    phone_with_microphone.set_offline(False)  # the `online` event sends it, once
    expect(queue_note(page)).to_contain_text("Sent.")
    wait_for_one_capture(live_app, patient)
