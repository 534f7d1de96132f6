"""Questionnaires and safety in a real Chromium (issue 7): a patient writes a safety plan, then
answers the PHQ-9 one question per screen on a phone, saying "Several days" to question 9; the
result opens with their safety plan and the crisis lines before the score; their therapist, on
a tablet, finds the patient first in the caseload with a safety flag and acknowledges it, which
the patient's access log shows. Without thoughts of self-harm there is no safety section and
no flag. axe-core finds nothing on the forms, the results, the progress charts and the
therapist's view of them; the GAD-7 works without JavaScript. The fixtures fail a test on any
CSP violation or uncaught page error."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from conftest import make_user
from sqlmodel import Session, select

from kapjournal import db
from kapjournal.models import Entry, User, utcnow
from kapjournal.services import care, instruments, journal, measures

from .conftest import PHONE, TABLET
from .test_pwa import assert_accessible
from .test_registration import assert_fits_the_screen, heading, log_in, nav

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    Axe = expect = None

RESULT_URL = re.compile(r"/measures/results/[0-9a-f-]{36}$")
ENTRY_URL = re.compile(r"/entries/[0-9a-f-]{36}$")
SAFETY_HEADING = "You don't have to carry this alone"
WARNING_SIGNS = "Not answering messages; lying awake past 3 am."
PEOPLE = "My sister Jo, 555 0100."
# PHQ-9 answers by item (0 "Not at all" … 3 "Nearly every day"); item 9 is the last.
WITH_THOUGHTS = [1, 2, 1, 1, 0, 1, 0, 0, 1]  # 7 of 27, mild; question 9 "Several days"
WITHOUT_THOUGHTS = [1, 1, 0, 1, 0, 0, 0, 0, 0]  # 3 of 27, minimal
LABEL = dict(instruments.ANSWERS)


# --- people and what they wrote before the test starts ---------------------------------------


def care_team(app, *others: str) -> tuple:
    """A therapist, their patient Pat Quinn, and one more patient per name in `others`."""
    therapist = make_user(
        app, role="therapist", email="tess@example.org", name="Dr. Tess Ward", is_owner=True
    )
    patient = make_user(
        app, role="patient", email="pat@example.org", name="Pat Quinn", invited_by=therapist
    )
    more = [
        make_user(
            app,
            role="patient",
            email=f"patient{n}@example.org",
            name=name,
            invited_by=therapist,
        )
        for n, name in enumerate(others)
    ]
    return therapist, patient, *more


def share_a_reflection(app, patient, text: str) -> None:
    """The patient shares a reflection with their care team now."""
    with app.app_context(), Session(db.engine()) as dbs:
        author = dbs.get(User, patient.id)
        journal.create(
            session=dbs,
            author=author,
            kind="reflection",
            body={"text": text},
            client_id=uuid.uuid4(),
            readers=care.therapists_of(session=dbs, patient=author),
        )
        dbs.commit()


def answered_earlier(app, patient, key: str, *answer_sets: list[int]) -> list[uuid.UUID]:
    """Responses shared with the care team, two weeks apart and the last one today, as the
    form would save them; their entry ids, oldest first."""
    instrument = instruments.INSTRUMENTS[key]
    ids = []
    with app.app_context(), Session(db.engine()) as dbs:
        author = dbs.get(User, patient.id)
        therapists = care.therapists_of(session=dbs, patient=author)
        for weeks_ago, items in zip(
            range(2 * len(answer_sets) - 2, -1, -2), answer_sets, strict=True
        ):
            form = {f"item-{n}": str(answer) for n, answer in enumerate(items, 1)}
            entry, _ = measures.record(
                session=dbs,
                patient=author,
                instrument=instrument,
                body=instruments.parse(instrument, form),
                client_id=uuid.uuid4(),
                readers=therapists,
            )
            entry.created_at = utcnow() - timedelta(weeks=weeks_ago)
            ids.append(entry.id)
        dbs.commit()
    return ids


# --- what the patient does on the page -----------------------------------------------------------


def question(page, number: int, count: int):
    """The radio group of question `number` (its legend starts "3 of 9.")."""
    return page.get_by_role("group", name=re.compile(rf"^{number} of {count}\."))


def choose(page, number: int, count: int, answer: int) -> None:
    question(page, number, count).get_by_label(LABEL[answer], exact=True).check()


def expect_chosen(page, number: int, count: int, answer: int) -> None:
    expect(question(page, number, count).get_by_label(LABEL[answer], exact=True)).to_be_checked()


def open_the_form(page, name: str) -> None:
    """From "Progress" in the menu to the questionnaire's form, all questions on one page."""
    nav(page).get_by_role("link", name="Progress").click()
    expect(heading(page)).to_have_text("How you are doing")
    # Due questionnaires are offered twice (waiting for you, and always): either will do.
    page.get_by_role("link", name=f"Answer the {name}").first.click()
    expect(page.locator("input[name=mode]")).to_have_value("all")


def answer_on_one_page(page, answers: list[int]) -> None:
    for number, answer in enumerate(answers, 1):
        choose(page, number, len(answers), answer)


def save(page) -> None:
    page.get_by_role("button", name="Save my answers").click()
    expect(page).to_have_url(RESULT_URL)


def write_a_safety_plan(page) -> None:
    nav(page).get_by_role("link", name="Progress").click()
    page.get_by_role("link", name="Open your safety plan").click()
    expect(heading(page)).to_have_text("My safety plan")
    page.get_by_label("1. My warning signs").fill(WARNING_SIGNS)
    page.get_by_label("4. People I can ask for help").fill(PEOPLE)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(ENTRY_URL)
    expect(page.get_by_text(WARNING_SIGNS)).to_be_visible()


def score_text(answers: list[int]) -> str:
    total = sum(answers)
    return f"{total} of 27 — {instruments.band(instruments.PHQ9, total).label}"


def expect_before(first, second) -> None:
    """`first` comes before `second` in the page, for the eye and for a screen reader."""
    follows = first.evaluate(
        "(a, b) => Boolean(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING)",
        second.element_handle(),
    )
    assert follows, "out of order"
    assert first.bounding_box()["y"] < second.bounding_box()["y"]


# --- what the therapist sees ----------------------------------------------------------------------


def open_caseload(page, therapist):
    log_in(page, therapist.email)  # answers "Two-step login" with a code from the app
    expect(heading(page)).to_have_text(f"Hello, {therapist.name}")
    return page.locator(".caseload-card")


def access_log(page):
    page.goto("/journal/log")
    return page.get_by_role("main")


# --- the journeys ---------------------------------------------------------------------------------


def test_thoughts_of_self_harm_bring_the_safety_plan_first_and_a_flag_the_therapist_acknowledges(
    live_app, new_context
):
    therapist, patient, other = care_team(live_app, "Ada Brook")

    phone = new_context(**PHONE).new_page()
    log_in(phone, patient.email)
    expect(heading(phone)).to_have_text("Your journal")
    write_a_safety_plan(phone)

    # One question per screen; one step back finds the earlier answer still chosen.
    open_the_form(phone, "PHQ-9")
    phone.get_by_role("button", name="One question per screen").click()
    expect(phone.locator("input[name=mode]")).to_have_value("one")
    assert_fits_the_screen(phone)
    for number, answer in enumerate(WITH_THOUGHTS, 1):
        expect(question(phone, number, 9)).to_be_visible()
        expect(phone.get_by_role("group")).to_have_count(1)
        choose(phone, number, 9, answer)
        if number == 3:
            phone.get_by_role("button", name="Back").click()
            expect_chosen(phone, 2, 9, WITH_THOUGHTS[1])
            phone.get_by_role("button", name="Next").click()
            expect_chosen(phone, 3, 9, answer)
        phone.get_by_role("button", name="Next").click()
    phone.get_by_label("Somewhat difficult").check()
    expect(phone.get_by_label("Share the answers and score with my care team")).to_be_checked()
    save(phone)

    # The safety section comes first, with the plan and the crisis lines; then the score.
    safety = phone.get_by_role("region", name=SAFETY_HEADING)
    expect(heading(phone)).to_have_text(SAFETY_HEADING)
    expect(safety).to_contain_text(WARNING_SIGNS)
    expect(safety).to_contain_text(PEOPLE)
    for href in ("tel:988", "sms:988", "sms:741741?&body=HOME", "tel:911"):
        expect(safety.locator(f'a[href="{href}"]')).to_be_visible()
    expect(safety).to_contain_text("This app is not monitored in real time")
    score = phone.get_by_role("region", name="Score")
    expect(score).to_contain_text(score_text(WITH_THOUGHTS))
    expect_before(safety, score)
    assert_fits_the_screen(phone)

    # Another patient shares something newer: without the flag they would come first.
    share_a_reflection(live_app, other, "A quiet week.")
    tablet = new_context(**TABLET).new_page()
    cards = open_caseload(tablet, therapist)
    expect(cards).to_have_count(2)
    expect(cards.first.get_by_role("heading", level=3)).to_have_text(patient.name)
    expect(cards.first).to_contain_text("Safety flag")
    # Only that question 9 was above "Not at all": never which answer, never the score.
    expect(cards.first).to_contain_text("was answered above “Not at all”")
    expect(cards.first).not_to_contain_text("Several days")
    expect(cards.first).to_contain_text("Open the result")  # shared: one link away
    expect(cards.nth(1)).not_to_contain_text("Safety flag")
    assert_fits_the_screen(tablet)
    cards.first.get_by_role("button", name="Acknowledge").click()
    expect(tablet.get_by_text("Safety flag")).to_have_count(0)
    expect(cards.first.get_by_role("heading", level=3)).to_have_text(other.name)
    tablet.reload()
    expect(tablet.get_by_text("Safety flag")).to_have_count(0)

    expect(access_log(phone)).to_contain_text(
        f"{therapist.name} looked at the safety check of your PHQ-9 (only whether you answered "
        "question 9 above “Not at all”: not your answers, not your score)"
    )


def test_no_thoughts_of_self_harm_means_no_safety_section_and_no_flag(live_app, new_context):
    therapist, patient = care_team(live_app)
    phone = new_context(**PHONE).new_page()
    log_in(phone, patient.email)
    expect(heading(phone)).to_have_text("Your journal")
    open_the_form(phone, "PHQ-9")
    answer_on_one_page(phone, WITHOUT_THOUGHTS)
    save(phone)
    expect(heading(phone)).to_have_text("Your PHQ-9 result")
    expect(phone.get_by_role("region", name="Score")).to_contain_text(score_text(WITHOUT_THOUGHTS))
    expect(phone.get_by_text(SAFETY_HEADING)).to_have_count(0)
    expect(phone.locator('a[href="tel:988"]')).to_have_count(0)

    tablet = new_context(**TABLET).new_page()
    cards = open_caseload(tablet, therapist)
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("PHQ-9")  # the result is shared…
    expect(tablet.get_by_text("Safety flag")).to_have_count(0)  # …and raises no flag
    expect(tablet.get_by_role("button", name="Acknowledge")).to_have_count(0)


def test_questionnaires_results_and_charts_have_no_accessibility_violations(live_app, new_context):
    therapist, patient = care_team(live_app)
    flagged, routine = answered_earlier(live_app, patient, "phq9", WITH_THOUGHTS, WITHOUT_THOUGHTS)
    answered_earlier(live_app, patient, "gad7", [2, 2, 2, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0, 1])
    axe = Axe()

    page = new_context(**PHONE).new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    open_the_form(page, "PHQ-9")
    assert_accessible(axe, page, "PHQ-9, all questions on one page")
    choose(page, 1, 9, 2)
    page.get_by_role("button", name="Save my answers").click()  # 8 questions unanswered
    expect(page.locator(".field-error")).to_have_count(8)
    assert_accessible(axe, page, "PHQ-9 with errors")
    page.get_by_role("button", name="One question per screen").click()
    expect(question(page, 2, 9)).to_be_visible()  # the first question without an answer
    assert_accessible(axe, page, "PHQ-9, one question per screen")

    page.goto(f"/measures/results/{flagged}")
    expect(heading(page)).to_have_text(SAFETY_HEADING)
    expect(page.get_by_role("link", name="Write a safety plan")).to_be_visible()
    assert_accessible(axe, page, "result with the safety section")
    page.goto(f"/measures/results/{routine}")
    expect(heading(page)).to_have_text("Your PHQ-9 result")
    assert_accessible(axe, page, "result without the safety section")

    nav(page).get_by_role("link", name="Progress").click()
    expect(heading(page)).to_have_text("How you are doing")
    for name in ("PHQ-9", "GAD-7"):
        expect(
            page.get_by_role("table", name=re.compile(f"^{name} results, oldest first"))
        ).to_be_visible()
    expect(page.locator("figure.chart svg[role=img]")).to_have_count(2)
    mood = page.get_by_role("region", name="Mood (PHQ-9)").locator("circle.chart-point")
    assert [p.get_attribute("data-score") for p in mood.all()] == ["7", "3"]
    assert_accessible(axe, page, "progress with charts")
    assert_fits_the_screen(page)  # at 360 px, charts and tables included

    tablet = new_context(**TABLET).new_page()
    cards = open_caseload(tablet, therapist)
    expect(cards.first).to_contain_text("Safety flag")
    assert_accessible(axe, tablet, "caseload with a safety flag")
    cards.first.get_by_role("link", name=patient.name).click()
    expect(heading(tablet)).to_have_text(patient.name)
    assert_accessible(axe, tablet, "therapist's patient page")
    tablet.get_by_role("link", name="Questionnaire scores (PHQ-9, GAD-7)").click()
    expect(tablet.locator("figure.chart svg[role=img]")).to_have_count(2)
    assert_accessible(axe, tablet, "therapist's view of the charts")
    tablet.get_by_role("link", name=f"Back to {patient.name}").click()
    tablet.get_by_role("link", name="Integration session view").click()
    expect(heading(tablet)).to_have_text(f"Integration session with {patient.name}")
    tablet.get_by_text("Questionnaire scores (PHQ-9, GAD-7)").click()  # opens the <details>
    expect(tablet.locator("figure.chart svg[role=img]").first).to_be_visible()
    assert_accessible(axe, tablet, "integration session view with the charts open")


def test_gad7_is_answered_and_saved_without_javascript(live_app, new_context):
    _, patient = care_team(live_app)
    page = new_context(**PHONE, java_script_enabled=False).new_page()
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.goto("/measures/gad7/new")
    expect(heading(page)).to_have_text("Anxiety (GAD-7)")
    answers = [1, 2, 1, 0, 0, 1, 3]
    for number, answer in enumerate(answers[:-1], 1):
        choose(page, number, 7, answer)
    with page.expect_response(lambda r: r.request.method == "POST") as sent:
        page.get_by_role("button", name="Save my answers").click()
    assert sent.value.status == 422
    expect(question(page, 7, 7)).to_have_accessible_description(re.compile("Choose one answer"))
    expect_chosen(page, 6, 7, answers[5])  # the answers given are kept
    choose(page, 7, 7, answers[-1])
    save(page)
    expect(heading(page)).to_have_text("Your GAD-7 result")
    expect(page.get_by_role("region", name="Score")).to_contain_text(f"{sum(answers)} of 21 — Mild")
    with live_app.app_context(), Session(db.engine()) as dbs:
        kinds = dbs.exec(select(Entry.kind).where(Entry.author_id == patient.id)).all()
    assert kinds == ["gad7"]
