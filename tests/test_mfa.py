"""Two-step login (DESIGN §5): required for therapists, offered to everyone. A QR code and a
key to set it up, confirmed with a code and the password; single-use backup codes; a code is
never accepted twice; a session that has given only its password reaches nothing but the code
step; a therapist without it sees no patient data; the secret is sealed under the KEK."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from conftest import PASSWORD, csrf_token, login, make_user, post
from sqlmodel import Session, select

from kapjournal import crypto, db
from kapjournal.models import BackupCode, DeviceSession, User, utcnow
from kapjournal.services import accounts, totp

CODE_STEP = "/mfa/verify"
BACKUP = re.compile(r"<li>([0-9a-f]{5}-[0-9a-f]{5})</li>")
KEY = re.compile(r'id="totp-key" type="text" readonly value="([A-Z2-7 ]+)"')


@contextmanager
def db_session(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def user_row(app, persona) -> User:
    with db_session(app) as session:
        return session.get(User, persona.id)


def password_step(client, persona, **kw):
    return post(
        client,
        "/login",
        {"email": persona.email, "password": PASSWORD, **kw},
        token_from="/login",
    )


def code_now(persona, offset: int = 0) -> str:
    return totp.code_at(persona.totp_secret, totp.current_step() + offset)


def wrong_code(secret: str) -> str:
    """A code the app would refuse right now (not one of the three it accepts)."""
    right = {totp.code_at(secret, totp.current_step() + n) for n in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in right)


def send_code(client, code: str, step: str = CODE_STEP):
    return post(client, step, {"code": code}, token_from=step)


def session_cookie(client) -> str:
    return next(c.value for c in client._cookies.values() if c.key.endswith("kj_session"))


def devices_of(app, persona) -> list[DeviceSession]:
    with db_session(app) as session:
        query = select(DeviceSession).where(DeviceSession.user_id == persona.id)
        return list(session.exec(query))


def set_up_through_the_pages(client, *, next_path: str = "") -> tuple[str, list[str]]:
    """Scan (read) the key off the set-up page, confirm with a code; returns the secret and
    the backup codes shown."""
    page = client.get(f"/mfa/setup?next={next_path}" if next_path else "/mfa/setup")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'class="qr" src="data:image/svg+xml' in text
    secret = KEY.search(text).group(1).replace(" ", "")
    code = totp.code_at(secret, totp.current_step())
    done = post(
        client, "/mfa/setup", {"code": code, "password": PASSWORD, "next": next_path},
        token_from="/mfa/setup",
    )  # fmt: skip
    assert done.status_code == 200, done.get_data(as_text=True)[:800]
    assert "no-store" in done.headers["Cache-Control"]
    return secret, BACKUP.findall(done.get_data(as_text=True))


# --- the algorithm ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "at, code",
    [
        (59, "287082"),
        (1111111109, "081804"),
        (1111111111, "050471"),
        (1234567890, "005924"),
        (2000000000, "279037"),
        (20000000000, "353130"),
    ],
)
def test_codes_match_the_rfc_6238_test_vectors(at, code):
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert totp.code_at(secret, totp.current_step(at)) == code


def test_the_qr_code_carries_an_otpauth_link_for_this_account():
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, account="tess@example.org", issuer="Calm Clinic")
    assert uri.startswith("otpauth://totp/Calm%20Clinic:tess@example.org?")
    assert f"secret={secret}" in uri and "issuer=Calm+Clinic" in uri
    assert totp.qr_data_uri(uri).startswith("data:image/svg+xml")


# --- logging in with two steps -----------------------------------------------------------------


def test_a_therapist_gives_the_password_then_a_code_and_gets_a_new_session(
    app, client, therapist, patient
):
    first = password_step(client, therapist, next=f"/patients/{patient.id}")
    assert first.status_code == 303
    step = first.headers["Location"]
    assert step.startswith(CODE_STEP)
    pending = session_cookie(client)
    assert [d.mfa_pending for d in devices_of(app, therapist)] == [True]

    page = client.get(step)
    assert page.status_code == 200
    assert 'autocomplete="one-time-code"' in page.get_data(as_text=True)
    done = send_code(client, code_now(therapist), step)
    assert done.status_code == 303
    assert done.headers["Location"] == f"/patients/{patient.id}"
    # The password-only session is gone; a fresh one (new id and key) took its place.
    assert session_cookie(client) != pending
    assert [d.mfa_pending for d in devices_of(app, therapist)] == [False]
    assert patient.name in client.get(f"/patients/{patient.id}").get_data(as_text=True)


def test_a_password_only_session_reaches_nothing_but_the_code_step(app, client, therapist, patient):
    password_step(client, therapist)
    token = csrf_token(client, CODE_STEP)
    checked = 0
    for rule in app.url_map.iter_rules():
        # Confirming a just-shown recovery code is allowed (a reset shows one before the code
        # step); it reveals and changes nothing else.
        allowed = ("static", "mfa.verify", "auth.logout", "auth.recovery_code_confirm")
        if rule.endpoint in allowed or rule.arguments - {"patient_id"}:
            continue
        path = rule.rule.replace("<uuid:patient_id>", str(patient.id))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, data={"csrf_token": token})
            body = response.get_data(as_text=True)
            assert patient.name not in body, (method, path)
            if rule.endpoint.startswith("pwa.") or response.status_code == 404:
                continue
            assert response.status_code == 302, (method, path, response.status_code)
            assert response.headers["Location"].startswith(CODE_STEP), (method, path)
            checked += 1
    assert checked > 20
    assert [d.mfa_pending for d in devices_of(app, therapist)] == [True]


def test_a_wrong_code_is_refused_and_the_session_stays_pending(app, client, therapist):
    password_step(client, therapist)
    wrong = send_code(client, wrong_code(therapist.totp_secret))
    assert wrong.status_code == 422
    page = wrong.get_data(as_text=True)
    assert "That code did not work" in page
    assert 'aria-describedby="f-code-hint f-code-error"' in page
    assert client.get("/home").headers["Location"].startswith(CODE_STEP)


def test_a_code_is_never_accepted_twice(app, therapist):
    first = app.test_client()
    password_step(first, therapist)
    code = code_now(therapist)
    assert send_code(first, code).status_code == 303

    second = app.test_client()
    password_step(second, therapist)
    assert send_code(second, code).status_code == 422  # seen over a shoulder: useless now
    # The next code the app shows works (accepted up to one step early, for clock drift).
    assert send_code(second, code_now(therapist, +1)).status_code == 303


def test_an_old_code_from_two_steps_ago_is_refused(app, client, therapist):
    password_step(client, therapist)
    assert send_code(client, code_now(therapist, -2)).status_code == 422
    assert send_code(client, code_now(therapist, -1)).status_code == 303


def test_a_password_only_session_expires_after_ten_minutes(app, client, therapist):
    password_step(client, therapist)
    token = csrf_token(client, CODE_STEP)
    with db_session(app) as session:
        device = session.exec(select(DeviceSession)).one()
        device.created_at = utcnow() - timedelta(minutes=11)
        session.add(device)
        session.commit()
    response = client.post(CODE_STEP, data={"code": code_now(therapist), "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login")
    assert devices_of(app, therapist) == []


def test_the_code_step_is_rate_limited(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    therapist = make_user(app, role="therapist", email="rl@example.org", name="Dr. Rate")
    client = app.test_client()
    password_step(client, therapist)
    token = csrf_token(client, CODE_STEP)
    wrong = wrong_code(therapist.totp_secret)
    answers = [
        client.post(CODE_STEP, data={"code": wrong, "csrf_token": token}).status_code
        for _ in range(4)
    ]
    assert answers == [422, 422, 422, 429]


# --- backup codes ------------------------------------------------------------------------------


def test_backup_codes_are_shown_once_stored_hashed_and_work_once(app, client):
    user = make_user(app, role="patient", email="pia@example.org", name="Pia", two_step=False)
    login(client, user)
    _, codes = set_up_through_the_pages(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = backup_hashes(app, user)
    assert len(stored) == 10
    for code in codes:
        assert code not in str(stored) and code.replace("-", "") not in str(stored)

    other = app.test_client()
    password_step(other, user)
    assert send_code(other, codes[0].upper().replace("-", " ")).status_code == 303
    again = app.test_client()
    password_step(again, user)
    assert send_code(again, codes[0]).status_code == 422
    assert send_code(again, codes[1]).status_code == 303
    assert len(backup_hashes(app, user)) == 8


def backup_hashes(app, persona) -> list[str]:
    with db_session(app) as session:
        rows = session.exec(select(BackupCode).where(BackupCode.user_id == persona.id))
        return [row.code_hash for row in rows]


def test_new_backup_codes_need_the_password_and_replace_the_old_ones(app, therapist):
    client = app.test_client()
    login(client, therapist)
    refused = post(client, "/mfa/backup-codes", {"codes-password": "wrong"}, token_from="/mfa")
    assert refused.status_code == 422
    assert "That is not your password." in refused.get_data(as_text=True)
    made = post(client, "/mfa/backup-codes", {"codes-password": PASSWORD}, token_from="/mfa")
    assert made.status_code == 200
    codes = BACKUP.findall(made.get_data(as_text=True))
    assert len(codes) == 10
    assert "10 unused backup codes left" in client.get("/mfa").get_data(as_text=True)


# --- setting it up ----------------------------------------------------------------------------


def test_a_therapist_without_two_step_login_is_sent_to_set_it_up_before_any_patient_data(app):
    tess = make_user(app, role="therapist", email="tess@example.org", name="Dr. T", two_step=False)
    pat = make_user(app, role="patient", email="pat@example.org", name="Pat Q", invited_by=tess)
    client = app.test_client()
    login(client, tess)
    token = csrf_token(client, "/account")
    for path in ("/home", f"/patients/{pat.id}", f"/patients/{pat.id}/session", "/invitations"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/mfa/setup"), path
        assert pat.name not in response.get_data(as_text=True)
    posted = client.post(f"/patients/{pat.id}/practices", data={"csrf_token": token, "what": "x"})
    assert posted.headers["Location"].startswith("/mfa/setup")
    # The account page and the set-up itself stay open.
    assert client.get("/account").status_code == 200

    setup = client.get("/home", follow_redirects=True).get_data(as_text=True)
    assert "Before you see your patients\u2019 words" in setup
    _, codes = set_up_through_the_pages(client, next_path="/home")
    assert len(codes) == 10
    assert pat.name in client.get("/home").get_data(as_text=True)
    assert user_row(app, tess).totp_confirmed_at is not None


def test_setup_needs_a_right_code_and_the_password_and_keeps_the_same_key(app, client):
    user = make_user(app, role="patient", email="pia@example.org", name="Pia", two_step=False)
    login(client, user)
    first = KEY.search(client.get("/mfa/setup").get_data(as_text=True)).group(1)
    again = KEY.search(client.get("/mfa/setup").get_data(as_text=True)).group(1)
    assert first == again  # reloading does not invalidate what was scanned
    secret = first.replace(" ", "")
    good, bad = totp.code_at(secret, totp.current_step()), wrong_code(secret)
    for data, message in [
        ({"code": bad, "password": PASSWORD}, "That code does not match"),
        ({"code": good, "password": "not my password"}, "That is not your password."),
    ]:
        response = post(client, "/mfa/setup", data, token_from="/mfa/setup")
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    assert user_row(app, user).totp_confirmed_at is None
    assert "Two-step login is off" in client.get("/mfa").get_data(as_text=True)


def test_a_patient_may_turn_it_on_and_then_off_again(app, client):
    user = make_user(app, role="patient", email="pia@example.org", name="Pia", two_step=False)
    login(client, user)
    secret, _ = set_up_through_the_pages(client)
    assert "Two-step login is on" in client.get("/mfa").get_data(as_text=True)

    later = app.test_client()
    assert password_step(later, user).headers["Location"].startswith(CODE_STEP)
    assert send_code(later, totp.code_at(secret, totp.current_step() + 1)).status_code == 303

    refused = post(later, "/mfa/off", {"off-password": "nope"}, token_from="/mfa")
    assert refused.status_code == 422
    off = post(later, "/mfa/off", {"off-password": PASSWORD}, token_from="/mfa")
    assert off.status_code == 303 and off.headers["Location"] == "/mfa"
    row = user_row(app, user)
    assert row.totp_secret_enc is None and backup_hashes(app, user) == []
    assert password_step(app.test_client(), user).headers["Location"] == "/home"


def test_a_therapist_cannot_turn_it_off_only_set_it_up_on_a_new_phone(app, therapist, patient):
    client = app.test_client()
    login(client, therapist)
    assert "Set it up on a new phone" in client.get("/mfa").get_data(as_text=True)
    moved = post(client, "/mfa/off", {"off-password": PASSWORD}, token_from="/mfa")
    assert moved.headers["Location"] == "/mfa/setup"
    assert client.get(f"/patients/{patient.id}").headers["Location"].startswith("/mfa/setup")


# --- the secret at rest ----------------------------------------------------------------------


def test_the_secret_is_sealed_under_the_kek_and_bound_to_its_user(app, database, therapist):
    row = user_row(app, therapist)
    assert therapist.totp_secret.encode() not in row.totp_secret_enc
    other = make_user(app, role="therapist", email="o2@example.org", name="Dr. O")
    with db_session(app) as session:
        victim = session.get(User, other.id)
        victim.totp_secret_enc = row.totp_secret_enc  # a blob moved to another account
        session.add(victim)
        session.commit()
        with pytest.raises(crypto.CryptoError):
            totp.secret_of(session.get(User, other.id))
    if database["kind"] == "sqlite":
        assert therapist.totp_secret.encode() not in database["path"].read_bytes()


def test_pending_session_holds_no_plaintext_key_and_ends_at_logout(app, client, therapist):
    password_step(client, therapist)
    (device,) = devices_of(app, therapist)
    with db_session(app) as session:
        private = accounts.authenticate(session=session, email=therapist.email, password=PASSWORD)[
            1
        ]
    assert private not in device.key_wrapped
    out = post(client, "/logout", token_from=CODE_STEP)
    assert out.status_code == 303
    assert devices_of(app, therapist) == []


def test_the_time_steps_are_thirty_seconds():
    now = time.time()
    assert totp.current_step(now + 30) == totp.current_step(now) + 1


def test_a_recovery_code_reset_still_asks_for_the_login_code(app, therapist):
    """The recovery code stands in for the password, never for the second factor."""
    from conftest import csrf_token

    client = app.test_client()
    page = client.get("/reset").get_data(as_text=True)
    assert "Reset your password" in page
    response = client.post(
        "/reset",
        data={
            "csrf_token": csrf_token(client, "/reset"),
            "email": therapist.email,
            "code": therapist.recovery_code,
            "new": "a brand new long passphrase",
            "new2": "a brand new long passphrase",
        },
    )
    assert response.status_code == 200
    assert 'id="recovery-code-text"' in response.get_data(as_text=True)
    # The new code can be confirmed, but nothing with patient data opens before the code step.
    home = client.get("/home")
    assert home.status_code == 302
    assert "/mfa/verify" in home.headers["Location"]
    assert client.get("/invitations").status_code == 302
