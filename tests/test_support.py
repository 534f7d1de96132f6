"""Support members (issue #5, DESIGN §2 to §4): a patient invites the people around them with a
single-use link, writes a support card, shares chosen entries, and revokes one entry or the
whole person; a supporter registers (or accepts with the account they have), reads exactly what
was granted, read-only, and may leave. Entries chosen before the invitee had a key wait as
pending grants, wrapped on the patient's next request (flow 10)."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import uuid
from datetime import timedelta
from urllib.parse import unquote, urlparse
from zoneinfo import ZoneInfo

import pytest
from conftest import PASSWORD, Persona, csrf_token, make_user, post
from sqlmodel import func, select
from test_journal import form_on, forms, press, submit, text_of, visible
from test_journal_security import (
    capture_every_log,
    client_for,
    database_session,
    grant_of,
    hits,
    journal_state,
    logged_bytes,
    normalized,
    private_key_of,
    stored_bytes,
    write_entry,
)

from kapjournal import crypto
from kapjournal.models import (
    AuditEvent,
    Entry,
    Grant,
    Invitation,
    PendingShare,
    SupportLink,
    User,
    utcnow,
)
from kapjournal.services import accounts, audit, course, journal, support

LINK = re.compile(r'value="(http://localhost/invite/support/([A-Za-z0-9_-]+))"')
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
CARD = {
    "helps": "Sit with me, make tea.",
    "unhelpful": "Lots of questions straight away.",
    "after_session": "Jordan drives me home and stays until bedtime.",
    "who_to_call": "My sister Kim, 555 0100.",
    "crisis": "My clinic's number is on the fridge.",
}


# --- helpers: the patient's and the supporter's steps, through the real pages -------------------


def write_card(client, **fields) -> uuid.UUID:
    return write_entry(client, "support_card", **(fields or CARD))


def invite(client, name: str = "Sue", entries=(), **fields) -> tuple[str, str]:
    """Fill in the invitation form on "My supporters"; the page and the link's token."""
    form = form_on(client.get("/supporters"), "/supporters/invite")
    response = submit(client, form, name=name, entry_id=[str(e) for e in entries], **fields)
    assert response.status_code == 201, response.get_data(as_text=True)[:800]
    page = response.get_data(as_text=True)
    match = LINK.search(page)
    assert match, "no invitation link on the page"
    return page, match.group(2)


def register_from(app, token: str, *, email: str, name: str):
    """Open the link anonymously, create the account, confirm the recovery code."""
    client = app.test_client()
    page = client.get(f"/invite/support/{token}")
    assert page.status_code == 200
    form = form_on(page, f"/invite/support/{token}")
    shown = submit(client, form, name=name, email=email, password=PASSWORD, password2=PASSWORD)
    assert shown.status_code == 200, shown.get_data(as_text=True)[:800]
    assert "Save your recovery code" in text_of(shown)
    done = submit(client, form_on(shown, "/recovery-code/confirm"), saved="yes")
    assert done.status_code == 303
    return client


def user_id(app, email: str):
    with database_session(app) as session:
        return accounts.find_by_email(session=session, email=email).id


def share_in_bulk(client, supporter_id, entries):
    page = client.get(f"/supporters/{supporter_id}")
    form = form_on(page, f"/supporters/{supporter_id}/share")
    response = submit(client, form, entry_id=[str(e) for e in entries])
    assert response.status_code == 303, response.get_data(as_text=True)[:800]


def remove(client, supporter: Persona):
    page = f"/supporters/{supporter.id}"
    return press(client, page, f"Remove {supporter.name}")


def captured_key(app, entry_id, reader: Persona) -> tuple[bytes, bytes, dict]:
    """What a supporter turned hostile could have kept: the data key, and the blob it opens."""
    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        key = crypto.unwrap_key(
            grant_of(session, entry_id, reader.id).wrapped_key,
            private_key_of(session, reader),
            journal._wrap_ad(entry, reader.id),
        )
        return key, entry.body_blob, journal._body_ad(entry)


def assert_key_opens_nothing_now(app, entry_id, key: bytes, old_ad: dict) -> None:
    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        for ad in (journal._body_ad(entry), old_ad):
            with pytest.raises(crypto.CryptoError):
                crypto.open_sealed(key, entry.body_blob, ad)


def events(app, action: str) -> list[AuditEvent]:
    with database_session(app) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def as_patient(app, patient):
    return client_for(app, patient)


# --- 1. inviting ---------------------------------------------------------------------------------


def test_the_invitation_link_is_single_use_expiring_and_stored_only_as_a_hash(
    app, database, as_patient, patient
):
    card = write_card(as_patient)
    page, token = invite(as_patient, "Sam Helper", entries=[card])
    assert "It works once and expires on" in page
    with database_session(app) as session:
        invitation = session.exec(select(Invitation).where(Invitation.kind == "support")).one()
        assert invitation.kind == "support" and invitation.inviter_id == patient.id
        assert invitation.token_hash == crypto.token_hash(token)
        lifetime = invitation.expires_at - invitation.created_at
        assert round(lifetime.total_seconds() / 86400) == app.config["INVITATION_DAYS"] == 7
        chosen = session.exec(select(PendingShare.entry_id)).all()
        assert chosen == [card]
    stored = stored_bytes(database)
    assert hits(stored, token) == [] and hits(stored, "Sam Helper") == []
    digest = crypto.token_hash(token)  # positive control: the hash is there, raw or as hex
    assert digest in stored or digest.hex().encode() in stored


def test_the_link_page_offers_copy_web_share_and_a_qr_code(as_patient, patient):
    page, token = invite(as_patient, "Sam")
    assert "Invitation ready for Sam" in page
    assert re.search(r"<button[^>]*data-copy-target=\"#invite-link\"[^>]*>\s*Copy", page)
    share = re.search(r"<button[^>]*data-share-url=\"([^\"]+)\"[^>]*hidden", page)
    assert share and share.group(1).endswith(f"/invite/support/{token}")
    qr = re.search(r'<img class="qr" src="(data:image/svg\+xml[^"]*)"', page)
    assert qr and "<svg" in unquote(qr.group(1))


def test_an_invitation_without_a_name_is_refused_and_keeps_the_ticks(app, as_patient):
    card = write_card(as_patient)
    other = write_entry(as_patient, text="For later.")
    form = form_on(as_patient.get("/supporters"), "/supporters/invite")
    assert form.values("entry_id") == [str(card)]  # the card is offered, ticked
    response = submit(as_patient, form, name="  ", entry_id=[str(other)])
    assert response.status_code == 422
    again = form_on(response, "/supporters/invite")
    assert again.values("entry_id") == [str(other)]
    assert re.search(r'aria-describedby="[^"]*f-name-error"', response.get_data(as_text=True))
    with database_session(app) as session:
        assert (
            session.exec(
                select(func.count()).select_from(Invitation).where(Invitation.kind == "support")
            ).one()
            == 0
        )


def test_another_patients_entry_cannot_be_chosen_for_an_invitation(
    app, as_patient, stranger_patient
):
    theirs = write_entry(client_for(app, stranger_patient), text="Not yours.")
    form = form_on(as_patient.get("/supporters"), "/supporters/invite")
    assert submit(as_patient, form, name="Sam", entry_id=[str(theirs)]).status_code == 404
    with database_session(app) as session:
        assert (
            session.exec(
                select(func.count()).select_from(Invitation).where(Invitation.kind == "support")
            ).one()
            == 0
        )


def test_the_link_is_emailed_when_smtp_is_configured(mail_app):
    app, handler = mail_app, mail_app.mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    patient = make_user(
        app, role="patient", email="p@example.org", name="Pat", invited_by=therapist
    )
    client = client_for(app, patient)
    page, token = invite(client, "Kim", email="kim@example.net")
    assert "The link was emailed." in page
    assert handler.arrived.wait(5)
    [(recipients, message)] = handler.messages
    assert recipients == ["kim@example.net"]
    assert f"/invite/support/{token}" in message.get_content()
    assert "Pat invites you to support them" in message["subject"]
    with database_session(app) as session:
        rows = session.exec(select(Invitation).where(Invitation.kind == "support")).all()
        assert all(b"kim@example.net" not in (r.label_enc or b"") for r in rows)


def test_a_pending_invitation_can_be_cancelled(app, as_patient):
    card = write_card(as_patient)
    _, token = invite(as_patient, "Sam", entries=[card])
    response = press(as_patient, "/supporters", "Cancel invitation for Sam")
    assert response.status_code == 303
    assert "Sam" not in text_of(as_patient.get("/supporters")).split("Invite someone")[0]
    gone = app.test_client().get(f"/invite/support/{token}")
    assert gone.status_code == 404 and "does not work" in text_of(gone)
    with database_session(app) as session:
        assert session.exec(select(Invitation).where(Invitation.kind == "support")).all() == []
        assert session.exec(select(PendingShare)).all() == []


def test_reissuing_gives_a_new_link_and_expiry_on_the_same_invitation(app, as_patient):
    card = write_card(as_patient)
    _, old_token = invite(as_patient, "Sam", entries=[card])
    with database_session(app) as session:  # a week passes: the link expired
        invitation = session.exec(select(Invitation).where(Invitation.kind == "support")).one()
        invitation.expires_at = utcnow() - timedelta(hours=1)
        session.add(invitation)
        session.commit()
        first_id = invitation.id
    expired = app.test_client().get(f"/invite/support/{old_token}")
    assert expired.status_code == 410 and "has expired" in text_of(expired)
    assert "expired" in text_of(as_patient.get("/supporters"))

    response = press(as_patient, "/supporters", "New link for Sam")
    assert response.status_code == 201
    new_token = LINK.search(response.get_data(as_text=True)).group(2)
    assert new_token != old_token
    with database_session(app) as session:
        invitation = session.exec(select(Invitation).where(Invitation.kind == "support")).one()
        assert invitation.id == first_id
        assert invitation.expires_at > utcnow() + timedelta(days=6)
        assert session.exec(select(PendingShare.entry_id)).all() == [card]
    assert app.test_client().get(f"/invite/support/{old_token}").status_code == 404
    assert app.test_client().get(f"/invite/support/{new_token}").status_code == 200


def test_others_cannot_cancel_or_reissue_a_patients_invitation(
    app, as_patient, stranger_patient, therapist, supporter
):
    invite(as_patient, "Sam")
    with database_session(app) as session:
        invitation_id = session.exec(
            select(Invitation.id).where(Invitation.kind == "support", Invitation.used_at.is_(None))
        ).one()
    for persona in (stranger_patient, therapist, supporter):
        client = client_for(app, persona)
        for action in ("cancel", "reissue"):
            path = f"/supporters/invitations/{invitation_id}/{action}"
            assert post(client, path, token_from="/account").status_code == 404
    with database_session(app) as session:
        invitation = session.get(Invitation, invitation_id)
        assert invitation is not None and invitation.used_at is None


# --- 2. the link: register, or accept with the account one has ----------------------------------


def test_a_forged_used_or_expired_link_gets_a_clear_page_that_names_no_one(
    app, as_patient, patient
):
    _, token = invite(as_patient, "Sam Label")
    forged = app.test_client()
    for path in (f"/invite/support/{secrets.token_urlsafe(32)}", "/invite/support/x"):
        for method in ("GET", "POST"):
            page = forged.open(path, method=method, data={"csrf_token": csrf_token(forged)})
            assert page.status_code == 404
            assert "does not work" in text_of(page)
            assert patient.name not in text_of(page) and "Sam Label" not in text_of(page)
    register_from(app, token, email="sam@example.org", name="Sam")
    replay = app.test_client()
    for method in ("GET", "POST"):
        data = {
            "csrf_token": csrf_token(replay),
            "name": "Mallory",
            "email": "mallory@example.org",
            "password": PASSWORD,
            "password2": PASSWORD,
        }
        page = replay.open(f"/invite/support/{token}", method=method, data=data)
        assert page.status_code == 410
        assert "has been used" in text_of(page)
        assert patient.name not in text_of(page)
    with database_session(app) as session:
        assert accounts.find_by_email(session=session, email="mallory@example.org") is None
        assert session.exec(select(func.count()).select_from(SupportLink)).one() == 1


def test_a_supporter_registers_and_pending_grants_are_wrapped_on_the_patients_next_request(
    app, as_patient, patient
):
    card = write_card(as_patient)
    chosen = write_entry(as_patient, text="The kitchen, warm, not sad.")
    private = write_entry(as_patient, text="Just for me.")
    _, token = invite(as_patient, "Sam", entries=[card, chosen])
    page = app.test_client().get(f"/invite/support/{token}")
    assert f"{patient.name} invited you" in text_of(page)

    as_sam = register_from(app, token, email="sam@example.org", name="Sam Helper")
    sam_id = user_id(app, "sam@example.org")
    with database_session(app) as session:
        grants = session.exec(select(Grant).where(Grant.reader_id == sam_id)).all()
        assert {g.entry_id for g in grants} == {card, chosen}
        assert all(g.wrapped_key is None for g in grants)  # no key yet: the patient's is locked
        assert session.exec(select(PendingShare)).all() == []
        assert session.get(User, sam_id).role == "support"
    home = as_sam.get("/home")
    assert f"/supporting/{patient.id}" in home.get_data(as_text=True)
    waiting = visible(text_of(as_sam.get(f"/supporting/{patient.id}")))
    # The card and the entry wait for the patient's key: said as such, not "has not shared".
    assert (
        f"{patient.name} has shared a support card with you; it will appear when "
        f"{patient.name} next opens the app."
    ) in waiting
    assert "has not shared a support card" not in waiting
    assert "1 more entry will appear" in waiting
    assert as_sam.get(f"/entries/{chosen}").status_code == 404  # pending: refused

    assert as_patient.get("/account").status_code == 200  # any request of the patient
    with database_session(app) as session:
        grants = session.exec(select(Grant).where(Grant.reader_id == sam_id)).all()
        assert all(g.wrapped_key for g in grants)
    shared = [(e.entry_id, e.target_id) for e in events(app, "share")]
    assert sorted(shared) == sorted([(card, sam_id), (chosen, sam_id)])

    page = text_of(as_sam.get(f"/supporting/{patient.id}"))
    assert f"How to support {patient.name}" in page
    for words in CARD.values():
        assert words in visible(page).replace(" .", ".")  # the phone number is a link
    assert '<a href="tel:5550100">555 0100</a>' in page
    assert "no driving until the next day" in page
    assert "988" in page
    assert "The kitchen, warm, not sad." in text_of(as_sam.get(f"/entries/{chosen}"))
    assert as_sam.get(f"/entries/{private}").status_code == 404


def test_someone_supporting_another_patient_accepts_with_the_same_account(
    app, as_patient, patient, stranger_patient, stranger_supporter
):
    card = write_card(as_patient)
    _, token = invite(as_patient, "Hal", entries=[card])
    as_hal = client_for(app, stranger_supporter)
    page = as_hal.get(f"/invite/support/{token}")
    assert page.status_code == 200 and f"Support {patient.name}?" in text_of(page)
    accepted = submit(as_hal, form_on(page, f"/invite/support/{token}"))
    assert accepted.status_code == 303
    assert urlparse(accepted.headers["Location"]).path == f"/supporting/{patient.id}"
    as_patient.get("/journal")  # the patient's next request wraps the card's key for Hal
    assert CARD["helps"] in text_of(as_hal.get(f"/supporting/{patient.id}"))
    home = as_hal.get("/home").get_data(as_text=True)
    assert f"/supporting/{patient.id}" in home and f"/supporting/{stranger_patient.id}" in home
    assert as_hal.get(f"/invite/support/{token}").status_code == 410


def test_the_link_page_lets_an_existing_supporter_log_in_and_come_back_to_it(
    app, as_patient, stranger_supporter
):
    _, token = invite(as_patient, "Hal")
    client = app.test_client()
    form = form_on(client.get(f"/invite/support/{token}"), "/login")
    response = submit(client, form, email=stranger_supporter.email, password=PASSWORD)
    assert response.status_code == 303
    assert urlparse(response.headers["Location"]).path == f"/invite/support/{token}"
    assert "Accept" in text_of(client.get(f"/invite/support/{token}"))


@pytest.mark.parametrize("who", ["patient", "therapist"])
def test_a_patient_or_therapist_opening_a_support_link_is_asked_to_log_out(
    app, request, stranger_patient, who
):
    _, token = invite(client_for(app, stranger_patient), "Sam")
    client = client_for(app, request.getfixturevalue(who))
    assert client.get(f"/invite/support/{token}").status_code == 409
    assert post(client, f"/invite/support/{token}", token_from="/account").status_code == 409
    with database_session(app) as session:
        assert (
            session.exec(select(Invitation).where(Invitation.kind == "support")).one().used_at
            is None
        )


# --- 3. the support card -------------------------------------------------------------------------


def test_the_support_card_is_an_encrypted_entry_with_its_own_form(app, as_patient, patient):
    assert (
        as_patient.get("/supporters/card")
        .headers["Location"]
        .endswith("/entries/new?kind=support_card")
    )
    empty = form_on(as_patient.get("/entries/new?kind=support_card"), "/entries/new")
    refused = submit(as_patient, empty)
    assert refused.status_code == 422
    assert "Write at least one part of your card." in text_of(refused)
    card = write_card(as_patient)
    assert as_patient.get("/supporters/card").headers["Location"].endswith(f"/entries/{card}/edit")
    with database_session(app) as session:
        entry = session.get(Entry, card)
        assert entry.kind == "support_card"
        body = journal.read(
            session=session,
            entry=entry,
            reader_id=patient.id,
            private_key=private_key_of(session, patient),
        )
    assert {k: body[k] for k in CARD} == CARD
    page = text_of(as_patient.get(f"/entries/{card}"))
    assert "What helps me" in page and CARD["helps"] in page


def test_support_card_text_never_reaches_the_database_or_the_logs(
    app, database, caplog, patient, supporter
):
    capture_every_log(caplog)
    canary = {name: f"kjc{secrets.token_hex(12)}" for name in CARD}
    as_patient = client_for(app, patient)
    card = write_card(as_patient, **canary)
    share_in_bulk(as_patient, supporter.id, [card])
    seen = text_of(client_for(app, supporter).get(f"/supporting/{patient.id}"))
    assert all(value in seen for value in canary.values())
    _, token = invite(as_patient, "Sam", entries=[card])
    register_from(app, token, email="sam@example.org", name="Sam")
    as_patient.get("/journal")  # wraps Sam's pending grant
    stored, logged = stored_bytes(database), logged_bytes(caplog)
    leaks = {
        (name, where): found
        for name, value in canary.items()
        for where, haystack in (("database", stored), ("log", logged))
        if (found := hits(haystack, value))
    }
    assert leaks == {}
    assert hits(logged, str(card)) or hits(logged, card.hex)  # positive control
    assert token not in logged.decode(errors="replace")


# --- 4. sharing and revoking ---------------------------------------------------------------------


def test_patient_shares_in_bulk_and_sees_everything_each_supporter_can_read(
    app, as_patient, patient, supporter
):
    card = write_card(as_patient)
    first = write_entry(as_patient, text="First words.")
    second = write_entry(as_patient, text="Second words.")
    assert "can read 0 entries" in text_of(as_patient.get("/supporters"))
    share_in_bulk(as_patient, supporter.id, [card, second])
    page = as_patient.get(f"/supporters/{supporter.id}")
    reads = visible(page.get_data(as_text=True).split('id="reads-h"')[1].split("</section>")[0])
    assert "Your support card" in reads and "Second words." in reads
    assert "First words." not in reads
    assert "can read 2 entries" in text_of(as_patient.get("/supporters"))
    as_sue = client_for(app, supporter)
    assert "Second words." in text_of(as_sue.get(f"/entries/{second}"))
    assert as_sue.get(f"/entries/{first}").status_code == 404
    with database_session(app) as session:
        assert {
            g.reader_id for g in session.exec(select(Grant).where(Grant.entry_id == second))
        } == {
            patient.id,
            supporter.id,
        }
    refused = submit(
        as_patient,
        form_on(as_patient.get(f"/supporters/{supporter.id}"), f"/supporters/{supporter.id}/share"),
    )
    assert refused.status_code == 422


def test_patient_shares_with_a_supporter_from_the_entry_and_when_writing(
    app, as_patient, patient, therapist, supporter
):
    entry_id = write_entry(as_patient, text="From the entry page.")
    asked = press(as_patient, f"/entries/{entry_id}", f"Share with {supporter.name}")
    assert asked.status_code == 200  # asked once, naming them and what they will read
    assert not grant_of_reader(app, entry_id, supporter.id)
    confirm = form_on(asked, f"/entries/{entry_id}/share", button=f"Share with {supporter.name}")
    assert submit(as_patient, confirm).status_code == 303
    assert grant_of_reader(app, entry_id, supporter.id)
    written = write_entry(as_patient, text="Shared as I write.", share=[supporter.id])
    assert grant_of_reader(app, written, supporter.id)
    # The standing default ("share reflections with my care team") ticks the therapist only.
    with database_session(app) as session:
        user = session.get(User, patient.id)
        user.share_defaults = {"reflection": True}
        session.add(user)
        session.commit()
    form = form_on(as_patient.get("/entries/new?kind=reflection"), "/entries/new")
    assert form.values("share") == [str(therapist.id)]
    assert f'value="{supporter.id}"' in form.html


def grant_of_reader(app, entry_id, reader_id) -> bool:
    with database_session(app) as session:
        found = grant_of(session, entry_id, reader_id)
        return found is not None and found.wrapped_key is not None


def test_revoking_one_entry_locks_the_supporter_out_and_their_captured_key_opens_nothing(
    app, as_patient, patient, supporter
):
    words = f"words {secrets.token_hex(6)}"
    entry_id = write_entry(as_patient, text=words)
    kept = write_card(as_patient)
    share_in_bulk(as_patient, supporter.id, [entry_id, kept])
    as_sue = client_for(app, supporter)
    assert words in text_of(as_sue.get(f"/entries/{entry_id}"))
    key, blob, old_ad = captured_key(app, entry_id, supporter)
    assert json.loads(crypto.open_sealed(key, blob, old_ad))["text"] == words

    form = next(
        f
        for f in _forms_to(as_patient, f"/supporters/{supporter.id}", "/revoke")
        if f.value("entry_id") == str(entry_id)
    )
    assert submit(as_patient, form).status_code == 303
    assert as_sue.get(f"/entries/{entry_id}").status_code == 404
    assert CARD["helps"] in text_of(as_sue.get(f"/supporting/{patient.id}"))  # the rest stays
    assert_key_opens_nothing_now(app, entry_id, key, old_ad)
    revokes = [(e.entry_id, e.target_id) for e in events(app, "revoke")]
    assert revokes == [(entry_id, supporter.id)]


def _forms_to(client, page: str, suffix: str):
    return [f for f in forms(client.get(page).get_data(as_text=True)) if f.action.endswith(suffix)]


def test_removing_a_supporter_ends_everything_and_their_open_session_gets_404(
    app, as_patient, patient, supporter
):
    card = write_card(as_patient)
    entry_id = write_entry(as_patient, text="Shared, then not.")
    share_in_bulk(as_patient, supporter.id, [card, entry_id])
    as_sue = client_for(app, supporter)  # an open session on the supporter's phone
    assert as_sue.get(f"/supporting/{patient.id}").status_code == 200
    key, _, old_ad = captured_key(app, card, supporter)

    assert remove(as_patient, supporter).status_code == 303
    for path in (f"/supporting/{patient.id}", f"/entries/{card}", f"/entries/{entry_id}"):
        response = as_sue.get(path)
        assert response.status_code == 404, path
        assert normalized(response) == normalized(as_sue.get(f"/entries/{uuid.uuid4()}"))
    leave = post(as_sue, f"/supporting/{patient.id}/leave", token_from="/account")
    assert leave.status_code == 404
    assert patient.name not in text_of(as_sue.get("/home"))
    assert_key_opens_nothing_now(app, card, key, old_ad)
    with database_session(app) as session:
        assert session.exec(select(SupportLink)).all() == []
        assert session.exec(select(Grant).where(Grant.reader_id == supporter.id)).all() == []
        for entry_id_ in (card, entry_id):
            assert session.get(Entry, entry_id_).version == 2
    assert sorted(e.entry_id for e in events(app, "revoke")) == sorted([card, entry_id])
    assert supporter.name not in text_of(as_patient.get("/supporters"))
    assert as_patient.get(f"/supporters/{supporter.id}").status_code == 404


def test_a_supporter_can_leave_and_the_patients_next_request_reencrypts(
    app, as_patient, patient, supporter
):
    card = write_card(as_patient)
    share_in_bulk(as_patient, supporter.id, [card])
    as_sue = client_for(app, supporter)
    key, _, old_ad = captured_key(app, card, supporter)
    page = f"/supporting/{patient.id}"
    left = press(as_sue, page, f"Stop supporting {patient.name}")
    assert left.status_code == 303
    assert as_sue.get(page).status_code == 404
    assert as_sue.get(f"/entries/{card}").status_code == 404
    with database_session(app) as session:
        entry = session.get(Entry, card)
        assert entry.needs_rotation and entry.version == 1  # the supporter holds no key to do it
        assert session.exec(select(SupportLink)).all() == []
    log = text_of(as_patient.get("/journal/log"))  # the patient's request rotates the card
    assert f"{supporter.name} gave up access to" in " ".join(log.split())
    with database_session(app) as session:
        entry = session.get(Entry, card)
        assert not entry.needs_rotation and entry.version == 2
    assert_key_opens_nothing_now(app, card, key, old_ad)
    assert CARD["helps"] in text_of(as_patient.get(f"/entries/{card}"))


def test_sharing_with_someone_elses_supporter_is_404(
    app, as_patient, patient, stranger_supporter, therapist
):
    entry_id = write_entry(as_patient, text="Not for them.")
    token = csrf_token(as_patient, f"/entries/{entry_id}")
    data = {"reader_id": str(stranger_supporter.id), "csrf_token": token}
    assert as_patient.post(f"/entries/{entry_id}/share", data=data).status_code == 404
    assert as_patient.get(f"/supporters/{stranger_supporter.id}").status_code == 404
    for path in ("share", "revoke", "remove"):
        data = {"entry_id": str(entry_id), "csrf_token": token}
        response = as_patient.post(f"/supporters/{stranger_supporter.id}/{path}", data=data)
        assert response.status_code == 404
    assert as_patient.get(f"/supporters/{therapist.id}").status_code == 404  # not a supporter
    assert grant_of_reader(app, entry_id, stranger_supporter.id) is False


def test_shares_and_reads_by_a_supporter_are_in_the_patients_access_log(
    app, as_patient, patient, supporter
):
    entry_id = write_entry(as_patient, text="Logged.")
    share_in_bulk(as_patient, supporter.id, [entry_id])
    assert client_for(app, supporter).get(f"/entries/{entry_id}").status_code == 200
    log = " ".join(visible(as_patient.get("/journal/log").get_data(as_text=True)).split())
    assert f"You shared an entry with {supporter.name}" in log
    assert f"{supporter.name} read an entry" in log
    with database_session(app) as session:
        assert audit.verify(session=session).broken_at is None


# --- 5. what a supporter sees: the grant, and nothing else ---------------------------------------


def test_the_supporter_sees_no_sessions_notes_therapists_or_edit_forms(
    app, as_patient, patient, therapist, supporter
):
    with database_session(app) as session:
        found = course.schedule(
            session=session,
            patient=session.get(User, patient.id),
            created_by=session.get(User, therapist.id),
            kind="ketamine",
            when="2031-03-04T10:00",
            zone=ZoneInfo("UTC"),
        )
        session.commit()
        session_id = found.id
    card = write_card(as_patient)
    entry_id = write_entry(as_patient, text="After the session.", session_id=session_id)
    share_in_bulk(as_patient, supporter.id, [card, entry_id])
    as_sue = client_for(app, supporter)
    pages = [
        as_sue.get(p)
        for p in ("/home", f"/supporting/{patient.id}", f"/entries/{entry_id}", f"/entries/{card}")
    ]
    assert [p.status_code for p in pages] == [200] * 4
    for page in pages:
        seen = text_of(page)
        assert therapist.name not in seen
        assert "Ketamine" not in seen and "ketamine session ·" not in seen.lower()
        actions = re.findall(r'<form[^>]*action="([^"]+)"', page.get_data(as_text=True))
        assert set(actions) <= {"/logout", f"/supporting/{patient.id}/leave"}
        assert "/edit" not in page.get_data(as_text=True)
    for path in (f"/patients/{patient.id}", f"/entries/{entry_id}/edit", "/journal", "/supporters"):
        assert as_sue.get(path).status_code == 404


def persona_fixture_names():
    return ["supporter", "stranger_supporter", "revoked_supporter", "granted_supporter"]


@pytest.fixture
def world(app, patient, therapist, stranger_patient, supporter, stranger_supporter):
    """The patient's card and one entry shared with Gina (granted), a private entry, a session,
    a pending invitation; Rex, who could read the card, removed; Sue linked with no grants."""
    as_patient = client_for(app, patient)
    card = write_card(as_patient)
    shared = write_entry(as_patient, text="Shared with Gina.")
    private = write_entry(as_patient, text="Private.")
    gina = make_user(
        app, role="support", email="gina@example.org", name="Gina Grant", supporting=patient
    )
    rex = make_user(
        app, role="support", email="rex@example.org", name="Rex Voked", supporting=patient
    )
    share_in_bulk(as_patient, gina.id, [card, shared])
    share_in_bulk(as_patient, rex.id, [card])
    assert remove(as_patient, rex).status_code == 303
    invite(as_patient, "Pending Person", entries=[card])
    with database_session(app) as session:
        found = course.schedule(
            session=session,
            patient=session.get(User, patient.id),
            created_by=session.get(User, therapist.id),
            kind="ketamine",
            when="2031-03-04T10:00",
            zone=ZoneInfo("UTC"),
        )
        session.commit()
        invitation_id = session.exec(
            select(Invitation.id).where(Invitation.used_at.is_(None))
        ).one()
        return {
            "personas": {
                "supporter": supporter,
                "stranger_supporter": stranger_supporter,
                "revoked_supporter": rex,
                "granted_supporter": gina,
            },
            "entry_id": [card, shared, private],
            "patient_id": [patient.id, stranger_patient.id],
            "supporter_id": [supporter.id, gina.id, rex.id, stranger_supporter.id],
            "invitation_id": [invitation_id],
            "session_id": [found.id],
            "readable": {"granted_supporter": {card, shared}},
            "patient": patient,
            "stranger_patient": stranger_patient,
        }


UUID_ARG = re.compile(r"<uuid:(\w+)>")
ANY_ARG = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?(\w+)>")


def concrete_paths(rule, world) -> list[tuple[str, dict]]:
    """Every way to fill the rule's uuid arguments with real ids (a random one where we have
    none), with the ids used."""
    names = UUID_ARG.findall(rule.rule)
    choices = [world.get(name) or [uuid.uuid4()] for name in names]
    paths = []
    for combo in itertools.product(*choices):
        values = dict(zip(names, combo, strict=True))

        def fill(match, values=values):
            return str(values.get(match.group(1), secrets.token_urlsafe(8)))

        paths.append((ANY_ARG.sub(fill, rule.rule), values))
    return paths


def allowed_for(who: str, world, method: str, rule: str, values: dict) -> bool:
    """What the matrix allows a support persona: the page of the patient they support and the
    entries granted to them, to read. (Leaving is allowed too, and tested on its own.)"""
    if method != "GET":
        return False
    if rule == "/entries/<uuid:entry_id>":
        return values["entry_id"] in world["readable"].get(who, set())
    if rule == "/supporting/<uuid:patient_id>":
        own = {
            "supporter": world["patient"].id,
            "granted_supporter": world["patient"].id,
            "stranger_supporter": world["stranger_patient"].id,
        }
        return values["patient_id"] == own.get(who)
    return False


@pytest.mark.parametrize("who", persona_fixture_names())
def test_support_personas_get_404_everywhere_but_what_was_granted(app, world, who):
    persona = world["personas"][who]
    client = client_for(app, persona)
    token = csrf_token(client, "/account")
    data = {
        "csrf_token": token,
        "entry_id": [str(e) for e in world["entry_id"]],
        "reader_id": str(persona.id),
        "name": "x",
        "text": "overwritten",
        "kind": "reflection",
    }
    before = journal_state(app)
    wrong, tried = [], 0
    for rule in app.url_map.iter_rules():
        if "<uuid:" not in rule.rule:
            continue
        for path, values in concrete_paths(rule, world):
            for method in METHODS:
                if method not in rule.methods:
                    continue
                own_page = "/supporting/<uuid:patient_id>"
                if path.endswith("/leave") and allowed_for(who, world, "GET", own_page, values):
                    continue  # their own way out: tested by itself
                response = client.open(path, method=method, data=None if method == "GET" else data)
                tried += 1
                expected = 200 if allowed_for(who, world, method, rule.rule, values) else 404
                if response.status_code != expected:
                    wrong.append((method, path, response.status_code, expected))
                elif expected == 404 and method == "GET":
                    missing = ANY_ARG.sub(lambda _m: str(uuid.uuid4()), rule.rule)
                    if normalized(client.get(missing)) != normalized(response):
                        wrong.append((method, path, "differs from a missing object"))
    assert wrong == []
    assert tried > 50
    assert journal_state(app) == before
    with database_session(app) as session:
        assert session.exec(select(func.count()).select_from(SupportLink)).one() == 3
        assert session.exec(select(Invitation).where(Invitation.used_at.is_(None))).one()


@pytest.mark.parametrize("who", ["stranger_supporter", "revoked_supporter"])
def test_support_personas_get_404_for_every_page_of_other_roles(app, world, who):
    persona = world["personas"][who]
    client = client_for(app, persona)
    token = csrf_token(client, "/account")
    wrong = []
    with app.app_context():
        from kapjournal import policy

        for rule in app.url_map.iter_rules():
            audiences = policy.audiences_of(rule.endpoint)
            if "<" in rule.rule or audiences & {"public", "authenticated", "support"}:
                continue
            for method in sorted(rule.methods - {"OPTIONS", "HEAD"}):
                data = {"csrf_token": token} if method != "GET" else None
                response = client.open(rule.rule, method=method, data=data)
                if response.status_code != 404:
                    wrong.append((method, rule.rule, response.status_code))
    assert wrong == []


# --- 6. the demo ---------------------------------------------------------------------------------


def test_the_demo_patient_has_a_supporter_with_a_card_and_two_entries_and_an_invitation(app):
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    with database_session(app) as session:
        patient = accounts.find_by_email(session=session, email="patient@demo.kapjournal.invalid")
        supporters = support.supporters_of(session=session, patient=patient)
        assert len(supporters) == 1
        granted = support.granted(session=session, patient=patient, supporter=supporters[0])
        kinds = sorted(entry.kind for entry, pending in granted if not pending)
        assert kinds.count("support_card") == 1 and len(kinds) == 3
        invitations = support.open_invitations(session=session, patient=patient)
        assert len(invitations) == 1 and invitations[0].expires_at > utcnow()
