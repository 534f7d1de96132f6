"""The therapist's caseload and patient page over HTTP: both say, in the same words (one service
function counts it), how many entries and questionnaire results a patient shared since their
last integration session, counted by when they were shared and only while still readable,
whatever the page shows (it is paginated); and a waiting safety flag comes first and says what
is waiting, for whom."""

from __future__ import annotations

import html
import re
import uuid
from contextlib import contextmanager
from datetime import timedelta

from conftest import PASSWORD, Persona, client_for, make_user
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import Entry, TreatmentSession, User, utcnow
from kapjournal.services import accounts, instruments, journal, measures

SENTENCE = re.compile(r'<p class="shared-since">(.*?)</p>', re.S)
APOSTROPHE = "\u2019"
WHAT_IS_WAITING = (
    "question 9 (thoughts of being better off dead or of self-harm) was answered above "
    "\u201cNot at all\u201d."
)
CARD = re.compile(
    r'<li class="card stack caseload-card">(.*?)</li>\s*(?=<li class="card|</ul>)', re.S
)


@contextmanager
def database(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def words(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def add_session(app, patient: Persona, therapist: Persona, kind: str, days: float, **extra):
    with database(app) as session:
        found = TreatmentSession(
            patient_id=patient.id,
            created_by_id=therapist.id,
            kind=kind,
            scheduled_at=utcnow() + timedelta(days=days),
            **extra,
        )
        session.add(found)
        session.commit()
        return found


def share(app, patient: Persona, readers=(), *, days_ago: float = 0, kind="reflection"):
    """An entry written through the journal service, shared with `readers` `days_ago`."""
    with database(app) as session:
        author = session.get(User, patient.id)
        people = [session.get(User, r.id) for r in readers]
        if kind in instruments.INSTRUMENTS:
            instrument = instruments.INSTRUMENTS[kind]
            items = [0] * len(instrument.items)
            entry, _ = measures.record(
                session=session,
                patient=author,
                instrument=instrument,
                body={"items": items, "difficulty": 0, "score": 0},
                client_id=uuid.uuid4(),
                readers=people,
            )
        else:
            entry, _ = journal.create(
                session=session,
                author=author,
                kind=kind,
                body={"text": "Some words.", "answers": []},
                client_id=uuid.uuid4(),
                readers=people,
            )
        session.flush()
        for reader in people:
            grant = journal.grant_of(session=session, entry_id=entry.id, reader_id=reader.id)
            grant.created_at = utcnow() - timedelta(days=days_ago)
            session.add(grant)
        session.commit()
        return entry.id


def sentences(page: str) -> list[str]:
    return [words(s) for s in SENTENCE.findall(page)]


def caseload_cards(client) -> list[str]:
    return CARD.findall(client.get("/home").get_data(as_text=True))


def test_caseload_and_patient_page_say_the_same_count_of_what_was_shared_since_the_session(
    app, therapist, patient
):
    last = add_session(app, patient, therapist, "integration", -5, status="done")
    add_session(app, patient, therapist, "integration", -1, status="cancelled")  # did not happen
    add_session(app, patient, therapist, "integration", 6)  # ahead
    share(app, patient, [therapist], days_ago=8)  # before the last session: not counted
    for _ in range(22):  # more than a page of the patient page
        share(app, patient, [therapist], days_ago=2)
    share(app, patient, [therapist], days_ago=1, kind="phq9")
    share(app, patient)  # private
    as_therapist = client_for(app, therapist)

    when = last.scheduled_at.strftime("%-d %b")
    expected = f"22 entries and 1 questionnaire result shared with you since the integration session of {when}"  # noqa: E501
    (card,) = caseload_cards(as_therapist)
    assert sentences(card) == [expected]
    page = as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert sentences(page) == [expected]
    # The page shows 20 of them: the sentence is not the length of the page.
    assert page.count('class="entry-with-tools"') == 20


def test_an_entry_written_before_but_shared_after_the_session_counts_and_a_revoked_one_does_not(
    app, therapist, patient
):
    add_session(app, patient, therapist, "integration", -3, status="done")
    old = share(app, patient, days_ago=10)  # written long ago, private
    gone = share(app, patient, [therapist], days_ago=1)
    with database(app) as session:
        key = accounts.authenticate(session=session, email=patient.email, password=PASSWORD)[1]
        author = session.get(User, patient.id)
        reader = session.get(User, therapist.id)
        journal.share(
            session=session,
            entry=session.get(Entry, old),
            author=author,
            private_key=key,
            reader=reader,
        )
        journal.revoke(
            session=session,
            entry=session.get(Entry, gone),
            author=author,
            private_key=key,
            reader_id=therapist.id,
        )
        session.commit()
    as_therapist = client_for(app, therapist)
    (card,) = caseload_cards(as_therapist)
    page = as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert sentences(card) == sentences(page)
    assert sentences(page)[0].startswith("1 entry shared with you since the integration session")


def test_before_any_integration_session_everything_shared_counts_so_far(app, therapist, patient):
    quiet = make_user(
        app, role="patient", email="quiet@example.org", name="Quinn Quiet", invited_by=therapist
    )
    add_session(app, patient, therapist, "ketamine", -2, status="done")
    for days in (30, 3):
        share(app, patient, [therapist], days_ago=days)
    as_therapist = client_for(app, therapist)
    texts = {words(card).split(" ")[0]: sentences(card) for card in caseload_cards(as_therapist)}
    assert texts == {
        "Pat": ["2 entries shared with you so far (no integration session yet)"],
        "Quinn": ["Nothing new shared with you so far (no integration session yet)"],
    }
    page = as_therapist.get(f"/patients/{quiet.id}").get_data(as_text=True)
    assert sentences(page) == texts["Quinn"]


def test_a_waiting_safety_flag_comes_first_and_says_what_is_waiting_for_whom(
    app, therapist, patient
):
    other = make_user(
        app, role="patient", email="alex@example.org", name="Alex Chen", invited_by=therapist
    )
    with database(app) as session:
        measures.record(
            session=session,
            patient=session.get(User, patient.id),
            instrument=instruments.PHQ9,
            body={"items": [1, 1, 0, 0, 0, 0, 0, 0, 1], "difficulty": 1, "score": 3},
            client_id=uuid.uuid4(),
            readers=[],  # not even shared: the flag still reaches the care team
        )
        session.commit()
    share(app, other, [therapist])  # Alex shared something newer: still after the flag
    as_therapist = client_for(app, therapist)
    first, second = caseload_cards(as_therapist)
    assert words(first).startswith(patient.name) and words(second).startswith(other.name)
    flag = re.search(r'<div class="safety-flag stack"[^>]*>(.*?)</div>', first, re.S).group(1)
    assert 'href="/static/icons/sprite.svg#i-shield-alert"' in flag
    said = words(flag)
    assert said.startswith(f"Safety flag waiting: {patient.name}{APOSTROPHE}s PHQ-9 of ")
    assert WHAT_IS_WAITING in said
    for path in (f"/patients/{patient.id}", f"/patients/{patient.id}/progress"):
        page = as_therapist.get(path).get_data(as_text=True)
        assert f"Safety flag waiting: {patient.name}{APOSTROPHE}s PHQ-9 of " in words(page), path
    assert "safety-flag" not in second
