"""Leaving: deleting an account (patient, supporter, therapist) is crypto-shredding with a
plain list first, the password and typed words; the access log stays verifiable; a patient
deletes many entries at once (one session, or everything before a date) after seeing how many."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from conftest import PASSWORD, client_for, post, write_entry
from sqlmodel import Session, func, select

from kapjournal import db
from kapjournal.models import (
    Annotation,
    AuditEvent,
    CareTeam,
    Entry,
    Grant,
    ItemKey,
    Practice,
    TreatmentSession,
    User,
    utcnow,
)
from kapjournal.services import annotations, audit, practices

PHRASE = "delete my account"


def database(app):
    return app.app_context(), Session(db.engine(), expire_on_commit=False)


def rows(app, model, *where) -> int:
    with app.app_context(), Session(db.engine()) as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()


def delete_account(client, **data):
    fields = {"password": PASSWORD, "confirm": PHRASE, **data}
    return post(client, "/account/delete", fields, token_from="/account/delete")


def chain_intact(app) -> bool:
    with app.app_context(), Session(db.engine()) as session:
        return audit.verify(session=session).intact


def test_deleting_asks_for_the_password_and_the_typed_words_and_says_what_happens(app, patient):
    client = client_for(app, patient)
    page = client.get("/account/delete").get_data(as_text=True)
    assert "Everything you wrote is deleted at once" in page and PHRASE in page
    assert delete_account(client, password="wrong password here").status_code == 422
    assert delete_account(client, confirm="delete it").status_code == 422
    assert rows(app, User, User.id == patient.id) == 1


def test_a_patient_account_is_shredded_and_the_log_still_verifies(
    app, patient, therapist, supporter
):
    shared = write_entry(app, patient, "Shared words.", readers=[therapist, supporter])
    write_entry(app, patient, "Private words.")
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/entries/{shared}").status_code == 200
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        me, them = session.get(User, patient.id), session.get(User, therapist.id)
        entry = session.get(Entry, shared)
        paragraph = annotations.paragraphs_of("reflection", {"text": "Shared words."})[0]
        annotations.create(
            session=session,
            patient=me,
            author=them,
            note="A note.",
            visibility="shared",
            entry=entry,
            paragraph=paragraph,
        )
        practices.create(
            session=session,
            patient=me,
            therapist=them,
            body={"what": "Walk", "how_often": "", "why": ""},
        )
        session.commit()
    client = client_for(app, patient)
    response = delete_account(client)
    assert response.status_code == 200
    assert "cache" in response.headers["Clear-Site-Data"]
    assert "Your account is deleted" in response.get_data(as_text=True)
    for model, where in (
        (User, User.id == patient.id),
        (Entry, Entry.author_id == patient.id),
        (Grant, Grant.entry_id == shared),
        (Annotation, Annotation.patient_id == patient.id),
        (Practice, Practice.patient_id == patient.id),
        (TreatmentSession, TreatmentSession.patient_id == patient.id),
        (CareTeam, CareTeam.patient_id == patient.id),
        (ItemKey, ItemKey.reader_id == patient.id),
    ):
        assert rows(app, model, where) == 0, model
    assert rows(app, ItemKey) == 0  # no key left to a note or practice that is gone
    assert chain_intact(app)
    assert rows(app, AuditEvent, AuditEvent.action == "account_deleted") == 1
    # The therapist's old link: the one 404 a missing or unshared entry gets, which says that
    # it may have been deleted, and nothing that tells the two apart.
    gone, never = (as_therapist.get(f"/entries/{i}") for i in (shared, uuid.uuid4()))
    assert gone.status_code == never.status_code == 404
    assert main_text(gone) == main_text(never)
    assert "It may have been deleted, or it is not shared with you" in main_text(gone)
    assert "Pat Quinn" not in as_therapist.get("/home").get_data(as_text=True)
    assert patient.name not in client_for(app, supporter).get("/home").get_data(as_text=True)
    again = post(app.test_client(), "/login", {"email": patient.email, "password": PASSWORD})
    assert again.status_code == 422


def test_a_supporter_leaves_and_the_patients_next_request_locks_their_entries_anew(
    app, patient, supporter
):
    shared = write_entry(app, patient, "For Sue.", readers=[supporter])
    with app.app_context(), Session(db.engine()) as session:
        version = session.get(Entry, shared).version
    assert delete_account(client_for(app, supporter)).status_code == 200
    assert rows(app, User, User.id == supporter.id) == 0
    assert rows(app, Grant, Grant.entry_id == shared) == 1  # the patient's own
    client = client_for(app, patient)
    log = client.get("/journal/log").get_data(as_text=True)
    assert re.search(r"account", log)
    with app.app_context(), Session(db.engine()) as session:
        assert session.get(Entry, shared).version == version + 1


def test_a_therapist_who_is_a_patients_only_therapist_must_leave_their_care_team_first(
    app, patient, therapist
):
    shared = write_entry(app, patient, "For the care team.", readers=[therapist])
    client = client_for(app, therapist)
    page = client.get("/account/delete").get_data(as_text=True)
    assert "You are the only therapist of" in page and patient.name in page
    refused = delete_account(client)
    assert refused.status_code == 422
    assert rows(app, User, User.id == therapist.id) == 1
    done = delete_account(client, leave_patients="1")
    assert done.status_code == 200
    assert rows(app, User, User.id == therapist.id) == 0
    assert rows(app, CareTeam, CareTeam.patient_id == patient.id) == 0
    with app.app_context(), Session(db.engine()) as session:
        version = session.get(Entry, shared).version
    client_for(app, patient).get("/journal")  # the patient's key re-encrypts it
    with app.app_context(), Session(db.engine()) as session:
        assert session.get(Entry, shared).version == version + 1
    assert chain_intact(app)


def test_a_patient_deletes_every_entry_of_a_session_after_seeing_how_many(
    app, patient, stranger_patient
):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        treatment = TreatmentSession(
            patient_id=patient.id, kind="ketamine", scheduled_at=utcnow() - timedelta(days=3)
        )
        session.add(treatment)
        session.commit()
    for n in range(3):
        write_entry(app, patient, f"About the session {n}.", session_id=treatment.id)
    kept = write_entry(app, patient, "Not about it.")
    theirs = write_entry(app, stranger_patient, "Someone else's.")
    client = client_for(app, patient)
    asked = post(
        client,
        "/entries/delete-many",
        {"session_id": str(treatment.id)},
        token_from="/entries/delete-many",
    )
    assert asked.status_code == 200 and "Delete 3 entries?" in asked.get_data(as_text=True)
    assert rows(app, Entry, Entry.author_id == patient.id) == 4
    done = post(
        client,
        "/entries/delete-many",
        {"session_id": str(treatment.id), "confirm": "1"},
        token_from="/entries/delete-many",
    )
    assert done.status_code == 200 and "3 entries deleted" in done.get_data(as_text=True)
    assert rows(app, Entry, Entry.author_id == patient.id) == 1
    assert rows(app, Entry, Entry.id == kept) == 1 and rows(app, Entry, Entry.id == theirs) == 1
    assert rows(app, AuditEvent, AuditEvent.action == "delete") == 3
    assert chain_intact(app)


def test_a_patient_deletes_everything_before_a_day(app, patient):
    old = utcnow() - timedelta(days=40)
    for n in range(2):
        write_entry(app, patient, f"Old {n}.", when=old)
    write_entry(app, patient, "Today.")
    client = client_for(app, patient)
    day = (utcnow() - timedelta(days=10)).date().isoformat()
    asked = post(client, "/entries/delete-many", {"before": day}, token_from="/entries/delete-many")
    assert "Delete 2 entries?" in asked.get_data(as_text=True)
    post(
        client,
        "/entries/delete-many",
        {"before": day, "confirm": "1"},
        token_from="/entries/delete-many",
    )
    assert rows(app, Entry, Entry.author_id == patient.id) == 1


def test_a_session_of_someone_else_cannot_be_named_and_nothing_is_chosen_is_422(
    app, patient, stranger_patient
):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        theirs = TreatmentSession(
            patient_id=stranger_patient.id, kind="ketamine", scheduled_at=utcnow()
        )
        session.add(theirs)
        session.commit()
    client = client_for(app, patient)
    named = post(
        client,
        "/entries/delete-many",
        {"session_id": str(theirs.id), "confirm": "1"},
        token_from="/entries/delete-many",
    )
    assert named.status_code == 404
    empty = post(client, "/entries/delete-many", {}, token_from="/entries/delete-many")
    assert empty.status_code == 422


def test_only_a_patient_deletes_entries_in_bulk(app, therapist, supporter):
    for persona in (therapist, supporter):
        assert client_for(app, persona).get("/entries/delete-many").status_code == 404
    assert app.test_client().get("/account/delete").status_code == 302  # log in first


def main_text(response) -> str:
    """The words of a page's <main>, tags and spacing left out."""
    page = response.get_data(as_text=True)
    main = page[page.index("<main") : page.index("</main>")]
    return " ".join(re.sub(r"<[^>]+>", " ", main).split())
