"""A therapist invites a patient: the link, its single use, its expiry, cancelling it, who may
see it, and the email that carries it (views/care.py, views/auth.py `register`, services/care.py).
"""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import unquote, urlparse

import pytest
from conftest import PASSWORD, free_port, login, make_user, post
from sqlalchemy import inspect, text
from sqlmodel import Session, select

from kapjournal import crypto, db
from kapjournal.models import Invitation, User, utcnow
from kapjournal.services import accounts, care

LINK = re.compile(r'value="(http://localhost/invite/([A-Za-z0-9_-]+))"')
CANCEL = re.compile(r'action="(/invitations/([0-9a-f-]{36})/cancel)"')
NEW_PATIENT = {
    "name": "Robin Vale",
    "email": "robin@example.org",
    "password": PASSWORD,
    "password2": PASSWORD,
}


# --- helpers -----------------------------------------------------------------------------------


@contextmanager
def database(app):
    """A fresh database session (nothing cached from earlier requests) in an app context."""
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def invite(client, **form) -> tuple[str, str, str]:
    """Create an invitation over HTTP; (page, link, token)."""
    form.setdefault("label", "")
    response = post(client, "/invitations", form, token_from="/invitations")
    page = response.get_data(as_text=True)
    assert response.status_code == 201, page[:500]
    link, token = LINK.search(page).groups()
    return page, link, token


def invitation_row(app, token: str) -> Invitation | None:
    with database(app) as session:
        query = select(Invitation).where(Invitation.token_hash == crypto.token_hash(token))
        return session.exec(query).first()


def invitation_count(app) -> int:
    with database(app) as session:
        return len(session.exec(select(Invitation)).all())


def register(client, token: str, **overrides):
    path = f"/invite/{token}"
    return post(client, path, {**NEW_PATIENT, **overrides}, token_from=path)


def user_count(app) -> int:
    with database(app) as session:
        return accounts.user_count(session=session)


def patient_names_of(app, therapist) -> list[str]:
    with database(app) as session:
        user = session.get(User, therapist.id)
        return [accounts.name_of(p) for p in care.patients_of(session=session, therapist=user)]


def all_rows(app) -> list[tuple[str, dict]]:
    """Every row of every table in the database, as (table, row)."""
    with database(app) as session:
        conn = session.connection()
        rows = []
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                rows.append((table, dict(row)))
        return rows


def holds(value, needle: str) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return needle.encode() in raw or needle.casefold().encode() in raw
    return needle.casefold() in str(value).casefold()


@pytest.fixture
def as_other_therapist(app, other_therapist):
    client = app.test_client()
    login(client, other_therapist)
    return client


# --- creating an invitation --------------------------------------------------------------------


def test_therapist_gets_a_link_with_copy_button_and_qr_code(as_therapist):
    page, link, token = invite(as_therapist)
    assert link == f"http://localhost/invite/{token}"
    assert 'data-copy-target="#invite-link"' in page
    assert re.search(r"<button[^>]*data-copy-target[^>]*>\s*Copy\s*</button>", page)
    qr = re.search(r'<img class="qr" src="(data:image/svg\+xml[^"]*)"', page)
    assert qr, "no QR code image"
    assert "<svg" in unquote(qr.group(1))


def test_only_the_hash_of_the_token_is_stored(app, as_therapist):
    _, _, token = invite(as_therapist)
    rows = [row for table, row in all_rows(app) if table == "invitation"]
    assert len(rows) == 1
    assert not any(holds(value, token) for value in rows[0].values())
    assert bytes(rows[0]["token_hash"]) == crypto.token_hash(token)
    # Nowhere else either.
    assert not any(holds(v, token) for _, row in all_rows(app) for v in row.values())


def test_label_is_stored_encrypted_and_shown_in_the_pending_list(app, as_therapist):
    label = "Robin from Tuesday"
    page, _, token = invite(as_therapist, label=label)
    assert label in page
    assert not any(holds(v, label) for _, row in all_rows(app) for v in row.values())
    row = invitation_row(app, token)
    assert row.label_enc is not None
    with app.app_context():
        assert care.label_of(row) == label
    pending = as_therapist.get("/invitations").get_data(as_text=True)
    assert label in pending
    assert f"/invitations/{row.id}/cancel" in pending


def test_label_longer_than_80_characters_is_refused_with_422(app, as_therapist):
    response = post(as_therapist, "/invitations", {"label": "x" * 81}, token_from="/invitations")
    assert response.status_code == 422
    assert "Use at most 80 characters." in response.get_data(as_text=True)
    assert invitation_count(app) == 0


# --- registering from the link ------------------------------------------------------------------


def test_link_shows_the_therapists_name_and_a_registration_form(app, as_therapist):
    _, _, token = invite(as_therapist)
    page = app.test_client().get(f"/invite/{token}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Dr. Tess Ward" in body
    assert f'action="/invite/{token}" method="post"' in body
    for name in ("name", "email", "password", "password2"):
        assert f'name="{name}"' in body


def test_patient_registers_from_the_link_and_joins_the_care_team(app, therapist, as_therapist):
    _, _, token = invite(as_therapist)
    client = app.test_client()
    response = register(client, token)
    body = response.get_data(as_text=True)
    assert response.status_code in (200, 201), body[:500]
    code = re.search(r'id="recovery-code"[^>]*value="([A-Z0-9-]+)"', body).group(1)
    assert len(code.replace("-", "")) == 32

    assert patient_names_of(app, therapist) == ["Robin Vale"]
    # Logged in: confirming the recovery code opens the patient's home.
    confirm = post(client, "/recovery-code/confirm", {"saved": "yes"}, token_from="/recovery-code")
    assert confirm.status_code == 303
    assert "Robin Vale" in client.get("/account").get_data(as_text=True)
    assert "Robin Vale" in as_therapist.get("/home").get_data(as_text=True)


def test_used_link_says_so_and_creates_no_account(app, as_therapist):
    _, _, token = invite(as_therapist)
    register(app.test_client(), token)
    count = user_count(app)

    again = app.test_client()
    page = again.get(f"/invite/{token}")
    assert page.status_code == 410
    assert "has been used" in page.get_data(as_text=True)
    assert "Tess Ward" not in page.get_data(as_text=True)

    response = post(again, f"/invite/{token}", {**NEW_PATIENT, "email": "late@example.org"})
    assert response.status_code == 410
    assert "Tess Ward" not in response.get_data(as_text=True)
    assert user_count(app) == count


def test_expired_link_says_so_and_creates_no_account(app, as_therapist):
    _, _, token = invite(as_therapist)
    with database(app) as session:
        row = session.exec(
            select(Invitation).where(Invitation.token_hash == crypto.token_hash(token))
        ).one()
        row.expires_at = utcnow() - timedelta(minutes=1)
        session.add(row)
        session.commit()
    count = user_count(app)

    client = app.test_client()
    page = client.get(f"/invite/{token}")
    assert page.status_code == 410
    assert "has expired" in page.get_data(as_text=True)
    assert "Tess Ward" not in page.get_data(as_text=True)

    response = post(client, f"/invite/{token}", NEW_PATIENT)
    assert response.status_code == 410
    assert user_count(app) == count


# Ids fixed by hand: a random token in an id would differ between pytest-xdist workers.
@pytest.mark.parametrize(
    "token",
    ["forged-token", crypto.new_token(), "x" * 300, "%00"],
    ids=["forged-token", "random-token", "long-token", "nul"],
)
def test_forged_link_gives_404_page(app, therapist, token):
    client = app.test_client()
    page = client.get(f"/invite/{token}")
    assert page.status_code == 404
    assert "does not work" in page.get_data(as_text=True)
    assert "Tess Ward" not in page.get_data(as_text=True)
    response = post(client, f"/invite/{token}", NEW_PATIENT)
    assert response.status_code == 404
    assert user_count(app) == 1


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "not-an-email"}, "Enter an email address like name@example.org."),
        ({"password": "short", "password2": "short"}, "Use at least 12 characters."),
        ({"password2": PASSWORD + " and more"}, "The two passwords are not the same."),
        ({"email": "Patient@Example.org"}, "We could not create an account with this address."),
    ],
    ids=["bad-email", "short-password", "mismatched-passwords", "duplicate-email"],
)
def test_registration_errors_are_422_and_keep_what_was_typed(
    app, patient, as_therapist, overrides, message
):
    _, _, token = invite(as_therapist)
    count = user_count(app)
    client = app.test_client()
    response = register(client, token, **overrides)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in body
    assert 'value="Robin Vale"' in body
    assert f'value="{overrides.get("email", NEW_PATIENT["email"])}"' in body
    assert PASSWORD not in body  # passwords are never echoed back
    assert user_count(app) == count
    # The invitation is still good: correcting the form works.
    assert client.get(f"/invite/{token}").status_code == 200
    assert register(client, token).status_code in (200, 201)
    assert user_count(app) == count + 1


# --- people who already have an account ----------------------------------------------------------


def test_logged_in_patient_joins_another_therapists_team_with_one_post(
    app, therapist, patient, as_patient, other_therapist, as_other_therapist
):
    _, _, token = invite(as_other_therapist)
    page = as_patient.get(f"/invite/{token}")
    assert page.status_code == 200
    assert "Dr. Otto Lane" in page.get_data(as_text=True)

    response = post(as_patient, f"/invite/{token}", {}, token_from=f"/invite/{token}")
    assert response.status_code == 303
    assert urlparse(response.headers["Location"]).path == "/home"
    assert patient_names_of(app, other_therapist) == ["Pat Quinn"]
    assert patient_names_of(app, therapist)  # still on the first team == ["Pat Quinn"]
    assert as_patient.get(f"/invite/{token}").status_code == 410


def test_logged_in_therapist_opening_an_invitation_gets_a_clear_409(
    app, as_therapist, as_other_therapist
):
    _, _, token = invite(as_therapist)
    page = as_other_therapist.get(f"/invite/{token}")
    assert page.status_code == 409
    assert "This invitation is for a patient account" in page.get_data(as_text=True)
    response = post(as_other_therapist, f"/invite/{token}", {}, token_from="/invitations")
    assert response.status_code == 409
    # Nothing was used up.
    assert invitation_row(app, token).used_at is None
    assert app.test_client().get(f"/invite/{token}").status_code == 200


# --- cancelling -----------------------------------------------------------------------------------


def pending_cancel_url(client) -> str:
    return CANCEL.search(client.get("/invitations").get_data(as_text=True)).group(1)


def test_therapist_cancels_an_invitation_and_the_link_stops_working(app, as_therapist):
    _, _, token = invite(as_therapist, label="Sam")
    url = pending_cancel_url(as_therapist)
    response = post(as_therapist, url, token_from="/invitations")
    assert response.status_code == 303
    assert urlparse(response.headers["Location"]).path == "/invitations"
    assert "Sam" not in as_therapist.get("/invitations").get_data(as_text=True)
    page = app.test_client().get(f"/invite/{token}")
    assert page.status_code == 404
    assert "does not work" in page.get_data(as_text=True)
    assert invitation_row(app, token) is None


@pytest.mark.parametrize("who", ["other_therapist", "patient", "supporter"])
def test_others_cannot_cancel_an_invitation(app, as_therapist, request, who):
    _, _, token = invite(as_therapist)
    url = pending_cancel_url(as_therapist)
    client = app.test_client()
    login(client, request.getfixturevalue(who))
    response = post(client, url, token_from="/account")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)
    assert app.test_client().get(f"/invite/{token}").status_code == 200


def test_cancel_url_answers_404_to_get(as_therapist):
    invite(as_therapist)
    url = pending_cancel_url(as_therapist)
    assert as_therapist.get(url).status_code == 404
    assert as_therapist.get(f"/invitations/{uuid.uuid4()}/cancel").status_code == 404


def test_cancelling_an_unknown_invitation_is_404(as_therapist):
    url = f"/invitations/{uuid.uuid4()}/cancel"
    assert post(as_therapist, url, token_from="/invitations").status_code == 404


# --- who may use the invitations page -------------------------------------------------------------


@pytest.mark.parametrize("who", ["patient", "supporter"])
def test_patients_and_supporters_get_404_for_invitations(app, request, who):
    client = app.test_client()
    login(client, request.getfixturevalue(who))
    before = invitation_count(app)
    assert client.get("/invitations").status_code == 404
    response = post(client, "/invitations", {"label": "x"}, token_from="/account")
    assert response.status_code == 404
    assert invitation_count(app) == before


def test_anonymous_is_sent_to_login_for_invitations(client):
    response = client.get("/invitations")
    assert response.status_code == 302
    assert urlparse(response.headers["Location"]).path == "/login"


# --- email ----------------------------------------------------------------------------------------


def test_invitation_is_emailed_and_the_address_is_not_stored(make_app, mailbox):
    handler, port = mailbox
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_STARTTLS=False)
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. Mail Sender")
    client = app.test_client()
    login(client, therapist)
    assert 'name="email"' in client.get("/invitations").get_data(as_text=True)

    address = "Invitee.Person@Example.net"
    page, link, token = invite(client, email=address, label="Invitee")
    assert "The link was emailed to the patient." in page
    assert handler.arrived.wait(5)
    [(recipients, message)] = handler.messages
    assert recipients == [address]
    assert message["To"] == address
    assert link in message.get_body(preferencelist=("plain",)).get_content()

    for table, row in all_rows(app):
        for column, value in row.items():
            assert not holds(value, address), f"{table}.{column} holds the email address"
    assert invitation_row(app, token) is not None


def test_without_smtp_there_is_no_email_field(as_therapist):
    assert 'name="email"' not in as_therapist.get("/invitations").get_data(as_text=True)


def test_bad_email_address_is_422_and_no_invitation(make_app, mailbox):
    _, port = mailbox
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_STARTTLS=False)
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. Mail Sender")
    client = app.test_client()
    login(client, therapist)
    response = post(
        client, "/invitations", {"email": "nope", "label": "Kim"}, token_from="/invitations"
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter an email address like name@example.org." in body
    assert 'value="Kim"' in body
    assert invitation_count(app) == 0


def test_smtp_server_down_still_shows_the_link(make_app):
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(), SMTP_STARTTLS=False)
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. Mail Sender")
    client = app.test_client()
    login(client, therapist)
    page, link, token = invite(client, email="someone@example.org")
    assert "The email could not be sent" in page
    assert link.endswith(token)
    assert app.test_client().get(f"/invite/{token}").status_code == 200
