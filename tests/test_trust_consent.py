"""Consent at the edges ("Trust at the edges"): a PHQ-9 safety flag that tells the care team
only what the patient agreed to, searches whose words never reach a URL or a log line, and
sharing with a family member that asks first while stopping takes one tap (DESIGN §3, §6)."""

from __future__ import annotations

import json
import re
import secrets
import uuid

from conftest import WebClient, client_for, counted_statements, make_user, post
from sqlmodel import select
from test_journal import form_on, press, submit, text_of, visible, write, written
from test_journal_security import (
    capture_every_log,
    database_session,
    hits,
    logged_bytes,
)
from test_measures import answered
from test_security import assert_csrf_refused

from kapjournal import crypto
from kapjournal.models import AuditEvent, Entry, Grant, ItemKey, SafetyCheck, User
from kapjournal.services import accounts, journal, measures, support

# PHQ-9 answers: a total of 21 ("Severe"), item 9 at 2 ("More than half the days").
ANSWERS = [3, 3, 2, 3, 2, 3, 2, 1, 2]
SCORE = 21
OTHER_LABELS = ("Several days", "More than half the days", "Nearly every day")
FLAG_WORDS = "was answered above “Not at all”."
A_TIME = re.compile(r"[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}")


def flag_of(page: str) -> str:
    """The visible words of a page's safety flag, with its times taken out."""
    match = re.search(r'<div class="safety-flag stack"[^>]*>(.*?)</div>', page, re.S)
    assert match, "no safety flag on the page"
    return A_TIME.sub("(time)", visible(match.group(1)))


def therapist_pages(app, therapist, patient) -> dict[str, str]:
    as_therapist = client_for(app, therapist)
    paths = {
        "caseload": "/home",
        "patient page": f"/patients/{patient.id}",
        "session view": f"/patients/{patient.id}/session",
    }
    pages = {}
    for name, path in paths.items():
        response = as_therapist.get(path)
        assert response.status_code == 200, name
        pages[name] = text_of(response)
    return pages


def private_key_of(session, persona) -> bytes:
    found = accounts.authenticate(session=session, email=persona.email, password=persona.password)
    return found[1]


def check_contents(app, therapist) -> list[dict]:
    """Every safety check as the therapist's own key opens it, oldest first."""
    with database_session(app) as session:
        key = private_key_of(session, therapist)
        rows = session.exec(
            select(SafetyCheck, ItemKey.wrapped_key)
            .join(ItemKey, ItemKey.subject_id == SafetyCheck.id)
            .where(ItemKey.reader_id == therapist.id)
            .order_by(SafetyCheck.created_at)
        ).all()
        return [measures._open(check, wrapped, therapist.id, key) for check, wrapped in rows]


# --- 1. the PHQ-9 safety flag carries no score and no answer ----------------------------------


def test_an_unshared_phq9_tells_the_care_team_only_that_item_9_was_above_not_at_all(
    app, as_patient, patient, therapist
):
    entry_id = answered(as_patient, "phq9", ANSWERS, share=[])
    mine = visible(text_of(as_patient.get(f"/measures/results/{entry_id}")))
    assert f"{SCORE} of 27" in mine  # positive control: the patient's own result has it
    assert "not your answers, not your score" in mine
    for name, page in therapist_pages(app, therapist, patient).items():
        words = visible(page)
        assert "Safety flag" in words, name  # a flag is waiting
        flag = flag_of(page)
        assert FLAG_WORDS in flag, name
        assert set(re.findall(r"\d+", flag)) == {"9"}, (name, flag)  # PHQ-9, question 9
        assert not [label for label in OTHER_LABELS if label in words], name
        assert f"{SCORE} of 27" not in words and "score 21" not in words.lower(), name
        assert f"/measures/results/{entry_id}" not in page, name
    scales = client_for(app, therapist).get(f"/patients/{patient.id}/progress")
    scales = scales.get_data(as_text=True)
    phq9 = re.search(r'aria-labelledby="phq9-h">(.*?)</section>', scales, re.S).group(1)
    assert "No PHQ-9 results shared with you yet." in visible(phq9)
    assert client_for(app, therapist).get(f"/measures/results/{entry_id}").status_code == 404


def test_the_care_teams_copy_of_a_check_holds_only_whether_item_9_was_above_zero(
    app, as_patient, therapist
):
    answered(as_patient, "phq9", ANSWERS, share=[])
    answered(as_patient, "phq9", [0] * 9)
    assert check_contents(app, therapist) == [{"flag": 1}, {"flag": 0}]
    with database_session(app) as session:
        blobs = {len(c.body_blob) for c in session.exec(select(SafetyCheck))}
    assert len(blobs) == 1  # a flag and a quiet check look alike in a dump


def test_a_shared_result_is_one_link_from_the_flag_and_opening_it_is_a_logged_read(
    app, as_patient, patient, therapist
):
    entry_id = answered(as_patient, "phq9", ANSWERS)  # shared with the care team by default
    as_therapist = client_for(app, therapist)
    home = text_of(as_therapist.get("/home"))
    flag = flag_of(home)
    assert FLAG_WORDS in flag and set(re.findall(r"\d+", flag)) == {"9"}
    link = re.search(r'<div class="safety-flag stack".*?href="([^"]+)">Open the result', home, re.S)
    assert link and link.group(1) == f"/measures/results/{entry_id}"
    result = visible(text_of(as_therapist.get(link.group(1))))
    assert f"{SCORE} of 27 — Severe" in result and "More than half the days" in result
    with database_session(app) as session:
        reads = session.exec(
            select(AuditEvent).where(AuditEvent.action == "read", AuditEvent.entry_id == entry_id)
        ).all()
    assert {e.actor_id for e in reads} == {therapist.id}
    mine = visible(text_of(as_patient.get(f"/measures/results/{entry_id}")))
    assert "they can also read this result, your answers and your score" in mine


def old_style_check(app, patient, therapist, *, item9: int, score: int) -> None:
    """A check as written before this change: item 9's answer and the score in its blob."""
    with database_session(app) as session:
        reader = session.get(User, therapist.id)
        check = SafetyCheck(patient_id=patient.id)
        dek = crypto.random_key()
        content = json.dumps({"item9": item9, "score": score}).encode()
        check.body_blob = crypto.seal(dek, content, measures._body_ad(check))
        wrapped = crypto.wrap_key(
            dek, accounts.public_key(reader), measures._wrap_ad(check, therapist.id)
        )
        session.add(check)
        session.add(
            ItemKey(
                subject_kind=measures.KIND,
                subject_id=check.id,
                reader_id=therapist.id,
                wrapped_key=wrapped,
            )
        )
        session.commit()


def test_checks_written_before_show_only_that_item_9_was_above_not_at_all(app, patient, therapist):
    old_style_check(app, patient, therapist, item9=3, score=25)
    old_style_check(app, patient, therapist, item9=0, score=26)
    for name, page in therapist_pages(app, therapist, patient).items():
        words = visible(page)
        assert words.count("Safety flag") == 1, name  # item 9 at 0: no flag
        flag = flag_of(page)
        assert FLAG_WORDS in flag and set(re.findall(r"\d+", flag)) == {"9"}, (name, flag)
        assert "Nearly every day" not in words and "25" not in flag, name


def test_the_phq9_form_says_exactly_what_the_care_team_sees_either_way(app, as_patient):
    page = visible(text_of(as_patient.get("/measures/phq9/new")))
    assert (
        "Share the answers and score with my care team If you tick this, your care team can "
        "read all your answers and your score. If you leave it unticked, they cannot read any "
        "of your answers or your score: if you answered question 9 above “Not at all”, they "
        "are told only that, and nothing else."
    ) in page
    assert (
        "your care team sees a safety flag the next time they open the app. The flag tells "
        "them only that question 9 was answered above “Not at all”: not which answer, and not "
        "your score."
    ) in page
    form = form_on(as_patient.get("/measures/phq9/new"), "/measures/phq9/new")
    assert 'aria-describedby="share-hint"' in form.html
    # One question per screen: the same words beside the box on the last screen.
    step = submit(as_patient, form, nav="switch")
    for n in range(1, 10):
        form = form_on(step, "/measures/phq9/new")
        step = submit(as_patient, form, **{f"item-{n}": "0"}, nav="next")
    last = visible(text_of(step))
    assert "If you leave it unticked, they cannot read any of your answers or your score" in last
    gad7 = visible(text_of(as_patient.get("/measures/gad7/new")))
    assert "If you leave it unticked, they see nothing of this questionnaire." in gad7


def test_without_a_care_team_the_form_promises_no_flag(app):
    alone = make_user(app, role="patient", email="alone@example.org", name="Al Lone")
    page = visible(text_of(client_for(app, alone).get("/measures/phq9/new")))
    assert "Share the answers" not in page and "safety flag" not in page
    assert "shows you your safety plan and crisis lines straight away." in page


# --- 2. search words stay out of URLs and logs --------------------------------------------------


def test_search_words_never_reach_a_url_or_the_request_log(app, live_url, caplog, patient):
    canary = f"kjs{secrets.token_hex(10)}"
    as_patient = client_for(app, patient)
    entry_id = written(write(as_patient, "reflection", text=f"A {canary} by the river."))
    capture_every_log(caplog)
    web = WebClient(live_url)
    web.login(patient)
    token = web.token("/journal/search")
    page = web.post("/journal/search", {"q": canary}, token=token)
    fragment = web.post(
        "/journal/search", {"q": canary.upper()}, token=token, headers={"HX-Request": "true"}
    )
    for response in (page, fragment):
        assert response.status_code == 200
        assert "1 entry found." in response.text and f"/entries/{entry_id}" in response.text
        assert canary not in response.url
        assert response.headers["Referrer-Policy"] == "no-referrer"  # nor in a Referer
        assert not [v for v in response.headers.values() if canary.casefold() in v.casefold()]
    assert "<html" in page.text and "<html" not in fragment.text
    logged = logged_bytes(caplog)
    assert b"POST /journal/search HTTP/1.1" in logged  # positive control: lines captured
    assert hits(logged, canary) == [] and hits(logged, canary.upper()) == []


def test_a_query_in_a_url_is_ignored_and_the_form_posts_without_pushing_a_url(as_patient):
    written(write(as_patient, "reflection", text="A heron by the river."))
    response = as_patient.get("/journal/search?q=heron")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "found." not in page and "A heron" not in page
    assert 'value="heron"' not in page
    form = re.search(r'<form class="stack"[^>]*role="search"[^>]*>', page).group(0)
    assert 'method="post"' in form and 'hx-post="/journal/search"' in form
    assert "hx-get" not in page and "hx-push-url" not in page
    assert 'name="csrf_token"' in form_on(response, "/journal/search").html
    assert 'autocomplete="off"' in page  # no autofill history of searches on the phone


def test_a_search_without_its_csrf_token_is_refused(as_patient):
    assert_csrf_refused(as_patient.post("/journal/search", data={"q": "heron"}))


# --- 5. sharing with a supporter asks once; stopping is one tap ----------------------------------


def grant_readers(app, entry_id) -> dict:
    """Reader id → whether their grant holds a key (False: pending)."""
    with database_session(app) as session:
        grants = session.exec(select(Grant).where(Grant.entry_id == entry_id)).all()
        return {g.reader_id: g.wrapped_key is not None for g in grants}


def share_events(app, entry_id) -> list:
    with database_session(app) as session:
        query = select(AuditEvent.target_id).where(
            AuditEvent.action == "share", AuditEvent.entry_id == entry_id
        )
        return list(session.exec(query))


def test_sharing_with_a_supporter_asks_first_naming_them_and_what_they_will_read(
    app, as_patient, patient, supporter
):
    entry_id = written(write(as_patient, "reflection", text="Only for Sue, once I say so."))
    as_supporter = client_for(app, supporter)
    asked = press(as_patient, f"/entries/{entry_id}", f"Share with {supporter.name}")
    assert asked.status_code == 200
    words = visible(text_of(asked))
    assert f"Share this reflection with {supporter.name}?" in words
    assert (
        f"{supporter.name} will be able to read this reflection: its text, your mood and your "
        "answers to the questions, and when you wrote it. They see it as it is now and as you "
        "edit it later."
    ) in words
    assert "They can read it until you stop sharing it with them" in words
    assert grant_readers(app, entry_id) == {patient.id: True}  # asking shares nothing
    assert share_events(app, entry_id) == []
    assert as_supporter.get(f"/entries/{entry_id}").status_code == 404
    cancel = re.search(r'<a class="button button-secondary" href="([^"]+)">Cancel</a>', asked.text)
    assert cancel and cancel.group(1) == f"/entries/{entry_id}"

    confirmed = submit(as_patient, form_on(asked, button=f"Share with {supporter.name}"))
    assert confirmed.status_code == 303
    assert confirmed.headers["Location"] == f"/entries/{entry_id}"
    assert grant_readers(app, entry_id) == {patient.id: True, supporter.id: True}
    assert share_events(app, entry_id) == [supporter.id]
    assert "Only for Sue, once I say so." in text_of(as_supporter.get(f"/entries/{entry_id}"))


def test_with_htmx_the_question_replaces_who_can_read_this(app, as_patient, patient, supporter):
    entry_id = written(write(as_patient, "intention", intention="Meet the fear kindly."))
    form = form_on(as_patient.get(f"/entries/{entry_id}"), button=f"Share with {supporter.name}")
    assert 'hx-target="#readers"' in form.html
    asked = as_patient.post(form.action, data=dict(form.fields), headers={"HX-Request": "true"})
    body = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<section class="card stack share-confirm" id="readers"')
    assert "your intention, what you hope for, what worries you" in visible(body)
    assert grant_readers(app, entry_id) == {patient.id: True}


def test_a_share_with_a_supporter_needs_the_explicit_confirm_field(
    app, as_patient, patient, supporter
):
    entry_id = written(write(as_patient, "reflection", text="Not yet."))
    for confirm in ("", "0", "yes"):
        response = post(
            as_patient,
            f"/entries/{entry_id}/share",
            {"reader_id": str(supporter.id), "confirm": confirm},
            token_from=f"/entries/{entry_id}",
        )
        assert response.status_code == 200, confirm
    assert grant_readers(app, entry_id) == {patient.id: True}


def test_sharing_with_the_therapist_stays_one_tap(app, as_patient, patient, therapist):
    entry_id = written(write(as_patient, "reflection", text="For our next session."))
    shared = press(as_patient, f"/entries/{entry_id}", f"Share with {therapist.name}")
    assert shared.status_code == 303 and shared.headers["Location"] == f"/entries/{entry_id}"
    assert grant_readers(app, entry_id) == {patient.id: True, therapist.id: True}


def test_stop_sharing_is_one_tap_with_no_question(app, as_patient, patient, therapist, supporter):
    entry_id = written(
        write(as_patient, "reflection", text="Shared, for now.", share=[str(therapist.id)])
    )
    post(
        as_patient,
        f"/entries/{entry_id}/share",
        {"reader_id": str(supporter.id), "confirm": "1"},
        token_from=f"/entries/{entry_id}",
    )
    page = text_of(as_patient.get(f"/entries/{entry_id}"))
    who = page.split('id="readers"', 1)[1].split("</section>", 1)[0]
    assert "data-confirm" not in who and "<details" not in who
    for person in (supporter, therapist):
        stopped = press(as_patient, f"/entries/{entry_id}", f"Stop sharing with {person.name}")
        assert stopped.status_code == 303
    assert grant_readers(app, entry_id) == {patient.id: True}
    assert client_for(app, supporter).get(f"/entries/{entry_id}").status_code == 404


def entry_card(page: str, entry_id) -> str:
    match = re.search(rf'aria-labelledby="e-{entry_id}">(.*?)</article>', page, re.S)
    assert match, f"no card for {entry_id}"
    return visible(match.group(1))


def test_the_timeline_and_search_say_with_whom_each_entry_is_shared(
    app, as_patient, patient, therapist, supporter
):
    both = written(write(as_patient, "reflection", text="Lake one.", share=[str(therapist.id)]))
    post(
        as_patient,
        f"/entries/{both}/share",
        {"reader_id": str(supporter.id), "confirm": "1"},
        token_from=f"/entries/{both}",
    )
    private = written(write(as_patient, "reflection", text="Lake two."))
    invited = written(write(as_patient, "reflection", text="Lake three."))
    with database_session(app) as session:
        me = session.get(User, patient.id)
        support.invite(
            session=session, patient=me, name="Jordan Rivera", entries=[session.get(Entry, invited)]
        )
        session.commit()
    timeline = text_of(as_patient.get("/journal"))
    assert f"Shared with {therapist.name} and {supporter.name}" in entry_card(timeline, both)
    assert "Shared" not in entry_card(timeline, private)
    assert "Shared with Jordan Rivera (invited, not joined yet)" in entry_card(timeline, invited)
    form = form_on(as_patient.get("/journal/search"), "/journal/search")
    found = text_of(submit(as_patient, form, q="lake"))
    assert f"Shared with {therapist.name} and {supporter.name}" in entry_card(found, both)
    # The therapist sees what is shared with them, never with whom else.
    theirs = text_of(client_for(app, therapist).get(f"/patients/{patient.id}"))
    assert "Lake one." in entry_card(theirs, both) and supporter.name not in theirs


def test_naming_the_readers_costs_the_same_queries_for_3_entries_or_20(
    app, database, as_patient, patient, therapist, supporter
):
    counts = {}
    for total, add in ((3, 3), (20, 17)):  # a page of the journal holds 20
        with database_session(app) as session:
            me = session.get(User, patient.id)
            others = [session.get(User, therapist.id), session.get(User, supporter.id)]
            for i in range(add):
                journal.create(
                    session=session,
                    author=me,
                    kind="reflection",
                    body={"text": f"Entry {i}", "answers": []},
                    client_id=uuid.uuid4(),
                    readers=others[: i % 3],
                )
            session.commit()
        with counted_statements(database["engine"]) as statements:
            page = as_patient.get("/journal")
        assert page.status_code == 200
        assert page.get_data(as_text=True).count("Shared</span> with") == 2 * total // 3
        counts[total] = len(statements)
    assert counts[3] == counts[20]
