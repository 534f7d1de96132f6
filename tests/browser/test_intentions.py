"""Intentions over time in a real Chromium: the patient finds the page from More on a phone (360
px), reads each session's intention beside what followed, and it fits the screen and prints
(two columns on paper, no navigation, a PDF); the therapist, on a tablet, reaches it from the
patient's page and the integration session view and sees only what was shared. The fixtures
fail the test on any CSP violation or uncaught error."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import Session

from kapjournal import db
from kapjournal.models import TreatmentSession, User, utcnow
from kapjournal.services import journal

from .conftest import PHONE, TABLET
from .test_journal_journey import patient_and_therapist
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

BROAD = "To be kinder to myself, in a sentence long enough to wrap on a narrow phone screen."
SPECIFIC = "To forgive my father."
FOLLOWED = "I saw him young, and scared. Something in me softened."
PRIVATE = "Not for anyone else yet."


def a_course(app, patient, therapist) -> None:
    with app.app_context(), Session(db.engine()) as dbs:
        author, reader = dbs.get(User, patient.id), dbs.get(User, therapist.id)
        for days in (20, 10):
            dbs.add(
                TreatmentSession(
                    patient_id=patient.id,
                    created_by_id=therapist.id,
                    kind="ketamine",
                    scheduled_at=utcnow() - timedelta(days=days),
                )
            )
        written = [
            ("intention", {"intention": BROAD}, 21, []),
            ("intention", {"intention": SPECIFIC, "hopes": "Some peace."}, 11, [reader]),
            ("reflection", {"text": FOLLOWED}, 9, [reader]),
            ("reflection", {"text": PRIVATE}, 8, []),
        ]
        for kind, body, days, readers in written:
            entry, _ = journal.create(
                session=dbs,
                author=author,
                kind=kind,
                body=body | {"answers": []},
                client_id=uuid.uuid4(),
                readers=readers,
            )
            entry.created_at = utcnow() - timedelta(days=days)
            dbs.add(entry)
        dbs.commit()


def columns_side_by_side(page) -> bool:
    boxes = page.locator(".intention-row").first.evaluate(
        """row => [...row.querySelectorAll('.intention-side, .reflection-side')]
                   .map(e => e.getBoundingClientRect().top)"""
    )
    return len(boxes) == 2 and abs(boxes[0] - boxes[1]) < 1


def test_the_patient_reads_and_prints_their_intentions_on_a_phone(live_app, new_context):
    patient, therapist = patient_and_therapist(live_app)
    a_course(live_app, patient, therapist)
    page = new_context(**PHONE).new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    nav(page).get_by_role("link", name="My intentions over time").click()
    expect(heading(page)).to_have_text("Your intentions over time")
    assert_fits_the_screen(page)
    rows = page.locator(".intention-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".intention-side")).to_contain_text(SPECIFIC)
    expect(rows.nth(0).locator(".reflection-side")).to_contain_text(FOLLOWED)
    expect(rows.nth(1).locator(".intention-side")).to_contain_text(BROAD)
    assert not columns_side_by_side(page)  # one column on a phone
    links = page.locator(".intention-date a")
    for n in range(links.count()):
        assert links.nth(n).bounding_box()["height"] >= 44

    page.emulate_media(media="print")
    expect(page.get_by_role("banner")).to_be_hidden()
    assert columns_side_by_side(page)  # intention beside what followed, on paper
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 1_000


def test_the_therapist_reaches_it_from_the_patient_and_the_session_and_sees_only_shares(
    live_app, new_context
):
    patient, therapist = patient_and_therapist(live_app)
    a_course(live_app, patient, therapist)
    page = new_context(**TABLET).new_page()
    log_in(page, therapist.email)
    expect(heading(page)).to_have_text(f"Hello, {therapist.name}")
    page.goto(f"/patients/{patient.id}")
    page.get_by_role("link", name="Intentions over time").click()
    expect(heading(page)).to_have_text(f"{patient.name}: intentions over time")
    assert_fits_the_screen(page)
    main = page.get_by_role("main")
    expect(main).to_contain_text(SPECIFIC)
    expect(main).to_contain_text(FOLLOWED)
    expect(main).not_to_contain_text(BROAD)
    expect(main).not_to_contain_text(PRIVATE)
    assert columns_side_by_side(page)  # a tablet has room for both
    page.get_by_role("link", name="Integration session view").click()
    expect(heading(page)).to_have_text(f"Integration session with {patient.name}")
    page.get_by_role("link", name="Intentions over time").click()
    expect(heading(page)).to_have_text(f"{patient.name}: intentions over time")
