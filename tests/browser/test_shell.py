"""The app shell in a real Chromium: on a 360-px phone the main navigation is a tab bar at the
bottom (four tabs for a patient, the current one marked, each at least 44 x 44 px, above the
safe area, out of the way while typing); from 768 px it sits in the header, whose left edge is
the content's. On every page a patient, a therapist and a supporter can reach, at 360 and
768 px: "Need help now?" on screen, one tap away; every control of the header and the tab bar
at least 44 x 44 px; no axe-core violation in light or dark mode. Line breaks written in a
reflection stay on every page that shows it. The caseload puts a waiting safety flag first, in
its own colour. Swapped content fades in briefly, and not at all with reduced motion."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from conftest import PASSWORD, Persona, make_user
from sqlmodel import Session

from kapjournal import db
from kapjournal.models import Entry, TreatmentSession, User, utcnow
from kapjournal.services import accounts, annotations, instruments, journal, measures, practices

from .conftest import PHONE, TABLET
from .test_pwa import assert_accessible
from .test_registration import heading, log_in

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    Axe = expect = None

LAPTOP = {"viewport": {"width": 1024, "height": 768}, "device_scale_factor": 1}
SIZES = {360: PHONE, 768: TABLET, 1024: LAPTOP}
MIN_TARGET = 44  # CSS px, both ways (WCAG 2.5.5, the shell's own promise)
SAFE_AREA = {"top": 24, "bottom": 34, "left": 0, "right": 0}  # a phone with a home indicator
# Not pages: files, downloads, the machinery of the PWA.
NOT_A_PAGE = re.compile(r"^/(static/|sw\.js|manifest\.webmanifest|healthz|push/key|account/export)")
WRITTEN = "The kitchen was warm.\nIt felt like home.\n\nThen I let go of the railing."
FIRST_PARAGRAPH = "The kitchen was warm.\nIt felt like home."


@dataclass
class Clinic:
    therapist: Persona
    patient: Persona
    supporter: Persona
    reflection: uuid.UUID  # shared with the therapist and the supporter, with a note on it


def a_clinic(app) -> Clinic:
    """A therapist, their patient Pat with a course under way (sessions, entries, a practice, a
    note on a shared reflection, a PHQ-9 whose safety flag is waiting) and Pat's supporter, all
    through the real services."""
    therapist = make_user(
        app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    supporter = make_user(
        app, role="support", email="sue@example.org", name="Sue Porter", supporting=patient
    )
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        pat, tess, sue = (session.get(User, p.id) for p in (patient, therapist, supporter))
        for kind, days, status in (("integration", -3, "done"), ("ketamine", 4, "planned")):
            session.add(
                TreatmentSession(
                    patient_id=pat.id,
                    created_by_id=tess.id,
                    kind=kind,
                    scheduled_at=utcnow() + timedelta(days=days),
                    status=status,
                )
            )
        reflection = _write(session, pat, "reflection", WRITTEN, [tess, sue])
        _write(session, pat, "check_in", "Tired but lighter.", [])
        _write(session, pat, "intention", "To be kind to the part of me that worries.", [tess])
        measures.record(
            session=session,
            patient=pat,
            instrument=instruments.PHQ9,
            body={"items": [1, 1, 1, 0, 1, 0, 0, 0, 1], "difficulty": 1, "score": 5},
            client_id=uuid.uuid4(),
            readers=[tess],
        )
        key = accounts.authenticate(session=session, email=therapist.email, password=PASSWORD)[1]
        body = journal.read(session=session, entry=reflection, reader_id=tess.id, private_key=key)
        annotations.create(
            session=session,
            patient=pat,
            author=tess,
            note="Warmth where there used to be grief.",
            visibility="shared",
            entry=reflection,
            paragraph=annotations.paragraphs_of(reflection.kind, body)[0],
            bring_to_session=True,
            private_key=key,
        )
        practices.create(
            session=session,
            patient=pat,
            therapist=tess,
            body={"what": "Ten minutes outside", "how_often": "Most mornings", "why": "Room."},
        )
        session.commit()
        return Clinic(therapist, patient, supporter, reflection.id)


def _write(session, author: User, kind: str, text: str, readers: list) -> Entry:
    body = {"intention": text} if kind == "intention" else {"text": text, "mood": 4}
    entry, _ = journal.create(
        session=session,
        author=author,
        kind=kind,
        body={**body, "answers": []},
        client_id=uuid.uuid4(),
        readers=readers,
    )
    return entry


def logged_in(new_context, persona: Persona, width: int, **options):
    page = new_context(**SIZES[width], **options).new_page()
    log_in(page, persona.email)
    expect(heading(page)).not_to_have_text(re.compile(r"^(Log in|Two-step login)$"))
    return page


def tab_bar(page):
    return page.get_by_role("navigation", name="Main")


def box(locator) -> dict:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not rendered"
    return found


def too_small(page, selector: str) -> list[str]:
    """Every link and button under `selector` that is on screen and smaller than 44 x 44 px,
    by its bounding box."""
    return page.evaluate(
        """([selector, least]) => [...document.querySelectorAll(selector)]
          .flatMap((scope) => [...scope.querySelectorAll("a[href], button")])
          .filter((el) => el.checkVisibility({ visibilityProperty: true }))
          .map((el) => [el, el.getBoundingClientRect()])
          .filter(([, r]) => r.width > 0 && (r.width < least - 0.01 || r.height < least - 0.01))
          .map(([el, r]) => `${el.textContent.trim()}: ${r.width | 0} x ${r.height | 0} px`)""",
        [selector, MIN_TARGET],
    )


# --- the tab bar ------------------------------------------------------------------------------


def test_a_patients_phone_has_four_tabs_at_the_bottom_above_the_safe_area_the_current_marked(
    live_app, new_context
):
    clinic = a_clinic(live_app)
    page = logged_in(new_context, clinic.patient, 360)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setSafeAreaInsetsOverride", {"insets": SAFE_AREA})
    page.goto("/journal")
    expect(heading(page)).to_have_text("Your journal")
    bar = tab_bar(page)
    tabs = bar.get_by_role("link").or_(bar.get_by_role("button"))
    visible = [t for t in tabs.all() if t.is_visible()]
    assert [t.inner_text().strip() for t in visible] == ["Journal", "Write", "Progress", "More"]
    height = page.viewport_size["height"]
    bar_box = box(bar)
    assert bar_box["y"] + bar_box["height"] == pytest.approx(height, abs=0.5)  # at the bottom
    for tab in visible:
        found = box(tab)
        assert found["width"] >= MIN_TARGET and found["height"] >= MIN_TARGET, tab.inner_text()
        # Above the home indicator: nothing to tap in the bottom 34 px.
        assert found["y"] + found["height"] <= height - SAFE_AREA["bottom"] + 0.5
    current = bar.locator('[aria-current="page"]')
    expect(current).to_have_count(1)
    expect(current).to_have_text("Journal")
    # The end of the page scrolls clear of the bar.
    page.keyboard.press("End")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    footer = box(page.locator(".site-footer"))
    assert footer["y"] + footer["height"] <= box(bar)["y"] + 0.5

    bar.get_by_role("link", name="Progress").click()
    expect(bar.locator('[aria-current="page"]')).to_have_text("Progress")
    bar.get_by_role("link", name="More").click()
    expect(heading(page)).to_have_text("More")
    expect(bar.locator('[aria-current="page"]')).to_have_text("More")
    main = page.get_by_role("main")
    for name in ("My supporters", "Account", "Log out"):
        expect(
            main.get_by_role("link", name=name).or_(main.get_by_role("button", name=name)).first
        ).to_be_visible()


def test_the_tab_bar_is_at_the_bottom_straight_after_logging_in_without_a_reload(
    live_app, new_context
):
    """The login form is boosted: htmx swaps the page in and keeps the login page's <body>, so
    the tab bar must not depend on anything the first page put there."""
    clinic = a_clinic(live_app)
    page = new_context(**PHONE).new_page()
    loads = []
    page.on("load", lambda _: loads.append(page.url))
    log_in(page, clinic.patient.email)
    expect(heading(page)).to_have_text("Your journal")
    assert loads and all(url.endswith("/login") for url in loads)  # the journal swapped in
    bar = box(tab_bar(page))
    assert bar["y"] + bar["height"] == pytest.approx(page.viewport_size["height"], abs=0.5)
    more = tab_bar(page).get_by_role("link", name="More", exact=True)
    expect(more).to_be_visible()


def test_at_1024_px_there_is_no_tab_bar_the_tabs_are_in_the_header(live_app, new_context):
    clinic = a_clinic(live_app)
    for persona, names, current in (
        (
            clinic.patient,
            ["Journal", "Write", "Progress", "My supporters", "Account", "Log out"],
            "Journal",
        ),
        (clinic.therapist, ["Patients", "Invite a patient", "Account", "Log out"], "Patients"),
    ):
        page = logged_in(new_context, persona, 1024)
        page.goto("/journal" if persona is clinic.patient else "/home")
        bar = tab_bar(page)
        header = box(page.get_by_role("banner"))
        found = box(bar)
        assert found["y"] + found["height"] <= header["y"] + header["height"] + 0.5
        assert bar.evaluate("nav => getComputedStyle(nav).position") != "fixed"
        controls = bar.get_by_role("link").or_(bar.get_by_role("button"))
        shown = [c.inner_text().strip() for c in controls.all() if c.is_visible()]
        assert shown == names
        expect(bar.locator('[aria-current="page"]')).to_have_text(current)
        assert too_small(page, "header") == []


def test_the_tab_bar_hides_while_typing_in_a_textarea_on_a_phone(live_app, new_context):
    clinic = a_clinic(live_app)
    page = logged_in(new_context, clinic.patient, 360)
    tab_bar(page).get_by_role("link", name="Write").click()
    expect(heading(page)).to_have_text("How was it?")
    bar = tab_bar(page)
    expect(bar).to_be_visible()
    page.get_by_label("Whatever comes to mind").click()
    page.keyboard.type("Typing with the keyboard up")
    expect(bar).to_be_hidden()
    page.get_by_role("heading", level=1).click()  # done typing: the keyboard goes down
    expect(bar).to_be_visible()
    expect(bar.locator('[aria-current="page"]')).to_have_text("Write")


# --- every page a person can reach --------------------------------------------------------------

START = {
    "patient": ["/journal", "/more", "/offline", "/no-such-page"],
    "therapist": ["/home", "/no-such-page"],
    "support": ["/home", "/more"],
}
AT_LEAST = {"patient": 20, "therapist": 10, "support": 5}  # pages, so a broken walk shows


def walk(page, start: list[str], limit: int = 80):
    """Open every page reachable from `start` by following links, as its person would (GET,
    this site, once each; a path with at most 6 different queries; no "Show earlier" pages),
    yielding each page's path once it has loaded."""
    queue, seen, queries = list(start), set(), {}
    origin = urlsplit(page.url)._replace(path="", query="", fragment="").geturl()
    while queue and len(seen) < limit:
        path = queue.pop(0)
        split = urlsplit(path)
        if path in seen or NOT_A_PAGE.match(split.path) or "before=" in split.query:
            continue
        if split.query and len(queries.setdefault(split.path, set()) | {split.query}) > 6:
            continue
        seen.add(path)
        queries.setdefault(split.path, set()).add(split.query)
        response = page.goto(path)
        if response is None or "text/html" not in response.headers.get("content-type", ""):
            continue
        yield path
        for href in page.eval_on_selector_all("a[href]", "all => all.map((a) => a.href)"):
            found = urlsplit(href)
            if href.startswith(origin) and found.path:
                queue.append(found.path + (f"?{found.query}" if found.query else ""))


@pytest.mark.parametrize("width", [360, 768])
@pytest.mark.parametrize("role", ["patient", "therapist", "support"])
def test_every_page_has_help_one_tap_away_44_px_shell_controls_and_no_axe_violation(
    live_app, new_context, role, width
):
    clinic = a_clinic(live_app)
    persona = {"patient": clinic.patient, "therapist": clinic.therapist}.get(role, clinic.supporter)
    page = logged_in(new_context, persona, width)
    axe, seen, problems = Axe(), [], []
    viewport = page.viewport_size
    for path in walk(page, START[role]):
        where = f"{role} at {width} px, {path}"
        expect(heading(page)).to_be_visible()
        help_link = page.get_by_role("banner").get_by_role("link", name="Need help now?")
        expect(help_link).to_be_visible()
        found = box(help_link)
        on_screen = found["x"] >= 0 and found["x"] + found["width"] <= viewport["width"]
        on_screen = (
            on_screen and found["y"] >= 0 and found["y"] + found["height"] <= viewport["height"]
        )
        if not on_screen or help_link.get_attribute("href") != "/help":
            problems.append(f"{where}: 'Need help now?' at {found}")
        problems += [f"{where}: {small}" for small in too_small(page, "header, .entry-card")]
        assert_accessible(axe, page, where)
        seen.append(path)
    assert problems == [], "\n".join(problems)
    print(f"{role} at {width} px: {len(seen)} pages", seen)
    assert len(seen) >= AT_LEAST[role], seen
    # One tap, from the last page seen.
    page.get_by_role("banner").get_by_role("link", name="Need help now?").click()
    expect(page).to_have_url(re.compile(r"/help$"))
    expect(heading(page)).to_have_text("Need help now?")
