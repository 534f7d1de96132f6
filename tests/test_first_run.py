"""A journal app on the phone, over HTTP: the first run (a welcome once, after a new account has
saved its recovery code, and up to three optional steps for a patient; shorter ones for a
supporter and a therapist), empty pages that invite the next step, questionnaire results that
say how this time compares with the last and show the chart, and the smaller things: the
access log's words for a safety check, the reset page that promises nothing it cannot keep,
and no "Log in" on the pages the phone shows offline."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import PASSWORD, make_user, post
from sqlmodel import select
from test_auth import reset, shown_code
from test_invitations import NEW_PATIENT, invite, register
from test_journal import text_of, visible
from test_journal_security import client_for, database_session
from test_measures import answered, write_plan
from test_push import PRIVATE_KEY, PUBLIC_KEY, SUBJECT
from test_support import invite as invite_supporter
from test_support import register_from

from kapjournal.models import AuditEvent, Entry, utcnow
from kapjournal.services import accounts, chart, instruments

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = "/static/js/install.js"
QUIET = [1, 1, 0, 0, 0, 0, 0, 0, 0]  # PHQ-9, 2 in all, item 9 at "Not at all"


@pytest.fixture
def app(make_app):
    """The app with reminders set up (VAPID keys): a patient's first run has three steps."""
    return make_app(
        VAPID_PRIVATE_KEY=PRIVATE_KEY, VAPID_PUBLIC_KEY=PUBLIC_KEY, VAPID_SUBJECT=SUBJECT
    )


def new_patient(app, therapist):
    """A patient registers from their therapist's link; the client and the recovery-code page."""
    _, _, token = invite(client_for(app, therapist))
    client = app.test_client()
    shown = register(client, token)
    assert shown.status_code == 200, text_of(shown)[:500]
    return client, shown


def confirm(client, code: str):
    return post(
        client,
        "/recovery-code/confirm",
        {"code": code, "saved": "yes"},
        token_from="/recovery-code",
    )


def page_of(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return visible(text_of(response))


def welcomed(app, email: str) -> bool:
    with database_session(app) as session:
        found = accounts.find_by_email(session=session, email=email)
        return bool(found.share_defaults.get("_welcomed"))


def csrf_of(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text_of(client.get(path))).group(1)


# --- 4. the first run ----------------------------------------------------------------------------


def test_a_new_patient_is_welcomed_once_right_after_saving_the_recovery_code(app, therapist):
    client, shown = new_patient(app, therapist)
    assert "the only way to unlock your journal" in visible(text_of(shown))
    done = confirm(client, shown_code(shown))
    assert done.status_code == 303 and done.headers["Location"] == "/welcome"
    assert welcomed(app, NEW_PATIENT["email"])

    page = page_of(client, "/welcome")
    assert "Welcome, Robin Vale" in page
    for said in (
        "It is encrypted",
        "server keeps it, but cannot read it.",
        "You choose who reads what",
        "Nobody watches it in real time",
        "3 optional steps to get ready",
        "Write your safety plan Add the journal to your home screen Turn on reminders",
    ):
        assert said in page
    raw = text_of(client.get("/welcome"))
    assert 'href="/welcome/safety-plan">Start with step 1 of 3</a>' in raw
    assert 'href="/journal">Go to my journal</a>' in raw

    # A later recovery code (after a reset) goes home: the welcome was once.
    client.post("/logout", data={"csrf_token": csrf_of(client, "/account")})
    again = app.test_client()
    answer = reset(again, NEW_PATIENT["email"], shown_code(shown), "another long passphrase here")
    assert answer.status_code == 200
    second = confirm(again, shown_code(answer))
    assert second.status_code == 303 and second.headers["Location"] == "/home"


def test_each_step_says_where_it_is_can_be_skipped_and_leads_to_the_journal(app, patient):
    client = client_for(app, patient)
    first = text_of(client.get("/welcome/safety-plan"))
    assert "Step 1 of 3" in first and '<progress max="3" value="1"' in first
    assert 'href="/entries/new?kind=safety_plan"' in first and "Write my safety plan" in first
    assert re.search(r'href="/welcome/home-screen">Skip this step<span', first)
    assert 'href="/journal">Go to my journal</a>' in first

    second = text_of(client.get("/welcome/home-screen"))
    assert "Step 2 of 3" in second
    words = visible(second)
    assert "Tap the Share button: a square with an arrow pointing up" in words
    assert "“Add to Home Screen”" in words and "Install app" in words
    assert f'<script src="{INSTALL_SCRIPT}" defer></script>' in second
    assert "data-install hidden" in second  # shown only when the browser offers its prompt
    assert 'href="/welcome/reminders">Next step' in second
    assert 'href="/welcome/safety-plan">Back' in second
    # Full page loads between the steps, so the install script runs (htmx runs no scripts).
    assert '<div class="stack welcome" hx-boost="false">' in second

    third = text_of(client.get("/welcome/reminders"))
    assert "Step 3 of 3" in third and 'id="reminders"' in third and "data-push=" in third
    assert 'href="/journal">Done: go to my journal</a>' in third


def test_the_safety_plan_step_knows_when_the_plan_is_written(app, patient):
    client = client_for(app, patient)
    assert "You have a safety plan." not in page_of(client, "/welcome/safety-plan")
    write_plan(client)
    page = text_of(client.get("/welcome/safety-plan"))
    assert "You have a safety plan." in visible(page)
    assert 'href="/welcome/home-screen">Next step' in page


def test_without_reminders_set_up_there_are_two_steps(make_app):
    app = make_app()
    patient = make_user(app, role="patient", email="pat@example.org", name="Pat Quinn")
    client = client_for(app, patient)
    assert "2 optional steps to get ready" in page_of(client, "/welcome")
    assert "Turn on reminders" not in page_of(client, "/welcome")
    last = text_of(client.get("/welcome/home-screen"))
    assert "Step 2 of 2" in last and 'href="/journal">Done: go to my journal</a>' in last
    assert client.get("/welcome/reminders").status_code == 404


def test_the_install_script_loads_only_on_the_home_screen_step(app, patient):
    client = client_for(app, patient)
    for path in ("/journal", "/welcome", "/welcome/safety-plan", "/welcome/reminders", "/account"):
        assert INSTALL_SCRIPT not in text_of(client.get(path)), path
    assert (ROOT / "static/js/install.js").exists()
    assert client.get(INSTALL_SCRIPT).status_code == 200


def test_a_new_supporter_gets_a_short_welcome_about_what_they_will_see(app, patient):
    _, token = invite_supporter(client_for(app, patient), "Sam")
    as_sam = register_from(app, token, email="sam@example.org", name="Sam Helper")
    assert welcomed(app, "sam@example.org")
    page = page_of(as_sam, "/welcome")
    assert "Welcome, Sam Helper" in page
    assert "Thank you for being there for Pat Quinn" in page
    assert "You do not keep a journal here" in page
    assert "the date and time of their next ketamine session" in page
    assert "Never their other entries, their questionnaires or their therapist" in page
    assert f'href="/supporting/{patient.id}"' in text_of(as_sam.get("/welcome"))
    assert "Step 1 of" not in page and "safety plan" not in page
    for step in ("safety-plan", "home-screen", "reminders"):
        assert as_sam.get(f"/welcome/{step}").status_code == 404


def test_a_therapist_gets_a_short_welcome_after_two_step_login(app, therapist, patient):
    client = client_for(app, therapist)
    page = page_of(client, "/welcome")
    assert "Welcome, Dr. Tess Ward" in page
    assert "Patients choose what you read" in page and "Not monitored in real time" in page
    assert 'href="/invitations">Invite your first patient' in text_of(client.get("/welcome"))
    assert client.get("/welcome/safety-plan").status_code == 404


def test_a_new_clinic_owner_sets_up_two_step_login_before_the_welcome(make_app):
    client = make_app().test_client()
    form = {"name": "Olive Owner", "email": "owner@example.org", "password": PASSWORD}
    made = post(client, "/setup", {**form, "password2": PASSWORD}, token_from="/setup")
    assert "back into your account and to what your patients share" in visible(text_of(made))
    done = confirm(client, shown_code(made))
    assert done.headers["Location"] == "/welcome"
    gate = client.get("/welcome")
    assert gate.status_code == 302 and gate.headers["Location"].startswith("/mfa/setup")
    assert "next=/welcome" in gate.headers["Location"]


def test_the_account_page_leads_back_to_getting_started(app, patient, supporter):
    for persona in (patient, supporter):
        page = text_of(client_for(app, persona).get("/account"))
        assert 'href="/welcome">Getting started</a>' in page


# --- empty pages invite the next step ------------------------------------------------------------

OLD_EMPTY = ("Nothing yet.", "No results yet.</p>", "Nobody yet.</p>", "Nothing at the moment.</p>")


def test_a_new_patients_empty_pages_invite_the_next_step(app, patient):
    client = client_for(app, patient)
    log = page_of(client, "/journal/log")
    assert "Nobody has read your words yet. Share an entry with your therapist or" in log
    assert 'href="/supporters">someone supporting you</a>' in text_of(client.get("/journal/log"))
    progress = text_of(client.get("/measures"))
    assert 'No results yet. <a href="/measures/phq9/new">Answer the PHQ-9</a>' in progress
    assert "Answer the PHQ-9 again" not in progress  # never answered: not "again"
    assert "Your scores then show here over time." in visible(progress)
    assert "open it while you are logged in here to join their care team" in page_of(
        make_patient_client(app), "/account"
    )
    for path in ("/journal/log", "/measures", "/supporters", "/account"):
        raw = text_of(client.get(path))
        assert not [old for old in OLD_EMPTY if old in raw], path


def make_patient_client(app):
    alone = make_user(app, role="patient", email="alone@example.org", name="Al One")
    return client_for(app, alone)


def test_a_therapist_with_no_results_shared_is_told_so(app, patient, therapist):
    page = page_of(client_for(app, therapist), f"/patients/{patient.id}/progress")
    assert "No PHQ-9 results shared with you yet." in page
    assert "Answer the PHQ-9" not in page


# --- 5. results that say how this time compares ---------------------------------------------------


def _move_back(app, entry_id, days: int) -> str:
    """Make a result `days` older; the day it now shows ("18 Nov", in UTC)."""
    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        entry.created_at = utcnow() - timedelta(days=days)
        session.add(entry)
        session.commit()
        day = entry.created_at.date()
    return f"{day.day} {chart.MONTHS[day.month - 1]}" + (
        "" if day.year == utcnow().year else f" {day.year}"
    )


def result_words(client, entry_id) -> str:
    return page_of(client, f"/measures/results/{entry_id}")


def test_a_result_says_how_it_compares_with_the_last_one_in_words(app, patient):
    client = client_for(app, patient)
    first = answered(client, "phq9", [1, 1, 1, 1, 1, 1, 1, 1, 1])  # 9
    assert "Your first PHQ-9." in result_words(client, first)
    on = _move_back(app, first, 20)
    lower = answered(client, "phq9", [1, 1, 1, 1, 0, 0, 0, 0, 0])  # 4
    assert f"4, down from 9 on {on}." in result_words(client, lower)
    on = _move_back(app, lower, 10)
    same = answered(client, "phq9", [0, 0, 0, 0, 1, 1, 1, 1, 0])  # 4
    assert f"4, the same as on {on}." in result_words(client, same)
    _move_back(app, same, 5)
    higher = answered(client, "phq9", [2, 2, 1, 1, 1, 1, 1, 1, 0])  # 10
    words = result_words(client, higher)
    assert re.search(r"10, up from 4 on \d+ \w{3}( \d{4})?\.", words)
    # Each result compares with the one before it, not with the newest.
    assert f"4, down from 9 on {_day(app, first)}." in result_words(client, lower)
    # The GAD-7 has its own history.
    assert "Your first GAD-7." in result_words(client, answered(client, "gad7", [1] * 7))


def _day(app, entry_id) -> str:
    with database_session(app) as session:
        day = session.get(Entry, entry_id).created_at.date()
    return f"{day.day} {chart.MONTHS[day.month - 1]}" + (
        "" if day.year == utcnow().year else f" {day.year}"
    )


def test_a_result_shows_the_chart_of_that_questionnaire(app, patient):
    client = client_for(app, patient)
    first = answered(client, "phq9", QUIET)
    _move_back(app, first, 14)
    answered(client, "gad7", [0] * 7)
    latest = answered(client, "phq9", [0] * 9)
    page = text_of(client.get(f"/measures/results/{latest}"))
    assert page.count('<figure class="chart">') == 1
    assert 'aria-labelledby="chart-phq9-title chart-phq9-desc"' in page
    assert "chart-gad7" not in page
    assert "PHQ-9 results, oldest first (the numbers in the chart)" in page
    assert (
        f'href="/measures/results/{first}"' in page and f'href="/measures/results/{latest}"' in page
    )


def test_a_therapist_reads_the_comparison_and_only_that_earlier_result_is_logged(
    app, patient, therapist
):
    client = client_for(app, patient)
    first = answered(client, "phq9", [1] * 9)
    _move_back(app, first, 14)
    other = answered(client, "gad7", [2] * 7)
    latest = answered(client, "phq9", [0] * 9)
    as_therapist = client_for(app, therapist)
    words = result_words(as_therapist, first)
    assert "The first PHQ-9 shared with you." in words
    words = result_words(as_therapist, latest)
    assert f"0, down from 9 on {_day(app, first)}." in words
    assert "chart-phq9" not in text_of(as_therapist.get(f"/measures/results/{latest}"))
    with database_session(app) as session:
        read = {
            e.entry_id
            for e in session.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "read", AuditEvent.actor_id == therapist.id
                )
            )
        }
    assert read == {first, latest}  # the earlier score was shown, so read; the GAD-7 was not
    assert other not in read


@pytest.mark.parametrize(
    ("score", "earlier", "words"),
    [
        (4, (9, 2024, 11, 18), "4, down from 9 on 18 Nov"),
        (9, (9, 2024, 11, 18), "9, the same as on 18 Nov"),
        (12, (9, 2024, 11, 18), "12, up from 9 on 18 Nov"),
        (3, (9, 2023, 12, 30), "3, down from 9 on 30 Dec 2023"),
        (5, None, "your first PHQ-9"),
    ],
)
def test_comparison_words(score, earlier, words):
    found = None
    if earlier:
        found = instruments.Earlier(score=earlier[0], day=date(*earlier[1:]))
    assert instruments.compared(instruments.PHQ9, score, found, year=2024) == words


def test_the_one_question_form_shows_how_many_are_answered(app, patient):
    client = client_for(app, patient)
    page = text_of(client.get("/measures/phq9/new?mode=one"))
    assert '<progress max="9" value="0" aria-labelledby="measure-answered">' in page
    assert "0 of 9 answered" in page


def test_chart_labels_are_at_least_12_px_on_a_phone():
    on_a_phone = chart.FONT * chart.FIGURE_PX / chart.WIDTH
    assert on_a_phone >= 12 and chart.FIGURE_PX <= 290
    drawn = chart.trend_chart(
        title="PHQ-9",
        max_score=27,
        bands=instruments.PHQ9.bands,
        points=[chart.Point(at=utcnow(), score=4)],
        markers=[],
        zone=utcnow().tzinfo,
        chart_id="c",
    )
    assert f'font-size="{chart.FONT}"' in str(drawn.svg).split(">", 1)[0]
    css = (ROOT / "static/css/app.css").read_text()
    assert ".chart text { font-size: inherit; }" in css


# --- 8. the smaller things -----------------------------------------------------------------------


def test_the_reset_page_says_plainly_that_nobody_can_open_a_journal_without_the_code(client):
    page = page_of(client, "/reset")
    assert "Lost your recovery code too?" in page
    assert "Then nobody can open your journal again: not the clinic, not your therapist." in page
    assert "You can start again with a new account" in page
    assert "Ask your therapist or the clinic for help" not in page


@pytest.mark.parametrize("path", ["/offline", "/write-offline?kind=reflection"])
def test_the_pages_kept_for_offline_offer_no_log_in(client, path):
    raw = text_of(client.get(path))
    assert 'href="/login"' not in raw.split("<main", 1)[0]  # not in the header's navigation
    assert "Need help now?" in raw


def test_the_access_log_says_in_plain_words_what_a_safety_check_showed(app, patient, therapist):
    client = client_for(app, patient)
    result = answered(client, "phq9", QUIET)
    assert client_for(app, therapist).get("/home").status_code == 200  # the check is seen
    log = text_of(client.get("/journal/log"))
    assert f'looked at the safety check of <a href="/entries/{result}">your PHQ-9</a>' in log
    words = visible(log)
    assert "Dr. Tess Ward looked at the safety check of your PHQ-9 (only whether you" in words
    assert "answered question 9 above \u201cNot at all\u201d: not your answers, not your" in words
    assert "checked the safety question of" not in words
