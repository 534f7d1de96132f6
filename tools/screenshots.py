"""Screenshots of the main screens for docs/screenshots/ (shown in the README), from a running
demo clinic:

    make demo > /tmp/logins.txt && make run &
    .venv/bin/python tools/screenshots.py http://127.0.0.1:5000 /tmp/logins.txt docs/screenshots

The demo patient at 360 px (a phone) and 768 px (a tablet), the demo therapist at 768 px, in
Debian's Chromium (/usr/bin/chromium). The therapist's login code is made from the `totp:`
secret `make demo` prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kapjournal.services import totp

PATIENT = {
    "journal": "/journal",
    "write": "/entries/new?kind=reflection",
    "progress": "/measures",
    "more": "/more",
}
THERAPIST = {"caseload": "/home"}


def logins(path: str) -> dict:
    """{role: [email, password, totp secret?]}: the first account of each role."""
    found = {}
    for line in Path(path).read_text().splitlines():
        role, *rest = line.split()
        found.setdefault(role, rest)
    return found


def log_in(page, base: str, account: list) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(account[0])
    page.get_by_label("Password").fill(account[1])
    page.get_by_role("button", name="Log in").click()
    if len(account) > 2:
        page.get_by_label("Code").fill(
            totp.code_at(account[2].removeprefix("totp:"), totp.current_step())
        )
        page.get_by_role("button", name="Continue").click()
    page.wait_for_selector('nav[aria-label=Main] a[href="/account"]', state="attached")


def shoot(page, base: str, path: str, out: Path) -> None:
    page.goto(base + path)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=out)
    print(out)


def main(base: str, logins_file: str, out_dir: str) -> None:
    accounts, out = logins(logins_file), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        for width, height in ((360, 740), (768, 1024)):
            page = browser.new_context(
                viewport={"width": width, "height": height}, is_mobile=True, has_touch=True
            ).new_page()
            log_in(page, base, accounts["patient"])
            for name, path in PATIENT.items():
                shoot(page, base, path, out / f"patient-{name}-{width}.png")
        page = browser.new_context(
            viewport={"width": 768, "height": 1024}, has_touch=True
        ).new_page()
        log_in(page, base, accounts["therapist"])
        for name, path in THERAPIST.items():
            shoot(page, base, path, out / f"therapist-{name}-768.png")
        first = page.locator("main a[href^='/patients/']").first.get_attribute("href")
        shoot(page, base, first, out / "therapist-patient-768.png")
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
