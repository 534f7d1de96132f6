"""The therapist's workspace, over HTTP (DESIGN §2 to §4): the caseload, the patient page and its
printable view, notes anchored to passages (shared or private, edited, resolved, deleted,
answered once), "bring to session" flags and the integration session view, practices the
patient ticks, the access log, and leaving a care team (grants gone at once, entries
re-encrypted now or on the patient's next request)."""

from __future__ import annotations

import html
import re
import secrets
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PASSWORD, Persona, client_for, csrf_token, make_user, post
from sqlmodel import Session, col, func, select
from test_journal_security import capture_every_log, hits, logged_bytes, stored_bytes

from kapjournal import crypto, db
from kapjournal.models import (
    Annotation,
    AuditEvent,
    CareTeam,
    Entry,
    EntryFlag,
    Grant,
    ItemKey,
    Practice,
    PracticeCheck,
    TreatmentSession,
    User,
    utcnow,
)
from kapjournal.services import accounts, annotations, journal

METHODS = ("GET", "POST")
PASSAGE = re.compile(
    r'name="paragraph" value="(\d+)">\s*<input type="hidden" name="digest" value="([0-9a-f]+)">'
)
TOKEN_VALUE = re.compile(r'(name="csrf_token" value=")[^"]+(")')
GUILT = ("streak", "missed", "failed", "behind", "you should", "broke", "only ")


# --- helpers ---------------------------------------------------------------------------------


@contextmanager
def database(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def text_of(response) -> str:
    """What a person reads on the page (tags dropped, entities decoded, spaces squeezed)."""
    body = response.get_data(as_text=True) if hasattr(response, "get_data") else response
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def private_key(app, persona: Persona) -> bytes:
    with database(app) as session:
        return accounts.authenticate(session=session, email=persona.email, password=PASSWORD)[1]


def write(app, patient: Persona, text: str, *, share=(), kind="reflection", session_id=None):
    """An entry written through the journal service (encrypted like any other), shared with
    `share` (personas)."""
    with database(app) as session:
        body = {"text": text, "answers": []}
        if kind == "intention":
            body = {"intention": text, "answers": []}
        entry, _ = journal.create(
            session=session,
            author=session.get(User, patient.id),
            kind=kind,
            body=body,
            client_id=uuid.uuid4(),
            session_id=session_id,
            readers=[session.get(User, p.id) for p in share],
        )
        session.commit()
        return entry.id


def edit(app, patient: Persona, entry_id, text: str) -> None:
    """The patient changes the entry (from another device)."""
    key = private_key(app, patient)
    with database(app) as session:
        entry = session.get(Entry, entry_id)
        author = session.get(User, patient.id)
        saved = journal.read(session=session, entry=entry, reader_id=patient.id, private_key=key)
        journal.update(
            session=session,
            entry=entry,
            author=author,
            private_key=key,
            body={**saved, "text": text},
            base_digest=journal.body_digest(saved),
        )
        session.commit()


def passages(page: str) -> dict[int, str]:
    """The annotate forms on a notes page: paragraph index → digest."""
    return {int(i): d for i, d in PASSAGE.findall(page)}


def annotate(client, entry_id, index: int, note: str, *, visibility="private", flag=False):
    page = client.get(f"/entries/{entry_id}/notes")
    assert page.status_code == 200, page.status_code
    digest = passages(page.get_data(as_text=True))[index]
    data = {"paragraph": str(index), "digest": digest, "note": note, "visibility": visibility}
    if flag:
        data["bring_to_session"] = "1"
    return post(client, f"/entries/{entry_id}/notes", data, token_from=f"/entries/{entry_id}/notes")


def annotated(client, entry_id, index: int, note: str, **kw):
    response = annotate(client, entry_id, index, note, **kw)
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    return response


def note_row(app, text_hint: str | None = None) -> Annotation:
    """The newest note (they are few in a test)."""
    with database(app) as session:
        return session.exec(select(Annotation).order_by(col(Annotation.created_at).desc())).first()


def paragraph_block(page: str, index: int) -> str:
    """The passage `index` on a page with its notes beside it."""
    match = re.search(
        rf'<div class="para-row" id="p-{index}">(.*?)(?=<div class="para-row"|$)', page, re.S
    )
    return match.group(1) if match else ""


def item_keys(app, subject_id) -> set:
    with database(app) as session:
        query = select(ItemKey.reader_id).where(ItemKey.subject_id == subject_id)
        return set(session.exec(query))


def record_practice(client, patient: Persona, **fields):
    path = f"/patients/{patient.id}/session"
    return post(client, f"/patients/{patient.id}/practices", fields, token_from=path)


def recorded_days_ago(app, days: int) -> Practice:
    """The patient's only practice, as if the therapist had recorded it `days` ago."""
    with database(app) as session:
        practice = session.exec(select(Practice)).one()
        practice.created_at = utcnow() - timedelta(days=days)
        session.add(practice)
        session.commit()
        return practice


def normalized(response) -> str:
    return TOKEN_VALUE.sub(r"\1\2", response.get_data(as_text=True))


# --- the caseload ------------------------------------------------------------------------------


def test_caseload_shows_next_session_what_was_shared_since_the_last_integration_session_and_flags(
    app, therapist, patient, stranger_patient
):
    quiet = make_user(
        app, role="patient", email="quiet@example.org", name="Quinn Quiet", invited_by=therapist
    )
    now = utcnow()
    with database(app) as session:
        for kind, days in (("integration", -5), ("ketamine", 2), ("integration", 9)):
            session.add(
                TreatmentSession(
                    patient_id=patient.id,
                    created_by_id=therapist.id,
                    kind=kind,
                    scheduled_at=now + timedelta(days=days),
                )
            )
        session.commit()
    before = write(app, patient, "Shared before the last session.", share=[therapist])
    older = write(app, patient, "Shared after it.", share=[therapist], kind="intention")
    newer = write(app, patient, "Shared just now.", share=[therapist])
    write(app, patient, "Kept to myself.")
    with database(app) as session:
        for entry_id, days in ((before, -8), (older, -2), (newer, 0)):
            grant = journal.grant_of(session=session, entry_id=entry_id, reader_id=therapist.id)
            grant.created_at = now + timedelta(days=days, minutes=-1)
            session.add(grant)
        session.commit()
    as_therapist = client_for(app, therapist)
    assert (
        post(
            as_therapist, f"/entries/{newer}/flag", {"flagged": "1"}, token_from="/home"
        ).status_code
        == 303
    )

    page = as_therapist.get("/home").get_data(as_text=True)
    cards = re.findall(
        r'<li class="card stack caseload-card">(.*?)</li>\s*(?=<li class="card|</ul>)', page, re.S
    )
    assert len(cards) == 2  # their own patients only: not the other therapist's
    assert stranger_patient.name not in page
    first, second = (text_of(c) for c in cards)
    assert first.startswith(patient.name)  # something new: at the top
    assert "1 flagged" in first
    assert "Next session: Ketamine session" in first
    assert "2 entries" in first
    links = re.findall(r'href="/entries/([0-9a-f-]{36})/notes"', cards[0])
    assert links == [str(newer), str(older)]  # newest first, the earlier one not counted
    assert (
        second.startswith(quiet.name)
        and "Nothing new shared with you" in second
        and "none planned" in second
    )


# --- the patient page and its printable view -----------------------------------------------------


def test_the_printable_view_shows_every_shared_entry_in_full_with_its_notes(
    app, therapist, patient, other_therapist
):
    long_text = "A long reflection. " * 40 + "\n\nThe last passage."
    reflection = write(app, patient, long_text, share=[therapist])
    write(app, patient, "An intention.", share=[therapist], kind="intention")
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, reflection, 1, "Private thought.", visibility="private")
    annotated(as_therapist, reflection, 0, "Shared thought.", visibility="shared")

    page = as_therapist.get(f"/patients/{patient.id}")
    assert "2 notes" in text_of(page)
    printable = as_therapist.get(f"/patients/{patient.id}/print?kind=reflection")
    assert printable.status_code == 200
    words = text_of(printable)
    assert long_text.split("\n\n")[0].strip() in words  # in full, not cut short
    assert "Private thought." in words and "Private: care team only" in words
    assert "Shared thought." in words
    assert "An intention." not in words  # the kind filter carries over
    assert 'name="csrf_token"' not in printable.get_data(as_text=True).split("</nav>", 1)[1]
    with database(app) as session:
        actions = session.exec(
            select(AuditEvent.action).where(AuditEvent.actor_id == therapist.id)
        ).all()
    assert "export" in actions
    assert client_for(app, other_therapist).get(f"/patients/{patient.id}/print").status_code == 404


# --- notes anchored to passages --------------------------------------------------------------


def test_a_note_stays_with_its_passage_and_says_when_the_passage_changed(app, therapist, patient):
    entry_id = write(app, patient, "First.\n\nSecond passage.\n\nThird.", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 1, "About the second.", visibility="shared")
    as_patient = client_for(app, patient)

    edit(app, patient, entry_id, "A new opening.\n\nFirst.\n\nSecond passage.\n\nThird.")
    for client, path in (
        (as_therapist, f"/entries/{entry_id}/notes"),
        (as_patient, f"/entries/{entry_id}"),
    ):
        page = client.get(path).get_data(as_text=True)
        block = paragraph_block(page, 2)
        assert "Second passage." in block and "About the second." in block, path
        assert "Passage changed" not in page

    edit(app, patient, entry_id, "A new opening.\n\nFirst.\n\nSecond passage, rewritten.\n\nThird.")
    for client, path in (
        (as_therapist, f"/entries/{entry_id}/notes"),
        (as_patient, f"/entries/{entry_id}"),
    ):
        page = client.get(path).get_data(as_text=True)
        assert "About the second." not in paragraph_block(page, 2)
        changed = page.split("Notes on passages that changed", 1)[1]
        assert "Passage changed" in changed and "About the second." in changed
        assert '<blockquote class="quote">Second passage.</blockquote>' in changed


def test_a_note_on_a_passage_changed_meanwhile_is_refused_with_the_words_kept(
    app, therapist, patient
):
    entry_id = write(app, patient, "One.\n\nTwo.", share=[therapist])
    as_therapist = client_for(app, therapist)
    page = as_therapist.get(f"/entries/{entry_id}/notes").get_data(as_text=True)
    digest = passages(page)[1]
    edit(app, patient, entry_id, "One.\n\nTwo, changed.")
    response = post(
        as_therapist,
        f"/entries/{entry_id}/notes",
        {"paragraph": "1", "digest": digest, "note": "My careful words", "visibility": "private"},
        token_from=f"/entries/{entry_id}/notes",
    )
    assert response.status_code == 422
    assert "My careful words" in response.get_data(as_text=True)
    assert "changed this passage while you wrote" in text_of(response)
    empty = annotate(as_therapist, entry_id, 0, "   ")
    assert empty.status_code == 422 and "Write the note first." in text_of(empty)
    with database(app) as session:
        assert session.exec(select(func.count()).select_from(Annotation)).one() == 0


def test_a_shared_note_shows_beside_the_patients_words_and_they_reply_once(app, therapist, patient):
    entry_id = write(app, patient, "I let go.\n\nThen I slept.", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, "Let us start here next time.", visibility="shared")
    note = note_row(app)
    as_patient = client_for(app, patient)
    assert "Note from your therapist" in text_of(as_patient.get("/journal"))
    page = as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)
    block = paragraph_block(page, 0)
    assert "I let go." in block and "Let us start here next time." in block
    assert f"Note from {therapist.name}" in text_of(block)

    empty = post(as_patient, f"/notes/{note.id}/reply", {"reply": " "}, token_from="/journal")
    assert empty.status_code == 422 and "Write your reply first." in text_of(empty)
    replied = post(
        as_patient, f"/notes/{note.id}/reply", {"reply": "Yes, please."}, token_from="/journal"
    )
    assert replied.status_code == 303
    again = post(
        as_patient, f"/notes/{note.id}/reply", {"reply": "Changed my mind"}, token_from="/journal"
    )
    assert again.status_code == 303
    page = as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)
    assert "Yes, please." in page and "Changed my mind" not in page
    assert f'action="/notes/{note.id}/reply"' not in page  # one reply each
    therapist_page = text_of(as_therapist.get(f"/entries/{entry_id}/notes"))
    assert f"Reply from {patient.name} Yes, please." in therapist_page
    with database(app) as session:
        stored = session.get(Annotation, note.id)
        assert b"Yes, please." not in stored.reply_blob


def test_private_notes_never_reach_the_patient_or_a_supporter(app, therapist, patient, supporter):
    secret = f"private-{secrets.token_hex(8)}"
    shared = f"shared-{secrets.token_hex(8)}"
    entry_id = write(app, patient, "Passage one.\n\nPassage two.", share=[therapist, supporter])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, secret, visibility="private", flag=True)
    private_note = note_row(app)
    annotated(as_therapist, entry_id, 1, shared, visibility="shared")
    shared_note = note_row(app)
    assert post(
        as_therapist, f"/patients/{patient.id}/session/notes",
        {"note": secret + " in session", "visibility": "private"},
        token_from=f"/patients/{patient.id}/session",
    ).status_code == 303  # fmt: skip

    assert item_keys(app, private_note.id) == {therapist.id}
    assert item_keys(app, shared_note.id) == {therapist.id, patient.id}
    ids = {
        "entry_id": entry_id,
        "note_id": private_note.id,
        "patient_id": patient.id,
        "therapist_id": therapist.id,
    }
    for persona in (patient, supporter):
        client = client_for(app, persona)
        seen = []
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint == "static":
                continue
            path = rule.rule
            for name, value in ids.items():
                path = path.replace(f"<uuid:{name}>", str(value))
            if "<" in path:
                continue
            for headers in ({}, {"HX-Request": "true"}):
                body = client.get(path, headers=headers).get_data(as_text=True)
                assert secret not in body, (persona.role, path, headers)
                seen.append(body)
        words = "".join(seen)
        assert (shared in words) == (persona is patient)  # the patient does see the shared one
        reply = post(
            client, f"/notes/{private_note.id}/reply", {"reply": "x"}, token_from="/account"
        )
        assert reply.status_code == 404


# --- canaries: note and practice text is never stored or logged in clear -----------------------


def test_note_reply_and_practice_text_never_reach_the_database_or_the_logs(
    app, database, caplog, therapist, patient
):
    capture_every_log(caplog)
    canary = {
        label: f"kjc{secrets.token_hex(12)}"
        for label in (
            "passage",
            "note",
            "edited note",
            "reply",
            "session note",
            "what",
            "how often",
            "why",
        )
    }
    entry_id = write(app, patient, f"Before.\n\n{canary['passage']}", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 1, canary["note"], visibility="shared", flag=True)
    note = note_row(app)
    edit_page = f"/notes/{note.id}/edit"
    changed = {"note": canary["edited note"], "visibility": "shared"}
    edited = post(as_therapist, edit_page, changed, token_from=edit_page)
    assert edited.status_code == 303
    session_page = f"/patients/{patient.id}/session"
    assert post(
        as_therapist, f"/patients/{patient.id}/session/notes",
        {"note": canary["session note"], "visibility": "shared"}, token_from=session_page,
    ).status_code == 303  # fmt: skip
    practice = record_practice(
        as_therapist, patient, what=canary["what"], how_often=canary["how often"], why=canary["why"]
    )
    assert practice.status_code == 303
    as_patient = client_for(app, patient)
    assert (
        post(
            as_patient, f"/notes/{note.id}/reply", {"reply": canary["reply"]}, token_from="/journal"
        ).status_code
        == 303
    )

    # They went in, and come out decrypted for their readers.
    seen = "".join(
        r.get_data(as_text=True)
        for r in (
            as_therapist.get(f"/entries/{entry_id}/notes"),
            as_therapist.get(session_page),
            as_patient.get("/journal"),
            as_patient.get(f"/entries/{entry_id}"),
        )
    )
    assert [label for label, value in canary.items() if value not in seen] == ["note"]  # edited
    stored, logged = stored_bytes(database), logged_bytes(caplog)
    leaks = {
        (label, where): found
        for label, value in canary.items()
        for where, haystack in (("database", stored), ("log", logged))
        if (found := hits(haystack, value))
    }
    assert leaks == {}


# --- editing, resolving, deleting, and who may --------------------------------------------------


def test_only_the_author_edits_resolves_or_deletes_a_note_and_an_edit_takes_the_patients_key(
    app, therapist, patient
):
    co = make_user(app, role="therapist", email="co@example.org", name="Dr. Co")
    with database(app) as session:
        session.add(CareTeam(therapist_id=co.id, patient_id=patient.id))
        session.commit()
    entry_id = write(app, patient, "Words.", share=[therapist, co])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, "First thought.", visibility="shared")
    note = note_row(app)
    assert item_keys(app, note.id) == {therapist.id, co.id, patient.id}  # the care team + patient

    as_co = client_for(app, co)
    assert "First thought." in as_co.get(f"/entries/{entry_id}/notes").get_data(as_text=True)
    for path in (f"/notes/{note.id}/edit", f"/notes/{note.id}/resolve", f"/notes/{note.id}/delete"):
        response = post(
            as_co,
            path,
            {"note": "hijack", "visibility": "shared", "resolved": "1"},
            token_from="/home",
        )
        assert response.status_code == 404, path
    assert as_co.get(f"/notes/{note.id}/edit").status_code == 404
    assert (
        post(as_co, f"/notes/{note.id}/flag", {"flagged": "1"}, token_from="/home").status_code
        == 303
    )

    # The patient could open version 1; the edit makes it private, under a new data key.
    with database(app) as session:
        stored = session.get(Annotation, note.id)
        wrapped = session.exec(
            select(ItemKey.wrapped_key).where(
                ItemKey.subject_id == note.id, ItemKey.reader_id == patient.id
            )
        ).one()
        captured = crypto.unwrap_key(
            wrapped, private_key(app, patient), annotations._wrap_ad(stored, patient.id)
        )
        old_blob = stored.body_blob
    changed = {"note": "Second thought.", "visibility": "private"}
    response = post(as_therapist, f"/notes/{note.id}/edit", changed, token_from="/home")
    assert response.status_code == 303
    with database(app) as session:
        stored = session.get(Annotation, note.id)
        assert stored.version == 2 and stored.body_blob != old_blob
        with pytest.raises(crypto.CryptoError):
            crypto.open_sealed(captured, stored.body_blob, annotations._body_ad(stored))
    assert item_keys(app, note.id) == {therapist.id, co.id}
    as_patient = client_for(app, patient)
    assert "thought" not in as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)

    assert (
        post(
            as_therapist,
            f"/notes/{note.id}/edit",
            {"note": "", "visibility": "private"},
            token_from="/home",
        ).status_code
        == 422
    )
    resolved = post(
        as_therapist, f"/notes/{note.id}/resolve", {"resolved": "1"}, token_from="/home"
    )
    assert resolved.status_code == 303 and note_row(app).resolved_at is not None
    assert "Resolved" in text_of(as_therapist.get(f"/entries/{entry_id}/notes"))
    deleted = post(as_therapist, f"/notes/{note.id}/delete", token_from="/home")
    assert deleted.status_code == 303
    assert note_row(app) is None and item_keys(app, note.id) == set()


# --- nobody else sees anything -----------------------------------------------------------------


WORKSPACE_URLS = [
    ("GET", "/patients/{patient}/print"),
    ("GET", "/patients/{patient}/intentions"),
    ("GET", "/entries/{entry}/notes"),
    ("POST", "/entries/{entry}/notes"),
    ("POST", "/entries/{entry}/flag"),
    ("GET", "/notes/{note}/edit"),
    ("POST", "/notes/{note}/edit"),
    ("POST", "/notes/{note}/resolve"),
    ("POST", "/notes/{note}/flag"),
    ("POST", "/notes/{note}/delete"),
    ("POST", "/notes/{note}/reply"),
    ("GET", "/patients/{patient}/session"),
    ("POST", "/patients/{patient}/session/discussed"),
    ("POST", "/patients/{patient}/session/notes"),
    ("POST", "/patients/{patient}/session/done"),
    ("POST", "/patients/{patient}/practices"),
    ("POST", "/practices/{practice}/end"),
    ("POST", "/practices/{practice}/tick"),
    ("GET", "/patients/{patient}/leave"),
    ("POST", "/patients/{patient}/leave"),
    ("GET", "/care-team/{therapist}/remove"),
    ("POST", "/care-team/{therapist}/remove"),
]


def workspace_state(app) -> tuple:
    with database(app) as session:
        return tuple(
            sorted(str(row) for row in session.exec(select(model)))
            for model in (Annotation, EntryFlag, Practice, PracticeCheck, Grant, CareTeam, ItemKey)
        )


@pytest.mark.parametrize("who", ["other_therapist", "stranger_patient", "supporter", "anonymous"])
def test_a_second_therapist_and_everyone_else_get_404_for_every_workspace_url(
    app, request, therapist, patient, who
):
    entry_id = write(app, patient, "Shared words.\n\nMore.", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, "A shared note.", visibility="shared", flag=True)
    note = note_row(app)
    assert record_practice(as_therapist, patient, what="Walk").status_code == 303
    with database(app) as session:
        practice = session.exec(select(Practice)).one()
    real = {
        "patient": patient.id,
        "entry": entry_id,
        "note": note.id,
        "practice": practice.id,
        "therapist": therapist.id,
    }
    persona = None if who == "anonymous" else request.getfixturevalue(who)
    client = client_for(app, persona)
    before = workspace_state(app)
    token = csrf_token(client, "/account" if persona else "/login")
    data = {
        "csrf_token": token, "note": "x", "visibility": "shared", "what": "x", "flagged": "1",
        "discussed": "1", "kind": "entry", "id": str(entry_id), "reply": "x", "done": "1",
        "paragraph": "0", "digest": "", "resolved": "1",
    }  # fmt: skip
    wrong = []
    for method, template in WORKSPACE_URLS:
        path = template.format(**real)
        missing = template.format(**{k: uuid.uuid4() for k in real})
        response = client.open(path, method=method, data=data if method == "POST" else None)
        if response.status_code != 404:
            wrong.append((method, template, response.status_code))
            continue
        other = client.open(missing, method=method, data=data if method == "POST" else None)
        if normalized(other) != normalized(response):
            wrong.append((method, template, "differs from a missing object"))
        body = response.get_data(as_text=True)
        assert "Shared words." not in body and "A shared note." not in body
    assert wrong == []
    assert workspace_state(app) == before


def test_a_therapist_may_not_annotate_what_was_not_shared_with_them(app, therapist, patient):
    private = write(app, patient, "Only mine.")
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/entries/{private}/notes").status_code == 404
    response = post(
        as_therapist, f"/entries/{private}/notes",
        {"paragraph": "0", "digest": "", "note": "x", "visibility": "private"}, token_from="/home",
    )  # fmt: skip
    assert response.status_code == 404


# --- flags and the integration session view ------------------------------------------------------


def test_the_session_view_gathers_what_was_flagged_and_marks_it_talked_through(
    app, therapist, patient
):
    first = write(app, patient, "The kitchen.\n\nLetting go.", share=[therapist])
    second = write(app, patient, "The river.", share=[therapist])
    as_therapist = client_for(app, therapist)
    assert (
        post(
            as_therapist, f"/entries/{first}/flag", {"flagged": "1"}, token_from="/home"
        ).status_code
        == 303
    )
    annotated(as_therapist, first, 1, "Ask about letting go.", visibility="private", flag=True)
    annotated(as_therapist, second, 0, "The river again.", visibility="shared", flag=True)
    annotated(as_therapist, second, 0, "Not for the session.", visibility="private")
    view = f"/patients/{patient.id}/session"

    page = as_therapist.get(view)
    assert page.status_code == 200
    items = re.findall(
        r'<li class="card stack agenda-item[^"]*" id="item-([0-9a-f-]{36})">',
        page.get_data(as_text=True),
    )
    river = note_row(app)
    with database(app) as session:
        river = session.exec(
            select(Annotation).where(
                Annotation.entry_id == second, col(Annotation.bring_to_session)
            )
        ).one()
    assert items == [str(first), str(river.id)]  # the note on the flagged entry sits inside it
    words = text_of(page)
    assert "0 of 2 talked through." in words
    assert (
        "The kitchen." in words and "Ask about letting go." in words and "The river again." in words
    )
    assert "Not for the session." not in words

    one = text_of(as_therapist.get(f"{view}?view=one&item=2"))
    assert "Item 2 of 2" in one and "The river again." in one and "The kitchen." not in one

    done = post(
        as_therapist,
        f"{view}/discussed",
        {"kind": "entry", "id": str(first), "discussed": "1"},
        token_from=view,
    )
    assert done.status_code == 303
    with database(app) as session:
        assert session.exec(select(EntryFlag)).one().discussed_at is not None
        notes = session.exec(select(Annotation).where(Annotation.entry_id == first)).all()
        assert all(n.discussed_at is not None for n in notes)  # its flagged note went with it
    words = text_of(as_therapist.get(view))
    assert "1 of 2 talked through." in words and "Talked through" in words  # still there today
    assert "1 flagged" in text_of(as_therapist.get("/home"))

    # Another day: what was talked through has left the agenda.
    with database(app) as session:
        for row in [*session.exec(select(EntryFlag)), *session.exec(select(Annotation))]:
            if row.discussed_at is not None:
                row.discussed_at = utcnow() - timedelta(days=2)
                session.add(row)
        session.commit()
    words = text_of(as_therapist.get(view))
    assert "0 of 1 talked through." in words and "The kitchen." not in words


def test_notes_taken_in_the_session_and_shared_ones_reach_the_patients_home(
    app, therapist, patient
):
    as_therapist = client_for(app, therapist)
    view = f"/patients/{patient.id}/session"
    for text, visibility in (("For you to keep.", "shared"), ("For the team.", "private")):
        response = post(
            as_therapist, f"{view}/notes", {"note": text, "visibility": visibility}, token_from=view
        )
        assert response.status_code == 303
    empty = post(
        as_therapist, f"{view}/notes", {"note": "", "visibility": "shared"}, token_from=view
    )
    assert empty.status_code == 422
    words = text_of(as_therapist.get(view))
    assert "For you to keep." in words and "For the team." in words
    home = text_of(client_for(app, patient).get("/journal"))
    assert "Notes from your sessions" in home and "For you to keep." in home
    assert "For the team." not in home


def test_the_session_view_runs_todays_integration_session_and_can_mark_it_done(
    app, therapist, patient
):
    with database(app) as session:
        today = TreatmentSession(
            patient_id=patient.id,
            created_by_id=therapist.id,
            kind="integration",
            scheduled_at=utcnow() + timedelta(hours=2),
        )
        session.add(today)
        session.commit()
    as_therapist = client_for(app, therapist)
    view = f"/patients/{patient.id}/session"
    assert "Mark this session as done" in text_of(as_therapist.get(view))
    post(
        as_therapist,
        f"{view}/notes",
        {"note": "In session.", "visibility": "private"},
        token_from=view,
    )
    record_practice(as_therapist, patient, what="Breathe")
    with database(app) as session:
        assert session.exec(select(Annotation.session_id)).one() == today.id
        assert session.exec(select(Practice.session_id)).one() == today.id
    done = post(as_therapist, f"{view}/done", token_from=view)
    assert done.status_code == 303
    with database(app) as session:
        assert session.get(TreatmentSession, today.id).status == "done"
    assert "Mark this session as done" not in text_of(as_therapist.get(view))


# --- practices -------------------------------------------------------------------------------


def test_a_practice_reaches_the_patients_home_they_tick_days_and_the_therapist_sees_how_it_went(
    app, therapist, patient, stranger_patient
):
    as_therapist = client_for(app, therapist)
    refused = record_practice(as_therapist, patient, what="", how_often="Daily", why="For calm")
    assert refused.status_code == 422
    kept = refused.get_data(as_text=True)
    assert 'value="Daily"' in kept and "For calm</textarea>" in kept
    assert "Write what the practice is." in text_of(refused)
    made = record_practice(
        as_therapist, patient, what="Ten minutes outside", how_often="Most mornings",
        why="Room for curiosity",
    )  # fmt: skip
    assert made.status_code == 303
    practice = recorded_days_ago(app, 3)

    as_patient = client_for(app, patient)
    home = as_patient.get("/journal").get_data(as_text=True)
    section = re.search(r'<section[^>]*id="practices">(.*?)</section>', home, re.S).group(1)
    words = text_of(section).lower()
    assert "ten minutes outside" in words and "most mornings" in words
    assert not [word for word in GUILT if word in words]
    today = datetime.now(UTC).date()
    tick = f"/practices/{practice.id}/tick"
    for day in (today, today - timedelta(days=1), today - timedelta(days=30)):
        response = post(
            as_patient, tick, {"day": day.isoformat(), "done": "1"}, token_from="/journal"
        )
        assert response.status_code == 303
    assert "Done today" in text_of(as_patient.get("/journal"))
    post(as_patient, tick, {"day": today.isoformat(), "done": "0"}, token_from="/journal")
    post(as_patient, tick, {"day": today.isoformat(), "done": "1"}, token_from="/journal")
    with database(app) as session:
        days = sorted(session.exec(select(PracticeCheck.day)))
    assert days == [today - timedelta(days=1), today]  # not a month ago: a week back at most

    stranger = client_for(app, stranger_patient)
    assert (
        post(
            stranger, tick, {"day": today.isoformat(), "done": "1"}, token_from="/journal"
        ).status_code
        == 404
    )
    page = text_of(as_therapist.get(f"/patients/{patient.id}"))
    assert "done on 2 days" in page
    assert "2 days ticked since the last session" in text_of(as_therapist.get("/home"))

    ended = post(
        as_therapist, f"/practices/{practice.id}/end", token_from=f"/patients/{patient.id}"
    )
    assert ended.status_code == 303
    assert "Ten minutes outside" not in text_of(as_patient.get("/journal"))


def test_a_practice_cannot_be_ticked_for_a_day_before_it_was_recorded(app, therapist, patient):
    as_therapist = client_for(app, therapist)
    record_practice(as_therapist, patient, what="Breathe slowly")
    practice = recorded_days_ago(app, 2)
    as_patient = client_for(app, patient)
    home = as_patient.get("/journal").get_data(as_text=True)
    today = datetime.now(UTC).date()
    offered = re.findall(r'<option value="(\d{4}-\d\d-\d\d)"', home)
    assert offered == [(today - timedelta(days=n)).isoformat() for n in (1, 2)]
    tick = f"/practices/{practice.id}/tick"
    for n in (1, 3):
        day = (today - timedelta(days=n)).isoformat()
        post(as_patient, tick, {"day": day, "done": "1"}, token_from="/journal")
    with database(app) as session:
        assert list(session.exec(select(PracticeCheck.day))) == [today - timedelta(days=1)]
    assert "done on 1 day since" in text_of(as_therapist.get(f"/patients/{patient.id}"))

    # Recorded today: only today, and no "another day" to choose.
    record_practice(as_therapist, patient, what="Stretch")
    home = as_patient.get("/journal").get_data(as_text=True)
    assert home.count("Another day") == 1


# --- the access log --------------------------------------------------------------------------


def test_everything_a_therapist_reads_or_writes_is_in_the_patients_access_log(
    app, therapist, patient
):
    entry_id = write(app, patient, "Words.", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, "A note.", visibility="private")
    note = note_row(app)
    post(as_therapist, f"/notes/{note.id}/flag", {"flagged": "1"}, token_from="/home")
    post(as_therapist, f"/entries/{entry_id}/flag", {"flagged": "1"}, token_from="/home")
    view = f"/patients/{patient.id}/session"
    as_therapist.get(view)
    post(
        as_therapist,
        f"{view}/discussed",
        {"kind": "entry", "id": str(entry_id), "discussed": "1"},
        token_from=view,
    )
    record_practice(as_therapist, patient, what="Breathe")
    as_therapist.get(f"/patients/{patient.id}")
    as_therapist.get(f"/patients/{patient.id}/print")
    with database(app) as session:
        actions = set(
            session.exec(
                select(AuditEvent.action).where(
                    AuditEvent.actor_id == therapist.id, AuditEvent.patient_id == patient.id
                )
            )
        )
    # A private note is named as one (the patient cannot open it).
    expected = {"read", "annotate_private", "flag", "discuss", "practice", "read_notes", "export"}
    assert expected <= actions
    log = text_of(client_for(app, patient).get("/journal/log"))
    for phrase in (
        "wrote a private note for the care team on an entry",
        "chose to talk about an entry",
        "talked through an entry",
        "wrote down a practice with you",
        "opened the notes and practices about you",
        "made a printable copy of what you shared",
    ):
        assert f"{therapist.name} {phrase}" in log, phrase
    assert "A note." not in log


# --- leaving a care team -----------------------------------------------------------------------


def _captured_key(app, therapist: Persona, entry_id) -> tuple[bytes, int]:
    with database(app) as session:
        entry = session.get(Entry, entry_id)
        grant = journal.grant_of(session=session, entry_id=entry_id, reader_id=therapist.id)
        key = crypto.unwrap_key(
            grant.wrapped_key, private_key(app, therapist), journal._wrap_ad(entry, therapist.id)
        )
        return key, entry.version


def _locked_out(app, therapist: Persona, patient: Persona, entry_id, note_id) -> None:
    client = client_for(app, therapist)
    for path in (
        f"/patients/{patient.id}",
        f"/entries/{entry_id}",
        f"/entries/{entry_id}/notes",
        f"/patients/{patient.id}/session",
    ):
        assert client.get(path).status_code == 404, path
    assert patient.name not in client.get("/home").get_data(as_text=True)
    with database(app) as session:
        assert journal.grant_of(session=session, entry_id=entry_id, reader_id=therapist.id) is None
        assert not session.exec(select(ItemKey).where(ItemKey.reader_id == therapist.id)).all()
        assert not session.exec(select(EntryFlag)).all()


def _setup_care(app, therapist, patient):
    entry_id = write(app, patient, "Shared with my therapist.", share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 0, "A note.", visibility="shared", flag=True)
    post(as_therapist, f"/entries/{entry_id}/flag", {"flagged": "1"}, token_from="/home")
    record_practice(as_therapist, patient, what="Walk")
    return entry_id, note_row(app).id


def test_a_patient_removing_their_therapist_ends_access_and_reencrypts_at_once(
    app, therapist, patient
):
    entry_id, note_id = _setup_care(app, therapist, patient)
    captured, version = _captured_key(app, therapist, entry_id)
    as_patient = client_for(app, patient)
    path = f"/care-team/{therapist.id}/remove"
    assert f"Remove {therapist.name}" in text_of(as_patient.get(path))
    assert post(as_patient, path, token_from=path).status_code == 303

    _locked_out(app, therapist, patient, entry_id, note_id)
    with database(app) as session:
        entry = session.get(Entry, entry_id)
        assert entry.version == version + 1 and not entry.needs_rotation  # in the same request
        with pytest.raises(crypto.CryptoError):
            crypto.open_sealed(captured, entry.body_blob, journal._body_ad(entry))
        assert not session.exec(select(CareTeam)).all()
    page = as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)
    assert "Shared with my therapist." in page and "A note." in page  # the patient keeps both
    assert "Walk" in text_of(as_patient.get("/journal"))
    assert re.search(
        r"You\s+stopped sharing\s+<a[^>]*>an entry</a>\s+with Dr\. Tess Ward",
        as_patient.get("/journal/log").get_data(as_text=True),
    )


def test_a_therapist_leaving_ends_access_at_once_and_the_patients_next_request_reencrypts(
    app, therapist, patient
):
    entry_id, note_id = _setup_care(app, therapist, patient)
    captured, version = _captured_key(app, therapist, entry_id)
    as_therapist = client_for(app, therapist)
    path = f"/patients/{patient.id}/leave"
    assert "Remove Pat Quinn from your caseload?" in text_of(as_therapist.get(path))
    assert post(as_therapist, path, token_from=path).status_code == 303

    _locked_out(app, therapist, patient, entry_id, note_id)
    with database(app) as session:
        entry = session.get(Entry, entry_id)
        assert entry.needs_rotation and entry.version == version  # the patient's key is needed
    client_for(app, patient).get("/journal")
    with database(app) as session:
        entry = session.get(Entry, entry_id)
        assert not entry.needs_rotation and entry.version == version + 1
        with pytest.raises(crypto.CryptoError):
            crypto.open_sealed(captured, entry.body_blob, journal._body_ad(entry))
    log = text_of(client_for(app, patient).get("/journal/log"))
    assert f"{therapist.name} gave up access to an entry" in log


def test_removing_a_therapist_who_is_not_on_the_care_team_is_404(app, patient, other_therapist):
    as_patient = client_for(app, patient)
    path = f"/care-team/{other_therapist.id}/remove"
    assert as_patient.get(path).status_code == 404
    assert post(as_patient, path, token_from="/journal").status_code == 404


def test_the_quoted_passage_is_inside_the_encrypted_note(app, therapist, patient):
    entry_id = write(app, patient, "Only here.", share=[therapist])
    annotated(client_for(app, therapist), entry_id, 0, "Note.")
    with database(app) as session:
        note = session.exec(select(Annotation)).one()
        opened = annotations.open_one(
            session=session, note=note, reader_id=therapist.id,
            private_key=private_key(app, therapist),
        )  # fmt: skip
    assert opened.quote == "Only here." and note.paragraph_index == 0
    assert b"Only here." not in note.body_blob


# --- the demo clinic -----------------------------------------------------------------------------


def test_the_demo_therapist_logs_in_with_two_steps_and_finds_notes_an_agenda_and_a_practice(app):
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    role, email, password, key = next(parts for parts in lines if parts[0] == "therapist")
    therapist = Persona(role, email, password, None, "", "", key.removeprefix("totp:"))
    sam = next(parts for parts in lines if parts[1].startswith("patient@"))
    as_therapist = client_for(app, therapist)  # the printed key answers the code step
    home = as_therapist.get("/home").get_data(as_text=True)
    patient_id = re.search(r'href="/patients/([0-9a-f-]{36})"', home).group(1)
    assert "1 flagged" in text_of(home)
    agenda = text_of(as_therapist.get(f"/patients/{patient_id}/session"))
    assert "grandmother's kitchen" in agenda and "letting go" in agenda
    assert "Ten minutes outside each morning" in agenda and "done on 2 days" in agenda

    as_sam = client_for(app, Persona("patient", sam[1], sam[2], None, "", ""))
    journal_page = text_of(as_sam.get("/journal"))
    assert "Ten minutes outside each morning" in journal_page
    assert "Note from your therapist" in journal_page
    with database(app) as session:
        notes = session.exec(select(Annotation)).all()
    assert sorted(n.visibility for n in notes) == ["private", "shared"]


def test_deleting_an_entry_deletes_the_notes_on_it_and_their_keys(app, therapist, patient):
    entry_id = write(app, patient, "Soon gone.", share=[therapist])
    annotated(client_for(app, therapist), entry_id, 0, "A note.", visibility="shared")
    note = note_row(app)
    as_patient = client_for(app, patient)
    path = f"/entries/{entry_id}/delete"
    assert post(as_patient, path, token_from=path).status_code == 303
    assert note_row(app) is None and item_keys(app, note.id) == set()
