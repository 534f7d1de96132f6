"""The day of a ketamine session (issue 15, items 1 and 2): the patient's checklist from 18:00
the evening before (in their zone) until the start, its ticks sealed for the patient alone, the
care team told only whether it is done; the supporters the patient names as ride home or
evening company see the session time, what is asked of them and the "I'm home" mark, and get
content-free reminders; a supporter not named sees none of it."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import WebClient, in_parallel, login, make_user, post, serving
from sqlmodel import Session, select
from test_journal import text_of
from test_journal_security import (
    capture_every_log,
    database_session,
    hits,
    logged_bytes,
    private_key_of,
    stored_bytes,
)
from test_push import PushService, schedule, subscribe

from kapjournal import db, policy
from kapjournal.models import ItemKey, SessionDay, TreatmentSession, User
from kapjournal.services import reminders, session_day

OWN = ["ride", "no_driving", "company", "intention"]
CLINIC = [f"clinic-{n}" for n in range(len(session_day.DEFAULT_INSTRUCTIONS))]
EVERY_TICK = CLINIC + OWN


# --- helpers -------------------------------------------------------------------------------------


def zone_at_local_hour(hour: int) -> str:
    """A fixed-offset zone in which it is now `hour` o'clock (minutes as in UTC)."""
    offset = (hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    name = "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    assert datetime.now(ZoneInfo(name)).hour == hour
    return name


def ketamine(app, patient, at: datetime, kind: str = "ketamine") -> uuid.UUID:
    return schedule(app, patient, kind, at)


def tomorrow_at(zone: str, hour: int) -> datetime:
    local = datetime.now(ZoneInfo(zone)) + timedelta(days=1)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


def client_for(app, persona, zone: str = "UTC"):
    client = app.test_client()
    client.set_cookie("tz", zone)
    login(client, persona)
    return client


def save(client, session_id, ticks=(), *, htmx=False, **fields):
    data = {"tick": list(ticks), **{k: str(v) for k, v in fields.items()}}
    headers = {"HX-Request": "true"} if htmx else {}
    return post(
        client, f"/sessions/{session_id}/checklist", data, token_from="/account", headers=headers
    )


def checklist_shown(client, session_id) -> bool:
    return f'action="/sessions/{session_id}/checklist"' in client.get("/home").get_data(
        as_text=True
    )


def day_row(app, session_id) -> SessionDay | None:
    with database_session(app) as dbs:
        return dbs.exec(select(SessionDay).where(SessionDay.session_id == session_id)).first()


@pytest.fixture
def second_supporter(app, patient):
    return make_user(
        app, role="support", email="sam@example.org", name="Sam Second", supporting=patient
    )


# --- 1. when the checklist is shown ---------------------------------------------------------------


def test_checklist_appears_at_18_the_evening_before_in_the_patients_zone(app, patient):
    evening = zone_at_local_hour(18)  # 18:mm there: tomorrow's session's list is open
    afternoon = zone_at_local_hour(17)  # 17:mm there: not yet
    open_one = ketamine(app, patient, tomorrow_at(evening, 10))
    early_one = ketamine(app, patient, tomorrow_at(afternoon, 10))
    as_evening = client_for(app, patient, evening)
    assert checklist_shown(as_evening, open_one)
    page = text_of(as_evening.get("/home"))
    assert "Getting ready for your session" in page
    assert all(text in page for text in session_day.DEFAULT_INSTRUCTIONS)
    assert "No driving until tomorrow" in page and "I re-read my intention" in page
    as_afternoon = client_for(app, patient, afternoon)
    assert not checklist_shown(as_afternoon, early_one)
    # Not open: the page of its own and saving are 404 too.
    assert as_afternoon.get(f"/sessions/{early_one}/checklist").status_code == 404
    assert save(as_afternoon, early_one, ["ride"]).status_code == 404


def test_window_edges_to_the_minute_in_the_patients_zone(app, patient):
    zone = ZoneInfo("America/New_York")
    start = datetime(2026, 12, 3, 10, 0, tzinfo=zone).astimezone(UTC)
    opens = datetime(2026, 12, 2, 18, 0, tzinfo=zone).astimezone(UTC)
    assert session_day.opens_at(start, zone) == opens
    minute = timedelta(minutes=1)
    ts = TreatmentSession(patient_id=patient.id, kind="ketamine", scheduled_at=start)
    assert session_day.phase_of(ts, None, zone, opens - minute) is None
    assert session_day.phase_of(ts, None, zone, opens) == "before"
    assert session_day.phase_of(ts, None, zone, start - minute) == "before"
    assert session_day.phase_of(ts, None, zone, start) is None  # gone once it starts
    # The same session seen from Tokyo opens at 18:00 Tokyo time the evening before.
    tokyo = ZoneInfo("Asia/Tokyo")
    assert session_day.opens_at(start, tokyo) == datetime(2026, 12, 3, 18, 0, tzinfo=tokyo)


def test_checklist_is_gone_once_the_session_starts(app, patient):
    soon = ketamine(app, patient, datetime.now(UTC) + timedelta(minutes=2))
    started = ketamine(app, patient, datetime.now(UTC) - timedelta(minutes=1))
    client = client_for(app, patient)
    assert checklist_shown(client, soon)
    assert not checklist_shown(client, started)
    assert save(client, started, ["ride"]).status_code == 404


def test_only_ketamine_sessions_that_are_not_cancelled_have_a_checklist(app, patient):
    client = client_for(app, patient)
    soon = datetime.now(UTC) + timedelta(hours=1)
    prep = ketamine(app, patient, soon, kind="preparation")
    cancelled = schedule(app, patient, "ketamine", soon, status="cancelled")
    for session_id in (prep, cancelled):
        assert not checklist_shown(client, session_id)
        assert save(client, session_id, ["ride"]).status_code == 404


# --- 2. ticking, with and without JavaScript ------------------------------------------------------


def test_ticks_are_kept_without_javascript_and_with_htmx(app, patient):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    client = client_for(app, patient)
    response = save(client, session_id, ["ride", "no_driving"])
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/home#day-{session_id}")
    page = client.get("/home").get_data(as_text=True)
    assert re.search(r'value="ride" checked', page) and 'value="no_driving" checked' in page
    assert 'value="company" checked' not in page
    fragment = save(client, session_id, ["company"], htmx=True)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert f'id="day-{session_id}"' in body and "Saved" in body
    assert 'value="company" checked' in body and 'value="ride" checked' not in body
    assert not day_row(app, session_id).done
    everything = save(client, session_id, EVERY_TICK, htmx=True).get_data(as_text=True)
    assert "Everything is ticked" in everything
    assert day_row(app, session_id).done


def test_the_intention_item_opens_the_sessions_intention_or_the_form(app, patient):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    client = client_for(app, patient)
    page = client.get("/home").get_data(as_text=True)
    assert f"/entries/new?kind=intention&amp;session={session_id}" in page
    form = client.get(f"/entries/new?kind=intention&session={session_id}")
    assert form.status_code == 200
    from test_journal import write

    assert write(client, "intention", session_id=session_id, intention="Soft.").status_code == 303
    page = client.get("/home").get_data(as_text=True)
    assert "Open my intention for this session" in page


def test_saving_needs_the_csrf_token(app, patient):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    client = client_for(app, patient)
    for path in (f"/sessions/{session_id}/checklist", f"/sessions/{session_id}/home"):
        response = client.post(path, data={"tick": ["ride"]})
        assert response.status_code == 400
    assert day_row(app, session_id) is None


def test_the_clinic_sets_its_own_instructions(make_app):
    app = make_app(SESSION_DAY_INSTRUCTIONS="Bring your water bottle|Arrive at 8:45")
    therapist = make_user(app, role="therapist", email="t@example.org", name="Tia")
    patient = make_user(
        app, role="patient", email="p@example.org", name="Pia", invited_by=therapist
    )
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    client = client_for(app, patient)
    page = text_of(client.get("/home"))
    assert "Bring your water bottle" in page and "Arrive at 8:45" in page
    assert session_day.DEFAULT_INSTRUCTIONS[0] not in page
    save(client, session_id, ["clinic-0", "clinic-1", *OWN])
    assert day_row(app, session_id).done


# --- 3. ciphertext only ---------------------------------------------------------------------------


def test_ticks_are_stored_sealed_for_the_patient_alone(app, database, caplog, patient, supporter):
    capture_every_log(caplog)
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    client = client_for(app, patient)
    assert save(client, session_id, ["no_driving", "intention"], ride_id=supporter.id).status_code
    stored, logged = stored_bytes(database), logged_bytes(caplog)
    # The tick names (and the list that holds them) are nowhere in clear: not in the database
    # file or dump, not in any log line.
    leaks = {
        (value, where): found
        for value in ("no_driving", '"ticked"', "intention\\", "clinic-0")
        for where, haystack in (("database", stored), ("log", logged))
        if (found := hits(haystack, value))
    }
    assert leaks == {}
    with database_session(app) as dbs:
        day = dbs.exec(select(SessionDay).where(SessionDay.session_id == session_id)).one()
        keys = list(dbs.exec(select(ItemKey).where(ItemKey.subject_id == day.id)))
        assert [k.reader_id for k in keys] == [patient.id]  # no one else holds the key
        private = private_key_of(dbs, patient)
        body, _ = session_day.SESSION_DAY.open_for(day, keys[0].wrapped_key, patient.id, private)
        assert body == {"ticked": ["intention", "no_driving"]}  # positive control
        # A blob moved to another item (or version) does not open.
        day.version += 1
        with pytest.raises(session_day.sealed.Unreadable):
            session_day.SESSION_DAY.open_for(day, keys[0].wrapped_key, patient.id, private)


# --- 4. the care team sees done or not, never the ticks -----------------------------------------


def test_therapist_sees_only_whether_the_checklist_is_done(app, patient, therapist):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=3))
    as_therapist = client_for(app, therapist)
    as_patient = client_for(app, patient)
    for path in ("/home", f"/patients/{patient.id}"):
        page = text_of(as_therapist.get(path))
        assert "Session-day checklist" in page and "not done" in page
    save(as_patient, session_id, ["ride", "no_driving", "company"])
    for path in ("/home", f"/patients/{patient.id}"):
        page = text_of(as_therapist.get(path))
        assert "not done" in page and "Checklist done" not in page
        assert "No driving until tomorrow" not in page and "ride" not in page.lower()
    save(as_patient, session_id, EVERY_TICK)
    for path in ("/home", f"/patients/{patient.id}"):
        page = text_of(as_therapist.get(path))
        assert "Checklist done" in page
        assert session_day.DEFAULT_INSTRUCTIONS[0] not in page
    # The care team cannot open the patient's checklist or tick it.
    assert as_therapist.get(f"/sessions/{session_id}/checklist").status_code == 404
    response = post(as_therapist, f"/sessions/{session_id}/checklist", {"tick": ["ride"]})
    assert response.status_code == 404


# --- 5. the supporters: named and not named ------------------------------------------------------


def test_named_supporter_sees_the_time_and_im_home_another_supporter_does_not(
    app, patient, supporter, second_supporter
):
    start = datetime.now(UTC) + timedelta(hours=2)
    session_id = ketamine(app, patient, start)
    as_patient = client_for(app, patient)
    page = text_of(as_patient.get("/home"))
    assert "Naming someone is your consent" in page
    assert "Sue Porter" in page and "Sam Second" in page  # both offered
    save(as_patient, session_id, ["ride"], ride_id=supporter.id)
    as_sue, as_sam = client_for(app, supporter), client_for(app, second_supporter)
    when = start.strftime("%A %-d %B, %H:%M")
    for path in ("/home", f"/supporting/{patient.id}"):
        sue = text_of(as_sue.get(path))
        assert "Pat Quinn's session day" in sue and when in sue
        assert "take them home afterwards" in sue and "do not drive until tomorrow" in sue
        assert "has not marked" in sue
        sam = text_of(as_sam.get(path))
        assert "session day" not in sam and when not in sam
    # After the start: the patient taps "I'm home"; Sue sees it, Sam sees nothing.
    with database_session(app) as dbs:
        found = dbs.get(TreatmentSession, session_id)
        found.scheduled_at = datetime.now(UTC) - timedelta(hours=3)
        dbs.add(found)
        dbs.commit()
    page = text_of(as_patient.get("/home"))
    assert "I'm home" in page and "Sue Porter" in page
    assert not checklist_shown(as_patient, session_id)
    response = post(as_patient, f"/sessions/{session_id}/home", {}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "You are home" in text_of(response)
    sue = text_of(as_sue.get("/home"))
    assert "Pat Quinn is home" in sue
    assert "is home" not in text_of(as_sam.get("/home"))
    assert "is home" not in text_of(as_sam.get(f"/supporting/{patient.id}"))


def test_naming_is_the_patients_choice_and_ends_with_the_link(
    app, patient, supporter, stranger_supporter, second_supporter
):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    as_patient = client_for(app, patient)
    # Only one of the patient's own supporters can be named.
    assert save(as_patient, session_id, ride_id=stranger_supporter.id).status_code == 404
    assert save(as_patient, session_id, ride_id="not-an-id").status_code == 404
    save(as_patient, session_id, companion_id=second_supporter.id)
    as_sam = client_for(app, second_supporter)
    assert "be with them, or within reach, this evening" in text_of(as_sam.get("/home"))
    assert "take them home" not in text_of(as_sam.get("/home"))
    # Named no longer: gone at once.
    save(as_patient, session_id)
    assert "session day" not in text_of(as_sam.get("/home"))
    # A supporter who is removed loses it too, even if still named.
    save(as_patient, session_id, ride_id=supporter.id)
    assert post(as_patient, f"/supporters/{supporter.id}/remove", {}).status_code == 303
    with database_session(app) as dbs:
        assert day_row(app, session_id).ride_id == supporter.id
        sue = dbs.get(User, supporter.id)
        assert policy.session_days_for_supporter(session=dbs, user=sue) == []


def test_no_one_else_can_use_the_patients_session_day(
    app, patient, supporter, stranger_patient, therapist
):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    save(client_for(app, patient), session_id, ["ride"], ride_id=supporter.id)
    for persona in (stranger_patient, supporter, therapist):
        client = client_for(app, persona)
        for method, path in (
            ("GET", f"/sessions/{session_id}/checklist"),
            ("POST", f"/sessions/{session_id}/checklist"),
            ("POST", f"/sessions/{session_id}/home"),
        ):
            if method == "GET":
                response = client.get(path)
            else:
                response = post(client, path, {"tick": ["company"]})
            assert response.status_code == 404, (persona.role, method, path)
    assert day_row(app, session_id).home_at is None


def test_im_home_is_set_once_when_tapped_at_the_same_time(app, patient, supporter):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    save(client_for(app, patient), session_id, ["ride"], ride_id=supporter.id)
    with database_session(app) as dbs:
        found = dbs.get(TreatmentSession, session_id)
        found.scheduled_at = datetime.now(UTC) - timedelta(hours=3)
        dbs.add(found)
        dbs.commit()
    with serving(app) as url:
        web = WebClient(url)
        web.http.cookies.set("tz", "UTC")
        web.login(patient)
        token = web.token("/home")
        results = in_parallel(6, lambda _: web.post(f"/sessions/{session_id}/home", token=token))
    assert all(not isinstance(r, Exception) for r in results), results
    assert {r.status_code for r in results} == {303}
    first = day_row(app, session_id).home_at
    assert first is not None
    assert day_row(app, session_id).home_at == first


def test_two_first_saves_at_the_same_time_make_one_list(app, patient):
    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    with serving(app) as url:
        web = WebClient(url)
        web.login(patient)
        token = web.token("/home")
        results = in_parallel(
            4,
            lambda i: web.post(
                f"/sessions/{session_id}/checklist", {"tick": [OWN[i]]}, token=token
            ),
        )
    assert all(not isinstance(r, Exception) for r in results), results
    assert {r.status_code for r in results} == {303}
    with database_session(app) as dbs:
        days = list(dbs.exec(select(SessionDay).where(SessionDay.session_id == session_id)))
        assert len(days) == 1
        keys = list(dbs.exec(select(ItemKey).where(ItemKey.subject_id == days[0].id)))
        assert len(keys) == 1
        body, _ = session_day.SESSION_DAY.open_for(
            days[0], keys[0].wrapped_key, patient.id, private_key_of(dbs, patient)
        )
        assert len(body["ticked"]) == 1 and body["ticked"][0] in OWN


# --- 6. reminders to the named supporters --------------------------------------------------------


@pytest.fixture
def push_app(make_app):
    from test_push import PRIVATE_KEY, PUBLIC_KEY, SUBJECT

    return make_app(
        VAPID_PRIVATE_KEY=PRIVATE_KEY,
        VAPID_PUBLIC_KEY=PUBLIC_KEY,
        VAPID_SUBJECT=SUBJECT,
        PUSH_TEST_LOCAL_SERVICE=True,
    )


def test_named_supporters_get_content_free_reminders_the_evening_before_and_before_pickup(
    push_app,
):
    app = push_app
    therapist = make_user(app, role="therapist", email="t@example.org", name="Tia")
    patient = make_user(
        app, role="patient", email="p@example.org", name="Pia", invited_by=therapist
    )
    ride = make_user(app, role="support", email="r@example.org", name="Rory", supporting=patient)
    other = make_user(app, role="support", email="o@example.org", name="Oona", supporting=patient)
    service = PushService()
    try:
        devices = {}
        for persona in (ride, other):
            devices[persona.id] = service.device()
            client = client_for(app, persona)
            assert subscribe(client, devices[persona.id]).status_code == 201
        zone = ZoneInfo("Europe/Berlin")
        start = (datetime.now(zone) + timedelta(days=1)).replace(
            hour=10, minute=0, second=0, microsecond=0
        )
        session_id = ketamine(app, patient, start.astimezone(UTC))
        as_patient = client_for(app, patient, "Europe/Berlin")
        evening = session_day.opens_at(start, zone)
        if datetime.now(UTC) >= evening:  # the list is open now: name Rory through the page
            save(as_patient, session_id, ["ride"], ride_id=ride.id)
        else:  # not yet open: name Rory as the page would
            with database_session(app) as dbs:
                session_day.save(
                    session=dbs,
                    patient=dbs.get(User, patient.id),
                    treatment_session=dbs.get(TreatmentSession, session_id),
                    ticked=["ride"],
                    ride=dbs.get(User, ride.id),
                    companion=None,
                    zone_name="Europe/Berlin",
                )
                dbs.commit()

        def send(at):
            with app.app_context(), Session(db.engine()) as dbs:
                return reminders.send_due(session=dbs, now=at)

        minute = timedelta(minutes=1)
        assert send(evening - minute).sent == 0
        assert send(evening).sent == 1
        assert send(evening + minute).sent == 0  # once
        with app.app_context():
            pickup = session_day.pickup_at(TreatmentSession(scheduled_at=start, kind="ketamine"))
        assert send(pickup - timedelta(hours=1) - minute).sent == 0
        assert send(pickup - timedelta(hours=1)).sent == 1
        messages = [devices[ride.id].decrypt(r["body"]) for r in service.received]
        assert all(r["path"] == urlpath(devices[ride.id].endpoint) for r in service.received)
        assert [m["title"] for m in messages] == ["A reminder for tomorrow", "In about an hour"]
        text = json.dumps(messages).lower()
        assert "pia" not in text and "ketamine" not in text
        assert all(m["url"] == "/home" for m in messages)
    finally:
        service.close()


def urlpath(endpoint: str) -> str:
    return "/" + endpoint.split("/", 3)[3]


def test_deleting_the_patients_account_shreds_their_checklists(app, patient, supporter):
    from kapjournal.services import deletion

    session_id = ketamine(app, patient, datetime.now(UTC) + timedelta(hours=2))
    save(client_for(app, patient), session_id, ["ride"], ride_id=supporter.id)
    with database_session(app) as dbs:
        deletion.delete_account(session=dbs, user=dbs.get(User, patient.id))
        dbs.commit()
        assert list(dbs.exec(select(SessionDay))) == []
        assert list(dbs.exec(select(ItemKey).where(ItemKey.subject_kind == "session_day"))) == []
