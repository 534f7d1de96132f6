"""Python function calls per request of the pages bench/load.py times, in one process: a count
that does not swing with the machine's load (bench/load.py's ratios move by 15 % from one run
to the next on a shared machine), to compare two commits. Not a budget: the budgets are
load.py's ratios; this says where a change moved the work.

    .venv/bin/python bench/calls.py          # the demo clinic, logged in as the demo patient

Prints, per page, the calls of one request (the median of 20, after a warm-up), beside a bare
Flask "hello" served the same way.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def demo_app():
    """The demo clinic on a throwaway SQLite database, seeded as bench/load.py seeds it;
    (app, {role: (email, password, totp secret)})."""
    from load import app_env, demo_logins

    env = app_env(f"sqlite:///{tempfile.mkdtemp(prefix='kapjournal-calls-')}/calls.db")
    logins = demo_logins(env)
    os.environ.update(env)
    from kapjournal import create_app

    return create_app(), logins


def calls_of(client, path: str, rounds: int = 20) -> int:
    for _ in range(5):
        assert client.get(path).status_code == 200, path
    counts = []
    for _ in range(rounds):
        profile = cProfile.Profile()
        profile.enable()
        client.get(path)
        profile.disable()
        counts.append(pstats.Stats(profile).total_calls)
    return int(statistics.median(counts))


def main() -> None:
    from flask import Flask

    app, logins = demo_app()
    patient = app.test_client()
    token = _CSRF.search(patient.get("/login").get_data(as_text=True)).group(1)
    email, password, _secret = logins["patient"]
    answer = patient.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert answer.status_code == 303, answer.status_code
    timeline = patient.get("/journal").get_data(as_text=True)
    entry = re.search(r'href="(/entries/[0-9a-f-]{36})"', timeline).group(1)
    hello = Flask("hello")
    hello.get("/")(lambda: "hello")
    base = calls_of(hello.test_client(), "/")
    print(f"Python function calls per request (median of 20); a bare Flask hello: {base}")
    pages = {
        "entry page": (patient, entry),
        "timeline first page": (patient, "/journal"),
        "/help logged in": (patient, "/help"),
        "access log": (patient, "/journal/log"),
        "/help anonymous": (app.test_client(), "/help"),
    }
    for name, (client, path) in pages.items():
        count = calls_of(client, path)
        print(f"  {name:<22} {count:7d} calls ({count / base:5.1f} x hello)")


if __name__ == "__main__":
    main()
