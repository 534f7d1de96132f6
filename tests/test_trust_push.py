"""No blind SSRF through Web Push endpoints (issue "Trust at the edges", point 14): an endpoint
that names this machine, a private or link-local network, a reserved address, another port or
plain http is refused when a browser subscribes and again when reminders are sent (a row put
in the database directly), and nothing connects: a real socket listening on 127.0.0.1 (and on
port 443 where this test may bind it) must receive no connection at all."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import csrf_token
from sqlmodel import Session, select
from test_push import PRIVATE_KEY, PUBLIC_KEY, SUBJECT, Device, b64

from kapjournal import db
from kapjournal.models import PushSubscription, TreatmentSession, User
from kapjournal.services import push, reminders


class Listener:
    """A TCP socket that accepts and counts every connection made to it."""

    def __init__(self, host: str, port: int = 0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listeners():
    """One listener on a free port of 127.0.0.1, plus 127.0.0.1:443 and [::1]:443 when this
    machine lets the test bind them (so hostile endpoints without a port are watched too)."""
    found = [Listener("127.0.0.1")]
    for host in ("127.0.0.1", "::1"):
        with contextlib.suppress(OSError):
            found.append(Listener(host, 443))
    yield found
    for listener in found:
        listener.close()


def hostile_endpoints(port: int) -> list[str]:
    return [
        "https://2130706433/x",
        "https://0x7f000001/x",
        "https://localhost./x",
        "https://localhost/x",
        "https://[::1]/x",
        "https://10.0.0.1/x",
        "https://169.254.169.254/x",
        "https://example.org:5099/x",
        "http://example.org/x",
        "https://intranet/x",
        "https://push.internal/x",
        # The same hosts on the port this test listens on: a connection would be counted.
        f"https://2130706433:{port}/x",
        f"https://0x7f000001:{port}/x",
        f"https://127.1:{port}/x",
        f"https://0177.0.0.1:{port}/x",
        f"https://localhost.:{port}/x",
        f"https://localhost:{port}/x",
        f"https://[::ffff:127.0.0.1]:{port}/x",
        f"http://127.0.0.1:{port}/x",
        f"http://localhost:{port}/x",
    ]


@pytest.fixture
def app(make_app):
    """Reminders configured, and no test allowance for a local push service."""
    return make_app(
        VAPID_PRIVATE_KEY=PRIVATE_KEY, VAPID_PUBLIC_KEY=PUBLIC_KEY, VAPID_SUBJECT=SUBJECT
    )


def connections(listeners) -> int:
    return sum(listener.connections for listener in listeners)


def rows(app) -> list[PushSubscription]:
    with app.app_context(), Session(db.engine()) as session:
        return list(session.exec(select(PushSubscription)))


# --- subscribing -------------------------------------------------------------------------------


def test_hostile_endpoints_are_refused_when_a_browser_subscribes(app, as_patient, listeners):
    token = csrf_token(as_patient, "/account")
    for endpoint in hostile_endpoints(listeners[0].port):
        answer = as_patient.post(
            "/push/subscriptions",
            json=Device(endpoint).subscription(),
            headers={"X-CSRFToken": token},
        )
        assert answer.status_code == 400, endpoint
    assert rows(app) == []
    assert connections(listeners) == 0


def test_a_name_is_refused_when_it_resolves_to_this_machine(app):
    with app.app_context(), pytest.raises(push.EndpointNotPublic):
        push.public_addresses("localhost", 443)


@pytest.mark.parametrize(
    "address, public",
    [
        ("93.184.215.14", True),
        ("2606:4700::6810:85e5", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),  # noqa: S104 (an address checked, not bound)
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("2001:db8::1", False),  # documentation
    ],
)
def test_only_global_unicast_addresses_count_as_public(address, public):
    assert push._is_public(address) is public


def test_the_test_allowance_for_a_local_push_service_is_never_on_in_production(make_app, listeners):
    allowed = make_app(
        VAPID_PRIVATE_KEY=PRIVATE_KEY,
        VAPID_PUBLIC_KEY=PUBLIC_KEY,
        VAPID_SUBJECT=SUBJECT,
        PUSH_TEST_LOCAL_SERVICE=True,
    )
    endpoint = f"http://127.0.0.1:{listeners[0].port}/x"
    with allowed.app_context():
        assert push.endpoint_target(endpoint) == ("http", "127.0.0.1", listeners[0].port)
        for setting, value in (("PRODUCTION", True), ("TESTING", False)):
            allowed.config[setting] = value
            try:
                with pytest.raises(push.InvalidSubscription):
                    push.parse(Device(endpoint).subscription())
                assert push.send(push.Subscription(endpoint, "k", "a"), {}) == push.GONE_FOR_GOOD
            finally:
                allowed.config[setting] = not value
    assert connections(listeners) == 0


# --- sending -------------------------------------------------------------------------------------


def test_hostile_endpoints_already_in_the_database_are_refused_at_send_and_nothing_connects(
    app, patient, listeners
):
    endpoints = hostile_endpoints(listeners[0].port)
    device = Device("https://unused.example/x")
    with app.app_context(), Session(db.engine()) as session:
        user = session.get(User, patient.id)
        for endpoint in endpoints:  # as rows made before these checks existed
            found = push.Subscription(endpoint, b64(device.public), b64(os.urandom(16)))
            push.subscribe(session=session, user=user, subscription=found)
        session.add(
            TreatmentSession(
                patient_id=patient.id,
                created_by_id=patient.id,
                kind="ketamine",
                scheduled_at=datetime.now(UTC) - timedelta(days=1, hours=1),
            )
        )
        session.commit()
        report = reminders.send_due(session=session)
    assert connections(listeners) == 0
    assert report.sent == 0
    assert report.gone == len(endpoints)  # they can never be posted to: forgotten
    assert rows(app) == []


def test_the_transport_itself_refuses_to_connect_anywhere_but_a_checked_public_address(
    app, listeners
):
    port = listeners[0].port
    with app.app_context():
        http = push.pinned_session()
        for url in (
            f"https://localhost:{port}/x",
            f"https://2130706433:{port}/x",
            f"http://127.0.0.1:{port}/x",
            "https://localhost/x",
        ):
            with pytest.raises(push.EndpointUnreachable):
                http.post(url, data=b"x", timeout=2)
        http.close()
    assert connections(listeners) == 0
