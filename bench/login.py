"""Login latency vs one bare Argon2id run at production cost, in the same process."""

from __future__ import annotations

import statistics
import time

from _common import PASSWORD, login, make_app
from sqlmodel import Session

from kapjournal import crypto, db
from kapjournal.services import accounts

ROUNDS = 7


def main() -> None:
    app = make_app(KDF_PARAMS=crypto.PRODUCTION_KDF)
    with app.app_context(), Session(db.engine()) as session:
        user = accounts.register(
            session=session,
            email="l@bench.invalid",
            name="L",
            password=PASSWORD,
            password2=PASSWORD,
            role="patient",
        ).user
        accounts.confirm_recovery_saved(session=session, user=user)
        session.commit()
    bare, full = [], []
    salt = crypto.new_salt()
    for _ in range(ROUNDS):
        start = time.perf_counter()
        crypto.derive_password_keys(PASSWORD, salt, crypto.PRODUCTION_KDF)
        bare.append(time.perf_counter() - start)
        client = app.test_client()
        client.get("/login")
        start = time.perf_counter()
        login(client, "l@bench.invalid")
        full.append(time.perf_counter() - start)
    ratio = statistics.median(full) / statistics.median(bare)
    verdict = "ok" if ratio <= 1.3 else "OVER BUDGET"
    print(
        f"login {statistics.median(full) * 1000:.0f} ms vs bare Argon2id "
        f"{statistics.median(bare) * 1000:.0f} ms: ratio {ratio:.2f} (budget <= 1.3) {verdict}"
    )


if __name__ == "__main__":
    main()
