"""The integration session in a real Chromium: the therapist, on a tablet, logs in with a code
from their authenticator app, opens a patient, annotates a passage of a shared reflection,
brings it to the session, walks the agenda one item at a time, takes a note and records a
practice; then the patient, on a phone, sees the shared note beside their words, replies, and
ticks the practice. The fixtures fail the test on any CSP violation or page error."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from conftest import make_user
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import TreatmentSession, User, utcnow
from kapjournal.services import journal

from .conftest import PHONE, TABLET
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

KITCHEN = "I saw my grandmother's kitchen. It felt warm, not sad."
LETTING_GO = "I want to talk about the part where I let go."
NOTE = "Letting go sounds important. Shall we start there?"
PRIVATE = "Grief shifting toward warmth: follow up."


def a_course_with_a_shared_reflection(app):
    therapist = make_user(
        app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    with app.app_context(), Session(db.engine()) as dbs:
        today = TreatmentSession(
            patient_id=patient.id,
            created_by_id=therapist.id,
            kind="integration",
            scheduled_at=utcnow() + timedelta(hours=1),
        )
        dbs.add(today)
        journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="reflection",
            body={"text": f"{KITCHEN}\n\n{LETTING_GO}", "answers": []},
            client_id=uuid.uuid4(),
            readers=[dbs.get(User, therapist.id)],
        )
        dbs.commit()
    return therapist, patient


def test_therapist_runs_an_integration_session_and_the_patient_sees_note_and_practice(
    live_app, new_context
):
    therapist, patient = a_course_with_a_shared_reflection(live_app)

    # --- the therapist, on a tablet ---
    page = new_context(**TABLET).new_page()
    log_in(page, therapist.email)  # answers "Two-step login" with a code from the app
    expect(heading(page)).to_have_text(f"Hello, {therapist.name}")
    card = page.locator(".caseload-card", has_text=patient.name)
    expect(card).to_contain_text("1 entry")
    assert_fits_the_screen(page)

    card.get_by_role("link", name=patient.name).click()
    expect(heading(page)).to_have_text(patient.name)
    assert_fits_the_screen(page)
    page.get_by_role("link", name=re.compile(r"^Read and annotate")).click()
    expect(heading(page)).to_contain_text("Reflection")
    assert_fits_the_screen(page)

    passage = page.locator("#p-1")
    expect(passage).to_contain_text(LETTING_GO)
    passage.get_by_text("Add a note on this passage").click()
    passage.get_by_label("Your note on passage 2").fill(NOTE)
    passage.get_by_label(f"Shared with {patient.name}").check()
    passage.get_by_role("button", name="Save note").click()
    expect(page.locator("#p-1 .note")).to_contain_text(NOTE)
    expect(page.locator("#p-1 .note")).to_contain_text(f"Shared with {patient.name}")
    page.get_by_role("button", name="Bring to the next session").click()
    expect(
        page.get_by_role("button", name=re.compile("Flagged for the next session"))
    ).to_be_visible()
    assert_fits_the_screen(page)

    page.get_by_role("link", name="Integration session view").click()
    expect(heading(page)).to_have_text(f"Integration session with {patient.name}")
    agenda = page.get_by_role("region", name="Agenda")
    expect(agenda).to_contain_text(KITCHEN)
    expect(agenda).to_contain_text(NOTE)
    agenda.get_by_role("link", name="One at a time").click()
    expect(page.get_by_text("Item 1 of 1")).to_be_visible()
    size = page.locator(".agenda-item .para-text").first.evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    assert size >= 20, f"the agenda is read across a table: {size}px is too small"
    page.get_by_role("button", name="Mark as talked through").click()
    expect(page.locator(".agenda-item .done-mark")).to_have_text("Talked through")
    expect(page.locator("#agenda-progress")).to_have_text("1 of 1 talked through.")
    page.evaluate("window.scrollTo(0, 0)")  # swapped in place: the page did not jump
    assert_fits_the_screen(page)

    notes = page.get_by_role("region", name="Notes from today")
    notes.get_by_label("Add a note").fill(PRIVATE)
    notes.get_by_role("button", name="Save note").click()
    expect(page.get_by_role("region", name="Notes from today")).to_contain_text(PRIVATE)

    practices = page.get_by_role("region", name="Practices")
    practices.get_by_label("The practice").fill("Ten minutes outside each morning")
    practices.get_by_label("How often").fill("Most mornings")
    practices.get_by_label("Why it matters to their intention").fill(
        "Your intention was to meet grief with curiosity."
    )
    practices.get_by_role("button", name="Record practice").click()
    recorded = page.locator(".practice", has_text="Ten minutes outside each morning")
    expect(recorded).to_contain_text("no days ticked yet.")
    assert_fits_the_screen(page)

    # --- the patient, on a phone ---
    phone = new_context(**PHONE).new_page()
    log_in(phone, patient.email)
    expect(heading(phone)).to_have_text("Your journal")
    mine = phone.get_by_role("region", name="Your practices")
    expect(mine).to_contain_text("Ten minutes outside each morning")
    expect(mine).to_contain_text("Most mornings")
    assert_fits_the_screen(phone)
    mine.get_by_role("button", name="I did this today").click()
    expect(phone.get_by_role("region", name="Your practices")).to_contain_text("Done today")
    assert phone.evaluate("window.scrollY") > 0  # swapped in place: the page did not jump
    phone.evaluate("window.scrollTo(0, 0)")
    assert_fits_the_screen(phone)

    phone.locator(".entry-card", has_text="Note from your therapist").get_by_role(
        "link", name="Reflection"
    ).click()
    notes_here = phone.get_by_role("region", name="Notes from your therapist")
    expect(notes_here).to_contain_text(LETTING_GO)
    expect(notes_here).to_contain_text(NOTE)
    expect(notes_here).to_contain_text(f"Note from {therapist.name}")
    assert PRIVATE not in phone.content()
    assert_fits_the_screen(phone)
    notes_here.get_by_label("Reply (you can reply once)").fill("Yes, let's.")
    notes_here.get_by_role("button", name="Send reply").click()
    expect(phone.get_by_role("region", name="Notes from your therapist")).to_contain_text(
        "Yes, let's."
    )
    expect(phone.get_by_role("button", name="Send reply")).to_have_count(0)
    nav(phone).get_by_role("link", name="Journal").click()
    expect(heading(phone)).to_have_text("Your journal")
    assert PRIVATE not in phone.content()

    # --- back on the tablet: how it went, and the reply ---
    page.reload()
    expect(page.locator(".practice", has_text="Ten minutes outside")).to_contain_text(
        "done on 1 day"
    )
    page.goto(f"/patients/{patient.id}")
    page.get_by_role("link", name=re.compile(r"^Read and annotate")).click()
    expect(page.locator("#p-1 .note")).to_contain_text("Yes, let's.")
