"""Two app servers on one PostgreSQL database, rate limits in Redis: no 5xx, no lost write,
each read logged once, and an intact access log.

    .venv/bin/python bench/load.py --servers 2     # at least 20 s; longer with --seconds

Two gunicorn servers (separate processes, 2 sync workers each) share a fresh PostgreSQL
schema (dropped afterwards) and Redis database 14, seeded with the demo clinic. From threads
spread over both servers, the demo patient writes reflections (each with a fresh client_id,
every other one shared with the therapist; and pairs sent to both servers at once with the
same client_id), while the supporter reads the entries shared with them and the therapist
the notes pages of the entries shared with them. Then the database is checked. A
benchmark, not a test: it prints a report and exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import secrets
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import requests
from load import BIN, ROOT, app_env, demo_logins, gunicorn, log_in
from sqlalchemy import text
from sqlmodel import Session, col, create_engine, select

from kapjournal.models import AuditEvent, Entry, Grant, ReadTally, User

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/14"
MIN_SECONDS = 20
# Kinds a therapist opens on the notes page (questionnaires have their own pages).
ANNOTATABLE = ("reflection", "intention", "check_in")
QUESTIONNAIRES = ("phq9", "gad7")  # an entry page redirects them to their result page
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ENTRY = re.compile(r"/entries/([0-9a-f-]{36})$")


@dataclass
class Record:
    """What the clients saw, shared by every thread (under `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter = field(default_factory=Counter)  # (what, status) -> responses
    written: dict = field(default_factory=dict)  # client_id -> entry ids answered with 303
    pairs: list = field(default_factory=list)  # client_ids sent twice at once
    reads: Counter = field(default_factory=Counter)  # (reader_id, entry_id) -> 200s
    failures: list = field(default_factory=list)  # exceptions in client threads

    def saw(self, what: str, response: requests.Response) -> None:
        with self.lock:
            self.statuses[(what, response.status_code)] += 1


@dataclass
class Clinic:
    """The demo clinic's ids (from the database) and the entries each reader may open."""

    patient: uuid.UUID
    therapist: uuid.UUID
    supporter: uuid.UUID
    for_supporter: list
    for_therapist: list  # grows as the patient shares new entries


@contextmanager
def fresh_schema():
    """A new PostgreSQL schema; yields the database URL that uses it, and drops it after."""
    schema = f"kj_load_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema, f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def clinic_of(engine) -> Clinic:
    """The demo's therapist, supporter and patient (the one with a supporter), and what each
    reader may open: for the supporter, the entries shared with them; for the therapist, the
    patient's shared entries that have a notes page."""
    with Session(engine) as session:
        (therapist,) = session.exec(select(User.id).where(User.role == "therapist")).all()
        (supporter,) = session.exec(select(User.id).where(User.role == "support")).all()
        patient = session.exec(
            select(Entry.author_id).join(Grant).where(Grant.reader_id == supporter)
        ).first()

        def readable(reader, kind) -> list:
            query = select(Entry.id).join(Grant)
            query = query.where(Grant.reader_id == reader, col(Grant.wrapped_key).is_not(None))
            return list(session.exec(query.where(Entry.author_id == patient, kind)).all())

        for_supporter = readable(supporter, col(Entry.kind).not_in(QUESTIONNAIRES))
        for_therapist = readable(therapist, col(Entry.kind).in_(ANNOTATABLE))
    return Clinic(patient, therapist, supporter, for_supporter, for_therapist)


@dataclass
class Load:
    """One run: the servers, the clinic, what the clients saw, and when to stop."""

    servers: list
    clinic: Clinic
    record: Record = field(default_factory=Record)
    stop: threading.Event = field(default_factory=threading.Event)

    def thread(self, work: Callable, *args) -> threading.Thread:
        """A client thread running `work(self, *args)`; an exception fails the run."""

        def run() -> None:
            try:
                work(self, *args)
            except Exception as exc:  # reported with the results
                with self.record.lock:
                    self.record.failures.append(f"{work.__name__}: {exc!r}")

        return threading.Thread(target=run, name=work.__name__)


def browser_like(logged_in: requests.Session) -> requests.Session:
    """A session of its own (for one thread) with the logged-in person's cookies: the login
    session lives in the database, so it works on either server."""
    http = requests.Session()
    http.cookies.update(logged_in.cookies)
    return http


def token_of(http: requests.Session, base: str) -> str:
    return _CSRF.search(http.get(base + "/entries/new", timeout=60).text).group(1)


def write(load: Load, http, server: int, token: str, client_id, share=None, what="write"):
    """POST one reflection to `load.servers[server]`; returns the entry it answered with (a
    303 to /entries/<id>), noted under its client_id, or None."""
    data = {"kind": "reflection", "client_id": str(client_id), "csrf_token": token}
    data["text"] = f"Benchmark reflection {client_id}: the walk helped."
    if share:
        data["share"] = str(share)
    url = load.servers[server] + "/entries/new"
    response = http.post(url, data=data, allow_redirects=False, timeout=60)
    load.record.saw(what, response)
    found = _ENTRY.search(response.headers.get("Location", ""))
    if response.status_code != 303 or not found:
        return None
    entry = uuid.UUID(found.group(1))
    with load.record.lock:
        load.record.written.setdefault(client_id, set()).add(entry)
    return entry


def writer(load: Load, patient: requests.Session) -> None:
    """New entries, each with a fresh client_id, on alternate servers; every other one is
    shared with the therapist, who then reads it too."""
    http = browser_like(patient)
    token = token_of(http, load.servers[0])
    for n in itertools.count():
        if load.stop.is_set():
            return
        share = load.clinic.therapist if n % 2 == 0 else None
        entry = write(load, http, n % 2, token, uuid.uuid4(), share)
        if entry and share:
            with load.record.lock:
                load.clinic.for_therapist.append(entry)


def duplicator(load: Load, patient: requests.Session) -> None:
    """The same entry (one client_id) sent to both servers at the same instant."""
    sides = [browser_like(patient) for _ in load.servers]
    tokens = [token_of(http, base) for http, base in zip(sides, load.servers, strict=True)]
    barrier = threading.Barrier(len(sides))
    while not load.stop.is_set():
        client_id = uuid.uuid4()
        with load.record.lock:
            load.record.pairs.append(client_id)
        threads = [
            load.thread(same_entry, sides[i], i, tokens[i], client_id, barrier)
            for i in range(len(sides))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def same_entry(load: Load, http, server: int, token: str, client_id, barrier) -> None:
    """One of the two sends of a pair: waits for the other, then posts."""
    barrier.wait()
    write(load, http, server, token, client_id, what="same entry twice")


def reader(load: Load, who: str, logged_in: requests.Session, reader_id, path: str, pool: list):
    """Opens entries from `pool` at `path` (e.g. /entries/{}), at random, on either server;
    each 200 is one read of that entry by `reader_id`."""
    http = browser_like(logged_in)
    while not load.stop.is_set():
        with load.record.lock:
            entry = random.choice(pool)
        response = http.get(random.choice(load.servers) + path.format(entry), timeout=60)
        load.record.saw(who, response)
        if response.status_code == 200:
            with load.record.lock:
                load.record.reads[(reader_id, entry)] += 1


def drive(load: Load, people: dict, seconds: float) -> float:
    """Every client thread for `seconds`; returns how long they ran."""
    clinic = load.clinic
    threads = [load.thread(writer, people["patient"]) for _ in range(2)]
    threads.append(load.thread(duplicator, people["patient"]))
    for _ in range(2):
        supporter = (people["supporter"], clinic.supporter, "/entries/{}", clinic.for_supporter)
        therapist = (people["therapist"], clinic.therapist, "/entries/{}/notes")
        threads.append(load.thread(reader, "supporter reads", *supporter))
        threads.append(load.thread(reader, "therapist reads", *therapist, clinic.for_therapist))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    load.stop.set()
    for thread in threads:
        thread.join(timeout=120)
    return time.monotonic() - started


# --- the checks ----------------------------------------------------------------------------------


def no_5xx(load: Load, _engine) -> tuple[bool, str]:
    record = load.record
    errors = sum(n for (_, status), n in record.statuses.items() if status >= 500)
    broken = len(record.failures)
    return errors == 0 and broken == 0, f"{errors} answers 5xx, {broken} client errors"


def no_lost_write(load: Load, engine) -> tuple[bool, str]:
    """Every client_id answered with a 303 is exactly one entry, the one the answer named;
    both answers to a pair sent at once named that same entry."""
    record = load.record
    with Session(engine) as session:
        rows = session.exec(
            select(Entry.client_id, Entry.id).where(Entry.author_id == load.clinic.patient)
        ).all()
    stored = Counter(client_id for client_id, _ in rows)
    ids = dict(rows)
    wrong = [
        cid for cid, named in record.written.items() if stored[cid] != 1 or named != {ids[cid]}
    ]
    pairs = sum(1 for cid in record.pairs if cid in record.written)
    answered = record.statuses[("write", 303)] + record.statuses[("same entry twice", 303)]
    detail = f"{answered} writes answered 303: {len(record.written)} client_ids, "
    detail += f"{pairs} of them sent twice at once; {len(wrong)} lost or doubled"
    return not wrong and bool(record.written), detail


def each_read_logged_once(load: Load, engine) -> tuple[bool, str]:
    """Per reader and entry: one `read` event per day read (the one its tally row names),
    and the tally's count is the number of pages the reader was given."""
    wrong = []
    with Session(engine) as session:
        for (reader_id, entry_id), reads in load.record.reads.items():
            tallies = session.exec(
                select(ReadTally).where(
                    ReadTally.reader_id == reader_id,
                    ReadTally.subject_id == entry_id,
                    ReadTally.action == "read",
                )
            ).all()
            events = session.exec(
                select(AuditEvent.seq).where(
                    AuditEvent.actor_id == reader_id,
                    AuditEvent.entry_id == entry_id,
                    AuditEvent.action == "read",
                )
            ).all()
            counted = sum(t.count for t in tallies)
            if {t.event_seq for t in tallies} != set(events) or len(events) != len(tallies):
                wrong.append(f"{entry_id}: {len(events)} events for {len(tallies)} days")
            elif counted != reads:
                wrong.append(f"{entry_id}: counted {counted}, read {reads}")
    detail = f"{len(load.record.reads)} reader-entry pairs, {sum(load.record.reads.values())} reads"
    return not wrong and bool(load.record.reads), detail + "".join(f"; {w}" for w in wrong[:5])


def audit_verify(env: dict) -> tuple[bool, str]:
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    said = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, f"exit {done.returncode}: {said[-1] if said else ''}"


# --- the run -------------------------------------------------------------------------------------


def report(load: Load, elapsed: float, checks: list[tuple[str, bool, str]]) -> bool:
    """Print requests, req/s, every status and each check; True when all checks passed."""
    record = load.record
    total = sum(record.statuses.values())
    print(f"  {total} requests in {elapsed:.1f} s: {total / elapsed:.1f} req/s")
    for (what, status), count in sorted(record.statuses.items()):
        print(f"    {what:<17} {status}: {count}")
    for failure in record.failures[:5]:
        print(f"    client error: {failure}")
    for name, ok, detail in checks:
        print(f"  {name:<22} {'ok' if ok else 'FAILED'}  ({detail})")
    return all(ok for _, ok, _ in checks)


def run(args) -> None:
    """Seed, serve twice, load for at least MIN_SECONDS, check; exit 1 on a failed check."""
    seconds = max(getattr(args, "seconds", 0), MIN_SECONDS)
    with fresh_schema() as (schema, url), ExitStack() as stack:
        env = app_env(url, REDIS)
        logins = demo_logins(env)  # flask db upgrade, flask demo
        servers = [stack.enter_context(gunicorn("app:app", env, ROOT)) for _ in range(2)]
        engine = create_engine(url)
        stack.callback(engine.dispose)
        load = Load(servers, clinic_of(engine))
        people = {who: log_in(servers[0], *logins[who]) for who in ("patient", "supporter")}
        people["therapist"] = log_in(servers[1], *logins["therapist"])  # two-step login
        print(
            f"two gunicorn servers (2 sync workers each), PostgreSQL schema {schema}, "
            f"Redis {REDIS}, {seconds} s:"
        )
        elapsed = drive(load, people, seconds)
        checks = [
            ("no 5xx", *no_5xx(load, engine)),
            ("no lost write", *no_lost_write(load, engine)),
            ("each read logged once", *each_read_logged_once(load, engine)),
            ("flask audit verify", *audit_verify(env)),
        ]
        passed = report(load, elapsed, checks)
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=MIN_SECONDS)
    run(parser.parse_args())
