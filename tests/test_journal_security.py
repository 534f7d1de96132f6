"""Security promises of the encrypted journal (DESIGN §3, §4, §10): no journal text at rest or
in the logs, 404 for every entry and patient page a persona may not see, tampered blobs that
fail loudly and never show someone else's words, revocation that really locks a reader out, a
constant number of queries per timeline, an access log whose changes show, and patients'
words rendered as text."""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    PASSWORD,
    Persona,
    client_for,
    counted_statements,
    csrf_token,
    make_user,
    post,
)
from sqlalchemy.engine import make_url
from sqlmodel import Session, func, select

from kapjournal import crypto, db
from kapjournal.models import AuditEvent, CareTeam, Entry, Grant, TreatmentSession, User
from kapjournal.services import accounts, audit, care, course, journal

ENTRY_SUFFIXES = ("", "/edit", "/delete", "/share", "/revoke")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
COULD_NOT_OPEN = "This entry could not be opened"
SERVER_ERROR = "Something went wrong on our side"


# --- talking to the app: writing entries through the real forms ---------------------------------

HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
TEXTAREA = re.compile(r'<textarea\b[^>]*\bname="(\w+)"[^>]*>([^<]*)</textarea>')
SHARE_BOX = re.compile(r'<input type="checkbox" name="share" value="([^"]+)"')
TOKEN_VALUE = re.compile(r'(name="csrf_token" value=")[^"]+(")')


def form_values(page: str) -> dict[str, list[str]]:
    """The hidden inputs and textareas of a form page, by name, in page order."""
    values: dict[str, list[str]] = {}
    for pattern in (HIDDEN, TEXTAREA):
        for name, value in pattern.findall(page):
            values.setdefault(name, []).append(html.unescape(value))
    return values


def submit_entry(
    client, kind: str = "reflection", *, share=(), answers=(), session_id=None, **fields
):
    """Open the new-entry form, fill it like a person would, and send it."""
    page = client.get(f"/entries/new?kind={kind}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    form = form_values(text)
    missing = {str(reader) for reader in share} - set(SHARE_BOX.findall(text))
    assert not missing, f"the form does not offer sharing with {missing}"
    prompts = form.get("prompt", [])
    assert len(answers) <= len(prompts), "more answers than the form has prompts"
    data = {
        "csrf_token": form["csrf_token"][0],
        "kind": kind,
        "client_id": form["client_id"][0],
        "prompt": prompts,
        "answer": [*answers, *[""] * (len(prompts) - len(answers))],
        "share": [str(reader) for reader in share],
        "session_id": str(session_id or ""),
        **fields,
    }
    return client.post("/entries/new", data=data)


def write_entry(client, kind: str = "reflection", **kw) -> uuid.UUID:
    """Write an entry over HTTP; its id, from the 303 to its page."""
    response = submit_entry(client, kind, **kw)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    match = re.search(r"/entries/([0-9a-f-]{36})$", response.headers["Location"])
    assert match, response.headers["Location"]
    return uuid.UUID(match.group(1))


def submit_edit(client, entry_id, *, session_id=None, **fields):
    """Open an entry's edit form, keep what it holds, change `fields`, and send it."""
    page = client.get(f"/entries/{entry_id}/edit")
    assert page.status_code == 200
    form = form_values(page.get_data(as_text=True))
    data = {name: values for name, values in form.items() if name != "csrf_token"}
    data |= {"csrf_token": form["csrf_token"][0], "session_id": str(session_id or ""), **fields}
    return client.post(f"/entries/{entry_id}/edit", data=data)


def normalized(response) -> str:
    """A page without its CSRF token (signed per request, so it differs by the second)."""
    return TOKEN_VALUE.sub(r"\1\2", response.get_data(as_text=True))


def entry_card(page: str, entry_id) -> str | None:
    """The timeline card of one entry, or None if the page does not list it."""
    match = re.search(
        rf'<article class="card stack entry-card" aria-labelledby="e-{entry_id}">(.*?)</article>',
        page,
        re.S,
    )
    return match.group(1) if match else None


# --- talking to the database ---------------------------------------------------------------------


@contextmanager
def database_session(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def private_key_of(session, persona: Persona) -> bytes:
    found = accounts.authenticate(session=session, email=persona.email, password=PASSWORD)
    assert found is not None
    return found[1]


def grant_of(session, entry_id, reader_id) -> Grant | None:
    return journal.grant_of(session=session, entry_id=entry_id, reader_id=reader_id)


def join_care_team(app, therapist: Persona, patient: Persona) -> None:
    with database_session(app) as session:
        issued = care.create_invitation(
            session=session, inviter=session.get(User, therapist.id), kind="patient"
        )
        care.accept_patient_invitation(
            session=session, invitation=issued.invitation, patient=session.get(User, patient.id)
        )
        session.commit()


def journal_state(app) -> tuple[list, list]:
    """Every entry (id, version, blob, session) and grant (entry, reader, wrap), for
    asserting that nothing changed."""
    with database_session(app) as session:
        entries = session.exec(select(Entry).order_by(Entry.id)).all()
        grants = session.exec(select(Grant).order_by(Grant.entry_id, Grant.reader_id)).all()
        return (
            [(e.id, e.version, e.body_blob, e.session_id) for e in entries],
            [(g.entry_id, g.reader_id, g.wrapped_key) for g in grants],
        )


# --- 1. canaries: no journal text in the database or the logs ---------------------------------


def encodings(value: str) -> dict[str, bytes]:
    """The byte patterns `value` would leave behind in each encoding we look for. In base64,
    the characters that mix in a neighbour (or the padding) are dropped, for each of the three
    alignments the value can have inside a longer string."""
    raw = value.encode()
    found = {
        "utf-8": raw,
        "utf-16-le": value.encode("utf-16-le"),
        "utf-16-be": value.encode("utf-16-be"),
        "hex": raw.hex().encode(),  # how pg_dump writes bytea
        "HEX": raw.hex().upper().encode(),
    }
    for shift in range(3):
        for name, encode in (
            ("base64", base64.b64encode),
            ("urlsafe base64", base64.urlsafe_b64encode),
        ):
            encoded = encode(b"x" * shift + raw)
            found[f"{name} at offset {shift}"] = encoded[4 if shift else 0 : -4]
    return found


def hits(haystack: bytes, value: str) -> list[str]:
    """The encodings of `value` found in `haystack`."""
    return [name for name, needle in encodings(value).items() if needle in haystack]


def stored_bytes(database) -> bytes:
    """Everything the database holds, as an attacker with a copy would see it: the raw SQLite
    file (and its journal files), or a pg_dump of the test schema."""
    if database["kind"] == "sqlite":
        path = database["path"]
        files = [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-journal"))]
        return b"".join(f.read_bytes() for f in files if f.exists())
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump is not installed")
    url = make_url(database["url"])
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    command = [
        pg_dump,
        "-h", url.host or "127.0.0.1",
        "-p", str(url.port or 5432),
        "-U", url.username or "postgres",
        "-n", database["schema"],
        url.database or "test",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, env=env, check=True, timeout=120).stdout


def capture_every_log(caplog) -> None:
    """DEBUG for the root logger and every logger that exists (SQLAlchemy's included, which
    then logs every statement with its parameters)."""
    caplog.set_level(logging.DEBUG)
    for name in ["sqlalchemy", "werkzeug", "flask", "kapjournal", *logging.root.manager.loggerDict]:
        caplog.set_level(logging.DEBUG, logger=name)


def logged_bytes(caplog) -> bytes:
    lines = [caplog.text]
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_text:
            lines.append(record.exc_text)
    return "\n".join(lines).encode()


def test_the_scanner_finds_every_encoding_it_looks_for():
    canary = f"kjc{secrets.token_hex(12)}"
    for name, needle in encodings(canary).items():
        assert len(needle) >= 20, name
    for shift in range(3):
        raw = b"y" * shift + canary.encode() + b"zz"
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            assert hits(b"..." + encoded + b"...", canary)
    assert hits(b"\\x" + canary.encode().hex().encode(), canary) == ["hex"]
    assert hits(canary.encode("utf-16-be"), canary) == ["utf-16-be"]
    assert hits(b"nothing here", canary) == []


def test_canaries_written_through_the_forms_never_reach_the_database_or_the_logs(
    app, database, caplog, patient, therapist
):
    capture_every_log(caplog)
    labels = [
        "reflection text, first version",
        "reflection prompt answer",
        "reflection text, edited",
        "intention",
        "intention hopes",
        "intention worries",
        "intention grounding",
        "intention support",
        "intention prompt answer",
        "check-in line",
    ]
    canary = {label: f"kjc{secrets.token_hex(12)}" for label in labels}
    as_patient = client_for(app, patient)
    reflection = write_entry(
        as_patient,
        "reflection",
        text=canary["reflection text, first version"],
        answers=[canary["reflection prompt answer"]],
        mood="3",
        share=[therapist.id],
    )
    intention = write_entry(
        as_patient,
        "intention",
        intention=canary["intention"],
        hopes=canary["intention hopes"],
        worries=canary["intention worries"],
        grounding=canary["intention grounding"],
        support=canary["intention support"],
        answers=[canary["intention prompt answer"]],
        share=[therapist.id],
    )
    check_in = write_entry(
        as_patient, "check_in", text=canary["check-in line"], mood="4", share=[therapist.id]
    )
    edited = submit_edit(as_patient, reflection, text=canary["reflection text, edited"])
    assert edited.status_code == 303
    entries = [reflection, intention, check_in]
    assert as_patient.get("/journal").status_code == 200

    # The therapist reads them all: the words went in, and come out decrypted for a reader.
    as_therapist = client_for(app, therapist)
    pages = [as_therapist.get(f"/patients/{patient.id}")]
    pages += [as_therapist.get(f"/entries/{entry_id}") for entry_id in entries]
    assert [page.status_code for page in pages] == [200] * 4
    seen = "".join(page.get_data(as_text=True) for page in pages)
    unseen = [label for label, value in canary.items() if value not in seen]
    assert unseen == ["reflection text, first version"]  # replaced by the edit

    stored, logged = stored_bytes(database), logged_bytes(caplog)
    leaks = {
        (label, where): found
        for label, value in canary.items()
        for where, haystack in (("database", stored), ("log", logged))
        if (found := hits(haystack, value))
    }
    assert leaks == {}

    # Positive controls: the same scan does find what is stored and logged in clear.
    assert "utf-8" in hits(stored, "reflection")
    assert hits(stored, str(reflection)) or hits(stored, reflection.hex)
    assert hits(logged, str(reflection)) or hits(logged, reflection.hex)  # SQL parameters


# --- 2. authorization: 404 for whoever may not see an entry or a patient ------------------------


def open_as(client, method: str, path: str, data: dict):
    return client.open(path, method=method, data=None if method == "GET" else data)


@pytest.mark.parametrize(
    "who", ["stranger_patient", "other_therapist", "supporter", "anonymous", "therapist"]
)
def test_entry_urls_are_404_unless_yours_or_shared_with_you_to_read(
    app, request, patient, therapist, who
):
    as_patient = client_for(app, patient)
    shared_text, private_text = f"shared {secrets.token_hex(6)}", f"private {secrets.token_hex(6)}"
    shared = write_entry(as_patient, text=shared_text, share=[therapist.id])
    private = write_entry(as_patient, text=private_text)
    before = journal_state(app)

    persona = None if who == "anonymous" else request.getfixturevalue(who)
    client = client_for(app, persona)
    # A real token, so that a 404 comes from the policy and not from CSRF (which would be 400).
    data = {
        "csrf_token": csrf_token(client, "/account" if persona else "/login"),
        "reader_id": str(persona.id if persona else therapist.id),
        "kind": "reflection",
        "text": "overwritten",
        "base_digest": "",
    }
    wrong = []
    for entry_id, is_shared in ((shared, True), (private, False)):
        for suffix in ENTRY_SUFFIXES:
            for method in METHODS:
                path = f"/entries/{entry_id}{suffix}"
                response = open_as(client, method, path, data)
                readable = who == "therapist" and is_shared and suffix == "" and method == "GET"
                expected = 200 if readable else 404
                if response.status_code != expected:
                    wrong.append((method, path, response.status_code, expected))
                    continue
                body = response.get_data(as_text=True)
                if readable:
                    assert shared_text in body
                    continue
                assert shared_text not in body and private_text not in body
                missing = open_as(client, method, f"/entries/{uuid.uuid4()}{suffix}", data)
                if missing.status_code != 404 or normalized(missing) != normalized(response):
                    wrong.append((method, path, "differs from a missing entry"))
    assert wrong == []
    assert journal_state(app) == before  # nothing was edited, shared, revoked or deleted
    assert as_patient.get(f"/entries/{private}").status_code == 200


@pytest.mark.parametrize(
    "who", ["other_therapist", "patient", "stranger_patient", "supporter", "anonymous"]
)
def test_a_patients_pages_are_404_for_all_but_their_therapists(app, request, patient, who):
    persona = None if who == "anonymous" else request.getfixturevalue(who)
    client = client_for(app, persona)
    data = {
        "csrf_token": csrf_token(client, "/account" if persona else "/login"),
        "kind": "ketamine",
        "scheduled_at": "2031-03-04T10:00",
    }
    wrong = []
    for suffix in ("", "/sessions"):
        for method in METHODS:
            response = open_as(client, method, f"/patients/{patient.id}{suffix}", data)
            missing = open_as(client, method, f"/patients/{uuid.uuid4()}{suffix}", data)
            if response.status_code != 404:
                wrong.append((method, suffix, response.status_code))
            elif normalized(missing) != normalized(response):
                wrong.append((method, suffix, "differs from a missing patient"))
    assert wrong == []
    with database_session(app) as session:
        assert session.exec(select(TreatmentSession)).all() == []


def test_a_patients_therapist_sees_their_page_and_schedules_sessions(app, patient, therapist):
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/patients/{patient.id}").status_code == 200
    response = post(
        as_therapist,
        f"/patients/{patient.id}/sessions",
        {"kind": "ketamine", "scheduled_at": "2031-03-04T10:00"},
    )
    assert response.status_code == 303
    with database_session(app) as session:
        assert len(session.exec(select(TreatmentSession)).all()) == 1


def test_a_session_of_another_patient_cannot_be_attached_to_an_entry(
    app, patient, therapist, stranger_patient
):
    with database_session(app) as session:
        stranger = session.get(User, stranger_patient.id)
        theirs = course.schedule(
            session=session,
            patient=stranger,
            created_by=stranger,
            kind="ketamine",
            when="2031-01-02T10:00",
            zone=ZoneInfo("UTC"),
        )
        session.commit()
    as_patient = client_for(app, patient)
    added = post(
        as_patient,
        "/sessions/new",
        {"kind": "ketamine", "scheduled_at": "2031-01-01T10:00"},
        token_from="/sessions/new",
    )
    assert added.status_code == 303
    with database_session(app) as session:
        own = session.exec(
            select(TreatmentSession).where(TreatmentSession.patient_id == patient.id)
        ).one()

    response = submit_entry(as_patient, text="For their session", session_id=theirs.id)
    assert response.status_code == 404
    assert journal_state(app) == ([], [])

    entry_id = write_entry(as_patient, text="For my session", session_id=own.id)
    before = journal_state(app)
    response = submit_edit(as_patient, entry_id, text="Moved", session_id=theirs.id)
    assert response.status_code == 404
    assert journal_state(app) == before
    with database_session(app) as session:
        assert session.get(Entry, entry_id).session_id == own.id


# --- 3. tampering: a moved or altered blob fails loudly, never shows other words ------------------


@dataclass
class People:
    patient: Persona
    therapist: Persona
    patient2: Persona  # another patient of the same therapist


@dataclass
class Tampered:
    broken: list[uuid.UUID]
    readers: list[tuple[Persona, str]]  # who reads the broken entries, and their timeline


def swap_body_blobs(session, a: Entry, b: Entry, people: People) -> Tampered:
    a.body_blob, b.body_blob = b.body_blob, a.body_blob
    return Tampered([a.id, b.id], [(people.patient, "/journal")])


def swap_wrapped_keys(session, a: Entry, b: Entry, people: People) -> Tampered:
    grant_a, grant_b = (grant_of(session, e.id, people.patient.id) for e in (a, b))
    grant_a.wrapped_key, grant_b.wrapped_key = grant_b.wrapped_key, grant_a.wrapped_key
    session.add_all([grant_a, grant_b])
    return Tampered([a.id, b.id], [(people.patient, "/journal")])


def change_version(session, a: Entry, b: Entry, people: People) -> Tampered:
    a.version += 1
    return Tampered([a.id], [(people.patient, "/journal")])


def change_author(session, a: Entry, b: Entry, people: People) -> Tampered:
    """Attribute the entry to another patient of the same therapist, and hand that patient the
    author's grant: neither the new 'author' nor the therapist may see the words."""
    a.author_id = people.patient2.id
    grant = grant_of(session, a.id, people.patient.id)
    grant.reader_id = people.patient2.id
    session.add(grant)
    return Tampered(
        [a.id],
        [(people.patient2, "/journal"), (people.therapist, f"/patients/{people.patient2.id}")],
    )


def copy_blob_and_wraps(session, a: Entry, b: Entry, people: People) -> Tampered:
    b.body_blob = a.body_blob
    for grant in session.exec(select(Grant).where(Grant.entry_id == b.id)):
        grant.wrapped_key = grant_of(session, a.id, grant.reader_id).wrapped_key
        session.add(grant)
    return Tampered(
        [b.id],
        [(people.patient, "/journal"), (people.therapist, f"/patients/{people.patient.id}")],
    )


def copy_blob_with_a_valid_wrap(session, a: Entry, b: Entry, people: People) -> Tampered:
    """Even someone who can wrap a's data key correctly for b cannot move a's body into b:
    the body itself is bound to its entry id."""
    private = private_key_of(session, people.patient)
    dek = crypto.unwrap_key(
        grant_of(session, a.id, people.patient.id).wrapped_key,
        private,
        journal._wrap_ad(a, people.patient.id),
    )
    b.body_blob = a.body_blob
    grant = grant_of(session, b.id, people.patient.id)
    grant.wrapped_key = crypto.wrap_key(
        dek,
        accounts.public_key(session.get(User, people.patient.id)),
        journal._wrap_ad(b, people.patient.id),
    )
    session.add(grant)
    return Tampered([b.id], [(people.patient, "/journal")])


TAMPERINGS: dict[str, Callable] = {
    "swapped body blobs": swap_body_blobs,
    "swapped wrapped keys": swap_wrapped_keys,
    "changed version": change_version,
    "changed author": change_author,
    "another entry's blob and wraps": copy_blob_and_wraps,
    "another entry's blob with a valid wrap": copy_blob_with_a_valid_wrap,
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_tampered_entry_fails_loudly_and_never_shows_other_words(
    app, caplog, patient, therapist, tampering
):
    caplog.set_level(logging.DEBUG)
    patient2 = make_user(
        app, role="patient", email="patient2@example.org", name="Pia Two", invited_by=therapist
    )
    people = People(patient, therapist, patient2)
    as_patient = client_for(app, patient)
    texts = {}
    for _ in range(2):
        words = f"words {secrets.token_hex(8)}"
        texts[write_entry(as_patient, text=words, share=[therapist.id])] = words
    a_id, b_id = texts
    with database_session(app) as session:
        a, b = session.get(Entry, a_id), session.get(Entry, b_id)
        tampered = TAMPERINGS[tampering](session, a, b, people)
        session.add_all([a, b])
        session.commit()
    caplog.clear()

    for reader, timeline_path in tampered.readers:
        client = client_for(app, reader)
        for entry_id in tampered.broken:
            response = client.get(f"/entries/{entry_id}")
            body = response.get_data(as_text=True)
            assert response.status_code == 500
            assert SERVER_ERROR in body
            assert not [words for words in texts.values() if words in body]
        timeline = client.get(timeline_path)
        assert timeline.status_code == 200
        page = timeline.get_data(as_text=True)
        for entry_id, words in texts.items():
            card = entry_card(page, entry_id)
            if entry_id in tampered.broken:
                assert card is not None, f"{entry_id} is missing from {timeline_path}"
                assert COULD_NOT_OPEN in card
                assert not [w for w in texts.values() if w in card]
            elif card is not None:  # an untouched entry still opens, with its own words
                assert words in card and COULD_NOT_OPEN not in card

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for entry_id in tampered.broken:
        assert [m for m in errors if str(entry_id) in m], f"no ERROR line names {entry_id}"
    logged = logged_bytes(caplog)
    assert not [words for words in texts.values() if hits(logged, words)]

    with database_session(app) as session:
        for reader, _ in tampered.readers:
            private = private_key_of(session, reader)
            for entry_id in tampered.broken:
                with pytest.raises(journal.EntryUnreadable):
                    journal.read(
                        session=session,
                        entry=session.get(Entry, entry_id),
                        reader_id=reader.id,
                        private_key=private,
                    )


# --- 4. revocation: the reader's next request is 404 and their data key is worthless ------------


def test_revoking_locks_the_reader_out_and_their_captured_key_opens_nothing(
    app, patient, therapist
):
    co_therapist = make_user(app, role="therapist", email="co@example.org", name="Dr. Co Worker")
    join_care_team(app, co_therapist, patient)
    as_patient = client_for(app, patient)
    words = f"words {secrets.token_hex(8)}"
    entry_id = write_entry(as_patient, text=words, share=[therapist.id, co_therapist.id])
    as_therapist = client_for(app, therapist)
    read = as_therapist.get(f"/entries/{entry_id}")
    assert read.status_code == 200 and words in read.get_data(as_text=True)

    # What a therapist turned hostile could have kept: the entry's data key.
    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        old_version, old_blob, old_ad = entry.version, entry.body_blob, journal._body_ad(entry)
        captured = crypto.unwrap_key(
            grant_of(session, entry_id, therapist.id).wrapped_key,
            private_key_of(session, therapist),
            journal._wrap_ad(entry, therapist.id),
        )
    assert json.loads(crypto.open_sealed(captured, old_blob, old_ad))["text"] == words

    revoked = post(
        as_patient,
        f"/entries/{entry_id}/revoke",
        {"reader_id": str(therapist.id)},
        token_from=f"/entries/{entry_id}",
    )
    assert revoked.status_code == 303
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 404
    assert words not in as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)

    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        assert entry.version == old_version + 1
        assert entry.body_blob != old_blob
        assert grant_of(session, entry_id, therapist.id) is None
        for ad in (journal._body_ad(entry), old_ad):
            with pytest.raises(crypto.CryptoError):
                crypto.open_sealed(captured, entry.body_blob, ad)
        # Everyone still on the entry opens the new version with their own grant.
        for reader in (patient, co_therapist):
            body = journal.read(
                session=session,
                entry=entry,
                reader_id=reader.id,
                private_key=private_key_of(session, reader),
            )
            assert body["text"] == words
        revokes = session.exec(select(AuditEvent).where(AuditEvent.action == "revoke")).all()
        assert [(e.entry_id, e.target_id, e.actor_id) for e in revokes] == [
            (entry_id, therapist.id, patient.id)
        ]
        assert audit.verify(session=session).broken_at is None

    assert words in as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)
    assert words in client_for(app, co_therapist).get(f"/entries/{entry_id}").get_data(as_text=True)
    log = as_patient.get("/journal/log").get_data(as_text=True)
    assert re.search(r"You\s+stopped sharing\s+<a[^>]*>an entry</a>\s+with Dr\. Tess Ward", log)


def test_a_therapist_taken_off_the_care_team_gets_404_despite_their_grant(app, patient, therapist):
    as_patient = client_for(app, patient)
    entry_id = write_entry(as_patient, text="Shared while on the team", share=[therapist.id])
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 200

    with database_session(app) as session:
        link = session.exec(
            select(CareTeam).where(
                CareTeam.therapist_id == therapist.id, CareTeam.patient_id == patient.id
            )
        ).one()
        session.delete(link)
        session.commit()
        assert grant_of(session, entry_id, therapist.id).wrapped_key is not None

    response = as_therapist.get(f"/entries/{entry_id}")
    missing = as_therapist.get(f"/entries/{uuid.uuid4()}")
    assert response.status_code == 404
    assert normalized(response) == normalized(missing)
    assert as_therapist.get(f"/patients/{patient.id}").status_code == 404


# --- 5. the timeline costs the same number of queries for 5 entries or 200 ----------------------


def create_entries(app, patient: Persona, therapist: Persona, count: int) -> None:
    """Entries through the real service (encrypted like any other); every third is shared."""
    with database_session(app) as session:
        author, reader = session.get(User, patient.id), session.get(User, therapist.id)
        for i in range(count):
            journal.create(
                session=session,
                author=author,
                kind="reflection",
                body={"text": f"Entry number {i}", "answers": []},
                client_id=uuid.uuid4(),
                readers=[reader] if i % 3 == 0 else [],
            )
        session.commit()


def test_the_timeline_runs_as_many_queries_for_200_entries_as_for_5(
    app, database, patient, therapist
):
    as_patient = client_for(app, patient)
    counts = {}
    for total, add in ((5, 5), (200, 195)):
        create_entries(app, patient, therapist, add)
        with counted_statements(database["engine"]) as statements:
            page = as_patient.get("/journal")
        assert page.status_code == 200
        shown = min(total, 20)  # a page of the journal
        assert page.get_data(as_text=True).count('class="card stack entry-card"') == shown
        counts[total] = len(statements)
    print(f"SQL statements for GET /journal: {counts}")
    assert counts[5] == counts[200]


# --- 6. the access log's hash chain shows a changed or removed row ------------------------------


def some_activity(app, patient: Persona, therapist: Persona) -> int:
    """Writes, shares, a read and a revoke; the number of access-log rows they made."""
    as_patient = client_for(app, patient)
    first = write_entry(as_patient, text="First", share=[therapist.id])
    write_entry(as_patient, text="Second", share=[therapist.id])
    write_entry(as_patient, text="Third")
    assert client_for(app, therapist).get(f"/entries/{first}").status_code == 200
    revoked = post(
        as_patient,
        f"/entries/{first}/revoke",
        {"reader_id": str(therapist.id)},
        token_from=f"/entries/{first}",
    )
    assert revoked.status_code == 303
    with database_session(app) as session:
        return session.exec(select(func.count()).select_from(AuditEvent)).one()


def verify_command(app):
    return app.test_cli_runner().invoke(args=["audit", "verify"])


def test_an_intact_access_log_verifies(app, patient, therapist):
    rows = some_activity(app, patient, therapist)
    assert rows >= 7
    with database_session(app) as session:
        report = audit.verify(session=session)
    assert (report.checked, report.broken_at) == (rows, None)
    result = verify_command(app)
    assert result.exit_code == 0, result.output
    assert f"intact ({rows} events)" in result.output


def test_changing_one_access_log_row_breaks_the_chain_at_that_row(app, patient, therapist):
    some_activity(app, patient, therapist)
    with database_session(app) as session:
        # Make a share look like a mere read.
        row = session.exec(
            select(AuditEvent).where(AuditEvent.action == "share").order_by(AuditEvent.seq)
        ).first()
        seq = row.seq
        row.action = "read"
        session.add(row)
        session.commit()
        assert audit.verify(session=session).broken_at == seq
    result = verify_command(app)
    assert result.exit_code == 1
    assert f"broken at event {seq}" in result.output


def test_deleting_an_access_log_row_breaks_the_chain(app, patient, therapist):
    rows = some_activity(app, patient, therapist)
    middle = rows // 2
    with database_session(app) as session:
        session.delete(session.exec(select(AuditEvent).where(AuditEvent.seq == middle)).one())
        session.commit()
        assert audit.verify(session=session).broken_at in (middle, middle + 1)
    assert verify_command(app).exit_code == 1


# --- 7. what a patient writes is shown as text, everywhere ------------------------------------

NASTY = "<script>alert(1)</script><img src=x onerror=alert(2)>{{7*7}}"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;{{7*7}}"


def test_entry_text_is_escaped_on_every_page_that_shows_it(app, patient, therapist):
    as_patient = client_for(app, patient)
    reflection = write_entry(as_patient, text=NASTY, answers=[NASTY], share=[therapist.id])
    intention = write_entry(as_patient, "intention", intention=NASTY, hopes=NASTY)
    as_therapist = client_for(app, therapist)
    pages = {
        "entry page": as_patient.get(f"/entries/{reflection}"),
        "intention page": as_patient.get(f"/entries/{intention}"),
        "edit form": as_patient.get(f"/entries/{reflection}/edit"),
        "timeline": as_patient.get("/journal"),
        "search": post(as_patient, "/journal/search", {"q": "alert"}, token_from="/journal"),
        "search fragment": post(
            as_patient,
            "/journal/search",
            {"q": "alert"},
            token_from="/journal",
            headers={"HX-Request": "true"},
        ),
        "therapist's entry page": as_therapist.get(f"/entries/{reflection}"),
        "therapist's patient page": as_therapist.get(f"/patients/{patient.id}"),
    }
    for name, response in pages.items():
        body = response.get_data(as_text=True)
        assert response.status_code == 200, name
        assert ESCAPED in body, name
        assert "<script>alert" not in body and "<img src=x" not in body, name
