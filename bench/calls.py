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
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def demo_app():
    """The demo clinic on a throwaway SQLite database; (app, {role: (email, password)})."""
    work = tempfile.mkdtemp(prefix="kapjournal-calls-")
    os.environ.update(
        KAPJOURNAL_ENV="development",
        KAPJOURNAL_DATABASE_URL=f"sqlite:///{work}/calls.db",
        KAPJOURNAL_SECRET_KEY="bench-calls-" + "x" * 40,
        KAPJOURNAL_KEKS="b1:" + "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI",
        KAPJOURNAL_LOGIN_LIMITS="100000 per minute",
    )

    def flask(*args: str) -> str:
        command = [str(BIN / "flask"), "--app", "app", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    flask("db", "upgrade")
    logins = {}
    for line in flask("demo").splitlines():
        parts = line.split()
        if len(parts) >= 3 and "@" in parts[1]:
            logins[parts[1].split("@")[0]] = (parts[1], parts[2])
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
    email, password = logins["patient"]
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
