"""The day of a ketamine session on phones (issue 15, items 1 and 2): the checklist appears on
the patient's home the evening before and goes once the session starts; the supporter named as
the ride home sees the time and, later, the "I'm home" mark; another supporter sees neither.
Time is controlled by scheduling the session relative to now (and choosing the phone's zone)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from conftest import make_user
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import TreatmentSession

from .conftest import PHONE
from .test_registration import assert_fits_the_screen, heading, log_in

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None


def zone_at_local_hour(hour: int) -> str:
    """A fixed-offset zone in which it is now `hour` o'clock."""
    offset = (hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def schedule(app, patient, at: datetime):
    with app.app_context(), Session(db.engine()) as dbs:
        found = TreatmentSession(
            patient_id=patient.id, created_by_id=patient.id, kind="ketamine", scheduled_at=at
        )
        dbs.add(found)
        dbs.commit()
        return found.id


def move(app, session_id, at: datetime) -> None:
    with app.app_context(), Session(db.engine()) as dbs:
        found = dbs.get(TreatmentSession, session_id)
        found.scheduled_at = at
        dbs.add(found)
        dbs.commit()


def logged_in(page, email: str) -> None:
    log_in(page, email)
    expect(page).not_to_have_url(re.compile(r"/login"))


def test_checklist_the_evening_before_and_the_ride_sees_the_time_and_im_home(live_app, new_context):
    app = live_app
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. Tess Ward")
    patient = make_user(
        app, role="patient", email="p@example.org", name="Pat Quinn", invited_by=therapist
    )
    make_user(app, role="support", email="sue@example.org", name="Sue Porter", supporting=patient)
    make_user(app, role="support", email="sam@example.org", name="Sam Second", supporting=patient)
    evening = zone_at_local_hour(18)  # 18:mm on the patient's phone
    start = (datetime.now(ZoneInfo(evening)) + timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    session_id = schedule(app, patient, start.astimezone(UTC))
    later = schedule(app, patient, (start + timedelta(days=1)).astimezone(UTC))

    as_pat = new_context(**PHONE, timezone_id=evening).new_page()
    logged_in(as_pat, patient.email)
    as_pat.goto("/home")
    checklist = as_pat.get_by_role("region", name="Getting ready for your session")
    expect(checklist).to_have_count(1)  # tomorrow's, not the day after's
    expect(as_pat.locator(f"#day-{later}")).to_have_count(0)
    expect(checklist.get_by_text(start.strftime("%A %-d %B, 10:00"))).to_be_visible()
    assert_fits_the_screen(as_pat)
    checklist.get_by_label("No driving until tomorrow").check()
    checklist.get_by_label("My ride home is arranged").check()
    checklist.get_by_label("Who is taking you home?").select_option(label="Sue Porter")
    expect(checklist.get_by_text("Naming someone is your consent")).to_be_visible()
    checklist.get_by_role("button", name="Save my checklist").click()
    expect(as_pat.get_by_role("status").filter(has_text="Saved")).to_be_visible()
    as_pat.reload()
    expect(as_pat.get_by_label("No driving until tomorrow")).to_be_checked()
    expect(as_pat.get_by_label("Someone is with me tonight")).not_to_be_checked()
    assert_fits_the_screen(as_pat)

    as_sue = new_context(**PHONE, timezone_id=evening).new_page()
    logged_in(as_sue, "sue@example.org")
    day = as_sue.get_by_role("region", name="Pat Quinn's session day")
    expect(day.get_by_text(start.strftime("%A %-d %B, 10:00"))).to_be_visible()
    expect(day.get_by_text("take them home afterwards", exact=False)).to_be_visible()
    expect(day.get_by_text('has not marked "I\'m home" yet', exact=False)).to_be_visible()
    assert_fits_the_screen(as_sue)

    as_sam = new_context(**PHONE, timezone_id=evening).new_page()
    logged_in(as_sam, "sam@example.org")
    expect(heading(as_sam)).to_have_text(re.compile("Hello"))
    expect(as_sam.get_by_text("session day")).to_have_count(0)
    expect(as_sam.get_by_text(start.strftime("%-d %B, 10:00"))).to_have_count(0)

    # The session started (scheduled 3 hours ago): the checklist is gone, "I'm home" is there.
    move(app, session_id, datetime.now(UTC) - timedelta(hours=3))
    as_pat.reload()
    expect(as_pat.get_by_role("region", name="Getting ready for your session")).to_have_count(0)
    after = as_pat.get_by_role("region", name="After your session")
    expect(after.get_by_text("Sue Porter", exact=False)).to_be_visible()
    assert_fits_the_screen(as_pat)
    after.get_by_role("button", name="I'm home").click()
    expect(as_pat.get_by_role("status").filter(has_text="You are home")).to_be_visible()

    as_sue.reload()
    expect(as_sue.get_by_role("status").filter(has_text="Pat Quinn is home")).to_be_visible()
    assert_fits_the_screen(as_sue)
    as_sam.reload()
    expect(as_sam.get_by_text("is home")).to_have_count(0)
    as_sam.get_by_role("link", name="Pat Quinn").click()
    expect(heading(as_sam)).to_have_text("Supporting Pat Quinn")
    expect(as_sam.get_by_text("session day")).to_have_count(0)
    expect(as_sam.get_by_text("is home")).to_have_count(0)
