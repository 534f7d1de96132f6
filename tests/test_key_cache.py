"""The per-device cache of data keys: sealed under K_sess, used only with a live grant."""

from __future__ import annotations

import base64
import re

from conftest import login, post, write_entry
from sqlalchemy import event
from sqlmodel import Session, select

from kapjournal import crypto, db
from kapjournal.models import DeviceSession, Entry, Grant
from kapjournal.services import accounts, journal


def _data_key(app, persona, entry_id) -> bytes:
    with app.app_context(), Session(db.engine()) as session:
        _, private = accounts.authenticate(
            session=session, email=persona.email, password=persona.password
        )
        entry = session.get(Entry, entry_id)
        grant = journal.grant_of(session=session, entry_id=entry_id, reader_id=persona.id)
        return crypto.unwrap_key(grant.wrapped_key, private, journal._wrap_ad(entry, persona.id))


def _devices(app, persona) -> list[DeviceSession]:
    with app.app_context(), Session(db.engine()) as session:
        return list(session.exec(select(DeviceSession).where(DeviceSession.user_id == persona.id)))


def test_the_cache_holds_data_keys_only_sealed_under_the_session_key(app, as_patient, patient):
    entry_id = write_entry(app, patient, "the river at dawn")
    assert "the river at dawn" in as_patient.get("/journal").get_data(as_text=True)
    (device,) = _devices(app, patient)
    assert device.key_cache, "the timeline did not keep the key it opened"
    key = _data_key(app, patient, entry_id)
    for form in (key, base64.b64encode(key), base64.urlsafe_b64encode(key), key.hex().encode()):
        assert form not in device.key_cache


def test_a_cached_key_spares_the_unwrap_but_a_new_device_must_unwrap(app, as_patient, patient):
    entry_id = write_entry(app, patient, "quiet after the storm")
    assert "quiet after the storm" in as_patient.get("/journal").get_data(as_text=True)
    with app.app_context(), Session(db.engine()) as session:
        grant = journal.grant_of(session=session, entry_id=entry_id, reader_id=patient.id)
        grant.wrapped_key = b"\x00" * len(grant.wrapped_key)  # the wrap no longer opens
        session.add(grant)
        session.commit()
    # This device opened the entry before: its sealed key still works.
    assert "quiet after the storm" in as_patient.get("/journal").get_data(as_text=True)
    # Another device has no cache: the broken wrap is found, and no text is shown.
    other = app.test_client()
    login(other, patient)
    page = other.get("/journal").get_data(as_text=True)
    assert "quiet after the storm" not in page
    assert "could not be opened" in page


def test_a_revoked_reader_gets_404_even_with_the_key_in_their_cache(
    app, as_patient, as_therapist, patient, therapist
):
    entry_id = write_entry(app, patient, "for my therapist", readers=[therapist])
    page = as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert "for my therapist" in page
    response = post(as_patient, f"/entries/{entry_id}/revoke", {"reader_id": str(therapist.id)})
    assert response.status_code == 303
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 404
    page = as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert "for my therapist" not in page
    with app.app_context(), Session(db.engine()) as session:
        assert session.exec(select(Grant).where(Grant.reader_id == therapist.id)).first() is None


def test_the_cache_ends_with_the_session(app, as_patient, patient):
    write_entry(app, patient, "gone at logout")
    as_patient.get("/journal")
    assert _devices(app, patient)
    assert post(as_patient, "/logout", token_from="/account").status_code == 303
    assert _devices(app, patient) == []


def test_a_cached_key_opens_nothing_once_the_grant_is_no_longer_live(
    app, as_therapist, patient, therapist
):
    entry_id = write_entry(app, patient, "waiting words", readers=[therapist])
    assert "waiting words" in as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)
    with app.app_context(), Session(db.engine()) as session:
        grant = journal.grant_of(session=session, entry_id=entry_id, reader_id=therapist.id)
        grant.wrapped_key = None  # a grant without a key is not live
        session.add(grant)
        session.commit()
    page = as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert "waiting words" not in page


def test_a_warm_cache_reads_no_wrapped_keys(app, as_patient, patient):
    for n in range(3):
        write_entry(app, patient, f"entry {n}")

    def wraps_read(path: str) -> int:
        """How many statements of one request load wrapped keys for the timeline."""
        statements = []
        with app.app_context():
            engine = db.engine()

        def seen(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", seen)
        try:
            page = as_patient.get(path).get_data(as_text=True)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert all(f"entry {n}" in page for n in range(3))
        # PostgreSQL quotes "grant" (a keyword); SQLite does not.
        plain = [s.replace('"', "") for s in statements]
        # The wrapped keys themselves (not, say, whether a grant is pending).
        wraps = re.compile(r"grant\.entry_id, grant\.wrapped_key\s+FROM")
        return len([s for s in plain if wraps.search(s)])

    assert wraps_read("/journal") == 1  # cold: the wraps of the three entries, in one query
    assert wraps_read("/journal") == 0  # warm: the cached keys, and the grant is live


def test_practices_and_shared_session_notes_open_from_the_cache_too(
    app, as_patient, patient, therapist
):
    """The patient's home opens the care team's practices and shared session notes through
    the same device cache as entries: once opened on this device, their keys need no unwrap
    (no private key on the page), while a device that never opened them must unwrap."""
    from kapjournal.models import ItemKey, User
    from kapjournal.services import annotations, practices

    with app.app_context(), Session(db.engine()) as session:
        me, them = session.get(User, patient.id), session.get(User, therapist.id)
        practices.create(
            session=session, patient=me, therapist=them, body={"what": "Walk at sunrise"}
        )
        annotations.create(
            session=session,
            patient=me,
            author=them,
            note="You named the fear out loud today",
            visibility="shared",
        )
        session.commit()
    page = as_patient.get("/journal").get_data(as_text=True)
    assert "Walk at sunrise" in page and "You named the fear out loud today" in page
    with app.app_context(), Session(db.engine()) as session:
        mine = session.exec(select(ItemKey).where(ItemKey.reader_id == patient.id)).all()
        assert {k.subject_kind for k in mine} == {"practice", "annotation"}
        for key in mine:
            key.wrapped_key = b"\x00" * len(key.wrapped_key)  # the wraps no longer open
            session.add(key)
        session.commit()
    # This device opened them before: its sealed keys still work.
    page = as_patient.get("/journal").get_data(as_text=True)
    assert "Walk at sunrise" in page and "You named the fear out loud today" in page
    # Another device has no cache: the broken wraps are found, and no words are shown.
    other = app.test_client()
    login(other, patient)
    page = other.get("/journal").get_data(as_text=True)
    assert "Walk at sunrise" not in page and "You named the fear out loud today" not in page
    assert "could not be opened" in page
