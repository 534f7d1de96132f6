"""Pages that stay fast as the journal grows: the first page of the patient's timeline, the
therapist's patient page and a search, at 20,000 entries vs 100, and the size of their HTML.

    .venv/bin/python bench/scale.py            # 100 vs 20,000 entries (seeding takes minutes)
    .venv/bin/python bench/scale.py --large 2000

Seeds through the real services (encrypted, wrapped, logged), every fifth entry shared with
the therapist as it is written, a session every 25 entries. Prints, per page, the median time
of a request at each size (timed in turns, small then large), their ratio (budget ≤ 1.25) and
the largest HTML (budget ≤ 60 KB).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from datetime import timedelta

from _common import PASSWORD, make_app
from sqlmodel import Session, select

from kapjournal import db
from kapjournal.models import Grant, TreatmentSession, utcnow
from kapjournal.services import accounts, care, journal, totp

ROUNDS = 40
WORDS = [
    "the",
    "light",
    "on",
    "the",
    "water",
    "and",
    "a",
    "slow",
    "breath",
    "while",
    "the",
    "room",
    "hums",
    "quietly",
]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def seed(app, count: int) -> dict:
    """A therapist and a patient with `count` ~1 KB reflections; returns ids and the secret."""
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:

        def register(role: str, email: str):
            made = accounts.register(
                session=session,
                email=email,
                name=role.title(),
                password=PASSWORD,
                password2=PASSWORD,
                role=role,
            ).user
            accounts.confirm_recovery_saved(session=session, user=made)
            return made

        therapist = register("therapist", "t@scale.invalid")
        secret = totp.new_secret()
        totp.enable(session=session, user=therapist, secret=secret)
        patient = register("patient", "p@scale.invalid")
        issued = care.create_invitation(session=session, inviter=therapist, kind="patient")
        care.accept_patient_invitation(
            session=session, invitation=issued.invitation, patient=patient
        )
        start = utcnow() - timedelta(hours=count)
        treatment = None
        for i in range(count):
            at = start + timedelta(hours=i)
            if i % 25 == 0:
                treatment = TreatmentSession(
                    patient_id=patient.id,
                    created_by_id=therapist.id,
                    kind=("preparation", "ketamine", "integration")[i // 25 % 3],
                    status="done",
                    scheduled_at=at,
                )
                session.add(treatment)
                session.flush()
            words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(170))
            entry, _ = journal.create(
                session=session,
                author=patient,
                kind="reflection",
                body={"text": f"Entry {i}. {words}", "answers": [], "mood": 1 + i % 5},
                client_id=uuid.uuid4(),
                session_id=treatment.id,
                readers=[therapist] if i % 5 == 0 else [],
            )
            entry.created_at = entry.updated_at = at
            session.add(entry)
            for grant in session.exec(select(Grant).where(Grant.entry_id == entry.id)):
                grant.created_at = at  # shared as it was written, an hour after the last
                session.add(grant)
            if i % 500 == 499:
                session.commit()
        session.commit()
        return {"patient": patient.id, "therapist": therapist.id, "secret": secret}


def logged_in(app, email: str, secret: str | None = None):
    client = app.test_client()
    token = _CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.status_code
    if secret:
        step = answer.headers["Location"]
        token = _CSRF.search(client.get(step).get_data(as_text=True)).group(1)
        code = totp.code_at(secret, totp.current_step())
        assert client.post(step, data={"code": code, "csrf_token": token}).status_code == 303
    return client


def measure(small, large) -> tuple[float, float, int]:
    """Median seconds of `small()` and of `large()`, timed in turns (small, large, small…, after
    warming up) so that the machine's drift weighs on both alike; and the largest body."""
    sizes = [len(call()) for call in (small, large) for _ in range(3)]
    times: dict = {small: [], large: []}
    for _ in range(ROUNDS):
        for call in (small, large):
            start = time.perf_counter()
            sizes.append(len(call()))
            times[call].append(time.perf_counter() - start)
    return statistics.median(times[small]), statistics.median(times[large]), max(sizes)


def pages(count: int) -> dict:
    app = make_app()
    started = time.perf_counter()
    ids = seed(app, count)
    print(f"  seeded {count} entries in {time.perf_counter() - started:.0f} s")
    patient = logged_in(app, "p@scale.invalid")
    therapist = logged_in(app, "t@scale.invalid", ids["secret"])

    def get(client, path):
        def call():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return response.get_data()

        return call

    def search():
        token = _CSRF.search(patient.get("/journal/search").get_data(as_text=True)).group(1)
        response = patient.post("/journal/search", data={"q": "slow breath", "csrf_token": token})
        assert response.status_code == 200, response.status_code
        return response.get_data()

    return {
        "timeline first page": get(patient, "/journal"),
        "patient page": get(therapist, f"/patients/{ids['patient']}"),
        "search": search,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=20_000)
    args = parser.parse_args()
    small, large = pages(args.small), pages(args.large)  # two apps, each on its own database
    for name in small:
        t_small, t_large, size = measure(small[name], large[name])
        ratio = t_large / t_small
        html = size / 1024
        print(
            f"{name:<20} {args.small}: {t_small * 1000:6.1f} ms  {args.large}: "
            f"{t_large * 1000:6.1f} ms  ratio {ratio:.2f} (budget <= 1.25) "
            f"{'ok' if ratio <= 1.25 else 'OVER'}   HTML max {html:.1f} KB (budget <= 60) "
            f"{'ok' if html <= 60 else 'OVER'}"
        )


if __name__ == "__main__":
    main()
