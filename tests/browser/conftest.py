"""Browser fixtures: the real app on a live HTTP server, driven by Debian's Chromium through
Playwright. Every test here is marked `browser`; without Chromium or Playwright they are
skipped, and the rest of the suite runs as usual."""

from __future__ import annotations

import threading
from http import HTTPStatus
from pathlib import Path

import pytest
from conftest import SERVE_FOREVER
from werkzeug.serving import make_server

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HERE = Path(__file__).resolve().parent

PHONE = {
    "viewport": {"width": 360, "height": 740},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
TABLET = {
    "viewport": {"width": 768, "height": 1024},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}

# Console messages that mean the Content Security Policy blocked something.
_CSP_WORDS = ("Content Security Policy", "Refused to")


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium not installed at {CHROMIUM}: apt-get install chromium"
    if sync_playwright is None:
        return "Playwright for Python not installed: pip install -r requirements-dev.txt"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    for item in items:
        if HERE not in item.path.resolve().parents:
            continue
        item.add_marker(pytest.mark.browser)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


# --- the app on a real socket --------------------------------------------------------------------


@pytest.fixture
def live_app(make_app):
    """The app the live server serves (empty tables); use it with `make_user`."""
    return make_app()


class Gateway:
    """What stands between the phone and the app, like a reverse proxy: it passes every
    request through, except POSTs to the paths in `down`, which it answers with that status
    (502, 503) without the app seeing them, as a proxy does when the app behind it is down.

    Outside the browser on purpose: under load, Playwright's `route` (page or context) was
    seen to let every request of a page through unrouted, each time just after the page's
    service worker had first installed; a real socket in front of the app does not depend
    on the browser's request interception."""

    def __init__(self, app):
        self.app = app
        self.down: dict[str, int] = {}

    def __call__(self, environ, start_response):
        status = self.down.get(environ.get("PATH_INFO", ""))
        if status is None or environ["REQUEST_METHOD"] != "POST":
            return self.app(environ, start_response)
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body = b"The server is not answering."
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


@pytest.fixture
def gateway(live_app):
    """The proxy in front of `live_app`: `gateway.down["/entries/new"] = 503` until deleted."""
    return Gateway(live_app)


@pytest.fixture
def live_server(gateway):
    """`http://127.0.0.1:PORT` serving `live_app` (behind `gateway`) from a daemon thread."""
    server = make_server("127.0.0.1", 0, gateway, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs=SERVE_FOREVER, name="live-server", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Chromium ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Recorder:
    """Collects what a context's pages say on the console and the errors they throw."""

    def __init__(self):
        self.console: list[str] = []
        self.page_errors: list[str] = []

    def on_console(self, message) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def on_page_error(self, web_error) -> None:
        self.page_errors.append(str(web_error.error))

    def problems(self) -> list[str]:
        csp = [
            m for m in self.console if m.startswith("error:") and any(w in m for w in _CSP_WORDS)
        ]
        return csp + [f"uncaught: {e}" for e in self.page_errors]


@pytest.fixture
def new_context(browser, live_server):
    """Open browser contexts (`new_context(**PHONE)`, `new_context(**TABLET, ...)`), each
    with its own cookies; the test fails at teardown on a CSP violation or an uncaught
    page error in any of them."""
    opened = []

    def open_context(**options):
        context = browser.new_context(base_url=live_server, **options)
        context.set_default_timeout(5_000)
        recorder = Recorder()
        context.on("console", recorder.on_console)
        context.on("weberror", recorder.on_page_error)
        opened.append((context, recorder))
        return context

    yield open_context
    problems = []
    for context, recorder in opened:
        problems += recorder.problems()
        context.close()
    if problems:
        pytest.fail("browser reported:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def phone(new_context):
    """A fresh 360x740 touch-screen phone context for this test."""
    return new_context(**PHONE)
