"""A note's quoted passage is the patient's words and goes with the entry (issue "Trust at the
edges", point 15): new notes seal the quote under the entry's own data key, re-sealed with each
entry version, so after a revocation the removed therapist's private key (from their password,
through the real services) plus a dump of the database opens neither the entry nor any quote;
a therapist on the care team who was never given the entry cannot open it either. Notes from
before (quote inside the note) lose the removed reader's keys, and move their quote out when a
therapist who can read the entry opens them. The attacker's view is the raw rows."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import PASSWORD, Persona, WebClient, in_parallel
from sqlmodel import col, select
from test_workspace import annotated, client_for, database, edit, text_of, write

from kapjournal import crypto
from kapjournal.models import Annotation, Entry, Grant, ItemKey, User
from kapjournal.services import accounts, annotations, care, journal

FIRST = "The lake at dawn was silver, quiet as held breath."
SECOND = "I told my sister the truth about the winter."
TEXT = f"{FIRST}\n\n{SECOND}"


# --- helpers ---------------------------------------------------------------------------------


def private_key(app, persona: Persona) -> bytes:
    """The persona's private key, from their password, through the real services."""
    with database(app) as session:
        found = accounts.authenticate(session=session, email=persona.email, password=PASSWORD)
        return found[1]


def join_care_team(app, patient: Persona, therapist: Persona) -> None:
    with database(app) as session:
        issued = care.create_invitation(
            session=session, inviter=session.get(User, therapist.id), kind="patient"
        )
        care.accept_patient_invitation(
            session=session, invitation=issued.invitation, patient=session.get(User, patient.id)
        )
        session.commit()


def revoke(app, patient: Persona, entry_id, reader: Persona) -> None:
    key = private_key(app, patient)
    with database(app) as session:
        journal.revoke(
            session=session,
            entry=session.get(Entry, entry_id),
            author=session.get(User, patient.id),
            private_key=key,
            reader_id=reader.id,
        )
        session.commit()


def captured_entry_key(app, reader: Persona, entry_id) -> tuple[bytes, int]:
    """What a reader could keep while they had access: the entry's data key and its version."""
    key = private_key(app, reader)
    with database(app) as session:
        entry = session.get(Entry, entry_id)
        grant = journal.grant_of(session=session, entry_id=entry_id, reader_id=reader.id)
        dek = crypto.unwrap_key(grant.wrapped_key, key, journal._wrap_ad(entry, reader.id))
        return dek, entry.version


def dump(app) -> dict:
    """Every row an attacker with a copy of the database reads, detached."""
    with database(app) as session:
        return {
            "entries": list(session.exec(select(Entry))),
            "notes": list(session.exec(select(Annotation))),
            "grants": list(session.exec(select(Grant))),
            "item_keys": list(session.exec(select(ItemKey))),
        }


def keys_of(rows: dict, reader: Persona, private: bytes) -> list[bytes]:
    """Every data key the reader's private key unwraps from the dump (grants and note keys)."""
    found = []
    entries = {e.id: e for e in rows["entries"]}
    notes = {n.id: n for n in rows["notes"]}
    for grant in rows["grants"]:
        if grant.reader_id == reader.id and grant.wrapped_key:
            ad = journal._wrap_ad(entries[grant.entry_id], reader.id)
            found.append(crypto.unwrap_key(grant.wrapped_key, private, ad))
    for key in rows["item_keys"]:
        if key.reader_id == reader.id and key.subject_id in notes:
            ad = annotations._wrap_ad(notes[key.subject_id], reader.id)
            found.append(crypto.unwrap_key(key.wrapped_key, private, ad))
    return found


def opens_with(key: bytes, blob: bytes, ads: list[dict]) -> bytes | None:
    for ad in ads:
        try:
            return crypto.open_sealed(key, blob, ad)
        except crypto.CryptoError:
            continue
    return None


def quote_ads(note: Annotation, entry: Entry) -> list[dict]:
    """The quote's associated data for every version the entry ever had."""
    return [
        {
            "p": "annotation/quote",
            "annotation": str(note.id),
            "entry": str(entry.id),
            "version": version,
            "patient": str(entry.author_id),
        }
        for version in range(1, entry.version + 1)
    ]


def assert_no_text_of_the_entry_opens(rows: dict, entry_id, candidate_keys: list[bytes]) -> None:
    """Neither the entry's body nor any quote on it opens with any of the keys, under any of
    its versions' associated data; a note body that opens holds no passage."""
    entry = next(e for e in rows["entries"] if e.id == entry_id)
    body_ads = [{**journal._body_ad(entry), "version": v} for v in range(1, entry.version + 1)]
    notes = [n for n in rows["notes"] if n.entry_id == entry_id]
    assert notes
    for key in candidate_keys:
        assert opens_with(key, entry.body_blob, body_ads) is None
        for note in notes:
            opened = opens_with(key, note.body_blob, [annotations._body_ad(note)])
            if opened is not None:  # their own words, which they may keep; not the patient's
                assert FIRST not in opened.decode() and SECOND not in opened.decode()
                assert "quote" not in json.loads(opened)
    for note in notes:  # the quote is kept apart, under the entry's key
        assert note.quote_blob is not None
        for key in candidate_keys:
            assert opens_with(key, note.quote_blob, quote_ads(note, entry)) is None


@pytest.fixture
def care_team(app, patient, therapist, other_therapist):
    """`therapist` and `other_therapist` both on the patient's care team."""
    join_care_team(app, patient, other_therapist)
    return therapist, other_therapist


# --- revocation --------------------------------------------------------------------------------


def test_after_revoke_the_removed_therapists_keys_open_neither_the_entry_nor_any_quote(
    app, patient, care_team
):
    removed, remaining = care_team
    entry_id = write(app, patient, TEXT, share=[removed, remaining])
    as_removed = client_for(app, removed)
    annotated(as_removed, entry_id, 0, "Shared thought.", visibility="shared", flag=True)
    annotated(as_removed, entry_id, 1, "Private thought.", visibility="private")
    captured, _ = captured_entry_key(app, removed, entry_id)

    revoke(app, patient, entry_id, removed)

    rows = dump(app)
    stolen = private_key(app, removed)
    assert_no_text_of_the_entry_opens(rows, entry_id, [captured, *keys_of(rows, removed, stolen)])
    assert as_removed.get(f"/entries/{entry_id}/notes").status_code == 404

    # The patient changes both passages: the notes now show what they were about, from the
    # quote, for the remaining therapist and (the shared one) for the patient.
    edit(app, patient, entry_id, "Something else entirely.\n\nAnd more.")
    seen = text_of(client_for(app, remaining).get(f"/entries/{entry_id}/notes"))
    assert f"Passage changed. The note was about: {FIRST}" in seen
    assert f"The note was about: {SECOND}" in seen
    mine = text_of(client_for(app, patient).get(f"/entries/{entry_id}"))
    assert f"The note was about: {FIRST}" in mine and SECOND not in mine


def test_a_therapist_on_the_care_team_never_given_the_entry_cannot_open_the_quote(
    app, patient, care_team
):
    author, never_given = care_team
    entry_id = write(app, patient, TEXT, share=[author])
    as_author = client_for(app, author)
    annotated(as_author, entry_id, 0, "A private thought.", visibility="private")
    annotated(as_author, entry_id, 1, "A shared thought.", visibility="shared")

    rows = dump(app)
    stolen = private_key(app, never_given)
    keys = keys_of(rows, never_given, stolen)
    assert len(keys) == 2  # the care team holds both notes' keys, but no key to the entry
    assert_no_text_of_the_entry_opens(rows, entry_id, keys)
    assert client_for(app, never_given).get(f"/entries/{entry_id}/notes").status_code == 404
    # Those who can read the entry do see the notes beside their passages.
    page = as_author.get(f"/entries/{entry_id}/notes").get_data(as_text=True)
    assert "Passage changed" not in page and "A shared thought." in page


def test_the_quote_survives_edits_and_a_changed_passage_still_shows_it(app, patient, therapist):
    entry_id = write(app, patient, TEXT, share=[therapist])
    as_therapist = client_for(app, therapist)
    annotated(as_therapist, entry_id, 1, "About the sister.", visibility="shared")
    (before,) = dump(app)["notes"]

    edit(app, patient, entry_id, f"A new first line.\n\n{FIRST}\n\n{SECOND}")
    rows = dump(app)
    (note,) = rows["notes"]
    (entry,) = rows["entries"]
    assert entry.version == 2 and note.quote_blob != before.quote_blob  # re-sealed
    dek, _ = captured_entry_key(app, therapist, entry_id)
    assert journal.open_quote(entry, dek, note.id, note.quote_blob) == SECOND
    page = as_therapist.get(f"/entries/{entry_id}/notes").get_data(as_text=True)
    assert "Passage changed" not in page  # the passage moved; the note moved with it
    assert 'id="p-2"' in page and page.index("About the sister.") > page.index('id="p-2"')

    edit(app, patient, entry_id, f"A new first line.\n\n{FIRST}\n\nSomething else now.")
    seen = text_of(as_therapist.get(f"/entries/{entry_id}/notes"))
    assert f"Passage changed. The note was about: {SECOND}" in seen
    edit_page = text_of(as_therapist.get(f"/notes/{note.id}/edit"))
    assert f"About the passage: {SECOND}" in edit_page


# --- notes from before: the quote inside the note ---------------------------------------------


def old_note(app, patient: Persona, author: Persona, entry_id, index: int) -> uuid.UUID:
    """A note as written before quotes moved under the entry's key (no private key given to
    the service: the quote goes inside the note)."""
    with database(app) as session:
        entry = session.get(Entry, entry_id)
        key = private_key(app, author)
        body = journal.read(session=session, entry=entry, reader_id=author.id, private_key=key)
        paragraph = annotations.paragraphs_of(entry.kind, body)[index]
        made = annotations.create(
            session=session,
            patient=session.get(User, patient.id),
            author=session.get(User, author.id),
            note="Written before.",
            visibility="private",
            entry=entry,
            paragraph=paragraph,
        )
        session.commit()
        assert made.quote_blob is None
        return made.id


def note_keys(app, note_id) -> set:
    with database(app) as session:
        return set(session.exec(select(ItemKey.reader_id).where(ItemKey.subject_id == note_id)))


def test_on_revoke_the_removed_reader_loses_the_keys_to_old_notes_on_that_entry(
    app, patient, care_team
):
    removed, remaining = care_team
    entry_id = write(app, patient, TEXT, share=[removed, remaining])
    other_entry = write(app, patient, "Another entry.", share=[removed, remaining])
    note_id = old_note(app, patient, remaining, entry_id, 0)
    elsewhere = old_note(app, patient, remaining, other_entry, 0)
    assert note_keys(app, note_id) == {removed.id, remaining.id}

    revoke(app, patient, entry_id, removed)

    assert note_keys(app, note_id) == {remaining.id}  # it quoted the entry they lost
    assert note_keys(app, elsewhere) == {removed.id, remaining.id}


def test_an_old_note_moves_its_quote_out_when_a_therapist_who_can_read_the_entry_opens_it(
    app, patient, care_team
):
    author, colleague = care_team
    entry_id = write(app, patient, TEXT, share=[author, colleague])
    note_id = old_note(app, patient, author, entry_id, 1)

    page = client_for(app, colleague).get(f"/entries/{entry_id}/notes").get_data(as_text=True)
    assert "Written before." in page and "Passage changed" not in page

    rows = dump(app)
    (note,) = rows["notes"]
    assert note.version == 2 and note.quote_blob is not None
    for reader in (author, colleague):
        keys = keys_of(rows, reader, private_key(app, reader))
        bodies = [opens_with(k, note.body_blob, [annotations._body_ad(note)]) for k in keys]
        assert [json.loads(b) for b in bodies if b] == [{"note": "Written before."}]
    dek, _ = captured_entry_key(app, author, entry_id)
    (entry,) = rows["entries"]
    assert journal.open_quote(entry, dek, note_id, note.quote_blob) == SECOND
    with database(app) as session:  # nothing is left inside a note that quotes an entry
        assert (
            session.exec(
                select(Annotation).where(
                    col(Annotation.entry_id).is_not(None), col(Annotation.quote_blob).is_(None)
                )
            ).all()
            == []
        )


def test_many_requests_opening_an_old_note_at_once_move_its_quote_once_without_errors(
    app, live_url, patient, care_team
):
    author, colleague = care_team
    entry_id = write(app, patient, TEXT, share=[author, colleague])
    note_id = old_note(app, patient, author, entry_id, 0)
    clients = []
    for n in range(8):
        client = WebClient(live_url)
        client.login(author if n % 2 else colleague, app)
        clients.append(client)

    results = in_parallel(8, lambda i: clients[i].get(f"/entries/{entry_id}/notes"))

    assert [getattr(r, "status_code", r) for r in results] == [200] * 8
    assert all("Written before." in r.text for r in results)
    (note,) = dump(app)["notes"]
    assert note.version == 2 and note.quote_blob is not None
    dek, _ = captured_entry_key(app, colleague, entry_id)
    (entry,) = dump(app)["entries"]
    assert journal.open_quote(entry, dek, note_id, note.quote_blob) == FIRST
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0
