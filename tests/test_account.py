"""The account page: my logged-in devices, password change, and reset with the recovery code
(DESIGN §3 flow 6, §5), all over real HTTP with the Flask test client."""

from __future__ import annotations

import dataclasses
import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import PASSWORD, login, post
from sqlmodel import Session, select

from kapjournal import crypto, db
from kapjournal.models import DeviceSession, User
from kapjournal.services import sessions

NEW_PASSWORD = "lanterns over the quiet harbour"
OTHER_PASSWORD = "seven blue kites in april wind"
PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari"
LAPTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
DO_NOT_MATCH = "That email address and recovery code do not match."
_CODE = re.compile(r'id="recovery-code"[^>]*value="([A-Z2-7-]+)"')
_ITEM = re.compile(r'<li class="card">(.*?)</li>', re.S)


# --- helpers -------------------------------------------------------------------------------------


def assert_layout(response) -> str:
    """The page has the landmarks of base.html and the one-tap crisis link."""
    page = response.get_data(as_text=True)
    for landmark in ("<header", "<nav", "<main", "<footer"):
        assert landmark in page, f"{landmark} missing"
    assert "Need help now?" in page
    return page


def logged_in_client(app, persona, user_agent: str | None = None):
    client = app.test_client()
    if user_agent:
        client.environ_base["HTTP_USER_AGENT"] = user_agent
    login(client, persona)
    return client


def is_login_redirect(response, path: str = "/home") -> bool:
    if response.status_code != 302:
        return False
    location = urlsplit(response.headers["Location"])
    return location.path == "/login" and parse_qs(location.query).get("next") == [path]


def cookie_of(client) -> str:
    cookie = client.get_cookie("kj_session")
    assert cookie, "not logged in"
    return cookie.value


def device_of(app, client) -> DeviceSession:
    """The device session row behind a client's login cookie."""
    token = cookie_of(client).partition(".")[0]
    with app.app_context(), Session(db.engine()) as dbs:
        query = select(DeviceSession).where(DeviceSession.token_hash == crypto.token_hash(token))
        return dbs.exec(query).one()


def device_ids(app, user_id) -> set:
    with app.app_context(), Session(db.engine()) as dbs:
        query = select(DeviceSession.id).where(DeviceSession.user_id == user_id)
        return set(dbs.exec(query))


def private_key_of(app, client) -> bytes:
    """The private key a client's session unlocks (with K_sess from its cookie)."""
    with app.app_context(), Session(db.engine()) as dbs:
        unlocked = sessions.resume(session=dbs, cookie_value=cookie_of(client))
        assert unlocked is not None
        return unlocked.private_key()


def key_material(app, user_id) -> dict:
    """Everything a password change or reset could touch on the user's row."""
    with app.app_context(), Session(db.engine()) as dbs:
        user = dbs.get(User, user_id)
        return {
            "kdf_salt": user.kdf_salt,
            "verifier_enc": user.verifier_enc,
            "private_wrapped": user.private_wrapped,
            "recovery_wrapped": user.recovery_wrapped,
            "public": crypto.PublicKey(mlkem=user.public_mlkem, x25519=user.public_x25519),
        }


def can_log_in(app, email: str, password: str) -> bool:
    client = app.test_client()
    data = {"email": email, "password": password}
    response = post(client, "/login", data, token_from="/login")
    assert response.status_code in (303, 422)
    return response.status_code == 303


def change_password(client, current: str, new: str, new2: str | None = None):
    data = {"current": current, "new": new, "new2": new if new2 is None else new2}
    return post(client, "/account/password", data, token_from="/account/password")


def reset(client, email: str, code: str, new: str = NEW_PASSWORD):
    data = {"email": email, "code": code, "new": new, "new2": new}
    return post(client, "/reset", data, token_from="/reset")


def shown_code(response) -> str:
    match = _CODE.search(response.get_data(as_text=True))
    assert match, "no recovery code on the page"
    return match.group(1)


def field_error(page: str, field: str) -> str | None:
    """The error shown for a field, checked to be tied to its input with aria-describedby."""
    match = re.search(rf'<p class="field-error" id="f-{field}-error">([^<]*)</p>', page)
    if match is None:
        return None
    tag = re.search(rf'<input id="f-{field}"[^>]*>', page).group(0)
    assert 'aria-invalid="true"' in tag
    described_by = re.search(r'aria-describedby="([^"]*)"', tag).group(1).split()
    assert f"f-{field}-error" in described_by
    return html.unescape(match.group(1))


def end_device(client, device_id):
    return post(client, f"/account/devices/{device_id}/logout", token_from="/account")


# --- my logged-in devices ---------------------------------------------------------------------


def test_account_lists_each_logged_in_device_and_marks_this_one(app, patient):
    phone = logged_in_client(app, patient, PHONE)
    laptop = logged_in_client(app, patient, LAPTOP)
    this, other = device_of(app, phone), device_of(app, laptop)

    response = phone.get("/account")
    assert response.status_code == 200
    page = assert_layout(response)
    items = _ITEM.findall(page)
    assert len(items) == 2
    mine = [item for item in items if "this device" in item]
    assert len(mine) == 1
    assert f"/account/devices/{this.id}/logout" in mine[0]
    assert "Chrome on Android" in mine[0]
    assert "Log out that device" not in mine[0]
    theirs = next(item for item in items if item is not mine[0])
    assert f"/account/devices/{other.id}/logout" in theirs
    assert "Firefox on Windows" in theirs
    assert "Log out that device" in theirs


def test_log_out_that_device_ends_the_other_session(app, patient):
    phone = logged_in_client(app, patient, PHONE)
    laptop = logged_in_client(app, patient, LAPTOP)
    this, other = device_of(app, phone), device_of(app, laptop)

    response = end_device(phone, other.id)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    assert "Clear-Site-Data" not in response.headers
    assert device_ids(app, patient.id) == {this.id}
    assert is_login_redirect(laptop.get("/home"))
    assert phone.get("/home").status_code == 200
    page = phone.get("/account").get_data(as_text=True)
    assert len(_ITEM.findall(page)) == 1


def test_cannot_end_another_users_device_session(app, patient, stranger_patient):
    mine = logged_in_client(app, patient)
    theirs = logged_in_client(app, stranger_patient)
    target = device_of(app, theirs)

    response = end_device(mine, target.id)
    assert response.status_code == 404
    assert_layout(response)
    assert target.id in device_ids(app, stranger_patient.id)
    assert theirs.get("/home").status_code == 200
    assert mine.get("/home").status_code == 200


def test_logging_out_this_device_from_the_list_is_a_logout(app, patient):
    phone = logged_in_client(app, patient, PHONE)
    laptop = logged_in_client(app, patient, LAPTOP)
    this, other = device_of(app, phone), device_of(app, laptop)

    response = end_device(phone, this.id)
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert phone.get_cookie("kj_session") is None
    assert is_login_redirect(phone.get("/home"))
    assert device_ids(app, patient.id) == {other.id}
    assert laptop.get("/home").status_code == 200


# --- password change ---------------------------------------------------------------------------


def test_wrong_current_password_changes_nothing(app, patient):
    here = logged_in_client(app, patient)
    elsewhere = logged_in_client(app, patient)
    before = key_material(app, patient.id)

    response = change_password(here, "this is not my password", NEW_PASSWORD)
    assert response.status_code == 422
    page = assert_layout(response)
    assert field_error(page, "current") == "That is not your current password."
    assert key_material(app, patient.id) == before
    assert elsewhere.get("/home").status_code == 200
    assert can_log_in(app, patient.email, PASSWORD)
    assert not can_log_in(app, patient.email, NEW_PASSWORD)


@pytest.mark.parametrize(
    ("new", "new2", "field", "message"),
    [
        ("too short", "too short", "new", "Use at least 12 characters."),
        ("password12345", "password12345", "new", "commonly used passwords"),
        (NEW_PASSWORD, OTHER_PASSWORD, "new2", "The two new passwords are not the same."),
    ],
    ids=["too-short", "common", "mismatched"],
)
def test_unacceptable_new_password_is_refused_at_its_field(app, patient, new, new2, field, message):
    here = logged_in_client(app, patient)
    elsewhere = logged_in_client(app, patient)
    before = key_material(app, patient.id)

    response = change_password(here, PASSWORD, new, new2)
    assert response.status_code == 422
    page = assert_layout(response)
    assert message in field_error(page, field)
    assert field_error(page, "current") is None
    assert key_material(app, patient.id) == before
    assert elsewhere.get("/home").status_code == 200
    assert can_log_in(app, patient.email, PASSWORD)


def test_password_change_ends_other_sessions_and_keeps_the_key(app, patient):
    here = logged_in_client(app, patient)
    elsewhere = logged_in_client(app, patient)
    key_before = private_key_of(app, here)
    public_before = key_material(app, patient.id)["public"]
    assert crypto.public_key_of(key_before) == public_before

    response = change_password(here, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200
    assert "Your password was changed" in assert_layout(response)
    assert here.get("/home").status_code == 200
    assert is_login_redirect(elsewhere.get("/home"))
    assert device_ids(app, patient.id) == {device_of(app, here).id}

    assert not can_log_in(app, patient.email, PASSWORD)
    again = app.test_client()
    login(again, dataclasses.replace(patient, password=NEW_PASSWORD))
    # The new password unlocks the very same private key.
    assert private_key_of(app, again) == key_before
    assert key_material(app, patient.id)["public"] == public_before
    # The recovery code still opens it too.
    recovered = reset(app.test_client(), patient.email, patient.recovery_code, OTHER_PASSWORD)
    assert recovered.status_code == 200
    assert key_material(app, patient.id)["public"] == public_before


# --- reset with the recovery code -----------------------------------------------------------------


def test_reset_with_a_wrong_code_changes_nothing(app, as_patient, patient):
    before = key_material(app, patient.id)

    response = reset(app.test_client(), patient.email, crypto.new_recovery_code())
    assert response.status_code == 422
    page = assert_layout(response)
    assert field_error(page, "code") == DO_NOT_MATCH
    assert f'value="{patient.email}"' in page  # what the user typed is kept
    assert key_material(app, patient.id) == before
    assert as_patient.get("/home").status_code == 200
    assert can_log_in(app, patient.email, PASSWORD)
    assert not can_log_in(app, patient.email, NEW_PASSWORD)


def test_reset_for_an_unknown_email_gives_the_same_message(client, patient):
    wrong_code = reset(client, patient.email, crypto.new_recovery_code())
    unknown = reset(client, "nobody@example.org", patient.recovery_code)
    assert wrong_code.status_code == unknown.status_code == 422
    messages = [field_error(r.get_data(as_text=True), "code") for r in (wrong_code, unknown)]
    assert messages == [DO_NOT_MATCH, DO_NOT_MATCH]


def test_reset_with_the_right_code_sets_the_password_and_issues_a_new_code(app, patient):
    phone = logged_in_client(app, patient, PHONE)
    laptop = logged_in_client(app, patient, LAPTOP)
    key_before = private_key_of(app, phone)
    public_before = key_material(app, patient.id)["public"]

    browser = app.test_client()
    response = reset(browser, patient.email, patient.recovery_code)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert_layout(response)
    new_code = shown_code(response)
    assert new_code != patient.recovery_code

    # Every earlier session ended; the browser that reset is logged in with the same key.
    assert is_login_redirect(phone.get("/home"))
    assert is_login_redirect(laptop.get("/home"))
    assert device_ids(app, patient.id) == {device_of(app, browser).id}
    assert private_key_of(app, browser) == key_before
    assert key_material(app, patient.id)["public"] == public_before
    confirm = {"code": new_code, "saved": "yes"}
    confirmed = post(browser, "/recovery-code/confirm", confirm, token_from="/recovery-code")
    assert confirmed.status_code == 303
    assert browser.get("/home").status_code == 200

    assert can_log_in(app, patient.email, NEW_PASSWORD)
    assert not can_log_in(app, patient.email, PASSWORD)

    stale = reset(app.test_client(), patient.email, patient.recovery_code, OTHER_PASSWORD)
    assert stale.status_code == 422
    assert field_error(stale.get_data(as_text=True), "code") == DO_NOT_MATCH
    assert reset(app.test_client(), patient.email, new_code, OTHER_PASSWORD).status_code == 200
    assert key_material(app, patient.id)["public"] == public_before


# --- every account page has the layout ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/account", "/account/password"])
def test_account_pages_have_landmarks_and_the_help_link(as_patient, path):
    response = as_patient.get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert_layout(response)
