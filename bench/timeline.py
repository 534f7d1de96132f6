"""Timeline with encrypted ~2 KB entries vs the same page rendered from plaintext bodies."""

from __future__ import annotations

import time
import uuid

from _common import PASSWORD, login, make_app
from flask import Blueprint
from sqlmodel import Session

from kapjournal import db, policy
from kapjournal.services import accounts, course, journal
from kapjournal.views import journal as journal_views

ROUNDS = 40


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


def add_plaintext_route(app, bodies: dict) -> None:
    """The same view, queries and template, fed from plaintext held in memory: no grant join,
    no key unwrap, no decryption. What differs from /journal is what encryption costs."""
    bp = Blueprint("bench", __name__)

    @bp.get("/bench/plain")
    @policy.allow("patient")
    def plain():
        from flask_login import current_user
        from sqlmodel import col, select

        from kapjournal.models import Entry

        dbs = db.session()
        sessions = course.sessions_of(session=dbs, patient=current_user.user)
        entries = dbs.exec(
            select(Entry)
            .where(Entry.author_id == current_user.id)
            .order_by(col(Entry.created_at).desc())
        ).all()
        counts = journal.reader_counts(dbs, [e.id for e in entries])
        items = [
            journal.Item(entry=e, body=bodies[e.id], reader_count=counts.get(e.id, 1))
            for e in entries
        ]
        return journal_views.timeline_page(journal.group_by_session(sessions, items), items)

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
        encrypted, plain = rate(client, "/journal"), rate(client, "/bench/plain")
        ratio = encrypted / plain
        verdict = "ok" if ratio >= budget else "OVER BUDGET"
        print(
            f"timeline {count:>3} entries: encrypted {encrypted:7.1f} req/s, plaintext "
            f"{plain:7.1f} req/s, ratio {ratio:.2f} (budget >= {budget}) {verdict}"
        )


if __name__ == "__main__":
    main()
