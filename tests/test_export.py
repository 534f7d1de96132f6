"""The patient's words are theirs to take (DESIGN §11): "Download my journal" (a ZIP, after the
password, of what the patient can read: journal.html, journal.json, questionnaires.fhir.json,
access-log.csv), the import of journal.json into a new account on another server, and a
therapist's clinical record. Everything over HTTP, through the forms, on the real database and
the real crypto."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import secrets
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    WebClient,
    app_config,
    counted_statements,
    csrf_token,
    in_parallel,
    login,
    make_user,
    post,
)

# fhir.resources validates FHIR R4B; R4B's QuestionnaireResponse and Bundle are R4's (R4B
# changed neither), so a bundle valid here is a valid R4 bundle.
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import text
from sqlmodel import Session, col, func, select

from kapjournal import create_app, db
from kapjournal.models import (
    Annotation,
    AuditEvent,
    Entry,
    Practice,
    ReadTally,
    TreatmentSession,
    User,
)
from kapjournal.services import care, journal

MEMBERS = {"journal.html", "journal.json", "questionnaires.fhir.json", "access-log.csv"}
RECORD_MEMBERS = {"record.html", "record.json", "questionnaires.fhir.json"}
OTHER_KEK = base64.urlsafe_b64encode(b"o" * 32).decode()

# The LOINC codes, as published (cited in kapjournal/services/fhir.py): the LHC-Forms PHQ-9
# and GAD-7 questionnaires and the Medical Informatics Initiative's PRO module agree on them.
LOINC = "http://loinc.org"
PHQ9_PANEL, PHQ9_TOTAL, PHQ9_DIFFICULTY = "44249-1", "44261-6", "69722-7"
PHQ9_ITEMS = [
    "44250-9",
    "44255-8",
    "44259-0",
    "44254-1",
    "44251-7",
    "44258-2",
    "44252-5",
    "44253-3",
    "44260-8",
]
GAD7_PANEL, GAD7_TOTAL = "69737-5", "70274-6"
GAD7_ITEMS = ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"]
FREQUENCY = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]  # LL358-3: 0 to 3
DIFFICULTY = ["LA6572-7", "LA6573-5", "LA6575-0", "LA6574-3"]  # LL359-1: 0 to 3
CITED = {PHQ9_PANEL, PHQ9_TOTAL, PHQ9_DIFFICULTY, GAD7_PANEL, GAD7_TOTAL}
CITED |= {*PHQ9_ITEMS, *GAD7_ITEMS, *FREQUENCY, *DIFFICULTY}


# --- doing things through the forms ----------------------------------------------------------


def client_of(app, persona):
    client = app.test_client()
    login(client, persona)
    return client


def write(client, fields: dict | str, *, kind="reflection", share=(), session_id=None):
    """An entry through the "new entry" form; its id."""
    data = {"text": fields} if isinstance(fields, str) else dict(fields)
    data["client_id"] = str(uuid.uuid4())
    if share:
        data["share"] = [str(person.id) for person in share]
    if session_id:
        data["session_id"] = str(session_id)
    page = f"/entries/new?kind={kind}"
    response = post(client, page, data, token_from=page)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return uuid.UUID(response.headers["Location"].rsplit("/", 1)[-1])


def answer(client, key: str, items: list[int], *, difficulty=None, share=True) -> uuid.UUID:
    """A questionnaire through its form (shared with the care team unless `share` is off)."""
    data = {f"item-{n}": str(value) for n, value in enumerate(items, 1)}
    data |= {"client_id": str(uuid.uuid4()), "share": "1" if share else "0"}
    if difficulty is not None:
        data["difficulty"] = str(difficulty)
    page = f"/measures/{key}/new"
    response = post(client, page, data, token_from=page)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return uuid.UUID(response.headers["Location"].rsplit("/", 1)[-1])


def annotate(client, entry_id, paragraph: str, note: str, visibility: str) -> None:
    """A therapist's note on the first paragraph of an entry, through the notes form."""
    data = {
        "paragraph": "0",
        "digest": hashlib.sha256(paragraph.encode()).hexdigest()[:20],
        "note": note,
        "visibility": visibility,
    }
    page = f"/entries/{entry_id}/notes"
    response = post(client, page, data, token_from=page)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]


def add_session(client, kind: str, when: str) -> None:
    response = post(
        client, "/sessions/new", {"kind": kind, "scheduled_at": when}, token_from="/sessions/new"
    )
    assert response.status_code == 303


def download(client, password: str = PASSWORD):
    return post(client, "/account/export", {"password": password}, token_from="/account/export")


def unzip(response) -> dict[str, str]:
    assert response.mimetype == "application/zip", response.get_data(as_text=True)[:500]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def upload(client, document: dict | bytes, name="journal.json"):
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    data = {
        "csrf_token": csrf_token(client, "/account/import"),
        "journal": (io.BytesIO(raw), name),
    }
    return client.post("/account/import", data=data, content_type="multipart/form-data")


def events(app, **where) -> list[AuditEvent]:
    with app.app_context(), Session(db.engine()) as session:
        query = select(AuditEvent).order_by(col(AuditEvent.seq))
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        return list(session.exec(query))


def count(app, model, **where) -> int:
    with app.app_context(), Session(db.engine()) as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return session.exec(query).one()


def session_id_of(app, patient, kind: str):
    with app.app_context(), Session(db.engine()) as session:
        query = select(TreatmentSession.id).where(
            TreatmentSession.patient_id == patient.id, TreatmentSession.kind == kind
        )
        return session.exec(query).one()


# --- the patient's download ---------------------------------------------------------------------


def test_patient_downloads_a_zip_of_their_journal_after_their_password(app, patient, therapist):
    client = client_of(app, patient)
    write(client, "A morning by the canal.\nThe heron stood still.")
    response = download(client)
    assert response.status_code == 200
    today = datetime.now(UTC).date().isoformat()  # the clinic's zone (UTC here), no tz cookie
    assert response.headers["Content-Disposition"] == f'attachment; filename="journal-{today}.zip"'
    assert response.headers["Cache-Control"] == "no-store"
    files = unzip(response)
    assert set(files) == MEMBERS
    document = json.loads(files["journal.json"])
    assert (document["format"], document["version"]) == ("kapjournal/journal", 1)
    assert document["person"] == {"name": "Pat Quinn"}
    [entry] = document["entries"]
    assert entry["kind"] == "reflection"
    assert entry["body"]["text"] == "A morning by the canal.\nThe heron stood still."
    html = files["journal.html"]
    assert '<p class="text">A morning by the canal.\nThe heron stood still.</p>' in html
    assert "<script" not in html.lower()


def test_a_wrong_password_is_422_with_the_form_and_no_zip(app, patient):
    client = client_of(app, patient)
    write(client, "Words to keep safe.")
    response = download(client, "not my password at all")
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert "That is not your password." in response.get_data(as_text=True)
    assert "Content-Disposition" not in response.headers
    assert events(app, action="export") == []


def test_password_checks_for_the_download_are_rate_limited(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    therapist = make_user(app, role="therapist", email="t@example.org", name="Tess")
    patient = make_user(
        app, role="patient", email="p@example.org", name="Pia", invited_by=therapist
    )
    client = client_of(app, patient)
    statuses = [download(client, "wrong password, again").status_code for _ in range(4)]
    assert statuses == [422, 422, 422, 429]
    assert download(client).status_code == 429  # not even the right one, for now
    assert events(app, action="export") == []


def test_the_download_is_in_the_access_log_and_the_csv_lists_the_log(app, patient, therapist):
    client = client_of(app, patient)
    shared = write(client, "For Dr. Ward to read.", share=[therapist])
    reader = client_of(app, therapist)
    assert reader.get(f"/entries/{shared}").status_code == 200
    assert reader.get(f"/entries/{shared}").status_code == 200  # twice in one day: one event
    files = unzip(download(client))
    exports = events(app, action="export")
    assert [(e.actor_id, e.patient_id) for e in exports] == [(patient.id, patient.id)]
    # The patient's own words opened for the download are no reads.
    assert events(app, action="read", actor_id=patient.id) == []
    rows = list(csv.DictReader(io.StringIO(files["access-log.csv"])))
    assert list(rows[0]) == ["time", "who", "what", "entry", "entry_id", "times_that_day"]
    assert len(rows) == len(events(app, patient_id=patient.id))
    assert (rows[0]["who"], rows[0]["what"]) == ("You", "downloaded your journal")
    read = next(row for row in rows if row["who"] == "Dr. Tess Ward")
    assert read["what"] == "read an entry"
    assert read["entry_id"] == str(shared)
    assert read["entry"].startswith("Reflection of ")
    assert read["times_that_day"] == "2"
    assert any(row["what"] == "shared an entry with Dr. Tess Ward" for row in rows)


def test_the_csv_never_lets_a_spreadsheet_run_a_name_as_a_formula(make_app):
    app = make_app()
    therapist = make_user(app, role="therapist", email="t@example.org", name="=HYPERLINK(1)")
    patient = make_user(
        app, role="patient", email="p@example.org", name="Pia", invited_by=therapist
    )
    client = client_of(app, patient)
    entry = write(client, "Read me.", share=[therapist])
    client_of(app, therapist).get(f"/entries/{entry}")
    rows = list(csv.reader(io.StringIO(unzip(download(client))["access-log.csv"])))
    assert ["'=HYPERLINK(1)", "read an entry"] in [row[1:3] for row in rows]
    assert not any(cell.startswith("=") for row in rows for cell in row)


def test_the_export_holds_only_what_the_patient_can_read(
    app, patient, therapist, stranger_patient, other_therapist
):
    client = client_of(app, patient)
    entry = write(client, "The ride home was quiet.", share=[therapist])
    care_team = client_of(app, therapist)
    annotate(care_team, entry, "The ride home was quiet.", "SHARED-note-3c1f", "shared")
    annotate(care_team, entry, "The ride home was quiet.", "PRIVATE-note-9d2e", "private")
    write(client_of(app, stranger_patient), "STRANGER-words-5a7b")
    files = unzip(download(client))
    everything = "".join(files.values())
    assert "SHARED-note-3c1f" in files["journal.html"]
    assert "PRIVATE-note-9d2e" not in everything
    assert "STRANGER-words-5a7b" not in everything
    [exported] = json.loads(files["journal.json"])["entries"]
    [note] = exported["notes"]
    assert (note["note"], note["author"]) == ("SHARED-note-3c1f", "Dr. Tess Ward")
    assert note["quote"] == "The ride home was quiet."
    assert "visibility" not in note  # a patient's file holds only notes shared with them


def test_the_journal_holds_every_part_of_the_course(app, patient, therapist):
    client = client_of(app, patient)
    add_session(client, "ketamine", "2026-01-05T10:00")
    ketamine = session_id_of(app, patient, "ketamine")
    write(client, "Held by the music.\n\nThen quiet.", session_id=ketamine)
    fields = {"intention": "To listen.", "hopes": "Less fear.", "prompt": "What?", "answer": "Me."}
    write(client, fields, kind="intention")
    write(
        client,
        {"warning_signs": "Pacing at night.", "people": "Rafe, 555 0199"},
        kind="safety_plan",
    )
    write(client, {"helps": "Tea and quiet."}, kind="support_card")
    write(client, {"text": "", "mood": "4"}, kind="check_in")
    answer(client, "phq9", [1, 1, 0, 2, 0, 0, 1, 0, 0], difficulty=1)
    html = unzip(download(client))["journal.html"]
    for words in ("Held by the music.\n\nThen quiet.", "To listen.", "Less fear.", "Me."):
        assert f'<p class="text">{words}</p>' in html
    assert "Ketamine session · " in html
    assert "Pacing at night." in html and "Tea and quiet." in html
    assert "Mood: Good" in html
    assert '<td class="nowrap">PHQ-9</td><td>5 of 27, mild</td><td>Somewhat difficult</td>' in html
    assert html.index("Your safety plan") < html.index("Your sessions and entries")


def test_the_journal_holds_the_practices_and_days_the_session_notes_and_the_replies(
    app, patient, therapist
):
    client = client_of(app, patient)
    entry = write(client, "The walk helped.", share=[therapist])
    doctor = client_of(app, therapist)
    annotate(doctor, entry, "The walk helped.", "What made it help?", "shared")
    practice = {"what": "Ten minutes outside", "how_often": "Each morning", "why": "Light."}
    page = f"/patients/{patient.id}/session"
    assert (
        post(doctor, f"/patients/{patient.id}/practices", practice, token_from=page).status_code
        == 303
    )
    note = {"note": "We spoke about the heron.", "visibility": "shared"}
    assert (
        post(doctor, f"/patients/{patient.id}/session/notes", note, token_from=page).status_code
        == 303
    )
    with app.app_context(), Session(db.engine()) as session:
        practice_id = session.exec(select(Practice.id)).one()
        note_id = session.exec(select(Annotation.id).where(Annotation.entry_id == entry)).one()
    today = datetime.now(UTC).date().isoformat()
    ticked = {"day": today, "done": "1"}
    assert post(client, f"/practices/{practice_id}/tick", ticked).status_code == 303
    reply = {"reply": "The quiet.\nAnd the light."}
    assert post(client, f"/notes/{note_id}/reply", reply).status_code == 303
    files = unzip(download(client))
    html = files["journal.html"]
    assert "Ten minutes outside" in html and "Each morning" in html
    assert "Days you did it (1):" in html
    assert "We spoke about the heron." in html
    assert '<p class="text">The quiet.\nAnd the light.</p>' in html
    document = json.loads(files["journal.json"])
    [kept] = document["practices"]
    assert (kept["what"], kept["days_done"]) == ("Ten minutes outside", [today])
    assert [n["note"] for n in document["session_notes"]] == ["We spoke about the heron."]
    [exported] = document["entries"]
    assert exported["notes"][0]["reply"] == "The quiet.\nAnd the light."


def test_the_fhir_bundle_validates_and_uses_only_the_cited_loinc_codes(app, patient, therapist):
    client = client_of(app, patient)
    phq9 = [0, 1, 2, 3, 0, 1, 2, 3, 1]
    gad7 = [3, 2, 1, 0, 1, 2, 3]
    answer(client, "phq9", phq9, difficulty=2)
    answer(client, "gad7", gad7, difficulty=3, share=False)
    answer(client, "phq9", [0] * 9)  # no difficulty answered
    text = unzip(download(client))["questionnaires.fhir.json"]
    bundle = Bundle.model_validate(json.loads(text))
    assert bundle.type == "collection"
    responses = [e.resource for e in bundle.entry]
    assert [r.questionnaire for r in responses] == [
        f"{LOINC}/q/{PHQ9_PANEL}",
        f"{LOINC}/q/{GAD7_PANEL}",
        f"{LOINC}/q/{PHQ9_PANEL}",
    ]  # newest first
    assert all(r.status == "completed" and r.authored for r in responses)
    empty, anxious, mood = responses
    assert [i.linkId for i in mood.item] == [*PHQ9_ITEMS, PHQ9_DIFFICULTY, PHQ9_TOTAL]
    assert [i.answer[0].valueCoding.code for i in mood.item[:9]] == [FREQUENCY[a] for a in phq9]
    assert mood.item[9].answer[0].valueCoding.code == DIFFICULTY[2]
    assert mood.item[10].answer[0].valueInteger == sum(phq9)
    assert [i.linkId for i in anxious.item[:7]] == GAD7_ITEMS
    assert [i.answer[0].valueCoding.code for i in anxious.item[:7]] == [FREQUENCY[a] for a in gad7]
    assert anxious.item[7].answer[0].valueCoding.code == DIFFICULTY[3]
    assert (anxious.item[8].linkId, anxious.item[8].answer[0].valueInteger) == (GAD7_TOTAL, 12)
    assert [i.linkId for i in empty.item] == [*PHQ9_ITEMS, PHQ9_TOTAL]
    # Every LOINC code anywhere in the file is one of the published ones.
    codings = _codings(json.loads(text))
    assert codings and all(system == LOINC for system, _ in codings)
    assert {code for _, code in codings} <= CITED
    link_ids = {i.linkId for r in responses for i in r.item}
    assert link_ids - CITED == {"gad7-difficulty"}  # no published code: not passed off as one


def _codings(node) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        found = [(node["system"], node["code"])] if "code" in node and "system" in node else []
        return found + [c for value in node.values() for c in _codings(value)]
    if isinstance(node, list):
        return [c for value in node for c in _codings(value)]
    return []


def test_a_bundle_without_results_is_still_valid(app, patient):
    text = unzip(download(client_of(app, patient)))["questionnaires.fhir.json"]
    bundle = Bundle.model_validate(json.loads(text))
    assert bundle.entry is None


def test_a_journal_of_many_pages_is_exported_whole_a_page_at_a_time(app, patient, therapist):
    total = 230  # three pages of a hundred
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        author = session.get(User, patient.id)
        for n in range(total):
            journal.create(
                session=session,
                author=author,
                kind="reflection",
                body={"text": f"Entry number {n:03d}", "answers": []},
                client_id=uuid.uuid4(),
            )
        session.commit()
    client = client_of(app, patient)
    with counted_statements(app.extensions["db_engine"]) as seen:
        files = unzip(download(client))
    entries = json.loads(files["journal.json"])["entries"]
    assert len(entries) == total == len({e["id"] for e in entries})
    times = [e["created_at"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert all(f"Entry number {n:03d}" in files["journal.html"] for n in range(total))
    # Pages, not entries: a few statements per page of a hundred, none per entry.
    assert len(seen) < 80, len(seen)


# --- the ZIP never touches the disk ---------------------------------------------------------------


def _files_written_since(folder: Path, since: float):
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            if stat.st_mtime >= since and stat.st_size < 64 * 1024 * 1024 and path.is_file():
                yield path


def test_a_canary_written_through_the_forms_never_reaches_the_servers_disk(app, patient):
    since = time.time() - 1
    canary = f"CANARY-{secrets.token_hex(8)}"
    client = client_of(app, patient)
    write(client, f"{canary} on the first line\nand on the second.")
    response = download(client)
    files = unzip(response)
    assert canary in files["journal.html"]
    # An import uploads the words too: another account takes this journal in.
    other = make_user(app, role="patient", email="other@example.org", name="Otto")
    assert upload(client_of(app, other), files["journal.json"].encode()).status_code == 200
    needles = [
        canary.encode(),
        canary.encode("utf-16-le"),
        base64.b64encode(canary.encode()),
        response.data[:200],  # the ZIP itself: its first header and bytes
    ]
    found = []
    for folder in {Path(app.instance_path), Path(tempfile.gettempdir())}:
        for path in _files_written_since(folder, since):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [str(path) for needle in needles if needle in data]
    assert found == []


def test_an_uploaded_journal_is_parsed_in_memory_never_in_a_temporary_file(
    app, patient, monkeypatch
):
    import werkzeug.wrappers.request as werkzeug_request

    spooled = []
    default = werkzeug_request.default_stream_factory

    def recorded(*args, **kwargs):
        spooled.append(args)
        return default(*args, **kwargs)

    monkeypatch.setattr(werkzeug_request, "default_stream_factory", recorded)
    source = client_of(app, patient)
    write(source, "Words that must not land in /tmp.")
    document = unzip(download(source))["journal.json"]
    raw = document.encode() + b" " * 700_000  # over the 500 KB Werkzeug keeps in memory
    other = make_user(app, role="patient", email="other@example.org", name="Otto")
    response = upload(client_of(app, other), raw)
    assert response.status_code == 200
    assert "1 entry was added" in response.get_data(as_text=True)
    assert spooled == []


# --- import ---------------------------------------------------------------------------------------


@pytest.fixture
def other_server(database):
    """A second kapjournal server: a fresh database of its own (a new SQLite file, or a new
    PostgreSQL schema) and KEKs of its own."""
    overrides = {"KEKS": f"o1:{OTHER_KEK}", "RATELIMIT_KEY_PREFIX": f"kjother-{os.getpid()}"}
    if database["kind"] == "postgresql":
        schema = f"kj_other_{os.getpid()}_{secrets.token_hex(4)}"
        admin = db.make_engine(database["url"])
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = db.make_engine(database["url"], schema=schema)
        try:
            db.upgrade(engine)
            yield create_app(app_config({"url": database["url"], "engine": engine}, **overrides))
        finally:
            engine.dispose()
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    else:
        with tempfile.TemporaryDirectory(prefix="kapjournal-other-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'other.db'}"
            engine = db.make_engine(url)
            db.upgrade(engine)
            yield create_app(app_config({"url": url, "engine": engine}, **overrides))
            engine.dispose()


def _journal_written_by(app, patient, therapist) -> dict:
    """A journal of every kind, some entries written for sessions; its journal.json."""
    client = client_of(app, patient)
    add_session(client, "preparation", "2026-01-02T09:30")
    scheduled = post(
        client_of(app, therapist),
        f"/patients/{patient.id}/sessions",
        {"kind": "ketamine", "scheduled_at": "2026-01-09T10:00"},
        token_from=f"/patients/{patient.id}",
    )
    assert scheduled.status_code == 303
    preparation = session_id_of(app, patient, "preparation")
    ketamine = session_id_of(app, patient, "ketamine")
    reflection = {"text": "Line one\nline two\n\nA new paragraph.", "mood": "2"}
    reflection |= {"prompt": "What stood out most?", "answer": "The colour green."}
    write(client, reflection, share=[therapist], session_id=ketamine)
    write(
        client,
        {"intention": "To be gentle.", "worries": "Nausea."},
        kind="intention",
        session_id=preparation,
    )
    write(client, {"text": "", "mood": "5"}, kind="check_in")
    write(client, {"coping": "A walk by the canal."}, kind="safety_plan")
    write(client, {"helps": "Tea."}, kind="support_card")
    write(client, "Nothing but unicode: ☕️ Ünïcødé — 你好", kind="free")
    answer(client, "phq9", [2, 1, 1, 0, 0, 1, 0, 0, 0], difficulty=1)
    answer(client, "gad7", [1, 1, 1, 1, 0, 0, 0])
    return json.loads(unzip(download(client))["journal.json"])


def _comparable(document: dict) -> list:
    sessions = {s["id"]: s for s in document["sessions"]}
    found = []
    for entry in document["entries"]:
        linked = sessions.get(entry["session_id"]) if entry["session_id"] else None
        found.append(
            (
                entry["kind"],
                json.dumps(entry["body"], sort_keys=True),
                datetime.fromisoformat(entry["created_at"]),
                (linked["kind"], datetime.fromisoformat(linked["scheduled_at"]))
                if linked
                else None,
            )
        )
    return sorted(found, key=repr)


def test_an_exported_journal_imports_into_a_new_account_on_another_server_and_exports_the_same(
    app, patient, therapist, other_server
):
    exported = _journal_written_by(app, patient, therapist)
    assert len(exported["entries"]) == 8
    newcomer = make_user(other_server, role="patient", email="pat@elsewhere.org", name="Pat Q.")
    client = client_of(other_server, newcomer)
    response = upload(client, exported)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "8 entries were added to your journal, with 2 sessions." in page
    again = client_of(other_server, newcomer)
    reexported = json.loads(unzip(download(again))["journal.json"])
    assert _comparable(reexported) == _comparable(exported)
    assert {s["added_by"] for s in reexported["sessions"]} == {"patient"}
    assert reexported["person"] == {"name": "Pat Q."}
    # Imported entries are private: nobody but the newcomer holds a grant.
    assert "Nothing but unicode" in unzip(download(again))["journal.html"]
    # The same file again: nothing twice.
    repeated = upload(client, exported)
    assert "No new entries: everything in this file is in your journal already." in (
        repeated.get_data(as_text=True)
    )
    assert count(other_server, Entry, author_id=newcomer.id) == 8
    assert count(other_server, TreatmentSession, patient_id=newcomer.id) == 2


def test_importing_into_the_account_it_came_from_adds_nothing(app, patient, therapist):
    exported = _journal_written_by(app, patient, therapist)
    before = count(app, Entry, author_id=patient.id)
    response = upload(client_of(app, patient), exported)
    assert response.status_code == 200
    assert "No new entries" in response.get_data(as_text=True)
    assert count(app, Entry, author_id=patient.id) == before
    assert count(app, TreatmentSession, patient_id=patient.id) == 2


def test_the_same_file_imported_by_parallel_requests_creates_each_entry_once(
    app, patient, therapist, live_url
):
    exported = json.dumps(_journal_written_by(app, patient, therapist)).encode()
    newcomer = make_user(app, role="patient", email="new@example.org", name="Nia")
    clients = []
    for _ in range(4):
        web = WebClient(live_url)
        web.login(newcomer)
        clients.append((web, web.token("/account/import")))

    def send(n: int):
        web, token = clients[n]
        files = {"journal": ("journal.json", exported, "application/json")}
        return web.post("/account/import", {}, token=token, files=files)

    responses = in_parallel(4, send)
    assert all(not isinstance(r, Exception) for r in responses), responses
    assert [r.status_code for r in responses] == [200] * 4
    added = [r for r in responses if "8 entries were added" in r.text]
    assert len(added) == 1
    assert count(app, Entry, author_id=newcomer.id) == 8
    assert count(app, TreatmentSession, patient_id=newcomer.id) == 2


def _minimal(**changes) -> dict:
    entry = {
        "id": str(uuid.uuid4()),
        "kind": "reflection",
        "created_at": "2026-01-02T10:00:00+00:00",
        "updated_at": "2026-01-02T10:00:00+00:00",
        "session_id": None,
        "body": {"text": "Hello", "answers": []},
        "notes": [],
    }
    document = {"format": "kapjournal/journal", "version": 1, "sessions": [], "entries": [entry]}
    for key, value in changes.items():
        (entry if key in entry else document)[key] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            _minimal(version=2),
            "This journal.json is in format version 2; this server reads version 1.",
        ),
        (b"\x89PNG not json", "could not be read as a journal.json"),
        (_minimal(format="something/else"), "This is not a journal.json from a kapjournal"),
        (_minimal(kind="poem"), "Entry 1 in the file is of an unknown kind."),
        (_minimal(body={"text": "Hi", "script": "x"}), "Entry 1 in the file holds something"),
        (_minimal(body={"text": "x" * 70_000}), "Entry 1 in the file is longer than 64 KB"),
        (
            _minimal(kind="phq9", body={"items": [3] * 9, "difficulty": None, "score": 3}),
            "Entry 1 in the file is not a complete PHQ-9.",
        ),
        (_minimal(session_id=str(uuid.uuid4())), "belongs to a session that is not in the file"),
        (_minimal(created_at="yesterday"), "Entry 1 in the file has no valid date."),
    ],
)
def test_a_file_that_is_not_a_journal_of_this_version_is_refused_with_a_clear_message(
    app, patient, document, message
):
    response = upload(client_of(app, patient), document)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, Entry, author_id=patient.id) == 0


def test_a_file_over_the_size_limit_is_refused_with_413_and_a_clear_message(app, patient):
    from kapjournal.services import importing

    response = upload(client_of(app, patient), b" " * (importing.MAX_BYTES + 1))
    assert response.status_code == 413
    assert "This file is larger than 16 MB" in response.get_data(as_text=True)


def test_an_upload_without_a_file_is_422(app, patient):
    client = client_of(app, patient)
    data = {"csrf_token": csrf_token(client, "/account/import")}
    response = client.post("/account/import", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Choose the journal.json file" in response.get_data(as_text=True)


# --- the therapist's clinical record --------------------------------------------------------------


def _join_care_team(app, therapist, patient) -> None:
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        issued = care.create_invitation(
            session=session, inviter=session.get(User, therapist.id), kind="patient"
        )
        care.accept_patient_invitation(
            session=session, invitation=issued.invitation, patient=session.get(User, patient.id)
        )
        session.commit()


def record_of(client, patient):
    # The token from a page that reads nothing of the patient's, so every read is the record's.
    return post(client, f"/patients/{patient.id}/export", {}, token_from="/account")


def test_the_clinical_record_holds_what_was_shared_and_the_therapists_own_notes(
    app, patient, therapist, other_therapist
):
    _join_care_team(app, other_therapist, patient)
    client = client_of(app, patient)
    shared = write(client, "SHARED-entry: the ride home.", share=[therapist, other_therapist])
    write(client, "KEPT-entry: only mine.")
    write(client, "OTHER-entry: only for Dr. Lane.", share=[other_therapist])
    answer(client, "phq9", [1] * 9, share=True)
    answer(client, "gad7", [0] * 7, share=False)
    mine = client_of(app, therapist)
    annotate(mine, shared, "SHARED-entry: the ride home.", "MY-private-note", "private")
    annotate(mine, shared, "SHARED-entry: the ride home.", "MY-shared-note", "shared")
    lane = client_of(app, other_therapist)
    annotate(lane, shared, "SHARED-entry: the ride home.", "LANE-private-note", "private")
    response = record_of(mine, patient)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="clinical-record-'
    )
    files = unzip(response)
    assert set(files) == RECORD_MEMBERS
    everything = "".join(files.values())
    assert "SHARED-entry" in files["record.html"]
    for absent in ("KEPT-entry", "OTHER-entry", "LANE-private-note"):
        assert absent not in everything
    record = json.loads(files["record.json"])
    assert (record["format"], record["version"]) == ("kapjournal/clinical-record", 1)
    [entry] = record["entries"]
    assert {(n["note"], n["visibility"]) for n in entry["notes"]} == {
        ("MY-private-note", "private"),
        ("MY-shared-note", "shared"),
    }
    bundle = Bundle.model_validate(json.loads(files["questionnaires.fhir.json"]))
    assert [e.resource.questionnaire for e in bundle.entry] == [f"{LOINC}/q/{PHQ9_PANEL}"]
    assert "<script" not in files["record.html"].lower()


def test_the_clinical_record_is_an_export_and_its_entries_are_reads_once_a_day(
    app, patient, therapist
):
    client = client_of(app, patient)
    shared = write(client, "Read for the record.", share=[therapist])
    result = answer(client, "phq9", [0] * 9)
    mine = client_of(app, therapist)
    assert record_of(mine, patient).status_code == 200
    assert record_of(mine, patient).status_code == 200
    exports = events(app, action="export")
    assert [(e.actor_id, e.patient_id) for e in exports] == [(therapist.id, patient.id)] * 2
    reads = events(app, action="read", actor_id=therapist.id)
    assert sorted(e.entry_id for e in reads) == sorted([shared, result])
    with app.app_context(), Session(db.engine()) as session:
        tally = session.exec(select(ReadTally).where(ReadTally.subject_id == shared)).one()
    assert tally.count == 2
    page = client.get("/journal/log").get_data(as_text=True)
    assert page.count("made a printable copy of what you shared") == 2


# --- who may ------------------------------------------------------------------------------------


def test_every_new_route_is_404_to_whoever_may_not_and_asks_anonymous_to_log_in(
    app, patient, therapist, supporter, stranger_patient, other_therapist
):
    record = f"/patients/{patient.id}/export"
    anonymous = app.test_client()
    token = csrf_token(anonymous, "/login")
    for path in ("/account/export", "/account/import"):
        assert anonymous.get(path).status_code == 302
        assert anonymous.get(path).headers["Location"].startswith("/login")
        response = anonymous.post(path, data={"csrf_token": token, "password": PASSWORD})
        assert response.headers["Location"].startswith("/login")
    assert anonymous.post(record, data={"csrf_token": token}).status_code == 404
    for persona in (therapist, supporter, other_therapist):
        client = client_of(app, persona)
        for path in ("/account/export", "/account/import"):
            assert client.get(path).status_code == 404, (persona.role, path)
            assert post(client, path, {"password": PASSWORD}).status_code == 404
    for persona in (patient, supporter, stranger_patient, other_therapist):
        client = client_of(app, persona)
        assert post(client, record).status_code == 404, persona.email
    doctor = client_of(app, therapist)
    for someone in (stranger_patient.id, uuid.uuid4(), therapist.id):
        assert post(doctor, f"/patients/{someone}/export").status_code == 404
    assert events(app, action="export") == []


def test_the_new_forms_refuse_a_request_without_a_csrf_token(app, patient, therapist):
    client = client_of(app, patient)
    client.get("/account/export")
    assert client.post("/account/export", data={"password": PASSWORD}).status_code == 400
    data = {"journal": (io.BytesIO(json.dumps(_minimal()).encode()), "journal.json")}
    assert client.post("/account/import", data=data).status_code == 400
    doctor = client_of(app, therapist)
    assert doctor.post(f"/patients/{patient.id}/export").status_code == 400
    assert events(app, action="export") == []
    assert count(app, Entry, author_id=patient.id) == 0


def test_the_import_and_download_pages_work_for_the_patient(app, patient):
    client = client_of(app, patient)
    page = client.get("/account/export").get_data(as_text=True)
    assert 'action="/account/export"' in page and 'hx-boost="false"' in page
    form = client.get("/account/import").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in form
    assert 'name="journal" type="file"' in form
