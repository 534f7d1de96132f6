"""Lighthouse 12 (mobile profile, headless Debian Chromium) on the demo patient's journal, write
page and Progress, logged in: performance, accessibility and best-practices scores beside the
budgets of issue 13 (≥ 0.95, 1.0, 1.0). A benchmark, not a test.

    .venv/bin/python bench/lighthouse.py

Needs node/npm and /usr/bin/chromium. Installs lighthouse@12.2.3 (pinned: 13 wants Node 22)
into ~/.cache/kapjournal-lighthouse the first time. Serves a throwaway demo clinic on SQLite
with gunicorn (as in production, 2 sync workers) and logs in as the demo patient; the
session cookie goes to Lighthouse as a header.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from load import ROOT, app_env, cookie_header, demo_logins, gunicorn, log_in

VERSION = "12.2.3"
CACHE = Path.home() / ".cache" / "kapjournal-lighthouse"
PAGES = {
    "journal": "/journal",
    "write": "/entries/new?kind=reflection",
    "progress": "/measures",
}
BUDGETS = {"performance": 0.95, "accessibility": 1.0, "best-practices": 1.0}


def lighthouse() -> Path:
    binary = CACHE / "node_modules" / ".bin" / "lighthouse"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "i", "-E", "--no-audit", "--no-fund", f"lighthouse@{VERSION}"],
            cwd=CACHE,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return binary


def scores(binary: Path, url: str, cookie: str) -> dict:
    run = subprocess.run(
        [
            str(binary),
            url,
            "--chrome-path=/usr/bin/chromium",
            "--chrome-flags=--headless=new --no-sandbox",
            "--only-categories=performance,accessibility,best-practices",
            f"--extra-headers={json.dumps({'Cookie': cookie})}",
            "--output=json",
            "--output-path=stdout",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(run.stdout)
    if report.get("finalDisplayedUrl", url).split("?")[0].endswith("/login"):
        sys.exit(f"{url} went to the login page: the session cookie was not taken")
    return {name: category["score"] for name, category in report["categories"].items()}


def main() -> int:
    binary = lighthouse()
    tmp = tempfile.mkdtemp(prefix="kapjournal-lighthouse-")
    env = app_env(f"sqlite:///{tmp}/demo.db")
    email, password, _ = demo_logins(env)["patient"]
    failed = False
    with gunicorn("app:app", env, ROOT) as base:
        cookie = cookie_header(log_in(base, email, password))
        for name, path in PAGES.items():
            got = scores(binary, base + path, cookie)
            marks = []
            for category, budget in BUDGETS.items():
                ok = got[category] >= budget
                failed |= not ok
                verdict = "" if ok else " NOT MET"
                marks.append(f"{category} {got[category]:.2f} (≥ {budget:.2f}{verdict})")
            print(f"{name:9} " + ", ".join(marks))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
