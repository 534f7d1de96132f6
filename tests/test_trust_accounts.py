"""Trust at the edges, accounts: registering from a link tells no one whether an address has an
account (with email: confirmation or an offer at the next login; without: a neutral 422), a
new recovery code needs the password, session rows open nothing without the KEK and expire by
themselves, password checks are rate-limited, the client's address comes only from trusted
proxies, `next` never leaves the site, production needs Redis and its base URL, and the
SQLite database is private. (Parallel requests: tests/test_trust_concurrency.py.)"""

from __future__ import annotations

import logging
import re
import stat
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from conftest import (
    PASSWORD,
    TEST_KDF,
    TEST_KEK,
    WebClient,
    csrf_token,
    login,
    make_user,
    post,
    serving,
)
from sqlmodel import Session, func, select

from kapjournal import config, create_app, crypto, db
from kapjournal.models import (
    CareTeam,
    DeviceSession,
    Invitation,
    SupportLink,
    User,
    utcnow,
)
from kapjournal.services import (
    accounts,
    annotations,
    care,
    journal,
    practices,
    sessions,
    support,
    totp,
)

NEW = {"name": "Robin Vale", "password": PASSWORD, "password2": PASSWORD}
CONFIRM_LINK = re.compile(r"http://localhost/confirm/([A-Za-z0-9_-]+)")
_CSRF = re.compile(r'name="csrf_token" value="[^"]*"')
NEUTRAL = "We could not create an account with this address."


# --- helpers -------------------------------------------------------------------------------------


@contextmanager
def database(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def messages_to(handler, address: str, count: int = 1, wait: float = 5.0) -> list:
    """The messages sent to `address`, once `count` of them arrived."""
    deadline = time.monotonic() + wait
    while True:
        found = [m for rcpt, m in handler.messages if address in rcpt]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def body_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def patient_link(app, therapist) -> str:
    """A therapist's invitation for a new patient; its token."""
    with database(app) as session:
        inviter = session.get(User, therapist.id)
        issued = care.create_invitation(session=session, inviter=inviter, kind="patient")
        session.commit()
        return issued.token


def support_link(app, patient) -> str:
    """A patient's invitation for a supporter; its token."""
    with database(app) as session:
        inviter = session.get(User, patient.id)
        issued = support.invite(session=session, patient=inviter, name="Helper", entries=[])
        session.commit()
        return issued.token


def link_path(kind: str, token: str) -> str:
    return f"/invite/{token}" if kind == "patient" else f"/invite/support/{token}"


def invitation_state(app, token: str) -> tuple:
    """What the link's row tells: used or not (who used it is not on the page)."""
    with database(app) as session:
        row = session.exec(
            select(Invitation).where(Invitation.token_hash == crypto.token_hash(token))
        ).one()
        return row.used_at is not None, row.expires_at


def register(client, path: str, **fields):
    return post(client, path, {**NEW, **fields}, token_from=path)


def comparable(response, *emails: str) -> str:
    """The page without its CSRF tokens and the email address it echoes."""
    page = _CSRF.sub("", response.get_data(as_text=True))
    for email in emails:
        page = page.replace(email, "EMAIL")
    return page


def count(app, model) -> int:
    with database(app) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def user_by_email(app, email: str) -> User | None:
    with database(app) as session:
        return accounts.find_by_email(session=session, email=email)


def try_login(client, email: str, password: str = PASSWORD, **kw):
    data = {"email": email, "password": password}
    return post(client, "/login", data, token_from="/login", **kw)


# --- 3. registering from a link tells no one whether the address has an account ---------------


@pytest.mark.parametrize("kind", ["patient", "support"])
def test_an_existing_and_a_new_address_get_the_same_page_and_leave_the_link_the_same(
    mail_app, mailbox, kind
):
    app, (handler, _) = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. Tess Ward")
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    existing = make_user(
        app, role=kind, email="had.one@example.org", name="Had One", invited_by=None
    )
    make_link = patient_link if kind == "patient" else support_link
    inviter = therapist if kind == "patient" else patient
    first, second = make_link(app, inviter), make_link(app, inviter)
    users = count(app, User)

    old = register(app.test_client(), link_path(kind, first), email=existing.email)
    new = register(app.test_client(), link_path(kind, second), email="brand.new@example.org")

    assert old.status_code == new.status_code == 200
    assert comparable(old, existing.email) == comparable(new, "brand.new@example.org")
    assert "Check your email" in old.get_data(as_text=True)
    assert invitation_state(app, first)[0] and invitation_state(app, second)[0]
    for token in (first, second):  # both links now answer alike: used
        assert app.test_client().get(link_path(kind, token)).status_code == 410
    assert count(app, User) == users + 1  # only the new address got an account
    assert messages_to(handler, existing.email) and messages_to(handler, "brand.new@example.org")
    assert (count(app, CareTeam), count(app, SupportLink)) == (1, 0)  # nobody joined yet


def waits_for_argon2id(url: str, path: str, data: dict):
    """Send the form while the only Argon2id slot is taken: (whether the answer waited for
    it, the answer). Observed through the real slots of crypto, nothing replaced."""
    client = WebClient(url)
    token = client.token(path)
    answered = {}
    worker = threading.Thread(
        target=lambda: answered.update(r=client.post(path, data, token=token))
    )
    slots = crypto._argon2_slots
    slots.acquire()
    try:
        worker.start()
        worker.join(1.5)
        waited = worker.is_alive()
    finally:
        slots.release()
    worker.join(30)
    return waited, answered["r"]


def test_both_answers_wait_for_an_argon2id_run_and_a_form_error_does_not(make_app, mailbox):
    """With the only slot taken, a request that runs Argon2id cannot answer until it is free:
    both addresses wait (the same work), a refused form does not (the check can tell)."""
    _, port = mailbox
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_STARTTLS=False, ARGON2_CONCURRENCY=1)
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. Tess")
    make_user(app, role="patient", email="had.one@example.org", name="Had One")
    cases = [
        ("had.one@example.org", PASSWORD, True, 200),
        ("brand.new@example.org", PASSWORD, True, 200),
        ("short.password@example.org", "short", False, 422),
    ]
    with serving(app) as url:
        for email, password, argon2, status in cases:
            path = f"/invite/{patient_link(app, therapist)}"
            data = {**NEW, "email": email, "password": password, "password2": password}
            waited, answer = waits_for_argon2id(url, path, data)
            assert (waited, answer.status_code) == (argon2, status), email


def test_the_owner_of_an_existing_address_is_emailed_and_asked_after_login(mail_app, mailbox):
    app, (handler, _) = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    pat = make_user(app, role="patient", email="pat@example.org", name="Pat", invited_by=therapist)
    hal = make_user(app, role="support", email="hal@example.org", name="Hal Per")
    token = support_link(app, pat)
    assert register(app.test_client(), f"/invite/support/{token}", email="HAL@example.org")
    [notice] = messages_to(handler, "HAL@example.org")
    assert "log in and you will be asked to accept it" in body_of(notice)
    assert "/confirm/" not in body_of(notice)
    assert count(app, SupportLink) == 0  # nothing until they accept, logged in

    client = app.test_client()
    landed = try_login(client, hal.email)
    assert urlsplit(landed.headers["Location"]).path == "/invitations/for-you"
    page = client.get(landed.headers["Location"]).get_data(as_text=True)
    assert "Support Pat?" in page
    accepted = post(client, form_action(page), {"decision": "accept"}, token_from="/account")
    assert accepted.status_code == 303
    assert urlsplit(accepted.headers["Location"]).path == f"/supporting/{pat.id}"
    with database(app) as session:
        link = session.exec(select(SupportLink)).one()
        assert (link.patient_id, link.supporter_id) == (pat.id, hal.id)
    # Decided once: the offer is gone, the next login goes where it asked.
    again = app.test_client()
    assert try_login(again, hal.email).headers["Location"] == "/home"


def form_action(page: str) -> str:
    return re.search(r'action="(/invitations/for-you/[0-9a-f-]{36})"', page).group(1)


def test_an_offer_can_be_declined_and_is_never_made_to_a_role_that_cannot_accept(mail_app, mailbox):
    app, (handler, _) = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    pat = make_user(app, role="patient", email="pat@example.org", name="Pat", invited_by=therapist)
    other = make_user(app, role="patient", email="o@example.org", name="Other")
    # A patient's address on a therapist's link: offered, then declined.
    register(app.test_client(), f"/invite/{patient_link(app, therapist)}", email=other.email)
    client = app.test_client()
    page = client.get(try_login(client, other.email).headers["Location"])
    declined = post(client, form_action(page.get_data(as_text=True)), {"decision": "decline"})
    assert declined.status_code == 303 and declined.headers["Location"] == "/home"
    assert count(app, CareTeam) == 1  # Pat's only
    # A therapist's address on a supporter link: the same page, but nothing is ever offered.
    before = count(app, Invitation)
    answer = register(
        app.test_client(), f"/invite/support/{support_link(app, pat)}", email="t@example.org"
    )
    assert answer.status_code == 200 and "Check your email" in answer.get_data(as_text=True)
    assert count(app, Invitation) == before + 1  # the link only: no offer row
    [notice] = messages_to(handler, "t@example.org")
    assert "cannot accept this kind of invitation" in body_of(notice)
    therapist_client = app.test_client()
    login(therapist_client, therapist)
    assert (
        therapist_client.get("/invitations/for-you")
        .get_data(as_text=True)
        .count("/invitations/for-you/")
        == 0
    )


def test_a_new_account_cannot_log_in_until_its_address_is_confirmed_once(mail_app, mailbox):
    app, (handler, _) = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. Tess Ward")
    token = patient_link(app, therapist)
    register(app.test_client(), f"/invite/{token}", email="robin@example.org")
    [message] = messages_to(handler, "robin@example.org")
    confirm_token = CONFIRM_LINK.search(body_of(message)).group(1)
    assert count(app, CareTeam) == 0

    # Until confirmed, the right password gets exactly the answer a wrong one gets.
    client = app.test_client()
    right, wrong = (
        try_login(client, "robin@example.org"),
        try_login(client, "robin@example.org", "wrong password here"),
    )
    assert right.status_code == wrong.status_code == 422
    assert comparable(right) == comparable(wrong)
    assert "open the link we emailed you first" in right.get_data(as_text=True)

    page = client.get(f"/confirm/{confirm_token}")  # opening it (a mail scanner) changes nothing
    assert page.status_code == 200 and "Confirm my address" in page.get_data(as_text=True)
    assert try_login(client, "robin@example.org").status_code == 422
    done = post(client, f"/confirm/{confirm_token}", token_from=f"/confirm/{confirm_token}")
    assert done.status_code == 303 and done.headers["Location"] == "/login?confirmed=1"
    assert "Your address is confirmed. Log in." in client.get("/login?confirmed=1").get_data(
        as_text=True
    )
    again = post(client, f"/confirm/{confirm_token}", token_from="/login")
    assert again.status_code == 410  # works once

    # The first login asks for a recovery code (with the password), shown once.
    assert try_login(client, "robin@example.org").status_code == 303
    assert client.get("/home").headers["Location"] == "/recovery-code"
    made = post(client, "/recovery-code/new", {"password": PASSWORD}, token_from="/recovery-code")
    assert made.status_code == 200 and 'id="recovery-code-text"' in made.get_data(as_text=True)
    with database(app) as session:
        [team] = session.exec(select(CareTeam)).all()
        assert team.therapist_id == therapist.id


def test_a_never_confirmed_account_gives_way_to_a_new_registration(mail_app, mailbox):
    app, (handler, _) = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    register(app.test_client(), f"/invite/{patient_link(app, therapist)}", email="r@example.org")
    first = user_by_email(app, "r@example.org")
    register(
        app.test_client(),
        f"/invite/{patient_link(app, therapist)}",
        email="r@example.org",
        password="another good passphrase",
        password2="another good passphrase",
    )
    second = user_by_email(app, "r@example.org")
    assert second.id != first.id
    first_link, second_link = (
        CONFIRM_LINK.search(body_of(m)).group(1) for m in messages_to(handler, "r@example.org", 2)
    )
    client = app.test_client()
    assert post(client, f"/confirm/{first_link}", token_from="/login").status_code == 404
    assert post(client, f"/confirm/{second_link}", token_from="/login").status_code == 303
    assert try_login(client, "r@example.org", "another good passphrase").status_code == 303


def test_without_email_an_existing_address_gets_a_neutral_422_like_any_form_error(
    app, therapist, patient
):
    token = patient_link(app, therapist)
    path = f"/invite/{token}"
    users = count(app, User)
    taken = register(app.test_client(), path, email=patient.email)
    malformed = register(app.test_client(), path, email="not-an-email")
    assert taken.status_code == malformed.status_code == 422
    page = taken.get_data(as_text=True)
    assert NEUTRAL in page and "If you already have one, log in, then open the link again." in page
    assert "already exists" not in page
    # The same page as another refused address, but for the message and the echoed value.
    message = re.compile(r'<p class="field-error" id="f-email-error">[^<]*</p>')
    assert message.sub("", comparable(taken, patient.email)) == message.sub(
        "", comparable(malformed, "not-an-email")
    )
    assert count(app, User) == users
    assert invitation_state(app, token)[0] is False  # the link still works
    assert register(app.test_client(), path, email="robin@example.org").status_code == 200


# --- 6. a new recovery code needs the password (and the login code) ---------------------------


def recovery_wrapped(app, persona) -> bytes:
    with database(app) as session:
        return session.get(User, persona.id).recovery_wrapped


def test_a_live_session_alone_cannot_mint_a_new_recovery_code(app):
    user = make_user(app, role="patient", email="u@example.org", name="Un Sure", confirmed=False)
    client = app.test_client()
    login(client, user)
    before = recovery_wrapped(app, user)
    for form in ({}, {"password": "not my password at all"}):
        refused = post(client, "/recovery-code/new", form, token_from="/recovery-code")
        assert refused.status_code == 422
        assert "That is not your password." in refused.get_data(as_text=True)
        assert 'id="recovery-code-text"' not in refused.get_data(as_text=True)
    assert recovery_wrapped(app, user) == before
    made = post(client, "/recovery-code/new", {"password": PASSWORD}, token_from="/recovery-code")
    assert made.status_code == 200
    assert recovery_wrapped(app, user) != before


def test_with_two_step_login_a_new_recovery_code_also_needs_the_login_code(app):
    user = make_user(
        app, role="patient", email="u@example.org", name="Un Sure", confirmed=False, two_step=True
    )
    client = app.test_client()
    login(client, user)
    page = client.get("/recovery-code").get_data(as_text=True)
    assert 'name="code"' in page
    before = recovery_wrapped(app, user)
    only_password = post(
        client, "/recovery-code/new", {"password": PASSWORD}, token_from="/recovery-code"
    )
    assert only_password.status_code == 422
    assert recovery_wrapped(app, user) == before
    code = totp.code_at(user.totp_secret, totp.current_step() + 1)  # not the one just used
    made = post(
        client,
        "/recovery-code/new",
        {"password": PASSWORD, "code": code},
        token_from="/recovery-code",
    )
    assert made.status_code == 200
    assert recovery_wrapped(app, user) != before


# --- 7. session rows open nothing without the KEK, and expire by themselves -------------------


def cookie_key(client) -> bytes:
    value = next(c.value for c in client._cookies.values() if c.key.endswith("kj_session"))
    return sessions._parse(value)[1]


def test_a_session_row_and_its_key_cache_need_the_kek_as_well_as_the_cookie(app, patient):
    client = app.test_client()
    login(client, patient)
    with database(app) as session:
        journal.create(
            session=session,
            author=session.get(User, patient.id),
            kind="reflection",
            body={"text": "cached"},
            client_id=uuid.uuid4(),
        )
        session.commit()
    assert client.get("/journal").status_code == 200  # fills the key cache
    k_sess = cookie_key(client)
    with database(app) as session:
        (device,) = session.exec(select(DeviceSession)).all()
        private_ad = {"p": "private/session", "session": str(device.id), "user": str(patient.id)}
        cache_ad = {**private_ad, "p": "session/key-cache"}
        assert device.key_cache
        for blob, ad in ((device.key_wrapped, private_ad), (device.key_cache, cache_ad)):
            with pytest.raises(crypto.CryptoError):  # a dump and an old cookie: nothing
                crypto.open_sealed(k_sess, blob, ad)
            inner = accounts.keyring().open(blob, {**ad, "layer": "kek"})
            assert crypto.open_sealed(k_sess, inner, ad)
        _, private = accounts.authenticate(session=session, email=patient.email, password=PASSWORD)
        assert sessions.Unlocked(device, session.get(User, patient.id), k_sess).private_key() == (
            private
        )


def session_cookie(client) -> str:
    return next(c.value for c in client._cookies.values() if c.key.endswith("kj_session"))


def test_keys_rotate_reseals_sessions_and_one_under_a_retired_kek_ends_quietly(make_app):
    key_a, key_b = TEST_KEK, "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="
    old = make_app(KEKS=f"t1:{key_a}")
    user = make_user(old, role="patient", email="u@example.org", name="U")
    kept, missed = app_client_logged_in(old, user), app_client_logged_in(old, user)
    before = device_row(old, missed).key_wrapped  # under t1
    both = make_app(KEKS=f"t1:{key_a},t2:{key_b}", KEK_ACTIVE="t2")
    assert both.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
    assert device_row(both, kept).key_wrapped[1:3] == b"t2"
    # A row the rotation missed (e.g. written by a server still on the old configuration).
    with database(both) as session:
        device = session.get(DeviceSession, device_row(both, missed).id)
        device.key_wrapped = before
        session.add(device)
        session.commit()
    new = make_app(KEKS=f"t2:{key_b}")
    for client, works in ((kept, True), (missed, False)):
        again = new.test_client()
        again.set_cookie("kj_session", session_cookie(client))
        answer = again.get("/account")
        assert answer.status_code == (200 if works else 302), answer.status_code


def device_row(app, client) -> DeviceSession:
    token = session_cookie(client).split(".")[0]
    with database(app) as session:
        return session.exec(
            select(DeviceSession).where(DeviceSession.token_hash == crypto.token_hash(token))
        ).one()


def test_reseal_moves_every_session_row_to_the_active_kek(make_app):
    key_b = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="
    old = make_app(KEKS=f"t1:{TEST_KEK}")
    user = make_user(old, role="patient", email="u@example.org", name="U")
    client = app_client_logged_in(old, user)
    assert client.get("/journal").status_code == 200
    both = make_app(KEKS=f"t1:{TEST_KEK},t2:{key_b}", KEK_ACTIVE="t2")
    with database(both) as session:
        assert sessions.reseal(session=session, keyring=both.config["KEYRING"]) >= 1
        session.commit()
        ring = both.config["KEYRING"]
        assert {ring.kek_id_of(d.key_wrapped) for d in session.exec(select(DeviceSession))} == {
            "t2"
        }


def app_client_logged_in(app, persona):
    client = app.test_client()
    login(client, persona)
    return client


def backdate(app, user_id, *, idle=timedelta(0), age=timedelta(0), pending=None):
    with database(app) as session:
        for device in session.exec(select(DeviceSession).where(DeviceSession.user_id == user_id)):
            device.last_seen_at = utcnow() - idle
            device.created_at = utcnow() - age
            if pending is not None:
                device.mfa_pending = pending
            session.add(device)
        session.commit()


def devices(app, user_id=None) -> list[DeviceSession]:
    with database(app) as session:
        query = select(DeviceSession)
        if user_id is not None:
            query = query.where(DeviceSession.user_id == user_id)
        return list(session.exec(query))


def test_logging_in_deletes_that_users_expired_sessions_and_no_one_elses(
    app, patient, stranger_patient
):
    for who in (patient, stranger_patient):
        login(app.test_client(), who)
        backdate(app, who.id, idle=timedelta(minutes=31))
    login(app.test_client(), patient)  # the old cookie never comes back
    assert len(devices(app, patient.id)) == 1
    assert len(devices(app, stranger_patient.id)) == 1


def test_sweep_deletes_every_expired_session_by_role_and_age_and_counts_them(
    app, therapist, patient, supporter, stranger_patient, other_therapist
):
    cases = [  # (persona, idle, age, pending, expired)
        (therapist, timedelta(minutes=16), timedelta(minutes=20), None, True),
        (other_therapist, timedelta(minutes=14), timedelta(minutes=20), None, False),
        (patient, timedelta(minutes=16), timedelta(minutes=20), None, False),
        (stranger_patient, timedelta(minutes=31), timedelta(minutes=40), None, True),
        (supporter, timedelta(minutes=1), timedelta(hours=12, minutes=1), None, True),
    ]
    for persona, idle, age, pending, _ in cases:
        login(app.test_client(), persona)
        backdate(app, persona.id, idle=idle, age=age, pending=pending)
    # A password-only session that never gave its login code within ten minutes.
    waiting = app.test_client()
    post(waiting, "/login", {"email": other_therapist.email, "password": PASSWORD})
    with database(app) as session:
        row = session.exec(
            select(DeviceSession).where(
                DeviceSession.user_id == other_therapist.id, DeviceSession.mfa_pending
            )
        ).one()
        row.created_at = row.last_seen_at = utcnow() - timedelta(minutes=11)
        session.add(row)
        session.commit()
    with database(app) as session:
        deleted = sessions.sweep(session=session)
        session.commit()
    assert deleted == 4
    left = {(d.user_id, d.mfa_pending) for d in devices(app)}
    assert left == {(other_therapist.id, False), (patient.id, False)}
    with database(app) as session:
        assert sessions.sweep(session=session) == 0


# --- 10. password checks are rate-limited like logins --------------------------------------------


CHECKS = {  # endpoint → the form that asks for the password (wrong), from the page it is on
    "/account/password": (
        {"current": "wrong password, long enough", "new": "x", "new2": "x"},
        "/account/password",
    ),
    "/recovery-code/new": ({"password": "wrong password, long enough"}, "/account"),
    "/mfa/off": ({"off-password": "wrong password, long enough"}, "/mfa"),
    "/mfa/backup-codes": ({"codes-password": "wrong password, long enough"}, "/mfa"),
}


@pytest.mark.parametrize("path", list(CHECKS))
def test_the_fourth_wrong_password_in_a_minute_gets_429(make_app, path):
    app = make_app(LOGIN_LIMITS="3 per minute")
    user = make_user(app, role="patient", email="u@example.org", name="U", two_step=True)
    client = app.test_client()
    login(client, user)
    form, page = CHECKS[path]
    token = csrf_token(client, page)
    answers = [client.post(path, data={**form, "csrf_token": token}).status_code for _ in range(4)]
    assert answers[:3] == [422, 422, 422] and answers[3] == 429, answers


def _ip(n: int) -> dict:
    return {"environ_base": {"REMOTE_ADDR": f"203.0.113.{n}"}}


def test_password_checks_share_one_budget_per_account_across_ips_and_pages(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    user = make_user(app, role="patient", email="u@example.org", name="U", two_step=True)
    client = app.test_client()
    login(client, user)
    token = csrf_token(client, "/mfa")
    wrong = "wrong password, long enough"
    sent = [
        ("/mfa/off", {"off-password": wrong}, 1),
        ("/mfa/backup-codes", {"codes-password": wrong}, 2),
        ("/account/password", {"current": wrong, "new": "x", "new2": "x"}, 3),
    ]
    for path, form, n in sent:
        assert client.post(path, data={**form, "csrf_token": token}, **_ip(n)).status_code == 422
    right = {"current": PASSWORD, "new": "a brand new passphrase", "new2": "a brand new passphrase"}
    late = client.post("/account/password", data={**right, "csrf_token": token}, **_ip(4))
    assert late.status_code == 429


def test_password_checks_are_limited_per_ip_across_accounts(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    wrong = {"off-password": "wrong password, long enough"}
    answers = []
    for n in range(4):
        user = make_user(app, role="patient", email=f"u{n}@example.org", name="U", two_step=True)
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"203.0.113.{20 + n}"  # each logs in from home
        login(client, user)
        token = csrf_token(client, "/mfa")
        answers.append(client.post("/mfa/off", data={**wrong, "csrf_token": token}, **_ip(9)))
    assert [r.status_code for r in answers] == [422, 422, 422, 429]


# --- 11. the client's address comes only from trusted proxies -----------------------------------


def login_from(client, n: int, forwarded: str):
    data = {"email": f"guess{n}@example.org", "password": PASSWORD}
    return post(
        client,
        "/login",
        data,
        token_from="/login",
        environ_base={"REMOTE_ADDR": "10.0.0.5"},  # the reverse proxy
        headers={"X-Forwarded-For": forwarded},
    )


def test_behind_one_trusted_proxy_each_client_has_its_own_budget(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute", TRUSTED_PROXIES=1)
    client = app.test_client()
    first = [login_from(client, n, "198.51.100.1").status_code for n in range(4)]
    assert first == [422, 422, 422, 429]
    assert login_from(client, 5, "198.51.100.2").status_code == 422


def test_without_trusted_proxies_a_forged_forwarded_for_is_ignored(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    client = app.test_client()
    answers = [login_from(client, n, f"198.51.100.{n}").status_code for n in range(4)]
    assert answers == [422, 422, 422, 429]


# --- 12. `next` and `back` never leave the site --------------------------------------------------


HOSTILE = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "/\\\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "\t//evil.example",
    "/\n/evil.example",
    " //evil.example",
    "/%09/evil.example",
    "https://evil.example",
    "HTTPS:evil.example",
    "javascript:alert(1)",
    "%2F%2Fevil.example",
    "/\x00/evil.example",
    "/\u3000/evil.example",
]


def stays_on_site(location: str | None) -> bool:
    """What a browser does with a Location: drops tabs and newlines, trims controls and spaces,
    reads backslashes as slashes. On the site means: no scheme, no host, one leading slash."""
    if location is None:
        return True
    seen = re.sub(r"[\t\n\r]", "", location).strip("\x00\x01\x02\x03 ").replace("\\", "/")
    parts = urlsplit(seen)
    return not parts.scheme and not parts.netloc and seen.startswith("/")


@pytest.mark.parametrize("value", HOSTILE)
def test_safe_next_refuses_every_hostile_value(app, value):
    from kapjournal.views.auth import safe_next

    with app.test_request_context():
        assert safe_next(value) == "/home"
        assert safe_next(value, "/journal") == "/journal"
        assert safe_next("/journal?kind=x#entry-1") == "/journal?kind=x#entry-1"


@pytest.mark.parametrize("value", HOSTILE)
def test_login_and_the_code_step_never_send_anyone_off_the_site(app, therapist, patient, value):
    client = app.test_client()
    landed = post(client, "/login", {"email": patient.email, "password": PASSWORD, "next": value})
    assert landed.status_code == 303 and landed.headers["Location"] == "/home"
    anonymous = app.test_client().get("/login", query_string={"next": value})
    assert next_field(anonymous) == ""
    # Logged in without a pending code step, /mfa/verify passes `next` straight on.
    passed = client.get("/mfa/verify", query_string={"next": value})
    assert passed.status_code == 302 and passed.headers["Location"] == "/home"
    # With a pending code step: the form's `next` and the redirect after the code.
    other = app.test_client()
    post(other, "/login", {"email": therapist.email, "password": PASSWORD})
    page = other.get("/mfa/verify", query_string={"next": value})
    assert next_field(page) == "/home"
    code = totp.code_at(therapist.totp_secret, totp.current_step())
    done = post(other, "/mfa/verify", {"code": code, "next": value}, token_from="/mfa/verify")
    assert done.status_code == 303 and done.headers["Location"] == "/home"


def next_field(response) -> str:
    return re.search(r'name="next" value="([^"]*)"', response.get_data(as_text=True)).group(1)


@pytest.mark.parametrize("value", HOSTILE)
def test_two_step_setup_never_links_off_the_site(app, value):
    user = make_user(app, role="patient", email="u@example.org", name="U")
    client = app.test_client()
    login(client, user)
    page = client.get("/mfa/setup", query_string={"next": value}).get_data(as_text=True)
    assert re.search(r'name="next" value="([^"]*)"', page).group(1) == "/home"
    secret = re.search(r'id="totp-key" type="text" readonly value="([A-Z2-7 ]+)"', page).group(1)
    code = totp.code_at(secret.replace(" ", ""), totp.current_step())
    done = post(client, "/mfa/setup", {"code": code, "password": PASSWORD, "next": value})
    assert done.status_code == 200
    link = re.search(
        r'<a class="button" href="([^"]*)">I have saved them', done.get_data(as_text=True)
    )
    assert link.group(1) == "/home"


@pytest.fixture
def workspace_things(app, therapist, patient):
    """An entry shared with the therapist and flagged, a note and a practice: what the forms
    that go back to their page act on."""
    with database(app) as session:
        author, reader = session.get(User, patient.id), session.get(User, therapist.id)
        entry, _ = journal.create(
            session=session,
            author=author,
            kind="reflection",
            body={"text": "Shared with my therapist."},
            client_id=uuid.uuid4(),
            readers=[reader],
        )
        note = annotations.create(
            session=session, patient=author, author=reader, note="Ask", visibility="private"
        )
        practice = practices.create(
            session=session, patient=author, therapist=reader, body={"what": "Walk"}
        )
        session.commit()
        return entry.id, note.id, practice.id


def test_workspace_forms_go_back_only_to_a_page_on_the_site(
    app, therapist, patient, workspace_things
):
    entry_id, note_id, practice_id = workspace_things
    as_therapist, as_patient = app.test_client(), app.test_client()
    login(as_therapist, therapist)
    login(as_patient, patient)
    today = utcnow().date().isoformat()
    forms = [  # (client, path, form, where it goes without a good `next`)
        (as_therapist, f"/entries/{entry_id}/flag", {"flagged": "1"}, f"/entries/{entry_id}"),
        (as_therapist, f"/notes/{note_id}/flag", {"flagged": "1"}, "/"),
        (as_therapist, f"/notes/{note_id}/resolve", {"resolved": "1"}, "/"),
        (
            as_therapist,
            f"/patients/{patient.id}/session/discussed",
            {"kind": "entry", "id": str(entry_id), "discussed": "1"},
            f"/patients/{patient.id}/session",
        ),
        (as_patient, f"/practices/{practice_id}/tick", {"day": today, "done": "1"}, "/journal"),
    ]
    for client, path, form, default in forms:
        token = csrf_token(client, "/account")
        good = client.post(path, data={**form, "next": "/account#here", "csrf_token": token})
        assert good.status_code == 303 and good.headers["Location"] == "/account#here", path
        for value in HOSTILE:
            response = client.post(path, data={**form, "next": value, "csrf_token": token})
            location = response.headers.get("Location", "")
            assert response.status_code == 303, (path, value)
            assert stays_on_site(location) and location.startswith(default), (path, value)


# --- 11 and 13. production refuses to start without Redis or its base URL ------------------------


def production(**overrides) -> dict:
    return {
        "PRODUCTION": True,
        "SECRET_KEY": "s" * 48,
        "KEKS": f"k1:{TEST_KEK}",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "BASE_URL": "https://journal.example.org",
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"REDIS_URL": None}, "KAPJOURNAL_REDIS_URL"),
        ({"REDIS_URL": ""}, "KAPJOURNAL_REDIS_URL"),
        ({"BASE_URL": None}, "KAPJOURNAL_BASE_URL"),
        ({"BASE_URL": "journal.example.org"}, "KAPJOURNAL_BASE_URL"),
        ({"TRUSTED_PROXIES": -1}, "KAPJOURNAL_TRUSTED_PROXIES"),
    ],
    ids=["no-redis", "empty-redis", "no-base-url", "base-url-without-scheme", "negative-proxies"],
)
def test_production_refuses_to_start_without_redis_or_its_base_url(make_app, overrides, named):
    with pytest.raises(config.ConfigError, match=named):
        make_app(**production(**overrides))


def test_production_without_smtp_warns_at_start_up(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="kapjournal.config"):
        app = make_app(**production(SMTP_HOST=None))
    assert app.config["PRODUCTION"]
    assert any("KAPJOURNAL_SMTP_HOST" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kapjournal.config"):
        make_app(**production(SMTP_HOST="127.0.0.1"))
    assert not any("SMTP" in r.getMessage() for r in caplog.records)


def test_invitation_links_use_the_base_url_not_the_host_header(make_app):
    app = make_app(BASE_URL="https://journal.example.org")
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    client = app.test_client()
    client.environ_base["HTTP_HOST"] = "evil.example"  # every request names another host
    login(client, therapist)
    created = post(client, "/invitations", {"label": ""}, token_from="/invitations")
    assert created.status_code == 201
    link = re.search(r'id="invite-link" type="text" readonly value="([^"]+)"', created.text)
    assert link.group(1).startswith("https://journal.example.org/invite/")


# --- the SQLite database and its folder are private ---------------------------------------------


def test_a_new_instance_folder_and_sqlite_file_are_for_this_user_only(tmp_path, monkeypatch):
    for name in ("ENV", "DATABASE_URL", "SECRET_KEY", "KEKS", "KEK_ACTIVE"):
        monkeypatch.delenv(f"KAPJOURNAL_{name}", raising=False)
    instance = tmp_path / "instance"
    app = create_app({"INSTANCE_PATH": str(instance), "KDF_PARAMS": TEST_KDF, "TESTING": True})
    database_file = instance / "kapjournal.db"
    assert app.config["DATABASE_URL"] == f"sqlite:///{database_file}"
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert stat.S_IMODE(database_file.stat().st_mode) == 0o600
    db.upgrade(app.extensions["db_engine"])  # SQLite writes into it, the mode stays
    assert stat.S_IMODE(database_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((instance / "dev-secrets.json").stat().st_mode) == 0o600
    app.extensions["db_engine"].dispose()
