"""Configuration (production refuses development secrets), the clinic owner's command line,
migrations up and down, and the health check."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import Persona, logged_in, login, make_user, post
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel, select

from kapjournal import config, create_app, crypto, db
from kapjournal.models import AuditEvent, Invitation, User
from kapjournal.services import accounts, care, journal

ROOT = Path(__file__).resolve().parent.parent
GOOD_SECRET = secrets.token_urlsafe(36)  # 48 characters
KEY_A = base64.urlsafe_b64encode(b"A" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"B" * 32).decode()
GOOD_KEKS = f"k1:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"
CLI_PASSWORD = "a good long password"
_BLOB = re.compile(r"[A-Za-z0-9+/_=-]{20,}")  # anything that looks like a key or a blob
_RECOVERY = re.compile(r"\b[A-Z2-7]{4}(?:-[A-Z2-7]{4}){7}\b")


# Production also needs shared rate-limit counters and the address people open (its links).
PRODUCTION_REDIS = os.environ.get("KAPJOURNAL_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
PRODUCTION_BASE = "https://journal.example.org"


def production(**overrides) -> dict:
    return {
        "PRODUCTION": True,
        "SECRET_KEY": GOOD_SECRET,
        "KEKS": GOOD_KEKS,
        "REDIS_URL": PRODUCTION_REDIS,
        "BASE_URL": PRODUCTION_BASE,
        **overrides,
    }


def persona(role: str, email: str, password: str) -> Persona:
    return Persona(role, email, password, None, "", "")


# --- production refuses to start without real secrets ---------------------------------------


@pytest.mark.parametrize(
    "overrides, names",
    [
        ({"SECRET_KEY": None}, "KAPJOURNAL_SECRET_KEY"),
        ({"SECRET_KEY": ""}, "KAPJOURNAL_SECRET_KEY"),
        ({"SECRET_KEY": "dev-" + secrets.token_urlsafe(36)}, "KAPJOURNAL_SECRET_KEY"),
        ({"SECRET_KEY": "too-short-secret"}, "KAPJOURNAL_SECRET_KEY"),
        ({"KEKS": None}, "KAPJOURNAL_KEKS"),
        ({"KEKS": f"dev:{KEY_A}"}, "KAPJOURNAL_KEKS"),
        ({"KEKS": f"k1:{KEY_A},dev:{KEY_B}"}, "KAPJOURNAL_KEKS"),
        ({"KEKS": f"k1:{base64.urlsafe_b64encode(b'x' * 16).decode()}"}, "KAPJOURNAL_KEKS"),
        ({"KEK_ACTIVE": "k9"}, "KAPJOURNAL_KEKS"),
    ],
    ids=[
        "no-secret",
        "empty-secret",
        "dev-secret",
        "short-secret",
        "no-keks",
        "dev-kek",
        "dev-kek-among-others",
        "16-byte-kek",
        "unknown-active-kek",
    ],
)
def test_production_refuses_to_start_without_real_secrets(make_app, overrides, names):
    with pytest.raises(config.ConfigError) as caught:
        make_app(**production(**overrides))
    assert names in str(caught.value)


def test_production_message_says_how_to_make_a_secret(make_app):
    with pytest.raises(config.ConfigError, match=r"secrets\.token_urlsafe"):
        make_app(**production(SECRET_KEY=None))
    with pytest.raises(config.ConfigError, match="keys new"):
        make_app(**production(KEKS=None))


def test_production_starts_with_real_secrets(make_app):
    app = make_app(**production())
    assert app.config["PRODUCTION"] is True
    assert app.config["KEYRING"].active == "k1"
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert "max-age" in response.headers["Strict-Transport-Security"]


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPJOURNAL_")}
    env.update(extra)
    return env


def _flask(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_cli_without_secrets_exits_with_a_clear_message(tmp_path):
    database = tmp_path / "prod.db"
    result = _flask(
        "users",
        "list",
        env=_clean_env(
            KAPJOURNAL_ENV="production", KAPJOURNAL_DATABASE_URL=f"sqlite:///{database}"
        ),
    )
    assert result.returncode != 0
    assert "ConfigError" in result.stderr
    assert "KAPJOURNAL_SECRET_KEY" in result.stderr
    assert not database.exists()


# --- development makes its own secrets, once ------------------------------------------------


@pytest.fixture
def no_secret_env(monkeypatch):
    for name in ("ENV", "SECRET_KEY", "KEKS", "KEK_ACTIVE"):
        monkeypatch.delenv(f"KAPJOURNAL_{name}", raising=False)
    return monkeypatch


def test_development_makes_private_secrets_in_the_instance_folder(tmp_path, no_secret_env):
    settings = config.defaults(tmp_path)
    assert settings["PRODUCTION"] is False
    config.finalize(settings, tmp_path)
    path = tmp_path / "dev-secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert settings["SECRET_KEY"] == stored["SECRET_KEY"]
    assert settings["SECRET_KEY"].startswith(config.DEV_SECRET_PREFIX)
    assert len(settings["SECRET_KEY"]) >= 32
    assert settings["KEKS"] == stored["KEKS"]
    assert settings["KEYRING"].active == config.DEV_KEK_ID


def test_development_reuses_its_secrets_on_the_next_start(tmp_path, no_secret_env):
    first = config.defaults(tmp_path)
    config.finalize(first, tmp_path)
    blob = first["KEYRING"].seal(b"still readable", {"p": "check"})
    second = config.defaults(tmp_path)
    config.finalize(second, tmp_path)
    assert second["SECRET_KEY"] == first["SECRET_KEY"]
    assert second["KEKS"] == first["KEKS"]
    assert second["KEYRING"].open(blob, {"p": "check"}) == b"still readable"


def test_development_keeps_secrets_given_in_the_environment(tmp_path, no_secret_env):
    no_secret_env.setenv("KAPJOURNAL_SECRET_KEY", GOOD_SECRET)
    no_secret_env.setenv("KAPJOURNAL_KEKS", GOOD_KEKS)
    settings = config.defaults(tmp_path)
    config.finalize(settings, tmp_path)
    assert settings["SECRET_KEY"] == GOOD_SECRET
    assert settings["KEYRING"].active == "k1"
    assert not (tmp_path / "dev-secrets.json").exists()


def test_production_never_makes_or_accepts_development_secrets(tmp_path, no_secret_env):
    dev = config.defaults(tmp_path)
    config.finalize(dev, tmp_path)
    no_secret_env.setenv("KAPJOURNAL_ENV", "production")
    elsewhere = tmp_path / "prod-instance"
    with pytest.raises(config.ConfigError):
        config.finalize(config.defaults(elsewhere), elsewhere)
    assert not (elsewhere / "dev-secrets.json").exists()
    no_secret_env.setenv("KAPJOURNAL_SECRET_KEY", dev["SECRET_KEY"])
    no_secret_env.setenv("KAPJOURNAL_KEKS", GOOD_KEKS)
    with pytest.raises(config.ConfigError, match="KAPJOURNAL_SECRET_KEY"):
        config.finalize(config.defaults(elsewhere), elsewhere)
    no_secret_env.setenv("KAPJOURNAL_SECRET_KEY", GOOD_SECRET)
    no_secret_env.setenv("KAPJOURNAL_KEKS", dev["KEKS"])
    with pytest.raises(config.ConfigError, match="KAPJOURNAL_KEKS"):
        config.finalize(config.defaults(elsewhere), elsewhere)


# --- users create / list --------------------------------------------------------------------


def _create_therapist(app, email="new.therapist@example.org", *, password=CLI_PASSWORD, options=()):
    args = ["users", "create", "--role", "therapist", "--email", email, "--name", "Dr. Nia Field"]
    return app.test_cli_runner().invoke(
        args=[*args, *options, "--password-stdin"], input=password + "\n"
    )


def test_users_create_makes_a_therapist_who_can_log_in(app):
    result = _create_therapist(app)
    assert result.exit_code == 0, result.output
    assert "Created therapist new.therapist@example.org" in result.output
    assert _RECOVERY.search(result.output)
    assert CLI_PASSWORD not in result.output
    client = app.test_client()
    login(client, persona("therapist", "new.therapist@example.org", CLI_PASSWORD))
    assert logged_in(client)
    with app.app_context(), Session(db.engine()) as dbs:
        user = accounts.find_by_email(session=dbs, email="new.therapist@example.org")
        assert user.role == "therapist"
        assert not user.is_owner
        assert accounts.name_of(user) == "Dr. Nia Field"


def test_users_create_prints_the_users_own_recovery_code(app):
    result = _create_therapist(app)
    code = _RECOVERY.search(result.output).group(0)
    with app.app_context(), Session(db.engine()) as dbs:
        user = accounts.find_by_email(session=dbs, email="new.therapist@example.org")
        assert accounts.recovery_code_matches(user=user, code=code)


def test_users_create_owner_flag(app):
    result = _create_therapist(app, options=["--owner"])
    assert result.exit_code == 0, result.output
    with app.app_context(), Session(db.engine()) as dbs:
        assert accounts.find_by_email(session=dbs, email="new.therapist@example.org").is_owner


@pytest.mark.parametrize(
    "password, message",
    [("short", "at least 12 characters"), ("password1234", "commonly used")],
)
def test_users_create_refuses_a_weak_password(app, password, message):
    result = _create_therapist(app, password=password)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "password:" in result.stderr
    with app.app_context(), Session(db.engine()) as dbs:
        assert accounts.user_count(session=dbs) == 0


def test_users_create_refuses_a_second_account_for_an_email(app, therapist):
    result = _create_therapist(app, email=therapist.email.upper())
    assert result.exit_code == 1
    assert "already exists" in result.stderr


def test_users_list_shows_role_email_and_name_and_no_secret(app, therapist, patient):
    result = app.test_cli_runner().invoke(args=["users", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    for who, line in zip((therapist, patient), lines, strict=True):
        assert line.split()[0] == who.role
        assert who.email in line
        assert who.name in line
        assert who.password not in line
        assert who.recovery_code not in line
        assert not _BLOB.search(line), line
    assert "owner" in lines[0]
    assert "owner" not in lines[1]


# --- demo -----------------------------------------------------------------------------------


def test_demo_prints_four_logins_that_work(app):
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4
    logins = [line.split(" ") for line in lines]
    # The therapist's line ends with their two-step login key, `totp:SECRET`.
    assert all(len(parts) == (4 if parts[0] == "therapist" else 3) for parts in logins)
    assert sorted(parts[0] for parts in logins) == ["patient", "patient", "support", "therapist"]
    for role, email, password, *key in logins:
        client = app.test_client()
        secret = key[0].removeprefix("totp:") if key else None
        login(client, Persona(role, email, password, None, "", "", secret))
        assert logged_in(client)
        assert client.get("/home").status_code == 200


def test_demo_refuses_in_production(make_app):
    app = make_app(**production())
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code != 0
    assert "refuses to run in production" in result.output
    with app.app_context(), Session(db.engine()) as dbs:
        assert accounts.user_count(session=dbs) == 0


# --- keys rotate ----------------------------------------------------------------------------


KEK_SEALED_COLUMNS = (
    "email_enc",
    "name_enc",
    "verifier_enc",
    "private_wrapped",
    "recovery_wrapped",
)


def _kek_ids(app) -> set[str]:
    ring = app.config["KEYRING"]
    with app.app_context(), Session(db.engine()) as dbs:
        ids = {
            ring.kek_id_of(getattr(user, column))
            for user in dbs.exec(select(User))
            for column in KEK_SEALED_COLUMNS
        }
        labels = dbs.exec(select(Invitation.label_enc).where(Invitation.label_enc.is_not(None)))
        ids |= {ring.kek_id_of(label) for label in labels}
    return ids


def test_keys_rotate_moves_everything_to_the_new_kek(make_app):
    old = make_app(KEKS=f"t1:{KEY_A}")
    therapist = make_user(old, role="therapist", email="tess@example.org", name="Dr. Tess Ward")
    patient = make_user(
        old, role="patient", email="Pat@Example.org", name="Pat Quinn", invited_by=therapist
    )
    with old.app_context(), Session(db.engine()) as dbs:
        inviter = dbs.get(User, therapist.id)
        care.create_invitation(session=dbs, inviter=inviter, kind="patient", label="Robin K.")
        dbs.commit()
    assert _kek_ids(old) == {"t1"}

    both = make_app(KEKS=f"t1:{KEY_A},t2:{KEY_B}", KEK_ACTIVE="t2")
    result = both.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "'t2'" in result.output

    new = make_app(KEKS=f"t2:{KEY_B}")
    assert _kek_ids(new) == {"t2"}
    for who in (therapist, patient):
        client = new.test_client()
        login(client, who)
        assert logged_in(client)
    listing = new.test_cli_runner().invoke(args=["users", "list"])
    assert listing.exit_code == 0, listing.output
    assert "tess@example.org" in listing.output
    assert "Pat@Example.org" in listing.output
    with new.app_context(), Session(db.engine()) as dbs:
        labels = dbs.exec(select(Invitation).where(Invitation.label_enc.is_not(None)))
        assert [care.label_of(inv) for inv in labels] == ["Robin K."]


def test_old_kek_alone_cannot_read_after_rotation(make_app):
    old = make_app(KEKS=f"t1:{KEY_A}")
    who = make_user(old, role="therapist", email="tess@example.org", name="Dr. Tess Ward")
    both = make_app(KEKS=f"t1:{KEY_A},t2:{KEY_B}", KEK_ACTIVE="t2")
    assert both.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
    stale = make_app(KEKS=f"t1:{KEY_A}")
    client = stale.test_client()
    # The email lookup was recomputed under t2, so t1 no longer even finds the account.
    response = post(client, "/login", {"email": who.email, "password": who.password})
    assert response.status_code == 422


def _write_shared_entry(app, patient: Persona, therapist: Persona) -> None:
    """A reflection shared with the therapist: it appends `write` and `share` audit events."""
    with app.app_context(), Session(db.engine()) as dbs:
        journal.create(
            session=dbs,
            author=dbs.get(User, patient.id),
            kind="reflection",
            body={"text": "The music felt like a tide."},
            client_id=uuid.uuid4(),
            readers=[dbs.get(User, therapist.id)],
        )
        dbs.commit()


def test_keys_rotate_keeps_the_access_log_verifiable_under_the_new_kek(make_app):
    old = make_app(KEKS=f"t1:{KEY_A}")
    therapist = make_user(old, role="therapist", email="tess@example.org", name="Dr. Tess Ward")
    patient = make_user(
        old, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    _write_shared_entry(old, patient, therapist)
    both = make_app(KEKS=f"t1:{KEY_A},t2:{KEY_B}", KEK_ACTIVE="t2")
    assert both.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
    _write_shared_entry(both, patient, therapist)  # new events chain on after the rotation

    new = make_app(KEKS=f"t2:{KEY_B}")
    result = new.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact (4 events)" in result.output
    with new.app_context(), Session(db.engine()) as dbs:
        assert set(dbs.exec(select(AuditEvent.kek_id))) == {"t2"}


def test_keys_rotate_refuses_to_rekey_a_tampered_access_log(make_app):
    old = make_app(KEKS=f"t1:{KEY_A}")
    therapist = make_user(old, role="therapist", email="tess@example.org", name="Dr. Tess Ward")
    patient = make_user(
        old, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    _write_shared_entry(old, patient, therapist)
    with old.app_context(), Session(db.engine()) as dbs:
        first = dbs.exec(select(AuditEvent).where(AuditEvent.seq == 1)).one()
        first.action = "read"  # rewrite history
        dbs.add(first)
        dbs.commit()

    both = make_app(KEKS=f"t1:{KEY_A},t2:{KEY_B}", KEK_ACTIVE="t2")
    result = both.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code != 0
    assert "broken at event 1" in result.output
    # Nothing moved: a rotation that cannot finish leaves every value where it was.
    assert _kek_ids(both) == {"t1"}
    verify = both.test_cli_runner().invoke(args=["audit", "verify"])
    assert verify.exit_code == 1
    assert "broken at event 1" in verify.stderr


# --- migrations -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request, tmp_path):
    """An empty database of each kind (PostgreSQL only when KAPJOURNAL_TEST_DATABASE_URL is
    set): a new SQLite file, or a new schema dropped afterwards."""
    if request.param == "sqlite":
        engine = db.make_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
        yield engine, None
        engine.dispose()
        return
    url = os.environ.get("KAPJOURNAL_TEST_DATABASE_URL")
    if not url:
        pytest.skip("KAPJOURNAL_TEST_DATABASE_URL is not set")
    schema = f"kj_migrations_{os.getpid()}_{secrets.token_hex(4)}"
    admin = db.make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = db.make_engine(url, schema=schema)
    try:
        yield engine, schema
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _tables(engine, schema) -> set[str]:
    return set(inspect(engine).get_table_names(schema=schema)) - {"alembic_version"}


def test_migrations_upgrade_downgrade_and_upgrade_again(fresh_engine):
    engine, schema = fresh_engine
    models = set(SQLModel.metadata.tables)
    db.upgrade(engine)
    assert _tables(engine, schema) == models
    db.downgrade(engine, "base")
    assert _tables(engine, schema) == set()
    db.upgrade(engine)
    assert _tables(engine, schema) == models


def test_migrations_match_the_models(fresh_engine):
    engine, _ = fresh_engine
    db.upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert differences == []


def test_fresh_database_from_migrations_serves_the_app(fresh_engine, tmp_path):
    engine, _ = fresh_engine
    db.upgrade(engine)
    app = create_app(
        {
            "SECRET_KEY": GOOD_SECRET,
            "KEKS": GOOD_KEKS,
            "DATABASE_URL": str(engine.url.render_as_string(hide_password=False)),
            "ENGINE": engine,
            "KDF_PARAMS": crypto.KdfParams(memory_kib=1024, iterations=1, lanes=1),
            "TESTING": True,
        }
    )
    result = _create_therapist(app)
    assert result.exit_code == 0, result.output
    client = app.test_client()
    login(client, persona("therapist", "new.therapist@example.org", CLI_PASSWORD))


# --- health check ---------------------------------------------------------------------------


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
