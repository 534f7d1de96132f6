"""The access log tells the patient the truth (issue "Trust at the edges", points 9, 16, 17):
appending is safe under parallel requests on SQLite and PostgreSQL; deleting its newest rows (or
all of them, or its anchor) shows in `audit verify`; a read is one event per reader, entry and
day with a count; a component action (flag, talked through, resolve, tick) answers with its own
block and records only itself; a private note is named as one. Also `sessions sweep`."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

from conftest import WebClient, csrf_token, in_parallel, make_user, post
from sqlmodel import col, delete, func, select
from test_workspace import annotated, client_for, database, note_row, text_of, write

from kapjournal.models import (
    AuditEvent,
    AuditHead,
    DeviceSession,
    EntryFlag,
    Practice,
    ReadTally,
    User,
    utcnow,
)
from kapjournal.services import audit, practices

HTMX = {"HX-Request": "true"}  # a component's own request (hx-post), not a boosted form
KEY_A = base64.urlsafe_b64encode(b"A" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"B" * 32).decode()


# --- helpers ---------------------------------------------------------------------------------


def events(app, **where) -> list[AuditEvent]:
    with database(app) as session:
        query = select(AuditEvent).order_by(col(AuditEvent.seq))
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        return list(session.exec(query))


def tallies(app) -> dict:
    """(reader, subject, action, day) → count."""
    with database(app) as session:
        return {
            (t.reader_id, t.subject_id, t.action, t.day): t.count
            for t in session.exec(select(ReadTally))
        }


def verify(app):
    return app.test_cli_runner().invoke(args=["audit", "verify"])


def second_supporter(app, patient):
    return make_user(
        app, role="support", email="sam@example.org", name="Sam Second", supporting=patient
    )


def logged_in(live_url, app, persona) -> WebClient:
    client = WebClient(live_url)
    client.login(persona, app)
    return client


# --- 9. appending under parallel requests ------------------------------------------------------


def test_parallel_reads_by_several_readers_never_fail_and_the_log_stays_intact(
    app, live_url, patient, therapist, supporter
):
    other = second_supporter(app, patient)
    readers = [therapist, supporter, other]
    entries = [write(app, patient, f"Shared entry {n}.", share=readers) for n in range(4)]
    clients = [logged_in(live_url, app, readers[i % 3]) for i in range(24)]

    statuses = []
    for _round in range(3):
        statuses += in_parallel(24, lambda i: clients[i].get(f"/entries/{entries[i % 4]}"))
    codes = [r.status_code if hasattr(r, "status_code") else repr(r) for r in statuses]
    assert codes == [200] * 72

    result = verify(app)
    assert result.exit_code == 0, result.output
    reads = events(app, action="read")
    pairs = {(e.actor_id, e.entry_id) for e in reads}
    assert len(reads) == len(pairs) == 12  # every reader read every entry: once each today
    assert sum(tallies(app).values()) == 72


def test_one_reader_reading_one_entry_in_parallel_makes_one_event_that_counts_every_read(
    app, live_url, patient, supporter
):
    entry_id = write(app, patient, "Read many times at once.", share=[supporter])
    clients = [logged_in(live_url, app, supporter) for _ in range(12)]
    results = in_parallel(12, lambda i: clients[i].get(f"/entries/{entry_id}"))
    assert [getattr(r, "status_code", r) for r in results] == [200] * 12
    (event,) = events(app, action="read")
    assert (event.actor_id, event.entry_id) == (supporter.id, entry_id)
    assert list(tallies(app).values()) == [12]
    assert verify(app).exit_code == 0


# --- 17. a read once per reader, entry and day, with a count --------------------------------------


def test_reading_an_entry_five_times_in_a_day_is_one_event_with_its_count(app, patient, supporter):
    entry_id = write(app, patient, "Read five times.", share=[supporter])
    yesterday = utcnow() - timedelta(days=1)
    with database(app) as session:  # two reads yesterday, by the clock passed to the service
        for _ in range(2):
            audit.record_read(
                session=session,
                reader_id=supporter.id,
                patient_id=patient.id,
                entry_id=entry_id,
                now=yesterday,
            )
        session.commit()
    as_supporter = client_for(app, supporter)
    for _ in range(5):
        assert as_supporter.get(f"/entries/{entry_id}").status_code == 200

    reads = events(app, action="read")
    assert len(reads) == 2  # one for yesterday, one for today
    assert sorted(tallies(app).values()) == [2, 5]
    log = text_of(client_for(app, patient).get("/journal/log"))
    rows = re.findall(rf"{supporter.name} read an entry · [^·]+· (\d) times that day", log)
    assert rows == ["5", "2"]  # newest first
    page = text_of(client_for(app, patient).get(f"/entries/{entry_id}/log"))
    assert re.search(rf"{supporter.name} read this entry · [^·]+· 5 times that day", page)


def test_reading_notes_is_counted_per_patient_and_day(app, patient, therapist):
    with database(app) as session:
        for _ in range(3):
            audit.record(
                session=session, actor_id=therapist.id, action="read_notes", patient_id=patient.id
            )
        session.commit()
    (event,) = events(app, action="read_notes")
    assert event.entry_id is None
    assert [(key[1], count) for key, count in tallies(app).items()] == [(patient.id, 3)]


# --- 17. a component action records only itself ---------------------------------------------------


def test_one_htmx_flag_click_on_the_patient_page_records_the_flag_and_no_read(
    app, patient, therapist
):
    first = write(app, patient, "First shared words.", share=[therapist])
    write(app, patient, "Second shared words.", share=[therapist])
    as_therapist = client_for(app, therapist)
    page = f"/patients/{patient.id}"
    token = csrf_token(as_therapist, page)
    before, counted = events(app), tallies(app)
    data = {"flagged": "1", "place": "card", "next": f"{page}#entry-{first}", "csrf_token": token}
    # htmx follows a redirect on its own: follow it here too, as the old code had it.
    answer = as_therapist.post(
        f"/entries/{first}/flag", data=data, headers=HTMX, follow_redirects=True
    )

    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert body.lstrip().startswith(f'<form class="inline-form" id="flag-{first}"')
    assert "For the next session" in body and "Not for the session" in body
    assert "<html" not in body and "shared words" not in body  # the page is not drawn again
    new = [e.action for e in events(app)[len(before) :]]
    assert new == ["flag"]
    assert tallies(app) == counted  # nothing was read again, not even as a count
    with database(app) as session:
        assert session.exec(select(EntryFlag.entry_id)).all() == [first]


def test_the_flag_button_on_the_notes_page_answers_in_place_too(app, patient, therapist):
    entry_id = write(app, patient, "Words to bring.", share=[therapist])
    as_therapist = client_for(app, therapist)
    page = f"/entries/{entry_id}/notes"
    html = as_therapist.get(page).get_data(as_text=True)
    assert f'hx-post="/entries/{entry_id}/flag"' in html and 'name="place" value="page"' in html
    before = len(events(app))
    answer = post(
        as_therapist,
        f"/entries/{entry_id}/flag",
        {"flagged": "1", "place": "page"},
        token_from=page,
        headers=HTMX,
    )
    assert answer.status_code == 200
    assert "Flagged for the next session · remove" in answer.get_data(as_text=True)
    assert [e.action for e in events(app)[before:]] == ["flag"]


def test_without_javascript_the_flag_form_posts_and_comes_back_with_303(app, patient, therapist):
    entry_id = write(app, patient, "Plain form.", share=[therapist])
    as_therapist = client_for(app, therapist)
    page = f"/patients/{patient.id}"
    answer = post(
        as_therapist,
        f"/entries/{entry_id}/flag",
        {"flagged": "1", "place": "card", "next": f"{page}#entry-{entry_id}"},
        token_from=page,
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"{page}#entry-{entry_id}")
    as_therapist.get(page)  # the page it lands on: read again today, so no new read event
    assert [e.action for e in events(app) if e.actor_id == therapist.id] == ["read", "flag"]


def test_flag_and_resolve_on_a_note_answer_with_the_notes_buttons_and_record_only_themselves(
    app, patient, therapist
):
    entry_id = write(app, patient, "A passage to note.", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, "Secret-ish note words.", visibility="shared")
    note = note_row(app)
    page = f"/entries/{entry_id}/notes"
    html = as_therapist.get(page).get_data(as_text=True)
    assert f'hx-post="/notes/{note.id}/flag" hx-target="#nc-{note.id}"' in html
    before = len(events(app))

    flagged = post(
        as_therapist,
        f"/notes/{note.id}/flag",
        {"flagged": "1", "mode": "therapist", "next": f"{page}#n-{note.id}"},
        token_from=page,
        headers=HTMX,
    )
    resolved = post(
        as_therapist,
        f"/notes/{note.id}/resolve",
        {"resolved": "1", "mode": "therapist", "next": f"{page}#n-{note.id}"},
        token_from=page,
        headers=HTMX,
    )
    for answer in (flagged, resolved):
        body = answer.get_data(as_text=True)
        assert answer.status_code == 200
        assert body.lstrip().startswith(f'<div class="stack note-controls" id="nc-{note.id}">')
        assert "Secret-ish note words." not in body and "<html" not in body
        assert f'name="next" value="{page}#n-{note.id}"' in body
    assert "For the next session" in text_of(resolved) and "Resolved" in text_of(resolved)
    assert "Reopen" in text_of(resolved)
    assert [e.action for e in events(app)[before:]] == ["flag", "resolve"]


def test_talked_through_answers_with_its_form_and_the_agenda_count_and_reads_nothing(
    app, patient, therapist
):
    entry_id = write(app, patient, "On the agenda.", share=[therapist])
    as_therapist = client_for(app, therapist)
    view = f"/patients/{patient.id}/session"
    post(as_therapist, f"/entries/{entry_id}/flag", {"flagged": "1"}, token_from=view)
    html = as_therapist.get(view).get_data(as_text=True)
    assert 'id="agenda-progress">0 of 1 talked through.' in html
    token = csrf_token(as_therapist, view)
    before, counted = len(events(app)), tallies(app)

    data = {"kind": "entry", "id": str(entry_id), "discussed": "1", "csrf_token": token}
    data["next"] = f"{view}#item-{entry_id}"
    answer = as_therapist.post(f"{view}/discussed", data=data, headers=HTMX)
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert f'id="discussed-{entry_id}"' in body and "Talked through" in body
    assert 'id="agenda-progress" hx-swap-oob="true">1 of 1 talked through.' in body
    assert "On the agenda." not in body
    assert [e.action for e in events(app)[before:]] == ["discuss"]
    assert tallies(app) == counted


def test_an_htmx_practice_tick_answers_with_its_own_block_and_logs_nothing(app, patient, therapist):
    with database(app) as session:
        made = practices.create(
            session=session,
            patient=session.get(User, patient.id),
            therapist=session.get(User, therapist.id),
            body={"what": "Walk by the river", "how_often": "Daily", "why": "Calm"},
        )
        session.commit()
        practice_id = made.id
    as_patient = client_for(app, patient)
    home = as_patient.get("/journal").get_data(as_text=True)
    assert f'hx-target="#ticks-{practice_id}"' in home
    today = re.search(r'name="day" value="(\d{4}-\d\d-\d\d)"', home).group(1)
    before = len(events(app))

    answer = post(
        as_patient,
        f"/practices/{practice_id}/tick",
        {"day": today, "done": "1"},
        token_from="/journal",
        headers=HTMX,
    )
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert body.lstrip().startswith(f'<div class="stack practice-ticks" id="ticks-{practice_id}">')
    assert "Done today" in body and "Undo" in body
    assert "Walk by the river" not in body and "<html" not in body  # not opened again
    assert len(events(app)) == before  # a tick is no read, and no one else's words
    with database(app) as session:
        assert practices.days_of(session=session, practice=session.get(Practice, practice_id))

    plain = post(
        as_patient,
        f"/practices/{practice_id}/tick",
        {"day": today, "done": "0"},
        token_from="/journal",
    )
    assert plain.status_code == 303 and "/journal#practice-" in plain.headers["Location"]


# --- 17. private notes are named as such ----------------------------------------------------------


def test_the_patients_log_says_plainly_that_the_care_team_keeps_private_notes(
    app, patient, therapist
):
    entry_id = write(app, patient, "Words with notes.", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, "Just for the team.", visibility="private")
    annotated(as_therapist, entry_id, 0, "For Pat too.", visibility="shared")
    log = text_of(client_for(app, patient).get("/journal/log"))
    assert (
        f"{therapist.name} wrote a private note for the care team on an entry (private notes are "
        "kept by your care team and are not shown to you)"
    ) in log
    assert f"{therapist.name} annotated an entry" in log
    assert "Just for the team." not in log


# --- 16. the anchor: removing the newest rows shows ---------------------------------------------


def some_activity(app, patient, therapist) -> int:
    """A few writes, shares and reads; the number of access-log events."""
    for n in range(3):
        entry_id = write(app, patient, f"Entry {n}.", share=[therapist])
        client_for(app, therapist).get(f"/entries/{entry_id}")
    with database(app) as session:
        return session.exec(select(func.count()).select_from(AuditEvent)).one()


def test_deleting_the_newest_events_is_reported_by_audit_verify(app, patient, therapist):
    total = some_activity(app, patient, therapist)
    assert verify(app).exit_code == 0
    with database(app) as session:
        session.exec(delete(AuditEvent).where(AuditEvent.seq > total - 3))
        session.commit()
    result = verify(app)
    assert result.exit_code == 1
    assert (
        f"the newest events were removed: the log ends at {total - 3} but its anchor says {total}"
    ) in result.output


def test_deleting_every_event_is_reported_by_audit_verify(app, patient, therapist):
    total = some_activity(app, patient, therapist)
    with database(app) as session:
        session.exec(delete(AuditEvent))
        session.commit()
    result = verify(app)
    assert result.exit_code == 1
    assert f"the log ends at 0 but its anchor says {total}" in result.output


def test_deleting_the_anchor_while_events_exist_is_reported(app, patient, therapist):
    total = some_activity(app, patient, therapist)
    with database(app) as session:
        session.exec(delete(AuditHead))
        session.commit()
    result = verify(app)
    assert result.exit_code == 1
    assert f"its anchor is missing: the log has {total} events" in result.output


def test_rewriting_the_anchor_to_hide_a_truncation_is_reported(app, patient, therapist):
    total = some_activity(app, patient, therapist)
    with database(app) as session:
        last = session.exec(select(AuditEvent).where(AuditEvent.seq == total - 1)).one()
        session.exec(delete(AuditEvent).where(AuditEvent.seq == total))
        head = session.get(AuditHead, 1)
        head.seq, head.last_mac = last.seq, last.mac  # without the KEK, the MAC cannot follow
        session.add(head)
        session.commit()
    result = verify(app)
    assert result.exit_code == 1
    assert "its anchor was changed" in result.output


def test_keys_rotate_re_macs_the_anchor_so_the_new_kek_alone_verifies_it(make_app):
    old = make_app(KEKS=f"t1:{KEY_A}")
    therapist = make_user(old, role="therapist", email="tess@example.org", name="Dr. Tess Ward")
    patient = make_user(
        old, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    some_activity(old, patient, therapist)
    both = make_app(KEKS=f"t1:{KEY_A},t2:{KEY_B}", KEK_ACTIVE="t2")
    assert both.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
    new = make_app(KEKS=f"t2:{KEY_B}")
    result = verify(new)
    assert result.exit_code == 0, result.output
    with database(new) as session:
        assert session.get(AuditHead, 1).kek_id == "t2"


def test_db_upgrade_anchors_a_log_from_before_anchors(app, patient, therapist):
    total = some_activity(app, patient, therapist)
    with database(app) as session:  # as a database upgraded from before anchors has it
        session.exec(delete(AuditHead))
        session.commit()
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    checked = verify(app)
    assert checked.exit_code == 0 and "Warning" not in checked.output  # expected: no mark
    with database(app) as session:
        assert session.get(AuditHead, 1).seq == total


def test_an_append_re_anchors_a_log_without_an_anchor_and_leaves_a_mark_verify_reports(
    app, patient, therapist
):
    total = some_activity(app, patient, therapist)
    with database(app) as session:  # the newest events and the anchor removed together
        session.exec(delete(AuditEvent).where(AuditEvent.seq > total - 2))
        session.exec(delete(AuditHead))
        session.commit()
    write(app, patient, "One more.", share=[therapist])
    result = verify(app)
    assert result.exit_code == 0, result.output  # the chain itself is whole again
    remade = total - 1  # the mark, chained right after the (truncated) end
    assert f"Warning: at event {remade} the app found the log's anchor missing" in result.stderr
    assert [e.action for e in events(app)[remade - 1 :]] == ["anchor_remade", "write", "share"]
    with database(app) as session:
        assert session.get(AuditHead, 1).seq == remade + 2
    log = text_of(client_for(app, patient).get("/journal/log"))
    assert "anchor" not in log  # it is about no one's entries


# --- sessions sweep (cron) ------------------------------------------------------------------------


def test_sessions_sweep_deletes_expired_device_sessions_and_says_how_many(app, patient):
    client_for(app, patient)
    client_for(app, patient)
    with database(app) as session:
        stale, fresh = session.exec(select(DeviceSession)).all()
        stale.last_seen_at = utcnow() - timedelta(hours=3)  # idle far past 30 minutes
        session.add(stale)
        session.commit()
        fresh_id = fresh.id
    result = app.test_cli_runner().invoke(args=["sessions", "sweep"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 expired sessions." in result.output
    with database(app) as session:
        assert [d.id for d in session.exec(select(DeviceSession))] == [fresh_id]
