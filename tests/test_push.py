"""Reminders by Web Push: the option exists only with VAPID keys; a patient subscribes and
unsubscribes a device (sealed on the server); the schedule around ketamine and preparation
sessions; and a real push, encrypted (RFC 8291) and signed (RFC 8292), delivered to a push
endpoint this test runs on 127.0.0.1, decrypted here and read: fixed text, never journal text.

The decryption and the signature check below are written from the RFCs with `cryptography`
directly, independently of pywebpush, so they check what a browser would check."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import csrf_token, login, make_user, post
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlmodel import Session, select

from kapjournal import db
from kapjournal.models import PushSubscription, ReminderSent, TreatmentSession, User
from kapjournal.services import journal, keys, push, reminders

PRIVATE_KEY, PUBLIC_KEY = push.new_vapid_keys()
SUBJECT = "mailto:clinic@example.org"
DAY = timedelta(days=1)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def app(make_app):
    """The app with reminders configured (the personas are made on it), allowed to post to
    the push service this test runs on http://127.0.0.1 (a test-only setting, never honoured
    in production: see tests/test_trust_push.py)."""
    return make_app(
        VAPID_PRIVATE_KEY=PRIVATE_KEY,
        VAPID_PUBLIC_KEY=PUBLIC_KEY,
        VAPID_SUBJECT=SUBJECT,
        PUSH_TEST_LOCAL_SERVICE=True,
    )


# --- a browser's side of a subscription, and a push service on 127.0.0.1 -----------------------


class Device:
    """What a browser keeps for one push subscription: a P-256 key pair and an auth secret."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    @property
    def public(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def subscription(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64(self.public), "auth": b64(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict:
        """RFC 8291 with RFC 8188's aes128gcm record, as the browser does it."""
        salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
        server_public = body[21 : 21 + idlen]
        ciphertext = body[21 + idlen :]
        assert idlen == 65 and len(ciphertext) <= rs
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_public)
        shared = self.key.exchange(ec.ECDH(), sender)
        info = b"WebPush: info\x00" + self.public + server_public
        ikm = hkdf(self.auth, shared, info, 32)
        cek = hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None).rstrip(b"\x00")
        assert padded.endswith(b"\x02"), "the last record ends with the delimiter 2"
        return json.loads(padded[:-1])


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def vapid_claims(authorization: str, audience: str) -> dict:
    """Check an RFC 8292 `vapid t=JWT,k=KEY` header against the clinic's public key and
    return the JWT's claims."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    parts = dict(p.split("=", 1) for p in params.split(","))
    assert parts["k"].rstrip("=") == PUBLIC_KEY
    header, payload, signature = parts["t"].split(".")
    assert json.loads(unb64(header)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(PUBLIC_KEY))
    key.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if bad
    claims = json.loads(unb64(payload))
    assert claims["aud"] == audience
    assert claims["sub"] == SUBJECT
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    return claims


class PushService:
    """A push endpoint on 127.0.0.1 that records what it receives and answers `status`."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 201
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                service.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(service.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def device(self) -> Device:
        return Device(f"{self.origin}/push/{uuid.uuid4()}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def push_service():
    service = PushService()
    yield service
    service.close()


# --- helpers -------------------------------------------------------------------------------------


def subscribe(client, device: Device, *, token: str | None = None):
    token = token if token is not None else csrf_token(client, "/account")
    return client.post(
        "/push/subscriptions", json=device.subscription(), headers={"X-CSRFToken": token}
    )


def schedule(app, persona, kind: str, at: datetime, status: str = "planned") -> uuid.UUID:
    with app.app_context(), Session(db.engine()) as dbs:
        found = TreatmentSession(
            patient_id=persona.id,
            created_by_id=persona.id,
            kind=kind,
            scheduled_at=at,
            status=status,
        )
        dbs.add(found)
        dbs.commit()
        return found.id


def subscriptions(app) -> list[PushSubscription]:
    with app.app_context(), Session(db.engine()) as dbs:
        return list(dbs.exec(select(PushSubscription)))


def send_due(app, now: datetime | None = None) -> reminders.Report:
    with app.app_context(), Session(db.engine()) as dbs:
        return reminders.send_due(session=dbs, now=now)


def now() -> datetime:
    return datetime.now(UTC)


# --- the option, subscribing and unsubscribing ------------------------------------------------


def test_without_vapid_keys_reminders_are_not_offered_and_their_urls_are_404(make_app, therapist):
    plain = make_app()
    persona = make_user(
        plain, role="patient", email="p2@example.org", name="Pia", invited_by=therapist
    )
    client = plain.test_client()
    login(client, persona)
    page = client.get("/account").get_data(as_text=True)
    assert "Reminders" not in page and "data-push" not in page
    assert client.get("/push/key").status_code == 404
    device = Device("https://fcm.googleapis.com/fcm/send/abc")
    assert subscribe(client, device).status_code == 404


def test_patient_sees_the_reminders_option_and_gets_the_public_key(as_patient):
    page = as_patient.get("/account").get_data(as_text=True)
    assert '<h2 id="reminders-title">Reminders</h2>' in page
    assert "Reminders are off." in page
    response = as_patient.get("/push/key")
    assert response.status_code == 200
    assert response.get_json() == {"publicKey": PUBLIC_KEY}


def test_subscription_is_stored_sealed_once_per_device(app, as_patient, patient):
    device = Device("https://fcm.googleapis.com/fcm/send/device-one-secret-part")
    assert subscribe(as_patient, device).status_code == 201
    device.auth = os.urandom(16)  # the browser subscribed again with new keys
    assert subscribe(as_patient, device).status_code == 201

    rows = subscriptions(app)
    assert len(rows) == 1 and rows[0].user_id == patient.id
    blob = rows[0].subscription_enc
    for secret in (
        b"device-one-secret-part",
        b64(device.auth).encode(),
        b64(device.public).encode(),
    ):
        assert secret not in blob
    with app.app_context():
        assert push.open_subscription(rows[0]).as_info() == device.subscription()
    page = as_patient.get("/account").get_data(as_text=True)
    assert "Reminders are on for 1 device." in page
    assert "Chrome, Edge or Android" in page


def test_subscribing_without_the_csrf_token_is_refused(app, as_patient):
    device = Device("https://fcm.googleapis.com/fcm/send/abc")
    assert subscribe(as_patient, device, token="").status_code == 400
    assert subscriptions(app) == []


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint": "http://push.example.org/abc"},  # not https
        {"endpoint": "https://user:pw@push.example.org/abc"},
        {"endpoint": "https://push.example.org/" + "a" * 3000},
        {"p256dh": b64(b"\x04" + b"x" * 10)},
        {"p256dh": "not base64 !"},
        {"auth": b64(b"short")},
        {"keys": None},
        {"endpoint": 5},
    ],
)
def test_malformed_subscriptions_are_refused(app, as_patient, change):
    data = Device("https://push.example.org/abc").subscription()
    for name, value in change.items():
        if name in data:
            data[name] = value
        else:
            data["keys"][name] = value
    token = csrf_token(as_patient, "/account")
    response = as_patient.post("/push/subscriptions", json=data, headers={"X-CSRFToken": token})
    assert response.status_code == 400
    assert subscriptions(app) == []


def test_production_refuses_endpoints_on_this_machine_or_plain_addresses(app):
    with app.app_context():
        app.config["PRODUCTION"] = True
        try:
            for endpoint in (
                "http://127.0.0.1:9/x",
                "https://127.0.0.1/x",
                "https://10.0.0.8/x",
                "https://localhost/x",
            ):
                with pytest.raises(push.InvalidSubscription):
                    push.parse(Device(endpoint).subscription())
            assert push.parse(Device("https://updates.push.services.mozilla.com/x").subscription())
        finally:
            app.config["PRODUCTION"] = False


def test_unsubscribe_by_endpoint_forgets_only_that_device(app, as_patient):
    one, two = (
        Device("https://fcm.googleapis.com/fcm/send/1"),
        Device("https://fcm.googleapis.com/fcm/send/2"),
    )
    subscribe(as_patient, one)
    subscribe(as_patient, two)
    token = csrf_token(as_patient, "/account")
    response = as_patient.post(
        "/push/subscriptions/remove",
        json={"endpoint": one.endpoint},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 204
    with app.app_context():
        assert [push.open_subscription(r).endpoint for r in subscriptions(app)] == [two.endpoint]


def test_a_browser_can_ask_whether_its_subscription_still_gets_reminders(app, as_patient):
    device = Device("https://fcm.googleapis.com/fcm/send/asks")

    def status():
        token = csrf_token(as_patient, "/account")
        data = {"endpoint": device.endpoint}
        response = as_patient.post(
            "/push/subscriptions/status", json=data, headers={"X-CSRFToken": token}
        )
        return response.get_json()

    assert status() == {"subscribed": False}
    subscribe(as_patient, device)
    assert status() == {"subscribed": True}


def test_account_page_stops_reminders_on_a_device_without_javascript(app, as_patient):
    subscribe(as_patient, Device("https://web.push.apple.com/abc"))
    (row,) = subscriptions(app)
    page = as_patient.get("/account").get_data(as_text=True)
    assert f'action="/push/subscriptions/{row.id}/delete"' in page
    assert "Safari, iPhone or iPad" in page
    response = post(as_patient, f"/push/subscriptions/{row.id}/delete", token_from="/account")
    assert response.status_code == 303 and response.headers["Location"].endswith("/account")
    assert subscriptions(app) == []
    assert "Reminders are off." in as_patient.get("/account").get_data(as_text=True)


def test_stranger_cannot_stop_someone_elses_reminders(app, as_patient, stranger_patient):
    subscribe(as_patient, Device("https://fcm.googleapis.com/fcm/send/mine"))
    (row,) = subscriptions(app)
    stranger = app.test_client()
    login(stranger, stranger_patient)
    response = post(stranger, f"/push/subscriptions/{row.id}/delete", token_from="/account")
    assert response.status_code == 404
    assert len(subscriptions(app)) == 1


def test_reminders_are_for_patients_and_supporters_not_therapists(app, supporter, therapist):
    client = app.test_client()
    login(client, therapist)
    assert client.get("/push/key").status_code == 404
    assert "Reminders" not in client.get("/account").get_data(as_text=True)
    # Supporters get the session-day reminders of a patient who names them (helper DAY).
    client = app.test_client()
    login(client, supporter)
    assert client.get("/push/key").status_code == 200
    assert "ride home" in client.get("/account").get_data(as_text=True)


def test_a_browser_shared_by_two_patients_reminds_only_the_one_who_subscribed_last(
    app, as_patient, stranger_patient
):
    device = Device("https://fcm.googleapis.com/fcm/send/shared")
    subscribe(as_patient, device)
    other = app.test_client()
    login(other, stranger_patient)
    assert subscribe(other, device).status_code == 201
    assert [r.user_id for r in subscriptions(app)] == [stranger_patient.id]


def test_key_rotation_reseals_subscriptions(make_app, app, as_patient):
    device = Device("https://fcm.googleapis.com/fcm/send/rotate")
    subscribe(as_patient, device)
    new_kek = base64.urlsafe_b64encode(os.urandom(32)).decode()
    rotated = make_app(KEKS=f"{app.config['KEKS']},t2:{new_kek}", KEK_ACTIVE="t2")
    with rotated.app_context(), Session(db.engine()) as dbs:
        keys.rotate(session=dbs, keyring=rotated.config["KEYRING"])
        dbs.commit()
        (row,) = dbs.exec(select(PushSubscription)).all()
        assert rotated.config["KEYRING"].kek_id_of(row.subscription_enc) == "t2"
        assert push.open_subscription(row).endpoint == device.endpoint


# --- the schedule --------------------------------------------------------------------------------


def kinds_and_offsets(kind: str, status: str = "planned") -> list[tuple[str, timedelta]]:
    at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    found = TreatmentSession(patient_id=uuid.uuid4(), kind=kind, scheduled_at=at, status=status)
    return [(r.rule.kind, r.due_at - at) for r in reminders.schedule_for(found)]


def test_ketamine_session_brings_questionnaires_and_an_intention_before_and_check_ins_after():
    assert kinds_and_offsets("ketamine") == [
        ("questionnaires", -2 * DAY),
        ("intention", -DAY),
        ("check_in_1", DAY),
        ("check_in_3", 3 * DAY),
        ("check_in_7", 7 * DAY),
    ]


def test_preparation_session_brings_only_the_intention_reminder():
    assert kinds_and_offsets("preparation") == [("intention", -DAY)]


def test_integration_and_cancelled_sessions_bring_no_reminders():
    assert kinds_and_offsets("integration") == []
    assert kinds_and_offsets("ketamine", status="cancelled") == []


def test_due_reminders_follow_the_clock_and_never_come_late(app, as_patient, patient):
    subscribe(as_patient, Device("https://fcm.googleapis.com/fcm/send/clock"))
    at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    schedule(app, patient, "ketamine", at)

    def due_at(moment):
        with app.app_context(), Session(db.engine()) as dbs:
            return [r.rule.kind for _, r in reminders.due(session=dbs, now=moment)]

    assert due_at(at - 3 * DAY) == []
    assert due_at(at - 2 * DAY) == ["questionnaires"]
    assert due_at(at - DAY) == ["intention"]
    assert due_at(at - timedelta(minutes=1)) == ["intention"]
    assert due_at(at) == []  # the session has started: too late for the intention
    assert due_at(at + DAY + timedelta(hours=3)) == ["check_in_1"]
    assert due_at(at + 2 * DAY + timedelta(hours=1)) == []  # missed by a day: skipped
    assert due_at(at + 3 * DAY) == ["check_in_3"]
    assert due_at(at + 7 * DAY + timedelta(hours=23)) == ["check_in_7"]
    assert due_at(at + 8 * DAY) == []


def test_the_questionnaire_reminder_opens_them_and_is_skipped_once_both_are_answered(
    app, as_patient, patient
):
    subscribe(as_patient, Device("https://fcm.googleapis.com/fcm/send/questions"))
    at = now() + 2 * DAY - timedelta(hours=1)
    schedule(app, patient, "ketamine", at)

    def due_now():
        with app.app_context(), Session(db.engine()) as dbs:
            found = [r for _, r in reminders.due(session=dbs)]
            return [(r.rule.kind, reminders.message_for(session=dbs, reminder=r)) for r in found]

    [(kind, message)] = due_now()
    assert kind == "questionnaires" and message["url"] == "/measures"
    assert "ketamine" not in (message["title"] + message["body"]).lower()
    for key, count in (("phq9", 9), ("gad7", 7)):
        page = f"/measures/{key}/new"
        fields = {f"item-{n}": "0" for n in range(1, count + 1)}
        answered = post(
            as_patient, page, {"client_id": str(uuid.uuid4()), **fields}, token_from=page
        )
        assert answered.status_code == 303
        if key == "phq9":
            assert [k for k, _ in due_now()] == ["questionnaires"]  # one of two: still due
    assert due_now() == []


def test_reminders_reach_only_the_patient_whose_session_it_is(
    app, as_patient, patient, stranger_patient
):
    subscribe(as_patient, Device("https://fcm.googleapis.com/fcm/send/mine"))
    at = now() - DAY - timedelta(hours=1)
    schedule(app, stranger_patient, "ketamine", at)
    with app.app_context(), Session(db.engine()) as dbs:
        assert reminders.due(session=dbs) == []


# --- real pushes ---------------------------------------------------------------------------------


def test_due_reminder_arrives_encrypted_signed_and_without_journal_text(
    app, as_patient, patient, push_service
):
    device = push_service.device()
    assert subscribe(as_patient, device).status_code == 201
    session_id = schedule(app, patient, "ketamine", now() - DAY - timedelta(hours=1))
    canary = "Kestrel-lullaby-" + uuid.uuid4().hex
    with app.app_context(), Session(db.engine()) as dbs:
        journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="reflection",
            body={"text": canary},
            client_id=uuid.uuid4(),
            session_id=session_id,
        )
        dbs.commit()

    report = send_due(app)
    assert (report.sent, report.failed, report.gone) == (1, 0, 0)
    (delivery,) = push_service.received
    headers = {k.lower(): v for k, v in delivery["headers"].items()}
    assert headers["content-encoding"] == "aes128gcm"
    assert int(headers["ttl"]) > 0
    vapid_claims(headers["authorization"], push_service.origin)
    assert canary.encode() not in delivery["body"]
    message = device.decrypt(delivery["body"])
    assert message == {
        "title": "A gentle check-in",
        "body": "How are you today? A quick check-in takes a minute.",
        "url": f"/entries/new?kind=check_in&session={session_id}",
        "tag": f"check_in_1-{session_id}",
    }
    assert canary not in json.dumps(message)
    assert "ketamine" not in json.dumps(message).lower()

    # Cron runs again: nothing more to send.
    assert send_due(app).sent == 0
    assert len(push_service.received) == 1


def test_intention_reminder_opens_the_sessions_intention_or_the_form_to_write_one(
    app, as_patient, patient, push_service
):
    device = push_service.device()
    subscribe(as_patient, device)
    soon = now() + timedelta(hours=3)
    without = schedule(app, patient, "preparation", soon)
    with_one = schedule(app, patient, "ketamine", soon + timedelta(minutes=5))
    with app.app_context(), Session(db.engine()) as dbs:
        entry, _ = journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="intention",
            body={"intention": "Be gentle."},
            client_id=uuid.uuid4(),
            session_id=with_one,
        )
        dbs.commit()
        entry_id = entry.id

    assert send_due(app).sent == 2
    messages = [device.decrypt(d["body"]) for d in push_service.received]
    assert [m["url"] for m in messages] == [
        f"/entries/new?kind=intention&session={without}",
        f"/entries/{entry_id}",
    ]
    assert {m["body"] for m in messages} == {"You might like to revisit your intention before it."}


def test_each_subscribed_device_gets_its_own_copy(app, as_patient, patient, push_service):
    phone, laptop = push_service.device(), push_service.device()
    subscribe(as_patient, phone)
    subscribe(as_patient, laptop)
    schedule(app, patient, "ketamine", now() - 3 * DAY - timedelta(hours=2))
    assert send_due(app).sent == 2
    by_path = {d["path"]: d["body"] for d in push_service.received}
    for device in (phone, laptop):
        body = by_path[device.endpoint.removeprefix(push_service.origin)]
        assert device.decrypt(body)["title"] == "A gentle check-in"


def test_failed_push_is_tried_again_on_the_next_run(app, as_patient, patient, push_service):
    device = push_service.device()
    subscribe(as_patient, device)
    schedule(app, patient, "ketamine", now() - 7 * DAY - timedelta(hours=2))
    push_service.status = 503
    assert send_due(app).failed == 1
    with app.app_context(), Session(db.engine()) as dbs:
        assert dbs.exec(select(ReminderSent)).all() == []
    push_service.status = 201
    assert send_due(app).sent == 1
    assert device.decrypt(push_service.received[-1]["body"])["body"].startswith("A week on")


def test_device_that_unsubscribed_at_its_push_service_is_forgotten(
    app, as_patient, patient, push_service
):
    subscribe(as_patient, push_service.device())
    schedule(app, patient, "ketamine", now() - DAY - timedelta(hours=2))
    push_service.status = 410
    report = send_due(app)
    assert (report.sent, report.gone) == (0, 1)
    assert subscriptions(app) == []


def test_unreachable_push_service_fails_quietly(app, as_patient, patient):
    dead = Device("http://127.0.0.1:9/push/nobody-listens")
    subscribe(as_patient, dead)
    schedule(app, patient, "ketamine", now() - DAY - timedelta(hours=2))
    assert send_due(app).failed == 1
    assert len(subscriptions(app)) == 1


# --- command line --------------------------------------------------------------------------------


def test_push_keys_prints_a_pair_that_signs_and_verifies(app):
    result = app.test_cli_runner().invoke(args=["push", "keys"])
    assert result.exit_code == 0
    found = dict(re.findall(r"^(KAPJOURNAL_VAPID_\w+)=(\S+)$", result.output, re.M))
    private, public = found["KAPJOURNAL_VAPID_PRIVATE_KEY"], found["KAPJOURNAL_VAPID_PUBLIC_KEY"]
    assert len(unb64(private)) == 32 and len(unb64(public)) == 65
    with app.app_context():
        app.config.update(VAPID_PRIVATE_KEY=private, VAPID_PUBLIC_KEY=public)
        assert push._vapid()  # the private key belongs to the public one


def test_reminders_send_command_delivers_what_is_due(app, as_patient, patient, push_service):
    device = push_service.device()
    subscribe(as_patient, device)
    schedule(app, patient, "ketamine", now() - DAY - timedelta(hours=1))
    result = app.test_cli_runner().invoke(args=["reminders", "send"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Sent 1 reminders; 0 failed")
    assert device.decrypt(push_service.received[0]["body"])["title"] == "A gentle check-in"


def test_reminders_send_without_keys_says_they_are_off(make_app):
    result = make_app().test_cli_runner().invoke(args=["reminders", "send"])
    assert result.exit_code == 0
    assert "Reminders are off" in result.output
