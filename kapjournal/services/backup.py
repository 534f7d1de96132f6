"""Backups (DESIGN §11 "Backup"): one file that holds the database as it was at one moment,
ciphertext and metadata only, with a manifest; checking such a file; restoring it.

A backup is a tar file of two members: `manifest.json` and the database, either
`database.sqlite3` (SQLite's `VACUUM INTO`: one read transaction, so a consistent copy while
the app goes on writing) or `database.pgdump` (`pg_dump` in its custom format, of the app's
schema, from a snapshot exported by the transaction that also computes the manifest, so the
counts and the access-log head describe exactly what was dumped). The dump is not compressed:
ciphertext does not compress, and an uncompressed file can be searched for a leak with grep.

Logged-in devices are left out (their rows hold private keys wrapped under a key whose other
half is in a cookie): restoring signs everyone out. The KEKs are never in a backup; without
them a restored copy opens nothing, and `restore` says which KEK it needs before it touches
anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, delete, func, inspect, text
from sqlalchemy import table as table_named
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from .. import crypto, db
from ..models import AuditEvent, AuditHead, Entry, Grant, ItemKey, User
from . import audit
from .keys import USER_BLOBS

FORMAT = "kapjournal-backup"
VERSION = 1
MANIFEST = "manifest.json"
DATA = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
NOT_KEPT = ("device_session",)  # rows left out of every backup (see the module's docstring)
COUNTED = ("users", "entry", "grant", "annotation", "practice", "audit_event")  # for people


class BackupError(Exception):
    """What the clinic owner must know, in a sentence they can act on."""


@dataclass
class Manifest:
    database: str  # "sqlite" or "postgresql"
    revision: list[str]  # the Alembic revision(s) of the schema
    counts: dict[str, int]  # rows per table
    audit_head: dict  # {"seq": newest event, "mac": its MAC in hex}; seq 0 for an empty log
    kek_ids: list[str]  # every KEK something in the copy is sealed under
    created_at: str = ""
    schema: str | None = None  # PostgreSQL: the schema that was dumped
    sha256: str = ""  # of the database member
    format: str = FORMAT
    version: int = VERSION

    def summary(self) -> str:
        counted = ", ".join(f"{self.counts.get(name, 0)} {name}" for name in COUNTED)
        return f"{counted}; access log to event {self.audit_head['seq']}"


@dataclass
class Report:
    """What `verify` or `restore` found: `problems` is empty when all is well."""

    manifest: Manifest
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- create --------------------------------------------------------------------------------------


def create(engine: Engine, dest: Path, *, keyring: crypto.Keyring) -> Manifest:
    """Write a backup of the database behind `engine` to `dest` (a new file, 0600)."""
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"{dest} already exists: a backup never overwrites a file")
    kind = _kind(engine)
    with _workdir(dest.parent) as work:
        data = work / DATA[kind]
        if kind == "sqlite":
            manifest = _copy_sqlite(engine, data, keyring)
        else:
            manifest = _dump_postgres(engine, data, keyring)
        manifest.created_at = datetime.now(UTC).isoformat(timespec="seconds")
        manifest.sha256 = _sha256(data)
        _pack(manifest, data, dest)
    return manifest


def _copy_sqlite(engine: Engine, copy: Path, keyring) -> Manifest:
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM INTO ?", (str(copy),))
    finally:
        raw.close()
    with _sqlite_engine(copy) as copied:
        with copied.begin() as conn:  # secure_delete is on: the rows are overwritten
            for table in NOT_KEPT:
                conn.execute(delete(table_named(table)))
        with copied.connect() as conn:
            conn.exec_driver_sql("VACUUM")
            return describe(conn, keyring)


def _dump_postgres(engine: Engine, dump: Path, keyring) -> Manifest:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            manifest = describe(conn, keyring)
            schema = manifest.schema
            _pg_run(
                engine,
                "pg_dump",
                "--format=custom",
                "--compress=0",
                f"--snapshot={snapshot}",
                f"--schema={schema}",
                *(f"--exclude-table-data={schema}.{table}" for table in NOT_KEPT),
                "--no-owner",
                "--no-privileges",
                f"--file={dump}",
            )
    return manifest


def describe(conn: Connection, keyring: crypto.Keyring) -> Manifest:
    """The manifest of the database `conn` sees (rows of NOT_KEPT tables are not counted)."""
    kind = conn.dialect.name
    tables = sorted(set(inspect(conn).get_table_names()) - {"alembic_version", *NOT_KEPT})
    counts = {
        table: conn.execute(select(func.count()).select_from(table_named(table))).scalar_one()
        for table in tables
    }
    newest = conn.execute(
        select(AuditEvent.seq, AuditEvent.mac).order_by(col(AuditEvent.seq).desc()).limit(1)
    ).first()
    return Manifest(
        database=kind,
        schema=conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        if kind == "postgresql"
        else None,
        revision=sorted(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()),
        counts=counts,
        audit_head={"seq": newest.seq, "mac": newest.mac.hex()}
        if newest
        else {"seq": 0, "mac": ""},
        kek_ids=sorted(_kek_ids(conn, keyring)),
    )


def _kek_ids(conn: Connection, keyring: crypto.Keyring) -> set[str]:
    ids = set(conn.execute(select(AuditEvent.kek_id).distinct()).scalars())
    ids |= set(conn.execute(select(AuditHead.kek_id)).scalars())
    columns = [getattr(User, name) for name in USER_BLOBS]
    for row in conn.execute(select(*columns)):
        ids |= {keyring.kek_id_of(blob) for blob in row}
    return ids


# --- the file ------------------------------------------------------------------------------------


def _pack(manifest: Manifest, data: Path, dest: Path) -> None:
    """Write the tar to `dest.partial`, then rename it: a crash never leaves half a backup
    under the real name."""
    partial = dest.with_name(dest.name + ".partial")
    fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
            body = json.dumps(asdict(manifest), indent=2, sort_keys=True).encode()
            tar.addfile(_member(MANIFEST, len(body)), io.BytesIO(body))
            with data.open("rb") as stream:
                tar.addfile(_member(data.name, data.stat().st_size), stream)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(datetime.now(UTC).timestamp())
    return info


@contextmanager
def unpacked(src: Path, work: Path) -> Iterator[tuple[Manifest, Path]]:
    """The manifest of the backup at `src` and its database, copied into `work`; BackupError
    if the file is not a whole kapjournal backup."""
    try:
        with tarfile.open(src, mode="r:") as tar:
            members = {member.name: member for member in tar.getmembers()}
            if MANIFEST not in members or not members[MANIFEST].isfile():
                raise BackupError(f"{src} is not a kapjournal backup (no manifest)")
            manifest = _read_manifest(tar.extractfile(members[MANIFEST]).read(), src)
            name = DATA[manifest.database]
            if set(members) != {MANIFEST, name} or not members[name].isfile():
                raise BackupError(f"{src} holds unexpected files: {sorted(members)}")
            data = work / name
            fd = os.open(data, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(tar.extractfile(members[name]), out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"{src} cannot be read as a backup: {exc}") from None
    if _sha256(data) != manifest.sha256:
        raise BackupError(f"{src} is damaged: its database does not match the manifest's hash")
    yield manifest, data


def _read_manifest(body: bytes, src: Path) -> Manifest:
    try:
        fields = json.loads(body)
        manifest = Manifest(**fields)
    except (ValueError, TypeError) as exc:
        raise BackupError(f"{src} has an unreadable manifest ({exc})") from None
    if manifest.format != FORMAT or manifest.version != VERSION:
        raise BackupError(f"{src} is a {manifest.format} v{manifest.version}, not {FORMAT} v1")
    if manifest.database not in DATA:
        raise BackupError(f"{src} is of an unknown database kind {manifest.database!r}")
    return manifest


# --- verify --------------------------------------------------------------------------------------


def verify(src: Path, *, keyring: crypto.Keyring, server: Engine | None = None) -> Report:
    """Open the backup at `src` in a scratch database (a temporary SQLite file, or a temporary
    database on `server` for a PostgreSQL dump) and check it: the schema revision is one this
    code knows, the counts match the manifest, every KEK it needs is configured, the access
    log's chain verifies and ends where the manifest says, and every entry's grant structure
    is whole."""
    with _workdir(Path(src).parent) as work, unpacked(Path(src), work) as (manifest, data):
        report = Report(manifest)
        missing = _missing_keks(manifest, keyring)
        if missing:
            report.problems.append(missing)
            return report
        with _scratch(manifest, data, work, server) as engine:
            report.problems += _check(engine, manifest, keyring, report.notes)
    return report


def _check(engine: Engine, manifest: Manifest, keyring, notes: list[str]) -> list[str]:
    """What is wrong with the restored copy behind `engine`, in the manifest's terms."""
    problems = []
    known = _known_revisions()
    unknown = [revision for revision in manifest.revision if revision not in known]
    if unknown:
        problems.append(f"its schema revision {unknown} is not one this version of kapjournal has")
        return problems
    with engine.connect() as conn:
        found = describe(conn, keyring)
    if found.revision != manifest.revision:
        problems.append(f"its schema is at {found.revision}, the manifest says {manifest.revision}")
    if found.counts != manifest.counts:
        changed = {
            table: (manifest.counts.get(table), found.counts.get(table))
            for table in set(found.counts) | set(manifest.counts)
            if found.counts.get(table) != manifest.counts.get(table)
        }
        problems.append(f"rows differ from the manifest (manifest, found): {changed}")
    if found.audit_head != manifest.audit_head:
        problems.append(f"the access log ends at {found.audit_head}, the manifest says otherwise")
    with Session(engine) as session:
        chain = audit.verify(session=session, keyring=keyring)
        if not chain.intact:
            problems.append(str(chain))
        problems += grant_problems(session, keyring)
    head = _head_revisions()
    if not problems and manifest.revision != head:
        notes.append(f"its schema ({manifest.revision}) is older: restore upgrades it to {head}")
    return problems


def grant_problems(session: Session, keyring: crypto.Keyring) -> list[str]:
    """Whether every key to every entry can still be reached by someone: each account's
    KEK-sealed values open (the outer layer: a password is still needed inside), each entry
    has a wrapped key for its author, and every wrapped key has the shape of one."""
    problems: list[str] = []
    size = _wrap_size()
    for user in session.exec(select(User)):
        for column, purpose in USER_BLOBS.items():
            try:
                keyring.open(getattr(user, column), {"p": purpose, "user": str(user.id)})
            except crypto.CryptoError as exc:
                problems.append(f"account {user.id}: {column} does not open ({exc})")
    authored = select(Grant.entry_id).join(Entry, Entry.id == Grant.entry_id)
    authored = authored.where(
        Grant.reader_id == Entry.author_id, col(Grant.wrapped_key).is_not(None)
    )
    orphans = session.exec(
        select(func.count()).select_from(Entry).where(col(Entry.id).not_in(authored))
    ).one()
    if orphans:
        problems.append(f"{orphans} entries have no key wrapped to their author")
    for model in (Grant, ItemKey):
        column = col(model.wrapped_key)
        wrong = session.exec(
            select(func.count())
            .select_from(model)
            .where(column.is_not(None), func.length(column) != size)
        ).one()
        if wrong:
            problems.append(f"{wrong} rows of {model.__tablename__} hold no valid wrapped key")
    return problems


def _wrap_size() -> int:
    _, public = crypto.generate_keypair()
    return len(crypto.wrap_key(crypto.random_key(), public, {"p": "probe"}))


def _missing_keks(manifest: Manifest, keyring: crypto.Keyring) -> str | None:
    missing = [kid for kid in manifest.kek_ids if not keyring.has(kid)]
    if not missing:
        return None
    names = ", ".join(repr(kid) for kid in missing)
    return (
        f"this backup needs KEK {names}, which is not in KAPJOURNAL_KEKS: without it nothing in "
        "the backup opens (add it as id:key, from where you keep your KEKs)"
    )


# --- restore -------------------------------------------------------------------------------------


def restore(src: Path, engine: Engine, *, keyring: crypto.Keyring, force: bool = False) -> Report:
    """Put the backup at `src` into the database behind `engine`, which must be empty (no
    accounts and no access log) unless `force`; then upgrade its schema and check it. Nothing
    is touched when the backup is unreadable, of the other kind of database, of another
    PostgreSQL schema, or needs a KEK that is not configured."""
    kind = _kind(engine)
    with _workdir(Path(src).parent) as work, unpacked(Path(src), work) as (manifest, data):
        missing = _missing_keks(manifest, keyring)
        if missing:
            raise BackupError(missing)
        if manifest.database != kind:
            raise BackupError(
                f"this is a {manifest.database} backup and the configured database is {kind}"
            )
        unknown = [revision for revision in manifest.revision if revision not in _known_revisions()]
        if unknown:
            raise BackupError(f"its schema revision {unknown} is newer than this kapjournal")
        if kind == "postgresql":
            with engine.connect() as conn:
                schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
            if schema != manifest.schema:
                raise BackupError(
                    f"this backup is of schema {manifest.schema!r}; the configured database "
                    f"uses {schema!r} (create that schema, or set the search path to it)"
                )
        if not force:
            people = _occupied(engine)
            if people:
                raise BackupError(
                    f"the database is not empty ({people}): restore into an empty database, "
                    "or add --force to replace everything in it"
                )
        try:
            if kind == "sqlite":
                _restore_sqlite(data, engine)
            else:
                _restore_postgres(data, engine, manifest)
        except (BackupError, sqlite3.Error) as exc:
            raise BackupError(
                f"{exc}; the database may now be empty or partly written: fix the cause and "
                "restore again with --force"
            ) from None
    db.upgrade(engine)
    report = Report(manifest)
    with engine.connect() as conn:
        found = describe(conn, keyring)
    with Session(engine) as session:
        chain = audit.verify(session=session, keyring=keyring)
    if not chain.intact:
        report.problems.append(str(chain))
    if found.audit_head != manifest.audit_head:
        report.problems.append("the restored access log does not end where the manifest says")
    return report


def _occupied(engine: Engine) -> str:
    """What makes the database not empty, in words ('' when it is empty: no tables, or tables
    without accounts or access-log events)."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if "users" not in tables:
            return f"{len(tables)} tables" if tables else ""
        users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
        events = conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one()
    return f"{users} accounts, {events} access-log events" if users or events else ""


def _restore_sqlite(data: Path, engine: Engine) -> None:
    """SQLite's backup API copies every page into the target under its write lock, replacing
    what was there (the app should be stopped; a running one would only wait)."""
    engine.dispose()
    source = sqlite3.connect(data)
    raw = engine.raw_connection()
    try:
        source.backup(raw.driver_connection)
    finally:
        raw.close()
        source.close()
    engine.dispose()


def _restore_postgres(dump: Path, engine: Engine, manifest: Manifest) -> None:
    """Drop the tables of the backup's schema (the target's current one), then pg_restore into
    it in one transaction. The schema itself is kept (it may be `public`, or carry grants):
    its entry is left out of the restore."""
    schema = manifest.schema
    with engine.begin() as conn:
        for table in inspect(conn).get_table_names():
            conn.execute(text(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE'))
    listing = _pg_run(engine, "pg_restore", "--list", str(dump)).stdout
    keep = [line for line in listing.splitlines() if not _SCHEMA_ENTRY.match(line)]
    toc = dump.with_name("toc.list")
    toc.write_text("\n".join(keep) + "\n")
    _pg_run(
        engine,
        "pg_restore",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"--use-list={toc}",
        str(dump),
        database=True,
    )


_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ (SCHEMA|COMMENT - SCHEMA|ACL - SCHEMA) ")


# --- scratch databases and tools -----------------------------------------------------------------


@contextmanager
def _scratch(manifest: Manifest, data: Path, work: Path, server: Engine | None):
    """An engine on a throwaway copy of the backup's database."""
    if manifest.database == "sqlite":
        with _sqlite_engine(data) as engine:
            yield engine
        return
    if server is None or _kind(server) != "postgresql":
        raise BackupError(
            "checking a PostgreSQL backup needs a PostgreSQL server: set "
            "KAPJOURNAL_DATABASE_URL to one (a temporary database is made there and dropped)"
        )
    name = f"kapjournal_verify_{secrets.token_hex(6)}"
    admin = server.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # the driver's error says why (no CREATEDB, most often)
        raise BackupError(f"could not make a temporary database to check in: {exc}") from None
    url = server.url.set(database=name)
    engine = db.make_engine(url.render_as_string(hide_password=False), schema=manifest.schema)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{manifest.schema}"')
        _restore_postgres(data, engine, manifest)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _sqlite_engine(path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _workdir(near: Path) -> Iterator[Path]:
    """A private (0700) folder beside the backup, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=".kapjournal-backup-", dir=near))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _pg_run(engine: Engine, tool: str, *args: str, database: bool = False):
    """Run a PostgreSQL client tool against `engine`'s server (the password through the
    environment, never on the command line); BackupError with its message if it fails."""
    path = shutil.which(tool)
    if path is None:
        raise BackupError(
            f"{tool} was not found: install the PostgreSQL client tools of the server's "
            "version (Debian: postgresql-client)"
        )
    url = make_url(engine.url.render_as_string(hide_password=False))
    env = dict(os.environ, PGPASSWORD=url.password or os.environ.get("PGPASSWORD", ""))
    libpq = url.set(drivername="postgresql", password=None).render_as_string()
    if tool == "pg_dump" or database:
        args = (*args, f"--dbname={libpq}")
    done = subprocess.run([path, *args], capture_output=True, text=True, env=env)  # noqa: S603  (our arguments)
    if done.returncode != 0:
        raise BackupError(f"{tool} failed: {done.stderr.strip()[-2000:]}")
    return done


def _kind(engine: Engine) -> str:
    return "sqlite" if engine.dialect.name == "sqlite" else "postgresql"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def _head_revisions() -> list[str]:
    return sorted(_scripts().get_heads())


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(db.alembic_config())
