"""Questionnaires and safety (issue #7, DESIGN §2 to §4): the PHQ-9 and GAD-7 scored and
banded, answered on a phone in either layout without losing answers, encrypted and shared with
the care team by default (never with a support member), due before each ketamine session and
every 14 days, charted over time; the safety plan; and the response to PHQ-9 item 9."""

from __future__ import annotations

import itertools
import re
import secrets
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, timedelta

import pytest
from conftest import make_user, post
from sqlmodel import select
from test_journal import form_on, submit, text_of, visible
from test_journal_security import (
    capture_every_log,
    client_for,
    database_session,
    hits,
    logged_bytes,
    normalized,
    stored_bytes,
)

from kapjournal.models import AuditEvent, Entry, Grant, ItemKey, SafetyCheck, User, utcnow
from kapjournal.services import accounts, course, instruments, journal, measures
from kapjournal.services.instruments import GAD7, PHQ9

RESULT = re.compile(r"/measures/results/([0-9a-f-]{36})$")
PLAN = {
    "warning_signs": "I stop answering messages.",
    "coping": "A long shower, then the dog and I walk to the river.",
    "distractions": "The library café.",
    "people": "My brother Sam, 555 0101.",
    "professionals": "Dr. Ward at the clinic, weekdays 9 to 5.",
    "environment": "Sam keeps my pills this month.",
}
QUIET = [1, 1, 0, 0, 0, 0, 0, 0, 0]  # PHQ-9 with item 9 at "Not at all"
ITEM9 = [2, 2, 1, 1, 0, 0, 1, 0, 1]  # item 9 at "Several days"


# --- helpers: the patient's steps, through the real pages ----------------------------------------


def answer(client, key: str = "phq9", items: list[int] | None = None, **extra):
    """Answer a questionnaire on the all-on-one-page form, as a browser would."""
    instrument = instruments.INSTRUMENTS[key]
    items = items if items is not None else [1] * len(instrument.items)
    form = form_on(client.get(f"/measures/{key}/new"), f"/measures/{key}/new")
    fields = {f"item-{n}": str(v) for n, v in enumerate(items, 1) if v is not None}
    return submit(client, form, nav="save", **fields, **extra)


def answered(client, key: str = "phq9", items=None, **extra) -> uuid.UUID:
    response = answer(client, key, items, **extra)
    assert response.status_code == 303, text_of(response)[:800]
    match = RESULT.search(response.headers["Location"])
    assert match, response.headers["Location"]
    return uuid.UUID(match.group(1))


def write_plan(client, **overrides) -> uuid.UUID:
    form = form_on(client.get("/entries/new?kind=safety_plan"), "/entries/new")
    response = submit(client, form, **(PLAN | overrides))
    assert response.status_code == 303, text_of(response)[:800]
    return uuid.UUID(response.headers["Location"].rsplit("/", 1)[1])


def ketamine_session(app, patient, therapist, *, in_days: float) -> None:
    """A ketamine session the therapist scheduled, `in_days` from now (negative: past)."""
    with database_session(app) as session:
        course.schedule(
            session=session,
            patient=session.get(User, patient.id),
            created_by=session.get(User, therapist.id),
            kind="ketamine",
            when=(utcnow() + timedelta(days=in_days)).isoformat(),
            zone=UTC,
        )
        session.commit()


def checked(page: str) -> dict[str, str]:
    """The radio answers checked on a form page, and the hidden ones carried along."""
    found = dict(re.findall(r'name="(item-\d+|difficulty)" value="(\d)" checked', page))
    found |= dict(re.findall(r'type="hidden" name="(item-\d+|difficulty)" value="(\d)"', page))
    return found


def readers(app, entry_id) -> set:
    with database_session(app) as session:
        return set(session.exec(select(Grant.reader_id).where(Grant.entry_id == entry_id)))


# --- scoring -------------------------------------------------------------------------------------

PHQ9_BANDS = [(0, 4, "Minimal"), (5, 9, "Mild"), (10, 14, "Moderate")]
PHQ9_BANDS += [(15, 19, "Moderately severe"), (20, 27, "Severe")]
GAD7_BANDS = [(0, 4, "Minimal"), (5, 9, "Mild"), (10, 14, "Moderate"), (15, 21, "Severe")]


@pytest.mark.parametrize(
    ("instrument", "bands"), [(PHQ9, PHQ9_BANDS), (GAD7, GAD7_BANDS)], ids=["phq9", "gad7"]
)
def test_every_total_falls_in_its_standard_band(instrument, bands):
    expected = {total: label for low, high, label in bands for total in range(low, high + 1)}
    assert sorted(expected) == list(range(instrument.max_score + 1))
    assert {t: instruments.band(instrument, t).label for t in expected} == expected
    for outside in (-1, instrument.max_score + 1):
        with pytest.raises(ValueError):
            instruments.band(instrument, outside)


@pytest.mark.parametrize("instrument", [PHQ9, GAD7], ids=["phq9", "gad7"])
def test_every_item_and_every_answer_counts_once(instrument):
    count = len(instrument.items)
    assert count == {"phq9": 9, "gad7": 7}[instrument.key]
    assert instrument.max_score == 3 * count
    for position, value in itertools.product(range(count), range(4)):
        items = [0] * count
        items[position] = value
        assert instruments.score(instrument, items) == value
    assert instruments.score(instrument, [3] * count) == instrument.max_score
    for wrong in ([0] * (count - 1), [0] * (count + 1), [4] + [0] * (count - 1), [-1] * count):
        with pytest.raises(ValueError):
            instruments.score(instrument, wrong)


def test_the_standard_wording_recall_and_answer_scale():
    assert PHQ9.stem.startswith("Over the last 2 weeks, how often have you been bothered")
    assert GAD7.stem.startswith("Over the last 2 weeks, how often have you been bothered")
    assert PHQ9.items[8] == (
        "Thoughts that you would be better off dead or of hurting yourself in some way"
    )
    assert GAD7.items[0] == "Feeling nervous, anxious, or on edge"
    labels = ["Not at all", "Several days", "More than half the days", "Nearly every day"]
    assert list(enumerate(labels)) == instruments.ANSWERS


@pytest.mark.parametrize(
    ("scores", "response", "remission"),
    [
        ([20, 10], True, False),  # exactly half: a response
        ([20, 11], False, False),
        ([9, 4], True, True),
        ([6, 4], False, True),  # under 5 without halving: remission only
        ([6, 5], False, False),
        ([0, 0], False, True),  # nothing to halve from a first score of 0
        ([22, 18, 12, 9], True, False),  # measured from the first score, not the previous one
    ],
)
def test_response_is_half_the_first_score_and_remission_is_under_five(scores, response, remission):
    found = instruments.progress(scores)
    assert (found.response, found.remission) == (response, remission)
    assert ("Response" in found.words) == response
    assert ("emission" in found.words) == remission


def test_one_result_shows_no_progress_yet():
    assert instruments.progress([12]) is None
    assert instruments.progress([]) is None


def test_item_9_above_zero_needs_the_safety_response_and_only_on_the_phq9():
    assert instruments.needs_safety_response(PHQ9, ITEM9)
    assert not instruments.needs_safety_response(PHQ9, QUIET)
    assert not instruments.needs_safety_response(PHQ9, [3] * 8 + [0])
    assert not instruments.needs_safety_response(GAD7, [3] * 7)


# --- answering on a phone ------------------------------------------------------------------------


def test_answers_are_scored_encrypted_and_shown_with_their_band(app, as_patient, patient):
    entry_id = answered(as_patient, "gad7", [3, 2, 2, 1, 1, 0, 3], difficulty="2")
    page = visible(text_of(as_patient.get(f"/measures/results/{entry_id}")))
    assert "12 of 21 — Moderate" in page
    assert "Feeling nervous, anxious, or on edge: Nearly every day" in page
    assert "Very difficult" in page
    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        assert entry.kind == "gad7" and entry.author_id == patient.id
        assert b"Moderate" not in entry.body_blob and b"items" not in entry.body_blob
        body = journal.read(
            session=session,
            entry=entry,
            reader_id=patient.id,
            private_key=accounts.authenticate(
                session=session, email=patient.email, password=patient.password
            )[1],
        )
    assert body == {"items": [3, 2, 2, 1, 1, 0, 3], "difficulty": 2, "score": 12}


def test_an_unanswered_item_is_a_422_that_keeps_every_other_answer(as_patient):
    response = answer(as_patient, "phq9", [1, 2, None, 3, 0, 1, 2, 0, 0])
    assert response.status_code == 422
    page = text_of(response)
    assert 'aria-describedby="item-3-error"' in page and "Choose one answer." in page
    assert checked(page) == {
        f"item-{n}": str(v)
        for n, v in enumerate([1, 2, None, 3, 0, 1, 2, 0, 0], 1)
        if v is not None
    }


def test_one_question_per_screen_goes_back_and_forth_without_losing_answers(as_patient):
    page = as_patient.get("/measures/phq9/new")
    form = form_on(page, "/measures/phq9/new")
    step = submit(as_patient, form, nav="switch")
    assert "1 of 9." in visible(text_of(step)) and "Next" in text_of(step)
    for n, value in enumerate([2, 1, 3], 1):
        step = submit(
            as_patient, form_on(step, "/measures/phq9/new"), **{f"item-{n}": str(value)}, nav="next"
        )
        assert step.status_code == 200
    assert "4 of 9." in visible(text_of(step))
    back = submit(as_patient, form_on(step, "/measures/phq9/new"), nav="back")
    assert "3 of 9." in visible(text_of(back))
    assert checked(text_of(back)) == {"item-1": "2", "item-2": "1", "item-3": "3"}
    # Next without an answer stays on the question and says why.
    ahead = submit(as_patient, form_on(back, "/measures/phq9/new"), nav="next")
    skipped = submit(as_patient, form_on(ahead, "/measures/phq9/new"), nav="next")
    assert skipped.status_code == 422 and "4 of 9." in visible(text_of(skipped))
    # Switching layout keeps them too, and the last screen saves.
    whole = submit(as_patient, form_on(skipped, "/measures/phq9/new"), nav="switch")
    assert checked(text_of(whole)) == {"item-1": "2", "item-2": "1", "item-3": "3"}
    rest = {f"item-{n}": "0" for n in range(4, 10)}
    saved = submit(as_patient, form_on(whole, "/measures/phq9/new"), nav="save", **rest)
    assert saved.status_code == 303 and RESULT.search(saved.headers["Location"])
    assert "6 of 27 — Mild" in visible(text_of(as_patient.get(saved.headers["Location"])))


def test_a_retried_submission_never_makes_a_second_result(app, as_patient, patient):
    form = form_on(as_patient.get("/measures/phq9/new"), "/measures/phq9/new")
    fields = {f"item-{n}": "1" for n in range(1, 10)}
    first = submit(as_patient, form, nav="save", **fields)
    again = submit(as_patient, form, nav="save", **fields)
    assert first.headers["Location"] == again.headers["Location"]
    with database_session(app) as session:
        rows = session.exec(select(Entry).where(Entry.author_id == patient.id)).all()
        assert [e.kind for e in rows] == ["phq9"]
        assert len(session.exec(select(SafetyCheck)).all()) == 1


def test_an_unknown_questionnaire_is_a_404(as_patient):
    assert as_patient.get("/measures/bdi2/new").status_code == 404


def test_results_are_not_journal_entries_they_cannot_be_edited_and_open_on_their_own_page(
    as_patient,
):
    entry_id = answered(as_patient, "phq9", QUIET)
    assert str(entry_id) not in text_of(as_patient.get("/journal"))
    shown = as_patient.get(f"/entries/{entry_id}")
    assert shown.status_code == 303 and shown.headers["Location"].endswith(
        f"/measures/results/{entry_id}"
    )
    assert as_patient.get(f"/entries/{entry_id}/edit").status_code == 404


# --- sharing: the care team by default, never a supporter ---------------------------------------


def test_results_go_to_the_care_team_by_default_and_the_patient_can_untick_them(
    app, as_patient, patient, therapist
):
    form = form_on(as_patient.get("/measures/phq9/new"), "/measures/phq9/new")
    assert dict(form.fields).get("share") == "1"  # ticked
    shared = answered(as_patient, "phq9", QUIET)
    assert readers(app, shared) == {patient.id, therapist.id}
    private = answered(as_patient, "gad7", [0] * 7, share=[])
    assert readers(app, private) == {patient.id}
    page = as_patient.get(f"/measures/results/{private}")
    share = form_on(page, f"/entries/{private}/share")
    assert submit(as_patient, share).status_code == 303
    assert readers(app, private) == {patient.id, therapist.id}


def test_the_patient_can_turn_the_default_off(app, as_patient, patient):
    response = post(
        as_patient,
        "/account/sharing",
        {"kinds": ["reflection"], "password": patient.password},
        token_from="/account/sharing",
    )
    assert response.status_code == 200
    form = form_on(as_patient.get("/measures/gad7/new"), "/measures/gad7/new")
    assert "share" not in dict(form.fields)
    entry_id = answered(as_patient, "gad7", [1] * 7, share=[])
    assert readers(app, entry_id) == {patient.id}


def test_a_supporter_never_reads_scores_even_when_asked_to(app, as_patient, patient, supporter):
    entry_id = answered(as_patient, "phq9", ITEM9)
    plan_id = write_plan(as_patient, people="Sue and Sam")
    # A journal entry offers the supporter; a result offers only the care team.
    assert "Share with Sue Porter" in visible(text_of(as_patient.get(f"/entries/{plan_id}")))
    result_page = visible(text_of(as_patient.get(f"/measures/results/{entry_id}")))
    assert "Sue Porter" not in result_page and "Stop sharing with Dr. Tess Ward" in result_page
    # The share form refuses a supporter, and so does the bulk share on the supporter's page.
    refused = post(
        as_patient, f"/entries/{entry_id}/share", {"reader_id": str(supporter.id)},
        token_from="/journal",
    )  # fmt: skip
    assert refused.status_code == 404
    bulk = post(
        as_patient, f"/supporters/{supporter.id}/share", {"entry_id": str(entry_id)},
        token_from="/journal",
    )  # fmt: skip
    assert bulk.status_code == 404
    assert readers(app, entry_id) & {supporter.id} == set()
    # Even a grant put straight into the database opens nothing for them.
    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        key = accounts.authenticate(
            session=session, email=patient.email, password=patient.password
        )[1]
        journal.share(
            session=session,
            entry=entry,
            author=session.get(User, patient.id),
            private_key=key,
            reader=session.get(User, supporter.id),
        )
        session.commit()
    as_supporter = client_for(app, supporter)
    for path in (f"/measures/results/{entry_id}", f"/entries/{entry_id}", "/measures"):
        assert as_supporter.get(path).status_code == 404, path
    seen = text_of(as_supporter.get(f"/support/{patient.id}"))
    assert "PHQ" not in seen and "Safety flag" not in seen and "safety plan" not in seen.lower()


def test_strangers_get_404_for_results_and_checks(
    app, as_patient, patient, other_therapist, stranger_patient
):
    entry_id = answered(as_patient, "phq9", ITEM9)
    with database_session(app) as session:
        check = session.exec(select(SafetyCheck)).one()
    for persona in (other_therapist, stranger_patient, None):
        client = client_for(app, persona)
        assert client.get(f"/measures/results/{entry_id}").status_code in (404, 302, 303)
        if persona is not None:
            assert client.get(f"/measures/results/{entry_id}").status_code == 404
            ack = post(client, f"/safety-checks/{check.id}/acknowledge", token_from="/account")
            assert ack.status_code == 404
    as_other = client_for(app, other_therapist)
    missing = as_other.get(f"/measures/results/{uuid.uuid4()}")
    assert normalized(missing) == normalized(as_other.get(f"/measures/results/{entry_id}"))


# --- when a questionnaire is due ----------------------------------------------------------------


def _age(app, entry_id, days: float) -> None:
    with database_session(app) as session:
        entry = session.get(Entry, entry_id)
        entry.created_at = utcnow() - timedelta(days=days)
        session.add(entry)
        session.commit()


def test_both_are_due_at_first_then_every_14_days(app, as_patient, patient):
    home = visible(text_of(as_patient.get("/journal")))
    assert "Questionnaires waiting for you" in home
    assert "Mood (PHQ-9)" in home and "Anxiety (GAD-7)" in home
    phq, gad = answered(as_patient, "phq9", QUIET), answered(as_patient, "gad7", [0] * 7)
    assert "Questionnaires waiting for you" not in text_of(as_patient.get("/journal"))
    _age(app, phq, 13)
    _age(app, gad, 14)
    home = visible(text_of(as_patient.get("/journal")))
    assert "Anxiety (GAD-7)" in home and "Mood (PHQ-9)" not in home
    assert "two weeks since the last one" in home


def test_both_are_due_before_each_ketamine_session(app, as_patient, patient, therapist):
    phq, gad = answered(as_patient, "phq9", QUIET), answered(as_patient, "gad7", [0] * 7)
    _age(app, phq, 5)
    _age(app, gad, 0.5)
    ketamine_session(app, patient, therapist, in_days=2)
    with database_session(app) as session:
        due = measures.due(session=session, patient=session.get(User, patient.id))
    # Answered 5 days ago: before the 3-day window of this session; 12 hours ago: within it.
    assert [(d.instrument.key, d.reason) for d in due] == [("phq9", "before your ketamine session")]
    assert "before your ketamine session" in visible(text_of(as_patient.get("/measures")))


# --- the trend chart ----------------------------------------------------------------------------


def _svg(page: str, key: str) -> ET.Element:
    found = re.search(
        rf'<svg[^>]*id="chart-{key}"[^>]*>.*?</svg>|<svg[^>]*aria-labelledby="chart-{key}-title[^>]*>.*?</svg>',
        page,
        re.S,
    )
    assert found, f"no chart for {key}"
    return ET.fromstring(found.group(0))  # noqa: S314  (our own page, not untrusted input)


def test_the_chart_is_valid_svg_and_its_table_matches_its_points(
    app, as_patient, patient, therapist
):
    scores = [(21, 20), (18, 12), (9, 3)]  # days ago, score
    for days, total in scores:
        items = [3] * (total // 3) + [total % 3] + [0] * 9
        entry_id = answered(as_patient, "phq9", items[:9])
        _age(app, entry_id, days)
    ketamine_session(app, patient, therapist, in_days=-15)
    page = text_of(as_patient.get("/measures"))
    svg = _svg(page, "phq9")
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert svg.get("role") == "img" and svg.get("aria-labelledby")
    points = [
        (c.get("data-date"), int(c.get("data-score")))
        for c in svg.iterfind(".//s:circle", ns)
        if "chart-point" in c.get("class", "")
    ]
    assert [score for _, score in points] == [20, 12, 3]
    assert len([e for e in svg.iter() if "chart-marker" in (e.get("class") or "")]) >= 1
    assert len([e for e in svg.iter() if "chart-band" in (e.get("class") or "")]) >= 5
    assert all("style" not in e.attrib for e in svg.iter())
    table = re.search(r"<caption>PHQ-9 results.*?</table>", page, re.S).group(0)
    rows = re.findall(r"<tr><td>.*?</td><td>(\d+)</td><td>([^<]+)</td></tr>", table, re.S)
    assert rows == [("20", "Severe"), ("12", "Moderate"), ("3", "Minimal")]
    assert "Response and remission" in visible(page)


# --- the safety response ------------------------------------------------------------------------


def test_item_9_shows_the_safety_plan_and_crisis_lines_before_anything_else(app, as_patient):
    write_plan(as_patient)
    entry_id = answered(as_patient, "phq9", ITEM9)
    page = visible(text_of(as_patient.get(f"/measures/results/{entry_id}")))
    main = page[page.index("Log out") :]
    order = [
        main.index("You don't have to carry this alone"),
        main.index("988"),
        main.index(PLAN["coping"]),
        main.index("not monitored in real time"),
        main.index("of 27"),
    ]
    assert order == sorted(order)


def test_without_a_plan_item_9_offers_to_write_one_and_a_quiet_result_shows_no_safety_section(
    as_patient,
):
    flagged = visible(
        text_of(as_patient.get(f"/measures/results/{answered(as_patient, 'phq9', ITEM9)}"))
    )
    assert "Write a safety plan" in flagged and "988" in flagged
    quiet = visible(
        text_of(as_patient.get(f"/measures/results/{answered(as_patient, 'phq9', QUIET)}"))
    )
    assert "You don't have to carry this alone" not in quiet


def test_every_phq9_makes_a_check_that_looks_the_same_whatever_item_9_was(
    app, as_patient, therapist
):
    answered(as_patient, "phq9", QUIET)
    answered(as_patient, "phq9", ITEM9)
    answered(as_patient, "gad7", [3] * 7)  # no check for the GAD-7
    with database_session(app) as session:
        checks = session.exec(select(SafetyCheck)).all()
        assert len(checks) == 2
        assert {c.reviewed_at for c in checks} == {None}
        assert {len(c.body_blob) for c in checks} == {len(checks[0].body_blob)}
        keys = session.exec(select(ItemKey).where(ItemKey.subject_kind == "safety_check")).all()
        assert {k.reader_id for k in keys} == {therapist.id}


def test_the_flag_stays_until_the_therapist_acknowledges_it_and_that_is_logged(
    app, as_patient, patient, therapist
):
    other = make_user(
        app, role="patient", email="calm@example.org", name="Cal Calm", invited_by=therapist
    )
    as_other = client_for(app, other)
    answered(as_other, "phq9", QUIET)
    answered(as_patient, "phq9", ITEM9)
    as_therapist = client_for(app, therapist)
    for _ in range(2):  # seen twice: still there
        home = text_of(as_therapist.get("/home"))
        assert home.index("Pat Quinn") < home.index("Cal Calm")  # flags first
        assert home.count("Safety flag</strong>") == 1
    with database_session(app) as session:
        quiet, flagged = sorted(
            session.exec(select(SafetyCheck)).all(), key=lambda c: c.reviewed_at is None
        )
        assert quiet.reviewed_at is not None and quiet.reviewed_by_id == therapist.id
        assert flagged.reviewed_at is None
    ack = submit(as_therapist, form_on(as_therapist.get("/home"), button="Acknowledge"))
    assert ack.status_code == 303
    assert "Safety flag</strong>" not in text_of(as_therapist.get("/home"))
    with database_session(app) as session:
        events = session.exec(
            select(AuditEvent).where(
                AuditEvent.action == "safety_check", AuditEvent.patient_id == patient.id
            )
        ).all()
        assert [e.actor_id for e in events] == [therapist.id]
    log = visible(text_of(as_patient.get("/journal/log")))
    assert (
        "Dr. Tess Ward looked at the safety check of your PHQ-9 (only whether you answered "
        "question 9 above “Not at all”: not your answers, not your score)"
    ) in log


def test_the_flag_shows_on_the_patient_page_and_the_session_view(
    app, as_patient, patient, therapist
):
    answered(as_patient, "phq9", ITEM9)
    as_therapist = client_for(app, therapist)
    for path in (f"/patients/{patient.id}", f"/patients/{patient.id}/session"):
        page = visible(text_of(as_therapist.get(path)))
        assert "Safety flag" in page and "Questionnaire scores" in page
        # The flag says item 9 was above "Not at all", never which answer (the result, shared
        # here, is one link away).
        assert "of self-harm) was answered above “Not at all”." in page
        assert "Several days" not in page and "Open the result" in page
    ack = submit(
        as_therapist, form_on(as_therapist.get(f"/patients/{patient.id}"), button="Acknowledge")
    )
    assert ack.headers["Location"].endswith(f"/patients/{patient.id}")


def test_a_flag_is_shown_even_when_the_result_is_not_shared(app, as_patient, patient, therapist):
    entry_id = answered(as_patient, "phq9", ITEM9, share=[])
    assert readers(app, entry_id) == {patient.id}
    as_therapist = client_for(app, therapist)
    home = visible(text_of(as_therapist.get("/home")))
    assert "Safety flag" in home
    assert as_therapist.get(f"/measures/results/{entry_id}").status_code == 404


def test_therapist_reads_of_scores_are_in_the_access_log(app, as_patient, patient, therapist):
    entry_id = answered(as_patient, "gad7", [1] * 7)
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/patients/{patient.id}/progress").status_code == 200
    with database_session(app) as session:
        reads = session.exec(
            select(AuditEvent).where(AuditEvent.action == "read", AuditEvent.entry_id == entry_id)
        ).all()
        assert reads and {e.actor_id for e in reads} == {therapist.id}


def test_a_therapist_who_left_can_no_longer_open_the_checks(app, as_patient, patient, therapist):
    answered(as_patient, "phq9", ITEM9)
    page = "/journal"
    removed = post(
        as_patient,
        f"/care-team/{therapist.id}/remove",
        {"password": patient.password},
        token_from=page,
    )
    assert removed.status_code in (200, 303), text_of(removed)[:500]
    with database_session(app) as session:
        keys = session.exec(select(ItemKey).where(ItemKey.subject_kind == "safety_check")).all()
        assert keys == []


# --- the safety plan ----------------------------------------------------------------------------


def test_the_safety_plan_has_six_steps_goes_to_the_care_team_and_is_reachable_from_help(
    app, as_patient, patient, therapist
):
    assert (
        as_patient.get("/safety-plan").headers["Location"].endswith("/entries/new?kind=safety_plan")
    )
    form = form_on(as_patient.get("/entries/new?kind=safety_plan"), "/entries/new")
    assert [name for name in PLAN if name in dict(form.fields)] == list(PLAN)
    assert dict(form.fields).get("share") == str(therapist.id)  # ticked by default
    plan_id = write_plan(as_patient)
    assert readers(app, plan_id) == {patient.id, therapist.id}
    assert as_patient.get("/safety-plan").headers["Location"].endswith(f"/entries/{plan_id}")
    shown = text_of(as_patient.get(f"/entries/{plan_id}"))
    page = visible(shown)
    for label in ("1. My warning signs", "6. Making my surroundings safe", "988"):
        assert label in page
    # The phone number in the plan is one tap to call.
    people = 'My brother Sam, <a href="tel:5550101">555 0101</a>.'
    assert people in shown
    assert "/safety-plan" in text_of(client_for(app, None).get("/help"))
    assert people in text_of(client_for(app, therapist).get(f"/entries/{plan_id}"))


def test_an_empty_safety_plan_is_a_422(as_patient):
    form = form_on(as_patient.get("/entries/new?kind=safety_plan"), "/entries/new")
    response = submit(as_patient, form)
    assert response.status_code == 422 and "Write at least one part of your plan." in text_of(
        response
    )


def test_a_supporter_sees_the_plan_only_when_the_patient_shares_it(
    app, as_patient, patient, supporter
):
    plan_id = write_plan(as_patient)
    as_supporter = client_for(app, supporter)
    assert as_supporter.get(f"/entries/{plan_id}").status_code == 404
    shared = post(
        as_patient,
        f"/entries/{plan_id}/share",
        {"reader_id": str(supporter.id), "confirm": "1"},  # after the question naming them
        token_from="/journal",
    )
    assert shared.status_code == 303
    assert PLAN["coping"] in text_of(as_supporter.get(f"/entries/{plan_id}"))


# --- nothing in clear ---------------------------------------------------------------------------


def test_answers_scores_checks_and_the_plan_never_reach_the_database_or_the_logs(
    app, database, caplog, as_patient, therapist
):
    capture_every_log(caplog)
    canary = f"kjc{secrets.token_hex(12)}"
    write_plan(as_patient, coping=canary)
    items = [3, 1, 2, 0, 3, 1, 2, 0, 2]
    entry_id = answered(as_patient, "phq9", items, difficulty="3")
    gad = answered(as_patient, "gad7", [2, 3, 0, 1, 3, 2, 1])
    as_therapist = client_for(app, therapist)
    seen = text_of(as_therapist.get("/home")) + text_of(
        as_therapist.get(f"/measures/results/{entry_id}")
    )
    assert "14 of 27" in visible(seen) and "Safety flag" in seen  # positive control: it went in
    stored, logged = stored_bytes(database), logged_bytes(caplog)
    needles = {
        "plan": canary,
        "phq9 items": "[3, 1, 2, 0, 3, 1, 2, 0, 2]",
        "phq9 items compact": "[3,1,2,0,3,1,2,0,2]",
        "gad7 items": "[2, 3, 0, 1, 3, 2, 1]",
        "score key": '"score"',
        "item9 key": '"item9"',
        "items key": '"items"',
    }
    leaks = {
        (label, where): found
        for label, value in needles.items()
        for where, haystack in (("database", stored), ("log", logged))
        if (found := hits(haystack, value))
    }
    assert leaks == {}
    assert hits(stored, str(gad)) or hits(stored, gad.hex)  # positive control: the row is there


# --- the demo -----------------------------------------------------------------------------------


def test_the_demo_patient_has_six_results_of_each_showing_response_and_a_safety_plan(app):
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    email, password = next((p[1], p[2]) for p in lines if p[1].startswith("patient@"))
    sam = client_for(app, None)
    post(sam, "/login", {"email": email, "password": password}, token_from="/login")
    page = text_of(sam.get("/measures"))
    for name in ("PHQ-9", "GAD-7"):
        table = re.search(rf"<caption>{name} results.*?</table>", page, re.S).group(0)
        assert len(re.findall(r"<tr><td>", table)) == 6
    words = visible(page)
    assert "Response and remission: the score has fallen by half or more" in words  # PHQ-9
    assert "Response: the score has fallen by half or more since the first one." in words
    plan = sam.get("/safety-plan")
    assert "/entries/" in plan.headers["Location"]
    assert "walk to the river" in text_of(sam.get(plan.headers["Location"]))


def test_a_deleted_result_is_gone_for_everyone_but_its_safety_flag_stays(
    app, as_patient, therapist
):
    entry_id = answered(as_patient, "phq9", ITEM9)
    page = as_patient.get(f"/entries/{entry_id}/delete")
    assert "Delete this PHQ-9 result?" in visible(text_of(page))
    deleted = submit(as_patient, form_on(page, f"/entries/{entry_id}/delete"))
    assert deleted.status_code == 303 and deleted.headers["Location"].endswith("/measures")
    assert as_patient.get(f"/measures/results/{entry_id}").status_code == 404
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/measures/results/{entry_id}").status_code == 404
    home = text_of(as_therapist.get("/home"))
    assert "Safety flag" in home and f"/measures/results/{entry_id}" not in home
