"""Backups (issue 14, points 6 and 7): `backup create`, `verify` and `restore` through the real
command line, on the test database (SQLite, or PostgreSQL with pg_dump), and a drill: a backup
taken while people write, restored into a fresh instance, where everyone reads what they read
before and the access log verifies."""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import shutil
import stat
import tarfile
import threading
import uuid
from contextlib import contextmanager

import pytest
from conftest import TEST_KEK, WebClient, app_config, serving
from sqlalchemy import update
from sqlmodel import Session, func, select
from test_journal_security import client_for, hits, write_entry

from kapjournal import create_app, db
from kapjournal.models import AuditEvent, DeviceSession, Entry, Grant
from kapjournal.services import backup

OTHER_KEK = base64.urlsafe_b64encode(b"o" * 32).decode()
NEW_ENTRY_FORM = re.compile(r'name="(csrf_token|client_id)" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _needs_pg_tools(database):
    if database["kind"] == "postgresql" and not shutil.which("pg_dump"):
        pytest.skip("backups of PostgreSQL need pg_dump and pg_restore (postgresql-client)")


def run(app, *args: str):
    """A `flask --app app ...` command on `app`; its result (exit code and output)."""
    return app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)


@contextmanager
def fresh_instance(database, **overrides):
    """An app on a new, empty database of the test run's kind (a new SQLite file; a new
    PostgreSQL database holding an empty schema of the test schema's name)."""
    if database["kind"] == "sqlite":
        path = database["path"].with_name(f"fresh-{secrets.token_hex(4)}.db")
        url = f"sqlite:///{path}"
        engine = db.make_engine(url)
        try:
            yield create_app(app_config({**database, "url": url, "engine": engine}, **overrides))
        finally:
            engine.dispose()
            path.unlink(missing_ok=True)
        return
    name = f"kj_fresh_{secrets.token_hex(6)}"
    admin = db.make_engine(database["url"]).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url, schema=database["schema"])
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{database["schema"]}"')
        yield create_app(app_config({**database, "url": url, "engine": engine}, **overrides))
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def manifest_of(path) -> dict:
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == ["database.pgdump", "manifest.json"] or sorted(
            tar.getnames()
        ) == ["database.sqlite3", "manifest.json"]
        return json.loads(tar.extractfile("manifest.json").read())


def count(app, model) -> int:
    with app.app_context(), Session(db.engine()) as session:
        return session.exec(select(func.count()).select_from(model)).one()


# --- create ---------------------------------------------------------------------------------------


def test_a_backup_is_a_private_file_of_ciphertext_with_a_manifest_and_no_logged_in_devices(
    app, database, tmp_path, patient, therapist
):
    canary = f"kjc{secrets.token_hex(12)}"
    as_patient = client_for(app, patient)  # a logged-in device, which the backup leaves out
    write_entry(as_patient, text=canary, share=[therapist.id])
    write_entry(as_patient, text="a second entry")
    assert count(app, DeviceSession) >= 1
    dest = tmp_path / "nightly.kjbackup"

    result = run(app, "backup", "create", str(dest))

    assert result.exit_code == 0, result.output
    assert "2 entry" in result.output and "KEK t1" in result.output
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["nightly.kjbackup"]  # no work files left
    manifest = manifest_of(dest)
    assert manifest["database"] == database["kind"]
    assert manifest["revision"] == backup._head_revisions()
    assert manifest["counts"]["entry"] == 2 and manifest["counts"]["users"] == 2
    assert "device_session" not in manifest["counts"]
    assert manifest["kek_ids"] == ["t1"]
    with app.app_context(), Session(db.engine()) as session:
        newest = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert manifest["audit_head"] == {"seq": newest.seq, "mac": newest.mac.hex()}
    stored = dest.read_bytes()
    assert hits(stored, canary) == []
    assert base64.urlsafe_b64decode(TEST_KEK) not in stored and TEST_KEK.encode() not in stored
    assert hits(stored, str(patient.id)) or hits(stored, patient.id.hex)  # positive control

    with fresh_instance(database) as fresh:
        assert run(fresh, "backup", "restore", str(dest)).exit_code == 0
        assert count(fresh, DeviceSession) == 0  # restoring signs everyone out
        assert count(fresh, Entry) == 2


def test_create_never_overwrites_a_file(app, tmp_path, patient):
    dest = tmp_path / "taken"
    dest.write_bytes(b"something else")
    result = app.test_cli_runner().invoke(args=["backup", "create", str(dest)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert dest.read_bytes() == b"something else"


# --- verify ---------------------------------------------------------------------------------------


def test_verify_accepts_a_good_backup_and_says_what_it_holds(app, tmp_path, patient, therapist):
    write_entry(client_for(app, patient), text="kept", share=[therapist.id])
    dest = tmp_path / "b"
    assert run(app, "backup", "create", str(dest)).exit_code == 0

    result = run(app, "backup", "verify", str(dest))

    assert result.exit_code == 0, result.output
    assert "is a good backup" in result.output and "1 entry" in result.output


def test_verify_finds_a_damaged_file(app, tmp_path, patient):
    dest = tmp_path / "b"
    assert run(app, "backup", "create", str(dest)).exit_code == 0
    with tarfile.open(dest) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("database"))
    data = bytearray(dest.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF  # one byte of the database
    damaged = tmp_path / "damaged"
    damaged.write_bytes(bytes(data))
    result = app.test_cli_runner().invoke(args=["backup", "verify", str(damaged)])
    assert result.exit_code == 1 and "damaged" in result.output

    notabackup = tmp_path / "notes.txt"
    notabackup.write_text("hello")
    result = app.test_cli_runner().invoke(args=["backup", "verify", str(notabackup)])
    assert result.exit_code == 1 and "cannot be read as a backup" in result.output


def test_verify_finds_a_broken_access_log_and_an_entry_nobody_can_open(
    app, tmp_path, patient, therapist
):
    as_patient = client_for(app, patient)
    first = write_entry(as_patient, text="one", share=[therapist.id])
    write_entry(as_patient, text="two")
    with app.app_context(), Session(db.engine()) as session:
        session.exec(update(AuditEvent).where(AuditEvent.seq == 2).values(action="login"))
        grant = session.exec(
            select(Grant).where(Grant.entry_id == first, Grant.reader_id == patient.id)
        ).one()
        session.delete(grant)
        session.commit()
    dest = tmp_path / "b"
    assert run(app, "backup", "create", str(dest)).exit_code == 0

    result = app.test_cli_runner().invoke(args=["backup", "verify", str(dest)])

    assert result.exit_code == 1
    assert "broken at event 2" in result.output
    assert "1 entries have no key wrapped to their author" in result.output


def test_without_the_kek_verify_and_restore_name_the_missing_key_and_touch_nothing(
    app, database, tmp_path, patient
):
    write_entry(client_for(app, patient), text="locked")
    dest = tmp_path / "b"
    assert run(app, "backup", "create", str(dest)).exit_code == 0

    with fresh_instance(database, KEKS=f"o1:{OTHER_KEK}") as keyless:
        verified = keyless.test_cli_runner().invoke(args=["backup", "verify", str(dest)])
        restored = keyless.test_cli_runner().invoke(args=["backup", "restore", str(dest)])
        with keyless.app_context():
            tables = db.engine().dialect.get_table_names
            with db.engine().connect() as conn:
                left = tables(conn)

    for result in (verified, restored):
        assert result.exit_code == 1
        assert "needs KEK 't1', which is not in KAPJOURNAL_KEKS" in result.output
    assert "Not restored" in restored.output
    assert left == []  # nothing was written


# --- restore --------------------------------------------------------------------------------------


def test_restore_refuses_a_database_with_accounts_unless_forced(
    app, database, tmp_path, patient, therapist
):
    write_entry(client_for(app, patient), text="before", share=[therapist.id])
    dest = tmp_path / "b"
    assert run(app, "backup", "create", str(dest)).exit_code == 0
    write_entry(client_for(app, patient), text="after the backup")
    assert count(app, Entry) == 2

    refused = app.test_cli_runner().invoke(args=["backup", "restore", str(dest)])
    assert refused.exit_code == 1
    assert "not empty (2 accounts" in refused.output and "--force" in refused.output
    assert count(app, Entry) == 2

    forced = run(app, "backup", "restore", "--force", str(dest))
    assert forced.exit_code == 0, forced.output
    assert count(app, Entry) == 1
    as_therapist = client_for(app, therapist)
    assert "before" in as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)


def test_restore_into_a_migrated_but_empty_database(app, database, tmp_path, patient):
    write_entry(client_for(app, patient), text="moved")
    dest = tmp_path / "b"
    assert run(app, "backup", "create", str(dest)).exit_code == 0
    with fresh_instance(database) as fresh:
        assert run(fresh, "db", "upgrade").exit_code == 0  # `make run` did this already
        result = run(fresh, "backup", "restore", str(dest))
        assert result.exit_code == 0, result.output
        assert "Restored" in result.output and "everyone logs in again" in result.output
        assert "moved" in client_for(fresh, patient).get("/journal").get_data(as_text=True)


def test_a_backup_of_one_kind_of_database_is_not_restored_into_the_other(
    app, database, tmp_path, patient
):
    dest = tmp_path / "b"
    assert run(app, "backup", "create", str(dest)).exit_code == 0
    other = "postgresql" if database["kind"] == "sqlite" else "sqlite"
    forged = tmp_path / "forged"
    with tarfile.open(dest) as tar, tarfile.open(forged, "w") as out:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        manifest["database"] = other
        body = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        out.addfile(info, io.BytesIO(body))
        data = tar.extractfile(backup.DATA[database["kind"]]).read()
        info = tarfile.TarInfo(backup.DATA[other])
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    result = app.test_cli_runner().invoke(args=["backup", "restore", "--force", str(forged)])
    assert result.exit_code == 1
    assert f"this is a {other} backup and the configured database is" in result.output


# --- the drill ------------------------------------------------------------------------------------


def write_over_http(browser: WebClient, text_: str, share=()) -> uuid.UUID:
    form = dict(NEW_ENTRY_FORM.findall(browser.get("/entries/new?kind=check_in").text))
    data = {**form, "kind": "check_in", "text": text_, "share": [str(r) for r in share]}
    response = browser.post("/entries/new", data)
    assert response.status_code == 303, response.text[:300]
    return uuid.UUID(response.headers["Location"].rsplit("/", 1)[1])


def readable(browser: WebClient, entries: dict) -> dict:
    """Which of `entries` ({id: text}) `browser` can open, with their text on the page."""
    found = {}
    for entry_id, words in entries.items():
        page = browser.get(f"/entries/{entry_id}")
        if page.status_code == 200 and words in page.text:
            found[entry_id] = words
    return found


def test_drill_a_backup_taken_while_people_write_restores_to_what_everyone_could_read(
    app, database, tmp_path, patient, therapist, supporter, stranger_patient, other_therapist
):
    people = [patient, therapist, supporter, stranger_patient, other_therapist]
    before: dict[uuid.UUID, str] = {}
    stop, written_during = threading.Event(), []
    with serving(app) as url:
        writers = {}
        for person, share in ((patient, [therapist.id, supporter.id]), (stranger_patient, [])):
            browser = WebClient(url)
            browser.login(person)
            writers[person.email] = (browser, share)
            for n in range(3):
                words = f"before {person.name} {n} {secrets.token_hex(4)}"
                before[write_over_http(browser, words, share)] = words
        could_read = {}
        for person in people:
            browser = WebClient(url)
            browser.login(person, app)
            could_read[person.email] = readable(browser, before)
        assert len(could_read[patient.email]) == 3 and len(could_read[supporter.email]) == 3
        assert len(could_read[therapist.email]) == 3 and could_read[other_therapist.email] == {}

        def keep_writing(browser, share):
            n = 0
            while not stop.is_set():
                words = f"during {n} {secrets.token_hex(4)}"
                written_during.append((write_over_http(browser, words, share), words))
                n += 1

        threads = [
            threading.Thread(target=keep_writing, args=writer) for writer in writers.values()
        ]
        for thread in threads:
            thread.start()
        while len(written_during) < 4:  # both are writing
            stop.wait(0.05)
        dest = tmp_path / "drill.kjbackup"
        created = run(app, "backup", "create", str(dest))
        written_at_end = len(written_during)
        while len(written_during) < written_at_end + 4:  # and go on after
            stop.wait(0.05)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert created.exit_code == 0, created.output
    assert run(app, "backup", "verify", str(dest)).exit_code == 0
    manifest = manifest_of(dest)
    assert 6 < manifest["counts"]["entry"] < 6 + len(written_during)  # a moment mid-writing

    with fresh_instance(database) as fresh:
        restored = run(fresh, "backup", "restore", str(dest))
        assert restored.exit_code == 0, restored.output
        assert run(fresh, "audit", "verify").exit_code == 0
        assert count(fresh, Entry) == manifest["counts"]["entry"]
        with serving(fresh) as fresh_url:
            for person in people:
                browser = WebClient(fresh_url)
                browser.login(person, fresh)
                assert readable(browser, before) == could_read[person.email], person.role
            during = dict(written_during)
            with fresh.app_context(), Session(db.engine()) as session:
                kept = set(session.exec(select(Entry.id)).all()) & set(during)
            assert kept, "the backup holds some of what was written while it ran"
            browser = WebClient(fresh_url)
            browser.login(patient)
            mine = {entry_id: words for entry_id, words in during.items() if entry_id in kept}
            theirs = {e: w for e, w in mine.items() if readable(browser, {e: w})}
            browser = WebClient(fresh_url)
            browser.login(stranger_patient)
            theirs |= readable(browser, mine)
            assert theirs == mine  # every entry in the backup opens for its author
