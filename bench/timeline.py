"""The first page of the timeline (20 encrypted ~2 KB entries) vs the same page rendered from
plaintext bodies, for journals of 20 and 200 entries (DESIGN §9: ≥ 0.90 and ≥ 0.85).

The baseline is the same view, queries and template: only the opening of the page's entries
(services.reading.open_entries: key cache, wrapped keys, AES-GCM, JSON) is replaced, for the
baseline's requests, by bodies held in memory. What differs is what encryption costs.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

from _common import PASSWORD, login, make_app
from flask import Blueprint
from sqlmodel import Session

from kapjournal import db, pages, policy
from kapjournal.services import accounts, journal, reading, timeline

ROUNDS = 60


def seed(app, count: int) -> dict:
    """A patient with `count` entries of ~2 KB; returns {entry id: plaintext body}."""
    bodies = {}
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        patient = accounts.register(
            session=session,
            email=f"p{count}@bench.invalid",
            name="Bench Patient",
            password=PASSWORD,
            password2=PASSWORD,
            role="patient",
        ).user
        accounts.confirm_recovery_saved(session=session, user=patient)
        for i in range(count):
            body = {
                "text": f"Entry {i}. " + "I noticed the light on the water. " * 60,
                "answers": [],
                "mood": 3,
            }
            entry, _ = journal.create(
                session=session,
                author=patient,
                kind="reflection",
                body=body,
                client_id=uuid.uuid4(),
            )
            bodies[entry.id] = body
        session.commit()
    return bodies


@contextmanager
def plaintext_opening(bodies: dict):
    """For the baseline's request: the page's entries come from memory, not decrypted."""
    real = reading.open_entries

    def from_memory(*, session, reader, rows):
        return [reading.Item(entry=row[0], body=bodies[row[0].id]) for row in rows]

    timeline.reading.open_entries = from_memory
    try:
        yield
    finally:
        timeline.reading.open_entries = real


def add_plaintext_route(app, bodies: dict) -> None:
    bp = Blueprint("bench", __name__)

    @bp.get("/bench/plain")
    @policy.allow("patient")
    def plain():
        with plaintext_opening(bodies):
            return pages.journal_home()

    app.register_blueprint(bp)


def rate(client, path: str) -> float:
    for _ in range(3):
        assert client.get(path).status_code == 200
    start = time.perf_counter()
    for _ in range(ROUNDS):
        client.get(path)
    return ROUNDS / (time.perf_counter() - start)


def main() -> None:
    for count, budget in ((20, 0.90), (200, 0.85)):
        app = make_app()
        bodies = seed(app, count)
        add_plaintext_route(app, bodies)
        client = app.test_client()
        login(client, f"p{count}@bench.invalid")
        rates = {"encrypted": [], "plaintext": []}
        for _ in range(3):  # in turns, so that a noisy moment hits both
            rates["encrypted"].append(rate(client, "/journal"))
            rates["plaintext"].append(rate(client, "/bench/plain"))
        encrypted, plain = (sum(v) / len(v) for v in rates.values())
        ratio = encrypted / plain
        verdict = "ok" if ratio >= budget else "OVER BUDGET"
        print(
            f"timeline, {count:>3} entries (first page of 20): encrypted {encrypted:7.1f} req/s, "
            f"plaintext {plain:7.1f} req/s, ratio {ratio:.2f} (budget >= {budget}) {verdict}"
        )


if __name__ == "__main__":
    main()
