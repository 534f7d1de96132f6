"""The database engine, one session per request, and the migration entry points."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app, g
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from .config import private_folder

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
log = logging.getLogger(__name__)


def make_engine(url: str, schema: str | None = None) -> Engine:
    """An engine for `url`; `schema` (PostgreSQL only) isolates a test run."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    args = {"options": f"-csearch_path={schema}"} if schema else {}
    return create_engine(url, connect_args=args, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted ciphertext is overwritten, not left
    cursor.close()


def init_app(app: Flask) -> None:
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").partition("?")[0])
        private_sqlite_file(path, warn=app.config.get("PRODUCTION", False))
    app.extensions["db_engine"] = app.config.get("ENGINE") or make_engine(url)
    app.teardown_appcontext(_close_session)


def private_sqlite_file(path: Path, *, warn: bool = True) -> None:
    """Create the SQLite file for this user only (0600; SQLite gives its journal files the
    same mode), in a folder made 0700 if it is missing. An existing file readable by others is
    left as it is, with a warning (`warn`)."""
    if not path.name or path.name == ":memory:":
        return
    private_folder(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        if warn and stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("the database file %s can be read by other users: chmod 600 it", path)


def engine() -> Engine:
    return current_app.extensions["db_engine"]


def session() -> Session:
    """The request's database session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = Session(engine(), expire_on_commit=False)
    return g.db_session


def _close_session(_exc) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(bind: Engine, revision: str = "heads") -> None:
    """Apply migrations up to `revision` on `bind` (all heads, should branches exist)."""
    cfg = alembic_config()
    with bind.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(bind: Engine, revision: str) -> None:
    cfg = alembic_config()
    with bind.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)
