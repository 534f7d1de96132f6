"""Shared set-up for the benchmarks: an app on a throwaway SQLite database."""

from __future__ import annotations

import base64
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kapjournal import create_app, crypto, db

PASSWORD = "benchmark horse battery staple"  # noqa: S105


def make_app(**overrides):
    tmp = tempfile.mkdtemp(prefix="kapjournal-bench-")
    url = f"sqlite:///{tmp}/bench.db"
    engine = db.make_engine(url)
    db.upgrade(engine)
    config = {
        "SECRET_KEY": "bench-" + "x" * 40,
        "KEKS": "b1:" + base64.urlsafe_b64encode(b"b" * 32).decode(),
        "DATABASE_URL": url,
        "ENGINE": engine,
        "KDF_PARAMS": crypto.KdfParams(memory_kib=1024, iterations=1),
        "LOGIN_LIMITS": "100000 per minute",
    }
    config.update(overrides)
    return create_app(config)


def login(client, email: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303, response.status_code
