"""Intentions over time (issue 15, item 5): each session's intention beside the reflections that
followed it, for the patient and for their therapist (only what was shared, each entry a read
logged once a day), a page at a time with the same statements at any journal size, and 404 for
everyone else."""

from __future__ import annotations

import html
import re
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from conftest import Persona, client_for, counted_statements
from sqlmodel import Session, select
from test_journal_security import normalized
from test_read_path import bury

from kapjournal import db
from kapjournal.models import AuditEvent, Entry, Grant, TreatmentSession, User, utcnow
from kapjournal.services import journal

BUDGET = 8  # SQL statements, request pipeline included: a course page's (DESIGN §9)


@contextmanager
def opened(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def text_of(body: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def rows_of(page: str) -> list[tuple[str, str, str]]:
    """(heading, intention column, what-followed column) of each row, top to bottom."""
    found = []
    for row in re.findall(r'<section class="card stack intention-row".*?</section>', page, re.S):
        heading = text_of(re.search(r"<h2.*?</h2>", row, re.S).group(0))
        left, _, right = row.partition('class="stack reflection-side"')
        found.append((heading, text_of(left), text_of(right)))
    return found


def a_session(app, patient: Persona, kind: str, days_ago: float) -> uuid.UUID:
    with opened(app) as session:
        made = TreatmentSession(
            patient_id=patient.id,
            created_by_id=patient.id,
            kind=kind,
            scheduled_at=utcnow() - timedelta(days=days_ago),
        )
        session.add(made)
        session.commit()
        return made.id


def write(app, patient, text, *, kind="reflection", days_ago=0.0, share=(), session_id=None):
    """An entry through the real journal service (encrypted and wrapped like any other)."""
    body = {"intention": text, "hopes": f"Hope: {text}"} if kind == "intention" else {"text": text}
    with opened(app) as session:
        entry, _ = journal.create(
            session=session,
            author=session.get(User, patient.id),
            kind=kind,
            body=body | {"answers": []},
            client_id=uuid.uuid4(),
            session_id=session_id,
            readers=[session.get(User, p.id) for p in share],
        )
        entry.created_at = utcnow() - timedelta(days=days_ago)
        session.add(entry)
        session.commit()
        return entry.id


def course(app, patient, therapist):
    """Two ketamine sessions and an integration session, with intentions and reflections:
    some tied to their session, some not, some shared with the therapist."""
    first = a_session(app, patient, "ketamine", 20)
    second = a_session(app, patient, "ketamine", 10)
    a_session(app, patient, "integration", 5)
    ids = {
        "broad": write(app, patient, "To be kinder to myself.", kind="intention", days_ago=21),
        "after first": write(app, patient, "Felt held.", days_ago=19, share=[therapist]),
        "specific": write(
            app,
            patient,
            "To forgive my father.",
            kind="intention",
            days_ago=12,
            share=[therapist],
            session_id=second,
        ),
        "after second": write(app, patient, "Saw him young.", days_ago=9, share=[therapist]),
        "late note": write(
            app, patient, "Looking back on it.", days_ago=1, session_id=first, share=[therapist]
        ),
        "integration": write(app, patient, "Less angry now.", days_ago=4),
    }
    return ids


def test_the_patient_sees_each_sessions_intention_beside_what_followed(app, patient, therapist):
    course(app, patient, therapist)
    page = client_for(app, patient).get("/journal/intentions")
    assert page.status_code == 200
    rows = rows_of(page.get_data(as_text=True))
    assert [heading.split(" · ")[0] for heading, _, _ in rows] == [
        "Integration session",
        "Ketamine session",
        "Ketamine session",
    ]
    integration, second, first = rows
    assert "No intention written" in integration[1] and "Less angry now." in integration[2]
    assert "To forgive my father." in second[1] and "Saw him young." in second[2]
    # The intention written before the first session, naming none, is that session's; the
    # reflection that names the first session is with it, whenever it was written.
    assert "To be kinder to myself." in first[1] and "Hope: To be kinder" in first[1]
    assert re.search(r"Felt held\..*Looking back on it\.", first[2])


def test_the_therapist_sees_only_what_the_patient_shared(app, patient, therapist):
    ids = course(app, patient, therapist)
    as_therapist = client_for(app, therapist)
    page = as_therapist.get(f"/patients/{patient.id}/intentions").get_data(as_text=True)
    shown = text_of(page)
    for words in ("To forgive my father.", "Felt held.", "Saw him young.", "Looking back on it."):
        assert words in shown
    for words in ("To be kinder to myself.", "Less angry now."):
        assert words not in shown
    assert "No intention shared for this session." in shown
    as_patient = client_for(app, patient)
    assert as_patient.get(f"/entries/{ids['specific']}").status_code == 200
    with opened(app) as session:  # the patient stops sharing the intention
        session.delete(
            session.exec(
                select(Grant).where(
                    Grant.entry_id == ids["specific"], Grant.reader_id == therapist.id
                )
            ).one()
        )
        session.commit()
    again = as_therapist.get(f"/patients/{patient.id}/intentions").get_data(as_text=True)
    assert "To forgive my father." not in again and "Saw him young." in again


def reads_by(app, reader: Persona) -> list[tuple]:
    with opened(app) as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.actor_id == reader.id, AuditEvent.action == "read")
        ).all()
        return sorted((e.patient_id, e.entry_id) for e in events)


def test_each_entry_the_therapist_sees_is_a_read_logged_once_a_day(app, patient, therapist):
    ids = course(app, patient, therapist)
    as_therapist = client_for(app, therapist)
    for _ in range(3):
        assert as_therapist.get(f"/patients/{patient.id}/intentions").status_code == 200
    shared = ("after first", "specific", "after second", "late note")
    assert reads_by(app, therapist) == sorted((patient.id, ids[name]) for name in shared)
    for _ in range(2):
        assert client_for(app, patient).get("/journal/intentions").status_code == 200
    assert reads_by(app, patient) == []  # their own words: no read to log


@pytest.mark.parametrize("who", ["other_therapist", "stranger_patient", "supporter", "anonymous"])
def test_everyone_else_gets_the_same_404_as_for_a_missing_patient(
    app, request, patient, therapist, who
):
    course(app, patient, therapist)
    persona = None if who == "anonymous" else request.getfixturevalue(who)
    client = client_for(app, persona)
    real = client.get(f"/patients/{patient.id}/intentions")
    missing = client.get(f"/patients/{uuid.uuid4()}/intentions")
    assert real.status_code == missing.status_code == 404
    assert normalized(real) == normalized(missing)  # the CSRF token aside, signed per second
    if persona is not None:
        assert reads_by(app, persona) == []


@pytest.mark.parametrize("who", ["therapist", "supporter"])
def test_only_a_patient_has_their_own_intentions_page(app, request, patient, who):
    client = client_for(app, request.getfixturevalue(who))
    assert client.get("/journal/intentions").status_code == 404
    anonymous = app.test_client().get("/journal/intentions")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_show_earlier_brings_older_sessions_without_javascript_and_in_place(app, patient):
    for n in range(25):
        write(app, patient, f"Reflection number {n}.", days_ago=30 - n)
    client = client_for(app, patient)
    first = client.get("/journal/intentions").get_data(as_text=True)
    assert re.findall(r"Reflection number (\d+)\.", first) == [str(n) for n in range(5, 25)]
    link = html.unescape(re.search(r'href="(/journal/intentions\?before=[^"]+)"', first).group(1))
    second = client.get(link).get_data(as_text=True)
    assert "<html" in second
    assert re.findall(r"Reflection number (\d+)\.", second) == ["0", "1", "2", "3", "4"]
    in_place = client.get(link, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in in_place and "Reflection number 4." in in_place
    assert "Show earlier sessions" not in second


def test_links_lead_to_the_page_from_the_journal_the_patient_page_and_the_session_view(
    app, patient, therapist
):
    as_patient = client_for(app, patient)
    for path in ("/journal", "/more"):
        assert 'href="/journal/intentions"' in as_patient.get(path).get_data(as_text=True)
    as_therapist = client_for(app, therapist)
    for path in (f"/patients/{patient.id}", f"/patients/{patient.id}/session"):
        page = as_therapist.get(path).get_data(as_text=True)
        assert f'href="/patients/{patient.id}/intentions"' in page


def test_the_page_costs_the_same_statements_at_any_journal_size(app, database, patient, therapist):
    course(app, patient, therapist)
    for n in range(20):  # a full first page of entries that open
        write(app, patient, f"Day {n}.", days_ago=0.5 - n / 100, share=[therapist])
    clients = {"patient": client_for(app, patient), "therapist": client_for(app, therapist)}
    paths = {"patient": "/journal/intentions", "therapist": f"/patients/{patient.id}/intentions"}

    def cost() -> dict:
        found = {}
        for who, path in paths.items():
            for _ in range(2):  # warm: the device's key cache, the day's first reads
                assert clients[who].get(path).status_code == 200
            with counted_statements(database["engine"]) as statements:
                assert clients[who].get(path).status_code == 200
            found[who] = len(statements)
        return found

    small = cost()
    bury(app, patient, therapist, 5_000)  # older entries, behind the first page
    with opened(app) as session:
        assert len(session.exec(select(Entry.id)).all()) > 5_000
    large = cost()
    print(f"SQL statements, intentions over time, small vs 5,000 more entries: {small} / {large}")
    assert large == small
    assert max(small.values()) <= BUDGET, small
