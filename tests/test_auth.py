"""Login, logout, sessions, timeouts, rate limits, recovery codes and the owner set-up (DESIGN §5),
all over real HTTP with the Flask test client."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import statistics
import time
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import PASSWORD, RATE_LIMIT_PREFIX, csrf_token, login, make_user, post
from sqlmodel import Session, select

from kapjournal import crypto, db
from kapjournal.models import DeviceSession, User, utcnow

NEW_PASSWORD = "a brand new passphrase for testing"
SAME_ANSWER = "That email and password do not match an account. Check both."
IDLE_NOTE = "You were logged out after a while without activity"
_CODE = re.compile(r'id="recovery-code"[^>]*value="([A-Z2-7-]+)"')
_ALERT = re.compile(r'role="alert">([^<]*)<')


# --- helpers -------------------------------------------------------------------------------------


def assert_layout(response) -> str:
    """The page has the landmarks of base.html and the one-tap crisis link."""
    page = response.get_data(as_text=True)
    for landmark in ("<header", "<nav", "<main", "<footer"):
        assert landmark in page, f"{landmark} missing"
    assert "Need help now?" in page
    return page


def set_cookie(response, name: str) -> str:
    """The Set-Cookie header for cookie `name` (exactly one)."""
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    return headers[0]


def cookie_attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def session_cookie(client, name: str = "kj_session") -> str | None:
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None


def fresh_client_with(app, value: str, name: str = "kj_session"):
    """Another browser that replays a copied login cookie."""
    other = app.test_client()
    other.set_cookie(name, value)
    return other


def devices_of(app, user_id) -> list[DeviceSession]:
    with app.app_context(), Session(db.engine()) as dbs:
        return list(dbs.exec(select(DeviceSession).where(DeviceSession.user_id == user_id)))


def backdate(app, user_id, *, idle: timedelta | None = None, age: timedelta | None = None):
    """Make the user's device sessions look idle (`last_seen_at`) or old (`created_at`)."""
    with app.app_context(), Session(db.engine()) as dbs:
        for device in dbs.exec(select(DeviceSession).where(DeviceSession.user_id == user_id)):
            now = utcnow()
            device.last_seen_at = now - idle if idle else now
            if age:
                device.created_at = now - age
            dbs.add(device)
        dbs.commit()


def is_login_redirect(response, path: str) -> bool:
    if response.status_code != 302:
        return False
    location = urlsplit(response.headers["Location"])
    return location.path == "/login" and parse_qs(location.query).get("next") == [path]


def shown_code(response) -> str:
    match = _CODE.search(response.get_data(as_text=True))
    assert match, "no recovery code on the page"
    return match.group(1)


def reset(client, email: str, code: str, new: str = NEW_PASSWORD):
    return post(
        client,
        "/reset",
        {"email": email, "code": code, "new": new, "new2": new},
        token_from="/reset",
    )


def try_login(client, email: str, password: str, **kw):
    return post(client, "/login", {"email": email, "password": password}, token_from="/login", **kw)


# --- login cookie --------------------------------------------------------------------------------


def test_login_sets_an_httponly_samesite_lax_cookie(client, patient):
    response = login(client, patient)
    assert response.headers["Location"] == "/home"
    header = set_cookie(response, "kj_session")
    attributes = cookie_attributes(header)
    assert "httponly" in attributes
    assert "samesite=lax" in header.lower()
    assert "path=/" in header.lower()
    assert client.get("/home").status_code == 200


def test_secure_config_uses_a_host_prefixed_secure_cookie(make_app):
    app = make_app(COOKIE_SECURE=True)
    user = make_user(app, role="patient", email="sec@example.org", name="Sec Ure")
    client = app.test_client()
    https = {"base_url": "https://localhost"}
    form_page = client.get("/login", **https)
    # The pages send no Referer (Referrer-Policy), so the HTTPS form post must work without one.
    referrer_policy = form_page.headers["Referrer-Policy"]
    headers = {} if referrer_policy == "no-referrer" else {"Referer": "https://localhost/login"}
    token = re.search(r'name="csrf_token" value="([^"]+)"', form_page.get_data(as_text=True))
    response = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token.group(1)},
        headers=headers,
        **https,
    )
    assert response.status_code == 303
    header = set_cookie(response, "__Host-kj_session")
    attributes = cookie_attributes(header)
    assert {"secure", "httponly", "path", "samesite"} <= attributes
    assert "domain" not in attributes
    assert re.search(r"(?i);\s*path=/(;|$)", header)
    assert "samesite=lax" in header.lower()
    cookies = response.headers.getlist("Set-Cookie")
    assert not [h for h in cookies if h.startswith("kj_session=")]
    assert client.get("/home", **https).status_code == 200


# --- failed logins say nothing about which part was wrong ----------------------------------------


def test_wrong_password_and_unknown_email_get_the_same_answer(client, patient):
    wrong_password = try_login(client, patient.email, "not the right password at all")
    unknown_email = try_login(client, "nobody@example.org", PASSWORD)
    assert wrong_password.status_code == unknown_email.status_code == 422
    messages = [_ALERT.findall(r.get_data(as_text=True)) for r in (wrong_password, unknown_email)]
    assert messages[0] == messages[1] == [html.escape(SAME_ANSWER, quote=True)]
    for response in (wrong_password, unknown_email):
        page = assert_layout(response)
        assert "f-email-error" not in page and "f-password-error" not in page
        cookies = response.headers.getlist("Set-Cookie")
        assert not any(h.startswith("kj_session=") for h in cookies)
    assert client.get("/home").status_code == 302


def test_unknown_email_takes_about_as_long_as_a_wrong_password(make_app):
    """Both run Argon2id at production cost, so timing does not reveal who has an account."""
    app = make_app(KDF_PARAMS=crypto.PRODUCTION_KDF)
    user = make_user(app, role="patient", email="timed@example.org", name="Tim Ed")
    client = app.test_client()
    token = csrf_token(client, "/login")
    timings: dict[str, list[float]] = {"wrong": [], "unknown": []}
    attempts = {"wrong": user.email, "unknown": "nobody-here@example.org"}
    for _ in range(3):
        for kind, email in attempts.items():
            data = {
                "email": email,
                "password": "a wrong password, long enough",
                "csrf_token": token,
            }
            start = time.perf_counter()
            response = client.post("/login", data=data)
            timings[kind].append(time.perf_counter() - start)
            assert response.status_code == 422
    wrong, unknown = statistics.median(timings["wrong"]), statistics.median(timings["unknown"])
    assert unknown >= 0.5 * wrong, f"unknown email {unknown:.3f}s vs wrong password {wrong:.3f}s"


# --- the session id rotates at login --------------------------------------------------------------


def test_logging_in_again_rotates_the_session_and_csrf_cookies(app, client, patient):
    login(client, patient)
    old_session = session_cookie(client)
    old_token = csrf_token(client, "/home")
    old_csrf_cookie = session_cookie(client, "kj_csrf")
    assert old_session and old_csrf_cookie

    response = post(
        client, "/login", {"email": patient.email, "password": PASSWORD}, token_from="/home"
    )
    assert response.status_code == 303
    new_session = session_cookie(client)
    assert new_session and new_session != old_session
    assert client.get("/home").status_code == 200
    assert len(devices_of(app, patient.id)) == 1

    replay = fresh_client_with(app, old_session)
    assert is_login_redirect(replay.get("/home"), "/home")

    # The CSRF session is reset too: the old token no longer passes, a fresh one does.
    assert session_cookie(client, "kj_csrf") != old_csrf_cookie
    assert client.post("/logout", data={"csrf_token": old_token}).status_code == 400
    assert client.get("/home").status_code == 200


def test_logged_in_user_visiting_login_goes_home(as_patient):
    response = as_patient.get("/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/home"


# --- logout ------------------------------------------------------------------------------------


def test_logout_by_get_is_404(as_patient):
    response = as_patient.get("/logout")
    assert response.status_code == 404
    assert_layout(response)
    assert as_patient.get("/home").status_code == 200


def test_logout_without_csrf_token_is_refused(as_patient):
    response = as_patient.post("/logout")
    assert response.status_code == 400
    assert_layout(response)
    assert as_patient.get("/home").status_code == 200


def test_logout_clears_site_data_and_ends_the_device_session(app, as_patient, patient):
    old_cookie = session_cookie(as_patient)
    assert len(devices_of(app, patient.id)) == 1

    response = post(as_patient, "/logout", token_from="/home")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert devices_of(app, patient.id) == []
    assert session_cookie(as_patient) is None
    assert is_login_redirect(as_patient.get("/home"), "/home")

    replay = fresh_client_with(app, old_cookie)
    assert is_login_redirect(replay.get("/home"), "/home")


# --- idle and absolute timeouts ------------------------------------------------------------------


def test_patient_idle_for_31_minutes_is_logged_out_with_a_note(app, as_patient, patient):
    backdate(app, patient.id, idle=timedelta(minutes=31))
    response = as_patient.get("/home")
    assert is_login_redirect(response, "/home")
    assert devices_of(app, patient.id) == []
    page = assert_layout(as_patient.get(response.headers["Location"]))
    assert IDLE_NOTE in page


def test_therapist_times_out_after_16_idle_minutes_but_patient_does_not(
    app, as_patient, as_therapist, patient, therapist
):
    backdate(app, therapist.id, idle=timedelta(minutes=16))
    backdate(app, patient.id, idle=timedelta(minutes=16))
    assert is_login_redirect(as_therapist.get("/home"), "/home")
    assert as_patient.get("/home").status_code == 200


def test_session_ends_12_hours_after_login_even_when_active(app, as_patient, patient):
    backdate(app, patient.id, age=timedelta(hours=12, minutes=1))
    assert is_login_redirect(as_patient.get("/home"), "/home")
    assert devices_of(app, patient.id) == []


def test_idle_minutes_is_configurable(make_app):
    app = make_app(IDLE_MINUTES=5)
    user = make_user(app, role="patient", email="short@example.org", name="Shor Tidle")
    client = app.test_client()
    login(client, user)
    backdate(app, user.id, idle=timedelta(minutes=4))
    assert client.get("/home").status_code == 200
    backdate(app, user.id, idle=timedelta(minutes=6))
    assert is_login_redirect(client.get("/home"), "/home")


# --- rate limits -------------------------------------------------------------------------------


def _ip(n: int) -> dict:
    return {"environ_base": {"REMOTE_ADDR": f"203.0.113.{n}"}}


def test_fourth_login_for_the_same_email_gets_a_calm_429(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    user = make_user(app, role="patient", email="limited@example.org", name="Lim Ited")
    client = app.test_client()
    for _ in range(3):
        assert try_login(client, user.email, "wrong password, long enough").status_code == 422
    # Even the right password waits now.
    response = try_login(client, user.email, PASSWORD)
    assert response.status_code == 429
    page = assert_layout(response)
    assert "Too many attempts" in page and "please wait a few minutes" in page
    assert session_cookie(client) is None


def test_login_is_limited_per_ip_across_emails(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    client = app.test_client()
    for n in range(3):
        assert try_login(client, f"guess{n}@example.org", PASSWORD, **_ip(1)).status_code == 422
    assert try_login(client, "guess3@example.org", PASSWORD, **_ip(1)).status_code == 429
    # Another address is not affected: the limit is per IP, not global.
    assert try_login(client, "guess4@example.org", PASSWORD, **_ip(2)).status_code == 422


def test_login_is_limited_per_account_across_ips(make_app):
    app = make_app(LOGIN_LIMITS="3 per minute")
    user = make_user(app, role="patient", email="target@example.org", name="Tar Get")
    client = app.test_client()
    for n in range(3):
        assert (
            try_login(client, user.email, "wrong password, long enough", **_ip(10 + n)).status_code
            == 422
        )
    assert try_login(client, user.email, PASSWORD, **_ip(20)).status_code == 429
    # The same (fresh) address may still try another account.
    assert try_login(client, "other@example.org", PASSWORD, **_ip(20)).status_code == 422


def test_login_limit_counters_live_in_redis_when_configured(make_app):
    url = os.environ.get("KAPJOURNAL_TEST_REDIS_URL")
    if not url:
        pytest.skip("KAPJOURNAL_TEST_REDIS_URL is not set (CI sets redis://127.0.0.1:6379/15)")
    import redis

    store = redis.Redis.from_url(url)
    # Only this run's counters: other runs and pytest-xdist workers may share this Redis.
    ours = f"*{RATE_LIMIT_PREFIX}*"

    def forget_ours() -> None:
        for key in store.scan_iter(ours):
            store.delete(key)

    forget_ours()
    try:
        app = make_app(REDIS_URL=url, LOGIN_LIMITS="3 per minute")
        client = app.test_client()
        for n in range(3):
            assert try_login(client, "r@example.org", PASSWORD, **_ip(30 + n)).status_code == 422
        assert try_login(client, "r@example.org", PASSWORD, **_ip(40)).status_code == 429
        keys = [k.decode() for k in store.scan_iter(ours)]
        assert keys, "no rate-limit counters in Redis"
        assert any("LIMITER" in k for k in keys), keys
        # A second app on the same Redis (another server behind the load balancer) sees them.
        other = make_app(REDIS_URL=url, LOGIN_LIMITS="3 per minute").test_client()
        assert try_login(other, "r@example.org", PASSWORD, **_ip(41)).status_code == 429
    finally:
        forget_ours()


# --- where login sends you ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/home", "/account"])
def test_anonymous_is_sent_to_login_and_comes_back_after(client, patient, path):
    response = client.get(path)
    assert is_login_redirect(response, path)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert IDLE_NOTE not in page  # never logged in, so no note about inactivity
    next_value = re.search(r'name="next" value="([^"]*)"', page).group(1)
    assert unquote(next_value) == path
    data = {"email": patient.email, "password": PASSWORD, "next": next_value}
    landed = post(client, "/login", data, token_from="/login")
    assert landed.status_code == 303
    assert landed.headers["Location"] == path
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "target", ["//evil.example", "https://evil.example", "/\\evil.example", "///evil.example"]
)
def test_login_ignores_a_next_that_leaves_the_site(client, patient, target):
    data = {"email": patient.email, "password": PASSWORD, "next": target}
    response = post(client, "/login", data, token_from="/login")
    assert response.status_code == 303
    assert response.headers["Location"] == "/home"


# --- the recovery code gate ---------------------------------------------------------------------


def test_unconfirmed_recovery_code_must_be_replaced_and_confirmed(app, client):
    user = make_user(
        app, role="patient", email="unsure@example.org", name="Un Sure", confirmed=False
    )
    login(client, user)
    for path in ("/home", "/account"):
        gated = client.get(path)
        assert gated.status_code == 302
        assert gated.headers["Location"] == "/recovery-code"
    offer = client.get("/recovery-code")
    assert offer.status_code == 200
    assert 'action="/recovery-code/new"' in assert_layout(offer)

    made = post(client, "/recovery-code/new", {"password": PASSWORD}, token_from="/recovery-code")
    assert made.status_code == 200
    assert made.headers["Cache-Control"] == "no-store"
    assert_layout(made)
    code = shown_code(made)
    assert code != user.recovery_code

    unticked = post(client, "/recovery-code/confirm", {"code": code}, token_from="/recovery-code")
    assert unticked.status_code == 422
    page = assert_layout(unticked)
    assert shown_code(unticked) == code
    assert 'aria-describedby="f-saved-error"' in page and 'id="f-saved-error"' in page
    assert client.get("/home").headers["Location"] == "/recovery-code"

    ticked = post(
        client,
        "/recovery-code/confirm",
        {"code": code, "saved": "yes"},
        token_from="/recovery-code",
    )
    assert ticked.status_code == 303
    assert ticked.headers["Location"] == "/welcome"  # a new account: the first-run welcome
    assert client.get("/home").status_code == 200

    # The code from registration stopped working when the new one was made.
    stale = reset(app.test_client(), user.email, user.recovery_code)
    assert stale.status_code == 422
    assert "do not match" in stale.get_data(as_text=True)
    assert reset(app.test_client(), user.email, code).status_code == 200


# --- the clinic owner's set-up ------------------------------------------------------------------


def test_empty_database_offers_owner_setup_once(app, client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/setup"
    assert_layout(client.get("/setup"))

    form = {
        "name": "Olive Owner",
        "email": "owner@example.org",
        "password": PASSWORD,
        "password2": PASSWORD,
    }
    made = post(client, "/setup", form, token_from="/setup")
    assert made.status_code == 200
    assert_layout(made)
    code = shown_code(made)
    assert session_cookie(client)
    with app.app_context(), Session(db.engine()) as dbs:
        users = list(dbs.exec(select(User)))
    assert len(users) == 1
    assert users[0].is_owner is True and users[0].role == "therapist"

    # Logged in straight away; the code is confirmed on the same page.
    confirm = {"code": code, "saved": "yes"}
    assert (
        post(client, "/recovery-code/confirm", confirm, token_from="/recovery-code").status_code
        == 303
    )
    # A therapist sets up two-step login before seeing any patient data: home sends them there.
    home = client.get("/home", follow_redirects=True).get_data(as_text=True)
    assert "Set up two-step login" in home and "Olive Owner" in home

    stranger = app.test_client()
    assert stranger.get("/setup").status_code == 404
    again = dict(form, email="second@example.org")
    assert post(stranger, "/setup", again, token_from="/login").status_code == 404
    assert stranger.get("/").headers["Location"] == "/login"


def test_setup_is_gone_once_any_user_exists(client, supporter):
    response = client.get("/setup")
    assert response.status_code == 404
    assert_layout(response)
    form = {
        "name": "Mal Lory",
        "email": "mal@example.org",
        "password": PASSWORD,
        "password2": PASSWORD,
    }
    assert post(client, "/setup", form, token_from="/login").status_code == 404
    assert client.get("/").headers["Location"] == "/login"


# --- registration -----------------------------------------------------------------------------


def _row_bytes(app, user_id) -> bytes:
    """Every column of the user's row, as bytes."""
    table = User.__table__
    with app.app_context(), db.engine().connect() as conn:
        row = conn.execute(table.select().where(table.c.id == user_id)).one()
    parts = []
    for value in row:
        if isinstance(value, bytes):
            parts.append(value)
        elif isinstance(value, dict):
            parts.append(json.dumps(value).encode())
        else:
            parts.append(str(value).encode())
    return b"\x00".join(parts)


def test_registration_shows_the_recovery_code_once_and_never_stores_it(app, as_therapist):
    created = post(
        as_therapist, "/invitations", {"label": "new patient"}, token_from="/invitations"
    )
    assert created.status_code == 201
    token = re.search(r"/invite/([A-Za-z0-9_-]+)", created.get_data(as_text=True)).group(1)

    client = app.test_client()
    assert client.get(f"/invite/{token}").status_code == 200
    form = {
        "name": "Reg Istered",
        "email": "reg@example.org",
        "password": PASSWORD,
        "password2": PASSWORD,
    }
    registered = post(client, f"/invite/{token}", form, token_from=f"/invite/{token}")
    assert registered.status_code == 200
    assert registered.headers["Cache-Control"] == "no-store"
    assert_layout(registered)
    code = shown_code(registered)

    # Not shown again.
    for path in ("/home", "/recovery-code", "/account"):
        assert code not in client.get(path, follow_redirects=True).get_data(as_text=True)

    with app.app_context(), Session(db.engine()) as dbs:
        user = next(u for u in dbs.exec(select(User).where(User.role == "patient")))
    stored = _row_bytes(app, user.id)
    raw = base64.b32decode(code.replace("-", ""))
    for needle in (code, code.replace("-", ""), code.lower(), code.replace("-", "").lower()):
        assert needle.encode() not in stored
        assert needle.encode("utf-16-le") not in stored
    assert raw not in stored
    assert base64.b64encode(raw) not in stored


@pytest.mark.parametrize("path", ["/login", "/reset", "/recovery-code", "/help"])
def test_public_and_auth_pages_have_landmarks_and_the_help_link(app, client, path):
    user = make_user(app, role="patient", email="lay@example.org", name="Lay Out", confirmed=False)
    login(client, user)
    if path in ("/login", "/reset", "/help"):
        client = app.test_client()
    response = client.get(path)
    assert response.status_code == 200
    assert_layout(response)
