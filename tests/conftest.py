"""Fixtures: a real database (SQLite, or PostgreSQL with KAPJOURNAL_TEST_DATABASE_URL), the real
crypto, the real app; personas made through the real services."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import re
import secrets
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import event, text
from sqlmodel import Session, SQLModel
from werkzeug.serving import make_server

from kapjournal import create_app, crypto, db, i18n
from kapjournal.models import User
from kapjournal.services import accounts, care, journal, support, totp

# A live server checks for shutdown this often: the default (0.5 s) made every test with a
# server wait that long in its teardown.
SERVE_FOREVER = {"poll_interval": 0.05}

# Tests may lower the Argon2id cost (DESIGN §10); test_crypto asserts the production values.
TEST_KDF = crypto.KdfParams(memory_kib=1024, iterations=1, lanes=1)
TEST_KEK = base64.urlsafe_b64encode(b"t" * 32).decode()
PASSWORD = "correct horse battery staple"
# Rate-limit counters of this process's apps start with this, so runs (and pytest-xdist
# workers) sharing one Redis never count each other's attempts or clear each other's.
RATE_LIMIT_PREFIX = f"kjtest-{os.getpid()}-{secrets.token_hex(4)}"


def pytest_configure(config):
    """The translation catalogues compiled, as `make test` does, for runs that skip make."""
    i18n.compile_catalogues()


@pytest.fixture(scope="session")
def database():
    """One database per test run: a fresh SQLite file, or a private PostgreSQL schema that is
    dropped at the end. Migrations build the tables, as in production."""
    url = os.environ.get("KAPJOURNAL_TEST_DATABASE_URL")
    if url:
        schema = f"kj_test_{os.getpid()}_{secrets.token_hex(4)}"
        admin = db.make_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = db.make_engine(url, schema=schema)
        info = {"url": url, "schema": schema, "engine": engine, "kind": "postgresql"}
        try:
            db.upgrade(engine)
            yield info
        finally:
            engine.dispose()
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    else:
        with tempfile.TemporaryDirectory(prefix="kapjournal-test-") as tmp:
            path = Path(tmp) / "test.db"
            url = f"sqlite:///{path}"
            engine = db.make_engine(url)
            db.upgrade(engine)
            yield {"url": url, "schema": None, "engine": engine, "kind": "sqlite", "path": path}
            engine.dispose()


def _empty_tables(engine) -> None:
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def app_config(database, **overrides) -> dict:
    config = {
        "ENV_NAME": "test",
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "KEKS": f"t1:{TEST_KEK}",
        "KEK_ACTIVE": None,
        "DATABASE_URL": database["url"],
        "ENGINE": database["engine"],
        "KDF_PARAMS": TEST_KDF,
        "LOGIN_LIMITS": "1000 per minute",
        "SMTP_HOST": None,
        "REDIS_URL": None,
        "RATELIMIT_KEY_PREFIX": RATE_LIMIT_PREFIX,
        "CRISIS_LINES": "",
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_app(database):
    """Build an app on the test database with extra settings; tables start empty, and so
    does the list of two-step personas (an earlier test's must not steer this one's login)."""
    _empty_tables(database["engine"])
    TWO_STEP.clear()

    def build(**overrides):
        return create_app(app_config(database, **overrides))

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def dbs(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


# --- personas --------------------------------------------------------------------------------


@dataclass
class Persona:
    role: str
    email: str
    password: str
    id: object
    recovery_code: str
    name: str
    totp_secret: str | None = None  # two-step login; `login` answers the code step with it


def make_user(
    app,
    *,
    role: str,
    email: str,
    name: str,
    invited_by: Persona | None = None,
    supporting: Persona | None = None,
    is_owner: bool = False,
    confirmed: bool = True,
    two_step: bool | None = None,
) -> Persona:
    """An account made through the real services (keys, wraps and all). `invited_by`: a
    therapist whose care team the patient joins; `supporting`: a patient whose support
    invitation this support account accepted (granted nothing). Therapists get two-step
    login set up (as the app requires) unless `two_step=False`; the secret is on the Persona."""
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        registered = accounts.register(
            session=session,
            email=email,
            name=name,
            password=PASSWORD,
            password2=PASSWORD,
            role=role,
            is_owner=is_owner,
        )
        if confirmed:
            accounts.confirm_recovery_saved(session=session, user=registered.user)
        if invited_by is not None:
            inviter = session.get(accounts.User, invited_by.id)
            issued = care.create_invitation(session=session, inviter=inviter, kind="patient")
            care.accept_patient_invitation(
                session=session, invitation=issued.invitation, patient=registered.user
            )
        if supporting is not None:
            patient = session.get(accounts.User, supporting.id)
            issued = support.invite(session=session, patient=patient, name=name, entries=[])
            support.accept(session=session, invitation=issued.invitation, supporter=registered.user)
        secret = None
        if two_step if two_step is not None else role == "therapist":
            secret = totp.new_secret()
            totp.enable(session=session, user=registered.user, secret=secret)
        session.commit()
        persona = Persona(
            role, email, PASSWORD, registered.user.id, registered.recovery_code, name, secret
        )
        TWO_STEP.pop(email.casefold(), None)
        if secret:
            TWO_STEP[email.casefold()] = (app, persona)
        return persona


# Personas with two-step login by email, for browser tests that log in by email only.
TWO_STEP: dict[str, tuple] = {}


def fresh_totp_code(app, persona: Persona) -> str:
    """The code the persona's authenticator shows now. Tests log the same person in many
    times within one 30-second step, and the app rightly refuses a code twice: forget the
    last step used first."""
    with app.app_context(), Session(db.engine()) as session:
        user = session.get(User, persona.id) if persona.id else None
        user = user or accounts.find_by_email(session=session, email=persona.email)
        user.totp_last_step = None
        session.add(user)
        session.commit()
    return totp.code_at(persona.totp_secret, totp.current_step())


@pytest.fixture
def therapist(app):
    return make_user(
        app, role="therapist", email="therapist@example.org", name="Dr. Tess Ward", is_owner=True
    )


@pytest.fixture
def other_therapist(app):
    return make_user(app, role="therapist", email="other@example.org", name="Dr. Otto Lane")


@pytest.fixture
def patient(app, therapist):
    return make_user(
        app, role="patient", email="patient@example.org", name="Pat Quinn", invited_by=therapist
    )


@pytest.fixture
def stranger_patient(app, other_therapist):
    return make_user(
        app,
        role="patient",
        email="stranger@example.org",
        name="Stan Ger",
        invited_by=other_therapist,
    )


@pytest.fixture
def supporter(app, patient):
    # One of `patient`'s support people (an accepted invitation) who was granted nothing: a
    # support account that may read nothing at all.
    return make_user(
        app, role="support", email="supporter@example.org", name="Sue Porter", supporting=patient
    )


@pytest.fixture
def stranger_supporter(app, stranger_patient):
    # A supporter of another patient, granted nothing of ours.
    return make_user(
        app,
        role="support",
        email="helper@example.org",
        name="Hal Per",
        supporting=stranger_patient,
    )


# --- talking to the app over HTTP --------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """A CSRF token from a real form page."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post(client, path: str, data: dict | None = None, *, token_from: str | None = None, **kw):
    """POST a form with a real CSRF token taken from a page (the login page by default)."""
    data = dict(data or {})
    data.setdefault("csrf_token", csrf_token(client, token_from or _form_page(client)))
    return client.post(path, data=data, **kw)


def _form_page(client) -> str:
    return "/account" if logged_in(client) else "/login"


def logged_in(client) -> bool:
    return any(c.key.endswith("kj_session") for c in client._cookies.values())


def login(client, persona: Persona):
    """Log in over HTTP; answers the two-step code step when the persona has a secret."""
    response = post(
        client,
        "/login",
        {"email": persona.email, "password": persona.password},
        token_from="/login",
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    step = response.headers["Location"]
    if persona.totp_secret and step.startswith("/mfa/verify"):
        code = fresh_totp_code(client.application, persona)
        response = post(client, step, {"code": code}, token_from=step)
        assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return response


@pytest.fixture
def as_patient(app, patient):
    client = app.test_client()
    login(client, patient)
    return client


@pytest.fixture
def as_therapist(app, therapist):
    client = app.test_client()
    login(client, therapist)
    return client


# --- a real server, for what only parallel requests can show -------------------------------------


@contextmanager
def serving(app):
    """`http://127.0.0.1:PORT` serving `app` from a threaded server (one thread per request)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs=SERVE_FOREVER, name="test-server", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def live_url(app):
    """The test app on a real socket (same database as the `app` fixture)."""
    with serving(app) as url:
        yield url


class WebClient:
    """One person's browser without the browser: cookies, CSRF tokens, real HTTP."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base_url + path, allow_redirects=False, timeout=60, **kw)

    def token(self, path: str) -> str:
        match = _CSRF.search(self.get(path).text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, *, token: str | None = None, **kw):
        """POST a form; `token`: a CSRF token fetched earlier (so parallel posts share one)."""
        data = dict(data or {})
        data.setdefault("csrf_token", token or self.token(path))
        return self.http.post(
            self.base_url + path, data=data, allow_redirects=False, timeout=60, **kw
        )

    def login(self, persona: Persona, app=None) -> requests.Response:
        """Log in, answering the two-step code step when the persona has a secret."""
        data = {"email": persona.email, "password": persona.password}
        response = self.post("/login", data, token=self.token("/login"))
        assert response.status_code == 303, response.text[:500]
        step = response.headers["Location"]
        if persona.totp_secret and step.startswith("/mfa/verify") and app is not None:
            response = self.post(step, {"code": fresh_totp_code(app, persona)})
            assert response.status_code == 303, response.text[:500]
        return response


def in_parallel(count: int, action: Callable[[int], object]) -> list:
    """Run `action(0..count-1)` in `count` threads released at the same instant; their results
    (or the exceptions they raised) in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except Exception as exc:  # reported to the test, which decides
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def write_entry(
    app, patient: Persona, text: str, *, readers=(), session_id=None, when=None
) -> uuid.UUID:
    """A reflection through the real service (encrypted, wrapped to `readers`, logged), written
    `when` if given; its id."""
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        author = session.get(User, patient.id)
        entry, _ = journal.create(
            session=session,
            author=author,
            kind="reflection",
            body={"text": text, "answers": []},
            client_id=uuid.uuid4(),
            session_id=session_id,
            readers=[session.get(User, r.id) for r in readers],
        )
        if when is not None:
            entry.created_at = when
            session.add(entry)
        session.commit()
        return entry.id


def client_for(app, persona: Persona | None = None):
    """A test client, logged in as `persona` (None: anonymous)."""
    client = app.test_client()
    if persona is not None:
        login(client, persona)
    return client


@contextmanager
def counted_statements(engine):
    """The SQL statements run on `engine` inside the block, as a list filled as they run."""
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


# --- email: a real SMTP server on this machine ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self):
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        self.arrived.set()
        return "250 Message accepted"


@pytest.fixture
def mailbox():
    """(the Mailbox, its port): an SMTP server that keeps what it is sent."""
    handler = Mailbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def mail_app(make_app, mailbox):
    """The app with email configured, `mailbox`'s server behind it (as `app.mailbox`)."""
    handler, port = mailbox
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_STARTTLS=False)
    app.mailbox = handler
    return app
