"""Requests per second of kapjournal pages against a bare Flask "hello" under the same gunicorn
command (2 sync workers, 10 connections, wrk), measured in turns A B A B in one run.

    .venv/bin/python bench/load.py                 # ratios on SQLite with the demo clinic
    .venv/bin/python bench/load.py --page entry    # only the pages whose name holds "entry"
    .venv/bin/python bench/load.py --servers 2     # two app servers on one PostgreSQL + Redis:
                                                   # no 5xx, no lost write, each read logged once

Needs `wrk` (Debian package) for the ratios. Budgets (DESIGN §9): entry page ≥ 0.25, timeline
first page ≥ 0.15, an authenticated page without data ≥ 0.30.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from kapjournal.services import totp  # noqa: E402

BUDGETS = {
    "entry page": 0.25,
    "timeline first page": 0.15,
    "/help logged in": 0.30,
    "access log": None,
    "/help anonymous": None,
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(database_url: str, redis_url: str | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        KAPJOURNAL_ENV="development",
        KAPJOURNAL_DATABASE_URL=database_url,
        KAPJOURNAL_SECRET_KEY="bench-load-" + "x" * 40,
        KAPJOURNAL_KEKS="b1:" + "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI",
        KAPJOURNAL_LOGIN_LIMITS="100000 per minute",
    )
    if redis_url:
        env["KAPJOURNAL_REDIS_URL"] = redis_url
    return env


def flask(env: dict, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@contextmanager
def gunicorn(module: str, env: dict, cwd: Path, workers: int = 2):
    """`module` (e.g. app:app) under gunicorn with sync workers; yields its base URL."""
    port = free_port()
    command = [str(BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "sync"]
    process = subprocess.Popen(
        [*command, "--bind", f"127.0.0.1:{port}", "--log-level", "warning", module],
        cwd=cwd,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(url + "/", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def demo_logins(env: dict) -> dict:
    """Seed the demo clinic; {role-or-local: (email, password, totp secret or None)}."""
    flask(env, "db", "upgrade")
    logins = {}
    for line in flask(env, "demo").splitlines():
        parts = line.split()
        if len(parts) >= 3 and "@" in parts[1]:
            secret = parts[3].removeprefix("totp:") if len(parts) > 3 else None
            logins[parts[1].split("@")[0]] = (parts[1], parts[2], secret)
    return logins


def log_in(base: str, email: str, password: str, secret: str | None = None) -> requests.Session:
    http = requests.Session()
    token = _CSRF.search(http.get(base + "/login").text).group(1)
    answer = http.post(
        base + "/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    assert answer.status_code == 303, answer.status_code
    step = answer.headers["Location"]
    if secret and step.startswith("/mfa/verify"):
        token = _CSRF.search(http.get(base + step).text).group(1)
        code = totp.code_at(secret, totp.current_step())
        answer = http.post(
            base + step, data={"code": code, "csrf_token": token}, allow_redirects=False
        )
        assert answer.status_code == 303, answer.status_code
    return http


def wrk_rate(url: str, cookie: str | None, seconds: int, connections: int) -> float:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"{url}: {bad.group(1)} responses were not 2xx/3xx\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def cookie_header(http: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def ratios(args) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("bench/load.py needs wrk: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="kapjournal-load-"))
    env = app_env(f"sqlite:///{work}/load.db")
    logins = demo_logins(env)
    with (
        gunicorn("hello_app:app", env, ROOT / "bench") as hello,
        gunicorn("app:app", env, ROOT) as site,
    ):
        patient = log_in(site, *logins["patient"])
        timeline = patient.get(site + "/journal")
        assert timeline.status_code == 200, timeline.status_code
        entry = re.search(r'href="(/entries/[0-9a-f-]{36})"', timeline.text).group(1)
        assert patient.get(site + entry).status_code == 200
        cookie = cookie_header(patient)
        pages = {
            "entry page": (entry, cookie),
            "timeline first page": ("/journal", cookie),
            "/help logged in": ("/help", cookie),
            "access log": ("/journal/log", cookie),
            "/help anonymous": ("/help", None),
        }
        print(
            f"gunicorn, 2 sync workers, wrk {args.connections} connections, {args.seconds} s "
            f"turns, {args.rounds} rounds of A (hello) B (page):"
        )
        for name, (path, page_cookie) in pages.items():
            if args.page and not any(wanted in name for wanted in args.page):
                continue
            base, page = [], []
            for _ in range(args.rounds):
                base.append(wrk_rate(hello + "/", None, args.seconds, args.connections))
                page.append(wrk_rate(site + path, page_cookie, args.seconds, args.connections))
            ratio = statistics.mean(page) / statistics.mean(base)
            budget = BUDGETS[name]
            verdict = "" if budget is None else ("ok" if ratio >= budget else "UNDER BUDGET")
            shown = f"(budget >= {budget}) {verdict}" if budget else ""
            print(
                f"  {name:<22} {statistics.mean(page):8.1f} req/s vs hello "
                f"{statistics.mean(base):8.1f} req/s: ratio {ratio:.3f} {shown}"
            )
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1, choices=(1, 2))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument(
        "--page", action="append", help="only the pages whose name holds this (repeatable)"
    )
    args = parser.parse_args()
    if args.servers == 2:
        from load_two_servers import run

        run(args)
    else:
        ratios(args)


if __name__ == "__main__":
    main()
