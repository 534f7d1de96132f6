"""The server's side of offline capture, over HTTP: the offline writing page is public and holds
nothing personal; an entry written there follows the patient's standing sharing default when
it arrives; the same entry sent again is the same entry; logout keeps the phone's storage only
when the patient chose to keep entries not sent yet. The browser side is in
tests/browser/test_offline.py."""

from __future__ import annotations

import re
import uuid

import pytest
from conftest import post
from sqlmodel import Session, select

from kapjournal import db
from kapjournal.models import Entry, Grant, User


@pytest.mark.parametrize("kind", ["reflection", "check_in"])
def test_offline_writing_page_is_public_and_holds_no_token_or_names(app, therapist, patient, kind):
    response = app.test_client().get(f"/write-offline?kind={kind}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "csrf_token" not in page
    assert therapist.name not in page and patient.name not in page
    assert 'name="client_id" value=""' in page  # drafts.js gives each entry its own
    assert 'action="/entries/new"' in page and "data-offline-form" in page
    assert response.headers["Cache-Control"] == "no-store"


def test_offline_writing_page_sends_a_logged_in_patient_to_the_real_form(as_patient):
    response = as_patient.get("/write-offline?kind=check_in")
    assert response.status_code == 302
    assert response.headers["Location"] == "/entries/new?kind=check_in"


@pytest.mark.parametrize("kind", ["intention", "support_card", "free", "nonsense"])
def test_offline_writing_page_exists_only_for_reflections_and_check_ins(client, kind):
    assert client.get(f"/write-offline?kind={kind}").status_code == 404


def set_default(app, patient, kind: str, value: bool) -> None:
    with app.app_context(), Session(db.engine()) as dbs:
        user = dbs.get(User, patient.id)
        user.share_defaults = {**user.share_defaults, kind: value}
        dbs.add(user)
        dbs.commit()


def readers_of_the_entry(app, client_id) -> set:
    with app.app_context(), Session(db.engine()) as dbs:
        entry = dbs.exec(select(Entry).where(Entry.client_id == client_id)).one()
        return {g.reader_id for g in dbs.exec(select(Grant).where(Grant.entry_id == entry.id))}


def send_from_the_offline_page(client, client_id, text="Written on the bus.") -> str:
    data = {"kind": "reflection", "client_id": str(client_id), "share_default": "1", "text": text}
    response = post(client, "/entries/new", data, token_from="/entries/new?kind=reflection")
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    return response.headers["Location"]


def test_entry_from_the_offline_page_is_shared_as_the_standing_default_says(
    app, as_patient, patient, therapist
):
    set_default(app, patient, "reflection", True)
    client_id = uuid.uuid4()
    send_from_the_offline_page(as_patient, client_id)
    assert readers_of_the_entry(app, client_id) == {patient.id, therapist.id}


def test_entry_from_the_offline_page_stays_private_without_a_default(app, as_patient, patient):
    set_default(app, patient, "reflection", False)
    client_id = uuid.uuid4()
    send_from_the_offline_page(as_patient, client_id)
    assert readers_of_the_entry(app, client_id) == {patient.id}


def test_queued_entry_sent_again_is_the_same_entry(app, as_patient):
    client_id = uuid.uuid4()
    first = send_from_the_offline_page(as_patient, client_id)
    again = send_from_the_offline_page(as_patient, client_id, text="A retry, or another tab.")
    assert first == again and re.search(r"/entries/[0-9a-f-]{36}$", first)
    with app.app_context(), Session(db.engine()) as dbs:
        assert len(dbs.exec(select(Entry)).all()) == 1


def test_logout_clears_cache_and_storage(as_patient):
    response = post(as_patient, "/logout")
    assert response.status_code == 303
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'


def test_logout_keeping_unsent_entries_clears_only_the_http_cache(as_patient):
    response = post(as_patient, "/logout", {"keep_unsent": "1"})
    assert response.status_code == 303
    assert response.headers["Clear-Site-Data"] == '"cache"'
    assert as_patient.get("/journal").status_code == 302  # logged out all the same
