"""The supporter's view (issue "A journal app on the phone", point 7) and the phone numbers of
the safety plan and the support card (point 8): a card shared before the supporter had a key
is announced as coming, not as missing; the patient may let their supporters see the date and
time of their next ketamine session (off by default, a POST with CSRF, nothing in the access
log), and no other session is ever shown to a supporter; phone numbers are tel: links built
from escaped text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import csrf_token, post
from markupsafe import escape
from sqlmodel import func, select
from test_journal import text_of, visible
from test_journal_security import client_for, database_session, write_entry
from test_support import CARD, invite, register_from, write_card

from kapjournal.models import AuditEvent, User, utcnow
from kapjournal.services import course
from kapjournal.views import phone_links

NEXT_SESSION_SETTING = "/supporters/next-session"
LET_THEM_SEE = (
    "Let my supporters see when my next ketamine session is, so they can plan the ride home"
)


def supporter_page(client, patient) -> str:
    response = client.get(f"/supporting/{patient.id}")
    assert response.status_code == 200
    return visible(text_of(response))


def audit_count(app) -> int:
    with database_session(app) as session:
        return session.exec(select(func.count()).select_from(AuditEvent)).one()


def schedule(app, patient, *, kind: str, at: datetime, status: str = "planned") -> None:
    """A treatment session in the patient's course, added by the patient (the real service)."""
    with database_session(app) as session:
        user = session.get(User, patient.id)
        found = course.schedule(
            session=session,
            patient=user,
            created_by=user,
            kind=kind,
            when=at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="minutes"),
            zone=UTC,
        )
        course.set_status(session=session, treatment_session=found, status=status)
        session.commit()


def set_next_session_shown(client, shown: bool):
    data = {"shown": "1"} if shown else {}
    return post(client, NEXT_SESSION_SETTING, data, token_from="/supporters")


# --- a card shared before the supporter had a key -------------------------------------------------


def test_a_card_waiting_for_the_patients_key_is_announced_then_shown(app, patient):
    as_patient = client_for(app, patient)
    card = write_card(as_patient)
    _, token = invite(as_patient, "Sam", entries=[card])
    as_sam = register_from(app, token, email="sam@example.org", name="Sam Helper")

    page = supporter_page(as_sam, patient)
    assert (
        "Pat Quinn has shared a support card with you; it will appear when Pat Quinn next opens "
        "the app."
    ) in page
    assert "has not shared a support card" not in page
    assert "more entry will appear" not in page  # the card is said once, not counted again

    assert as_patient.get("/journal").status_code == 200  # Pat's next request wraps it
    page = supporter_page(as_sam, patient)
    assert "How to support Pat Quinn" in page and CARD["helps"] in page
    assert "has shared a support card with you" not in page


def test_a_supporter_without_a_card_is_told_so_and_what_will_appear(app, patient, supporter):
    page = supporter_page(client_for(app, supporter), patient)
    assert "Pat Quinn has not shared a support card with you." in page
    assert "has shared a support card with you" not in page
    assert "When Pat Quinn shares an entry with you, it appears here." in page


# --- the next ketamine session -------------------------------------------------------------------


def test_the_next_ketamine_session_is_hidden_until_the_patient_lets_supporters_see_it(
    app, patient, supporter
):
    now = utcnow()
    next_one = datetime(now.year + 1, 12, 4, 10, 0, tzinfo=UTC)  # a Tuesday, next year or so
    while next_one.weekday() != 1:
        next_one -= timedelta(days=1)
    schedule(app, patient, kind="ketamine", at=next_one)
    as_patient, as_sue = client_for(app, patient), client_for(app, supporter)

    setting = text_of(as_patient.get("/supporters"))
    assert LET_THEM_SEE in setting
    assert 'name="shown" value="1" aria-describedby="f-shown-hint">' in setting  # unticked
    assert "Next ketamine session" not in supporter_page(as_sue, patient)

    before = audit_count(app)
    turned_on = set_next_session_shown(as_patient, True)
    assert turned_on.status_code == 303
    assert turned_on.headers["Location"].startswith("/supporters")
    assert 'name="shown" value="1" aria-describedby="f-shown-hint" checked>' in text_of(
        as_patient.get("/supporters")
    )
    when = next_one.strftime("%a %-d %b, %H:%M")
    assert f"Next ketamine session: {when}" in supporter_page(as_sue, patient)
    # A session time is not the patient's words: neither the setting nor the view is logged.
    assert audit_count(app) == before

    # In the supporter's time zone, like every time on the page.
    as_sue.set_cookie("tz", "America/New_York")
    local = next_one.astimezone(ZoneInfo("America/New_York"))
    assert f"Next ketamine session: {local.strftime('%a %-d %b, %H:%M')}" in supporter_page(
        as_sue, patient
    )

    assert set_next_session_shown(as_patient, False).status_code == 303
    assert "Next ketamine session" not in supporter_page(as_sue, patient)


def test_a_supporter_never_sees_any_other_session(app, patient, supporter):
    now = utcnow()
    schedule(app, patient, kind="ketamine", at=now - timedelta(days=3))  # past
    schedule(app, patient, kind="preparation", at=now + timedelta(days=1))  # sooner, other kind
    schedule(app, patient, kind="integration", at=now + timedelta(days=2))
    schedule(app, patient, kind="ketamine", at=now + timedelta(days=4), status="cancelled")
    as_patient, as_sue = client_for(app, patient), client_for(app, supporter)
    set_next_session_shown(as_patient, True)

    page = supporter_page(as_sue, patient)
    assert "Next ketamine session" not in page  # none planned ahead: nothing at all
    for word in ("Preparation", "Integration", "preparation session", "integration session"):
        assert word not in page

    later = now + timedelta(days=9)
    schedule(app, patient, kind="ketamine", at=later)
    page = supporter_page(as_sue, patient)
    assert page.count("Next ketamine session") == 1
    assert f"Next ketamine session: {later.strftime('%a %-d %b, %H:%M')}" in page


def test_only_the_patient_changes_the_setting_and_only_with_a_csrf_token(
    app, patient, supporter, therapist
):
    as_patient = client_for(app, patient)
    refused = as_patient.post(NEXT_SESSION_SETTING, data={"shown": "1"})
    assert refused.status_code == 400
    for persona in (supporter, therapist):
        other = client_for(app, persona)
        token = csrf_token(other, "/account")
        answer = other.post(NEXT_SESSION_SETTING, data={"shown": "1", "csrf_token": token})
        assert answer.status_code == 404
    with database_session(app) as session:
        assert not session.get(User, patient.id).share_defaults.get("_next_session_to_supporters")


def test_another_patients_supporter_sees_nothing_of_the_session(app, patient, stranger_supporter):
    schedule(app, patient, kind="ketamine", at=utcnow() + timedelta(days=5))
    set_next_session_shown(client_for(app, patient), True)
    assert client_for(app, stranger_supporter).get(f"/supporting/{patient.id}").status_code == 404


# --- the supporter's recovery code speaks of their account ---------------------------------------


def test_a_supporters_recovery_code_page_speaks_of_their_account_not_a_journal(app, patient):
    _, token = invite(client_for(app, patient), "Sam")
    client = app.test_client()
    page = client.get(f"/invite/support/{token}")
    form = {
        "name": "Sam Helper",
        "email": "sam@example.org",
        "password": "correct horse battery staple",
        "password2": "correct horse battery staple",
    }
    token_value = csrf_token(client, f"/invite/support/{token}")
    shown = client.post(f"/invite/support/{token}", data={**form, "csrf_token": token_value})
    assert page.status_code == 200 and shown.status_code == 200
    words = visible(text_of(shown))
    assert "the only way back into your account and to what is shared with you" in words
    assert "journal" not in words.split("Save your recovery code", 2)[-1].split("Continue")[0]


# --- phone numbers: one tap to call, and nothing else changes ---------------------------------


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("My sister Kim, 555 0100.", 'My sister Kim, <a href="tel:5550100">555 0100</a>.'),
        ("Call 988 or 911", 'Call <a href="tel:988">988</a> or <a href="tel:911">911</a>'),
        (
            "Clinic: +1 (555) 123-4567 (day)",
            'Clinic: <a href="tel:+15551234567">+1 (555) 123-4567</a> (day)',
        ),
        ("(555) 010-0199", '<a href="tel:5550100199">(555) 010-0199</a>'),
        ("(call 07700 900123)", '(call <a href="tel:07700900123">07700 900123</a>)'),
        ("Mum 020 7946 0958\nDad 1-800-273-8255", None),
        ("Since 2024-11-18, 3 walks a day, 10:00 and 2019-2024", None),
        ("10 000 steps, room 112, flat 4B", None),
    ],
)
def test_phone_numbers_become_tel_links_and_nothing_else_does(text, html):
    made = str(phone_links(text))
    if html is not None:
        assert made == html
    elif "Mum" in text:
        assert made == (
            'Mum <a href="tel:02079460958">020 7946 0958</a>\n'
            'Dad <a href="tel:18002738255">1-800-273-8255</a>'
        )
    else:
        assert made == text  # dates, times, counts and short numbers stay plain text


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script> 555 0100",
        '555 0100"><img src=x onerror=alert(1)>',
        "javascript:alert(1)//555 0100",
        '<a href="tel:1">555 0100</a>',
        "{{ 7 * 7 }} 555 0100 &lt;b&gt; &amp; &#39;",
    ],
)
def test_phone_links_escape_everything_around_and_inside_them(attack):
    made = str(phone_links(attack))
    assert "<script" not in made and "<img" not in made and 'href="tel:1"' not in made
    assert made.count("<a ") == made.count("</a>") <= 1
    assert '<a href="tel:5550100">555 0100</a>' in made
    assert made.replace('<a href="tel:5550100">', "").replace("</a>", "") == str(escape(attack))


def test_the_support_card_and_the_safety_plan_show_numbers_as_links_and_text_as_text(
    app, patient, supporter
):
    as_patient = client_for(app, patient)
    attack = '<script>alert("x")</script> Kim on 555 0100'
    card = write_card(as_patient, **{**CARD, "who_to_call": attack})
    plan = write_entry(as_patient, "safety_plan", people=attack, professionals="Call 988")
    for entry_id in (card, plan):
        page = as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)
        assert (
            '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Kim on <a href="tel:5550100">' in page
        )
        assert "<script>alert" not in page
    plan_page = as_patient.get(f"/entries/{plan}").get_data(as_text=True)
    assert '<a href="tel:988">988</a>' in plan_page

    page = as_patient.get(f"/supporters/{supporter.id}")
    share = post(
        as_patient,
        f"/supporters/{supporter.id}/share",
        {"entry_id": str(card)},
        token_from=f"/supporters/{supporter.id}",
    )
    assert page.status_code == 200 and share.status_code == 303
    shown = client_for(app, supporter).get(f"/supporting/{patient.id}").get_data(as_text=True)
    assert 'Kim on <a href="tel:5550100">555 0100</a>' in shown
    assert "<script>alert" not in shown


def test_the_patients_empty_pages_for_supporters_invite_the_next_step(app, patient):
    as_patient = client_for(app, patient)
    page = visible(text_of(as_patient.get("/supporters")))
    assert "Nobody yet. Invite someone you trust below" in page
    assert "Nobody yet." not in page.replace("Nobody yet. Invite", "")


def test_a_patients_supporter_page_with_nothing_shared_says_how_to_share(app, patient, supporter):
    page = visible(text_of(client_for(app, patient).get(f"/supporters/{supporter.id}")))
    assert "Nothing at the moment. Write a support card or an entry, then share it" in page
    write_entry(client_for(app, patient), text="Something to share.")
    page = visible(text_of(client_for(app, patient).get(f"/supporters/{supporter.id}")))
    assert "Nothing at the moment. Choose below what Sue Porter may read." in page
