"""The journal's promises to patients and therapists, over HTTP: the course of treatment, each
kind of entry, text kept exactly as written, idempotent saves, versions and edit conflicts,
deleting, sharing and revoking, standing defaults, the access log, search, the therapist's
view, time zones and the demo clinic (DESIGN §3 flows 3 to 5, §6)."""

from __future__ import annotations

import html
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import PASSWORD, Persona, csrf_token, login
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select
from werkzeug.datastructures import MultiDict

from kapjournal import db
from kapjournal.models import AuditEvent, Entry, Grant, TreatmentSession, User
from kapjournal.services import accounts, audit, care, entry_forms, journal

TIME_FORMAT = "%a %-d %b %Y, %H:%M"  # how pages show a time (views.local_time)
UNICODE_TEXT = (
    "\n  Heute war gut. 👩🏽‍🚀🏳️‍🌈 — "
    "مرحبا بالعالم، שלום עולם\r\n"
    "e\u0301 n\u0303 Z\u0324\u0308 \u200f\u200b\ufeff\r\n"
    "\ttabs\x07bell\x1b[0m\x7f\x1f <b>not bold</b> & &amp; \"quoted\" 'single'\r\n\r\n  "
)


# --- reading pages and submitting their forms as a browser would --------------------------------


_ATTR = re.compile(r'([\w:-]+)(?:="([^"]*)")?')
_FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S)
_CONTROL = re.compile(
    r"<input\b[^>]*>|<textarea\b[^>]*>.*?</textarea>|<select\b[^>]*>.*?</select>", re.S
)


def _attrs(tag: str) -> dict:
    head = tag[: tag.index(">")]
    _, _, rest = head.partition(" ")
    return {name: html.unescape(value or "") for name, value in _ATTR.findall(rest)}


def textarea_value(raw: str) -> str:
    """A textarea's value from its raw content: one newline right after the start tag is
    dropped by the HTML parser, everything else is kept."""
    raw = html.unescape(raw)
    if raw.startswith("\r\n"):
        return raw[2:]
    return raw[1:] if raw[:1] in ("\n", "\r") else raw


@dataclass
class Form:
    action: str
    fields: list[tuple[str, str]]  # what the browser sends if the form is submitted as is
    html: str

    def value(self, name: str) -> str:
        return next(v for k, v in self.fields if k == name)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]


def forms(page: str) -> list[Form]:
    found = []
    for match in _FORM.finditer(page):
        block = match.group(0)
        fields = []
        for control in _CONTROL.finditer(block):
            tag = control.group(0)
            attrs = _attrs(tag)
            name = attrs.get("name")
            if not name:
                continue
            if tag.startswith("<textarea"):
                content = tag[tag.index(">") + 1 : tag.rindex("</textarea>")]
                fields.append((name, textarea_value(content)))
            elif tag.startswith("<select"):
                options = re.findall(r"<option\b[^>]*>", tag)
                chosen = [o for o in options if " selected" in o] or options[:1]
                fields.extend((name, _attrs(o).get("value", "")) for o in chosen)
            elif attrs.get("type") in ("checkbox", "radio"):
                if "checked" in attrs:
                    fields.append((name, attrs.get("value", "on")))
            elif attrs.get("type") not in ("submit", "button"):
                fields.append((name, attrs.get("value", "")))
        found.append(Form(action=_attrs(block).get("action", ""), fields=fields, html=block))
    return found


def form_on(response, action: str | None = None, *, button: str | None = None) -> Form:
    """The page's form posting to `action` (a prefix) and/or showing `button`."""
    page = response.get_data(as_text=True)
    for form in forms(page):
        if action is not None and not form.action.split("?")[0].startswith(action):
            continue
        if button is not None and button not in html.unescape(form.html):
            continue
        return form
    raise AssertionError(f"no form for {action!r} / {button!r} on the page")


def submit(client, form: Form, **changes):
    """Send the form as the browser would, with `changes` typed over its fields."""
    data = MultiDict(form.fields)
    for name, value in changes.items():
        data.setlist(name, value if isinstance(value, list) else [value])
    return client.post(form.action, data=data)


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def visible(fragment: str) -> str:
    """Tags stripped, entities decoded, whitespace folded: what a reader sees."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def new_entry_form(client, kind: str = "reflection", session_id=None) -> Form:
    path = f"/entries/new?kind={kind}" + (f"&session={session_id}" if session_id else "")
    response = client.get(path)
    assert response.status_code == 200
    return form_on(response, "/entries/new")


def write(client, kind: str = "reflection", *, session_id=None, **fields):
    """Fill in a fresh form of `kind` and submit it; returns the response."""
    return submit(client, new_entry_form(client, kind, session_id), **fields)


def written(response) -> uuid.UUID:
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    match = re.fullmatch(r"/entries/([0-9a-f-]{36})", response.headers["Location"])
    assert match, response.headers["Location"]
    return uuid.UUID(match.group(1))


def edit_form(client, entry_id) -> Form:
    response = client.get(f"/entries/{entry_id}/edit")
    assert response.status_code == 200
    return form_on(response, f"/entries/{entry_id}/edit")


def press(client, page_path: str, button: str):
    """Press a button on a page (its form, CSRF token and hidden fields as rendered)."""
    return submit(client, form_on(client.get(page_path), button=button))


def log_rows(fragment: str) -> list[str]:
    return [visible(row) for row in re.findall(r"<li>(.*?)</li>", fragment, re.S)]


def groups_of(page: str) -> list[tuple[str, str]]:
    """(heading, body) of each period of a course page (a session and what was written from
    then until the next one), top to bottom."""
    sections = re.findall(
        r'<section class="stack period" aria-labelledby="[^"]+">(.*?)</section>', page, re.S
    )
    result = []
    for section in sections:
        heading = re.search(r"<h2[^>]*>(.*?)</h2>", section, re.S)
        result.append((visible(heading.group(1)), section[heading.end() :]))
    return result


@contextmanager
def database(app):
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        yield session


def read_back(app, persona: Persona, entry_id) -> dict:
    """The entry as `persona` decrypts it with their own private key, outside any request."""
    with database(app) as session:
        user, private_key = accounts.authenticate(
            session=session, email=persona.email, password=persona.password
        )
        entry = session.get(Entry, entry_id)
        return journal.read(
            session=session, entry=entry, reader_id=user.id, private_key=private_key
        )


def entry_row(app, entry_id) -> Entry | None:
    with database(app) as session:
        return session.get(Entry, entry_id)


def grant_readers(app, entry_id) -> set:
    with database(app) as session:
        return {g.reader_id for g in session.exec(select(Grant).where(Grant.entry_id == entry_id))}


def local(when: datetime, zone: str = "UTC") -> str:
    return when.astimezone(ZoneInfo(zone)).strftime(TIME_FORMAT)


def logged_in_as(app, persona: Persona):
    client = app.test_client()
    login(client, persona)
    return client


def join_care_team(app, therapist: Persona, patient: Persona) -> None:
    with database(app) as session:
        issued = care.create_invitation(
            session=session, inviter=session.get(User, therapist.id), kind="patient"
        )
        care.accept_patient_invitation(
            session=session, invitation=issued.invitation, patient=session.get(User, patient.id)
        )
        session.commit()


def datetime_local(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M")


# --- course of treatment -------------------------------------------------------------------------


def test_journal_shows_next_session_first_then_later_ones_then_past_newest_first(
    app, as_patient, as_therapist, patient
):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    page = f"/patients/{patient.id}"
    plan = [("preparation", -10), ("ketamine", 9), ("integration", 2)]
    for kind, days in plan:
        response = submit(
            as_therapist,
            form_on(as_therapist.get(page), f"{page}/sessions"),
            kind=kind,
            scheduled_at=datetime_local(now + timedelta(days=days)),
        )
        assert response.status_code == 303
        assert response.headers["Location"] == page
    at_home = now - timedelta(days=3)
    response = submit(
        as_patient,
        form_on(as_patient.get("/sessions/new"), "/sessions/new"),
        kind="ketamine",
        scheduled_at=datetime_local(at_home),
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/journal"

    with database(app) as session:
        sessions = {
            s.scheduled_at.astimezone(UTC): s
            for s in session.exec(
                select(TreatmentSession).where(TreatmentSession.patient_id == patient.id)
            )
        }
    assert len(sessions) == 4
    assert sessions[at_home].created_by_id == patient.id
    later = sessions[now + timedelta(days=9)]
    intention = written(
        write(as_patient, "intention", session_id=later.id, intention="To stay curious.")
    )
    assert entry_row(app, intention).session_id == later.id
    written(write(as_patient, "reflection", text="Not about any session."))

    page = as_patient.get("/journal").get_data(as_text=True)
    coming = visible(page.split('id="upcoming-h"', 1)[1].split("</section>", 1)[0])
    assert coming.index(local(now + timedelta(days=2))) < coming.index(
        local(now + timedelta(days=9))
    )  # the next one first
    groups = groups_of(page)
    past = [("Ketamine session", at_home), ("Preparation session", now - timedelta(days=10))]
    assert [heading for heading, _ in groups] == [
        f"{label} · {when_}" for label, when_ in ((label, local(w)) for label, w in past)
    ]
    bodies = [visible(body) for _, body in groups]
    # Written since the latest session that took place; the intention names its session.
    assert "To stay curious." in bodies[0] and "Not about any session." in bodies[0]
    assert "For the ketamine session of" in bodies[0]
    assert "No entries since this session." in bodies[1]


@pytest.mark.parametrize("who", ["patient", "therapist"])
def test_bad_session_input_gets_422_with_the_messages(app, as_patient, as_therapist, patient, who):
    if who == "patient":
        client, page, path = as_patient, "/sessions/new", "/sessions/new"
    else:
        client, page = as_therapist, f"/patients/{patient.id}"
        path = f"{page}/sessions"
    token = csrf_token(client, page)
    for data, message in [
        ({"kind": "ketamine", "scheduled_at": ""}, "Enter a date and time."),
        ({"kind": "ketamine", "scheduled_at": "next tuesday"}, "Enter a date and time."),
        ({"kind": "rave", "scheduled_at": "2031-01-15T09:30"}, "Choose the kind of session."),
        ({"scheduled_at": ""}, "Choose the kind of session."),
    ]:
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 422
        assert message in text_of(response)
    with database(app) as session:
        assert session.exec(select(TreatmentSession)).all() == []


def test_a_session_time_is_read_and_shown_in_the_viewers_zone(app, as_patient):
    as_patient.set_cookie("tz", "America/New_York")
    response = submit(
        as_patient,
        form_on(as_patient.get("/sessions/new"), "/sessions/new"),
        kind="integration",
        scheduled_at="2031-01-15T09:30",
    )
    assert response.status_code == 303
    with database(app) as session:
        found = session.exec(select(TreatmentSession)).one()
    assert found.scheduled_at.astimezone(UTC) == datetime(2031, 1, 15, 14, 30, tzinfo=UTC)
    assert "Integration session · Wed 15 Jan 2031, 09:30" in visible(
        as_patient.get("/journal").get_data(as_text=True)
    )


# --- intentions ----------------------------------------------------------------------------------


def test_intention_form_shows_five_fields_and_todays_prompts(as_patient):
    page = text_of(as_patient.get("/entries/new?kind=intention"))
    for name, label, _ in entry_forms.INTENTION_FIELDS:
        assert f'name="{name}"' in page
        assert label in page
    for prompt in entry_forms.prompts_for("intention"):
        assert prompt in page
    days = {tuple(entry_forms.prompts_for("intention", date(2026, 3, d))) for d in range(1, 8)}
    assert len(days) > 1, "the prompts rotate from day to day"


def test_intention_without_prompt_answers_is_saved(app, as_patient, patient):
    entry_id = written(
        write(as_patient, "intention", intention="To let go a little.", support="My sister")
    )
    body = read_back(app, patient, entry_id)
    assert body["intention"] == "To let go a little."
    assert body["support"] == "My sister"
    assert body["answers"] == []


def test_intention_missing_the_sentence_gets_422_and_keeps_the_rest(app, as_patient):
    fields = {
        "intention": "   ",
        "hopes": "More room to breathe",
        "worries": "Losing control",
        "grounding": "This will pass",
        "support": "Jordan drives me home",
    }
    response = write(as_patient, "intention", **fields)
    assert response.status_code == 422
    assert "Write your intention." in text_of(response)
    form = form_on(response, "/entries/new")
    for name in ("hopes", "worries", "grounding", "support"):
        assert form.value(name) == fields[name]
    with database(app) as session:
        assert session.exec(select(Entry)).all() == []


# --- reflections and check-ins -------------------------------------------------------------------


def test_reflection_is_two_taps_from_home_and_the_text_area_comes_first(app, patient):
    client = app.test_client()
    login(client, patient)
    home = client.get("/", follow_redirects=True)  # the front door leads to the journal
    assert home.request.path in ("/home", "/journal")
    assert "Your journal" in home.get_data(as_text=True)
    assert 'href="/entries/new?kind=reflection"' in home.get_data(as_text=True)
    page = client.get("/entries/new?kind=reflection").get_data(as_text=True)
    assert page.index('name="text"') < page.index("<details")
    assert "<legend>Mood (optional)</legend>" in page


def test_reflection_with_mood_optional_and_prompt_answers_shown(app, as_patient, patient):
    form = new_entry_form(as_patient, "reflection")
    prompts = form.values("prompt")
    assert prompts == entry_forms.prompts_for("reflection")
    answers = ["The colours.", ""] + [""] * (len(prompts) - 2)
    entry_id = written(submit(as_patient, form, text="It was quiet.", answer=answers))
    body = read_back(app, patient, entry_id)
    assert "mood" not in body
    assert body["answers"] == [{"prompt": prompts[0], "answer": "The colours."}]
    page = visible(as_patient.get(f"/entries/{entry_id}").get_data(as_text=True))
    assert f"{prompts[0]} The colours." in page
    assert prompts[1] not in page


def test_empty_reflection_gets_422_write_something_first(app, as_patient):
    response = write(as_patient, "reflection", text=" \r\n\t ", mood="4")
    assert response.status_code == 422
    assert "Write something first." in text_of(response)
    assert 'aria-invalid="true"' in response.get_data(as_text=True)
    with database(app) as session:
        assert session.exec(select(Entry)).all() == []


def test_check_in_with_a_mood_alone_is_enough(app, as_patient, patient):
    entry_id = written(write(as_patient, "check_in", mood="2"))
    assert read_back(app, patient, entry_id) == {"text": "", "answers": [], "mood": 2}
    assert "Mood: Low" in text_of(as_patient.get(f"/entries/{entry_id}"))


def test_check_in_with_neither_mood_nor_line_gets_422(app, as_patient):
    response = write(as_patient, "check_in", text="  ")
    assert response.status_code == 422
    assert "Choose a mood or write a line." in text_of(response)
    assert write(as_patient, "check_in", mood="9").status_code == 422


# --- text kept exactly as written ----------------------------------------------------------------


def test_unicode_text_round_trips_byte_for_byte(app, as_patient, patient):
    entry_id = written(
        write(as_patient, "reflection", text=UNICODE_TEXT, answer=[UNICODE_TEXT, "", ""])
    )
    body = read_back(app, patient, entry_id)
    assert body["text"] == UNICODE_TEXT
    assert body["answers"][0]["answer"] == UNICODE_TEXT
    form = edit_form(as_patient, entry_id)
    assert form.value("text") == UNICODE_TEXT
    assert UNICODE_TEXT in form.values("answer")
    page = as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)
    assert "<b>not bold</b>" not in page

    intention_id = written(
        write(as_patient, "intention", intention="Ruhig bleiben 🌊", hopes=UNICODE_TEXT)
    )
    assert read_back(app, patient, intention_id)["hopes"] == UNICODE_TEXT
    assert edit_form(as_patient, intention_id).value("hopes") == UNICODE_TEXT


def _exactly(size: int) -> str:
    """Text of exactly `size` UTF-8 bytes, mixing one-, two- and four-byte characters."""
    head = "ü🙂" * 1000  # 6000 bytes
    return head + "a" * (size - len(head.encode()))


def test_exactly_64_kb_is_accepted(app, as_patient, patient):
    text = _exactly(64 * 1024)
    assert len(text.encode()) == 65536
    entry_id = written(write(as_patient, "reflection", text=text))
    assert read_back(app, patient, entry_id)["text"] == text


def test_over_64_kb_gets_422_with_the_whole_text_kept(app, as_patient):
    text = _exactly(64 * 1024 + 1)
    response = write(as_patient, "reflection", text=text)
    assert response.status_code == 422
    assert "This is longer than 64 KB. Please split it into two entries." in text_of(response)
    assert form_on(response, "/entries/new").value("text") == text
    with database(app) as session:
        assert session.exec(select(Entry)).all() == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")))
def test_any_text_posted_as_a_reflection_comes_back_identical(app, as_patient, patient, text):
    response = write(as_patient, "reflection", text=text)
    if not text.strip():
        assert response.status_code == 422
        assert "Write something first." in text_of(response)
        return
    entry_id = written(response)
    assert read_back(app, patient, entry_id)["text"] == text
    assert edit_form(as_patient, entry_id).value("text") == text


# --- idempotency ---------------------------------------------------------------------------------


def test_the_same_form_posted_twice_makes_one_entry(app, as_patient):
    form = new_entry_form(as_patient, "reflection")
    first = submit(as_patient, form, text="Only once, please.")
    again = submit(as_patient, form, text="Only once, please.")
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    other = written(write(as_patient, "reflection", text="Only once, please."))
    assert other != written(first)
    with database(app) as session:
        assert len(session.exec(select(Entry)).all()) == 2
        writes = session.exec(select(AuditEvent).where(AuditEvent.action == "write")).all()
        assert len(writes) == 2


# --- editing -------------------------------------------------------------------------------------


def test_each_save_makes_a_new_version_under_a_new_blob(app, as_patient, patient):
    entry_id = written(write(as_patient, "reflection", text="First words."))
    before = entry_row(app, entry_id)
    response = submit(as_patient, edit_form(as_patient, entry_id), text="Second words.", mood="5")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/entries/{entry_id}"
    after = entry_row(app, entry_id)
    assert after.version == before.version + 1 == 2
    assert after.body_blob != before.body_blob
    assert after.created_at == before.created_at
    body = read_back(app, patient, entry_id)
    assert (body["text"], body["mood"]) == ("Second words.", 5)
    submit(as_patient, edit_form(as_patient, entry_id), text="Third words.")
    assert entry_row(app, entry_id).version == 3
    assert "Third words." in text_of(as_patient.get(f"/entries/{entry_id}"))


def test_stale_edit_gets_409_with_both_texts_and_saves_nothing(app, as_patient, patient):
    entry_id = written(write(as_patient, "reflection", text="The first draft."))
    stale = edit_form(as_patient, entry_id)
    assert (
        submit(
            as_patient, edit_form(as_patient, entry_id), text="Saved from my laptop."
        ).status_code
        == 303
    )
    saved = entry_row(app, entry_id)

    response = submit(as_patient, stale, text="Written on my phone.")
    assert response.status_code == 409
    page = visible(response.get_data(as_text=True))
    assert "Written on my phone." in page
    assert "Saved from my laptop." in page
    after = entry_row(app, entry_id)
    assert (after.version, after.body_blob) == (saved.version, saved.body_blob)
    assert read_back(app, patient, entry_id)["text"] == "Saved from my laptop."

    keep_mine = form_on(response, f"/entries/{entry_id}/edit", button="Keep my version")
    assert keep_mine.value("text") == "Written on my phone."
    assert submit(as_patient, keep_mine).status_code == 303
    assert read_back(app, patient, entry_id)["text"] == "Written on my phone."
    assert entry_row(app, entry_id).version == saved.version + 1


def test_edit_after_an_unrelated_revoke_does_not_conflict(app, as_patient, patient, therapist):
    entry_id = written(
        write(as_patient, "reflection", text="Shared for a while.", share=[str(therapist.id)])
    )
    form = edit_form(as_patient, entry_id)
    revoked = press(as_patient, f"/entries/{entry_id}", f"Stop sharing with {therapist.name}")
    assert revoked.status_code == 303
    assert entry_row(app, entry_id).version == 2
    response = submit(as_patient, form, text="Now just for me.")
    assert response.status_code == 303
    assert read_back(app, patient, entry_id)["text"] == "Now just for me."
    assert entry_row(app, entry_id).version == 3


# --- deleting ------------------------------------------------------------------------------------


def test_delete_asks_first_then_destroys_the_entry_and_every_grant(
    app, as_patient, as_therapist, therapist
):
    entry_id = written(
        write(as_patient, "reflection", text="Too raw to keep.", share=[str(therapist.id)])
    )
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 200
    confirm = as_patient.get(f"/entries/{entry_id}/delete")
    assert confirm.status_code == 200
    assert "Delete this reflection?" in text_of(confirm)
    assert entry_row(app, entry_id) is not None  # asking deletes nothing

    response = submit(as_patient, form_on(confirm, button="Delete for everyone"))
    assert response.status_code == 303
    assert response.headers["Location"] == "/journal"
    assert entry_row(app, entry_id) is None
    assert grant_readers(app, entry_id) == set()
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 404
    assert as_patient.get(f"/entries/{entry_id}").status_code == 404
    assert "Too raw to keep." not in text_of(as_patient.get("/journal"))


# --- sharing -------------------------------------------------------------------------------------


def test_share_from_the_entry_page_then_revoke(app, as_patient, as_therapist, patient, therapist):
    entry_id = written(write(as_patient, "reflection", text="For my integration session."))
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 404
    page = f"/entries/{entry_id}"
    assert press(as_patient, page, f"Share with {therapist.name}").status_code == 303
    assert grant_readers(app, entry_id) == {patient.id, therapist.id}

    read = as_therapist.get(page)
    assert read.status_code == 200
    assert "For my integration session." in text_of(read)
    assert f"By {patient.name}" in text_of(read)
    who = visible(text_of(as_patient.get(page)).split('id="who"')[1].split("</section>")[0])
    assert "You" in who
    assert f"Stop sharing with {therapist.name}" in who

    assert press(as_patient, page, f"Stop sharing with {therapist.name}").status_code == 303
    who = visible(text_of(as_patient.get(page)).split('id="who"')[1].split("</section>")[0])
    assert f"Stop sharing with {therapist.name}" not in who
    assert f"Share with {therapist.name}" in who
    assert grant_readers(app, entry_id) == {patient.id}
    assert as_therapist.get(page).status_code == 404
    assert read_back(app, patient, entry_id)["text"] == "For my integration session."


def test_sharing_with_a_therapist_off_the_care_team_is_404(
    app, as_patient, patient, other_therapist
):
    entry_id = written(write(as_patient, "reflection", text="Not for strangers."))
    page = as_patient.get(f"/entries/{entry_id}")
    assert other_therapist.name not in text_of(page)
    token = csrf_token(as_patient, f"/entries/{entry_id}")
    for reader_id in (other_therapist.id, uuid.uuid4(), "not-a-uuid"):
        response = as_patient.post(
            f"/entries/{entry_id}/share", data={"reader_id": str(reader_id), "csrf_token": token}
        )
        assert response.status_code == 404
    assert grant_readers(app, entry_id) == {patient.id}
    with database(app) as session:
        shares = session.exec(select(AuditEvent).where(AuditEvent.action == "share")).all()
        assert shares == []


def test_another_patient_gets_404_for_an_entry_and_its_pages(app, as_patient, stranger_patient):
    entry_id = written(write(as_patient, "reflection", text="Mine alone."))
    stranger = logged_in_as(app, stranger_patient)
    for path in ("", "/edit", "/delete"):
        assert stranger.get(f"/entries/{entry_id}{path}").status_code == 404
    token = csrf_token(stranger, "/journal/search")
    for path in ("/edit", "/delete", "/share", "/revoke"):
        response = stranger.post(
            f"/entries/{entry_id}{path}", data={"csrf_token": token, "text": "x"}
        )
        assert response.status_code == 404
    assert entry_row(app, entry_id) is not None


# --- standing defaults ---------------------------------------------------------------------------


def _therapist_box(form: Form, therapist: Persona) -> bool:
    return str(therapist.id) in form.values("share")


def test_sharing_defaults_need_the_password(app, as_patient, patient, therapist):
    form = form_on(as_patient.get("/account/sharing"), "/account/sharing")
    response = submit(as_patient, form, kinds=["reflection"], password="not my password at all")
    assert response.status_code == 422
    assert "That is not your password." in text_of(response)
    with database(app) as session:
        assert session.get(User, patient.id).share_defaults == {}
    assert not _therapist_box(new_entry_form(as_patient, "reflection"), therapist)


def test_default_sharing_ticks_the_box_for_that_kind_only(app, as_patient, patient, therapist):
    form = form_on(as_patient.get("/account/sharing"), "/account/sharing")
    response = submit(as_patient, form, kinds=["reflection"], password=PASSWORD)
    assert response.status_code == 200
    assert "Saved." in text_of(response)
    with database(app) as session:
        assert session.get(User, patient.id).share_defaults["reflection"] is True

    form = new_entry_form(as_patient, "reflection")
    assert _therapist_box(form, therapist)
    shared = written(submit(as_patient, form, text="Shared by default."))
    assert grant_readers(app, shared) == {patient.id, therapist.id}

    form = new_entry_form(as_patient, "check_in")
    assert not _therapist_box(form, therapist)
    private = written(submit(as_patient, form, mood="3"))
    assert grant_readers(app, private) == {patient.id}

    form = new_entry_form(as_patient, "reflection")
    unticked = written(submit(as_patient, form, text="Not this one.", share=[]))
    assert grant_readers(app, unticked) == {patient.id}


def test_a_refused_form_keeps_exactly_the_readers_ticked(
    app, as_patient, patient, therapist, other_therapist
):
    join_care_team(app, other_therapist, patient)
    form = new_entry_form(as_patient, "reflection")
    assert not _therapist_box(form, therapist) and not _therapist_box(form, other_therapist)
    refused = submit(as_patient, form, text="", share=[str(therapist.id)])
    assert refused.status_code == 422
    again = form_on(refused, "/entries/new")
    assert _therapist_box(again, therapist)
    assert not _therapist_box(again, other_therapist)
    entry_id = written(submit(as_patient, again, text="Now with words."))
    assert grant_readers(app, entry_id) == {patient.id, therapist.id}


# --- the access log ------------------------------------------------------------------------------


def test_access_log_lists_write_share_read_revoke_newest_first(
    app, as_patient, as_therapist, patient, therapist, stranger_patient, other_therapist
):
    entry_id = written(write(as_patient, "reflection", text="Logged."))
    page = f"/entries/{entry_id}"
    press(as_patient, page, f"Share with {therapist.name}")
    assert as_therapist.get(page).status_code == 200
    press(as_patient, page, f"Stop sharing with {therapist.name}")
    other_id = written(write(as_patient, "check_in", mood="4"))

    stranger = logged_in_as(app, stranger_patient)
    theirs = written(
        write(stranger, "reflection", text="Elsewhere.", share=[str(other_therapist.id)])
    )
    assert logged_in_as(app, other_therapist).get(f"/entries/{theirs}").status_code == 200

    log_page = as_patient.get("/journal/log").get_data(as_text=True)
    rows = log_rows(log_page.split("<h1", 1)[1])
    assert [re.sub(r" · .*", "", row) for row in rows] == [
        "You wrote an entry",
        f"You stopped sharing an entry with {therapist.name}",
        f"{therapist.name} read an entry",
        f"You shared an entry with {therapist.name}",
        "You wrote an entry",
    ]
    assert f'href="/entries/{other_id}"' in log_page
    assert other_therapist.name not in log_page and stranger_patient.name not in log_page

    assert f'href="/entries/{entry_id}/log"' in as_patient.get(page).get_data(as_text=True)
    entry_page = as_patient.get(f"{page}/log").get_data(as_text=True)
    rows = log_rows(entry_page.split("<h1", 1)[1])
    assert [re.sub(r" · .*", "", row) for row in rows] == [
        f"You stopped sharing this entry with {therapist.name}",
        f"{therapist.name} read this entry",
        f"You shared this entry with {therapist.name}",
        "You wrote this entry",
    ]
    other_rows = log_rows(
        as_patient.get(f"/entries/{other_id}/log").get_data(as_text=True).split("<h1", 1)[1]
    )
    assert [re.sub(r" · .*", "", row) for row in other_rows] == ["You wrote this entry"]

    with database(app) as session:
        report = audit.verify(session=session)
        total = len(session.exec(select(AuditEvent)).all())
    assert report.broken_at is None
    assert report.checked == total >= 8


# --- search --------------------------------------------------------------------------------------


def search(client, query: str, **headers):
    """Search as the page's form does: a POST with the form's CSRF token (never a URL)."""
    form = form_on(client.get("/journal/search"), "/journal/search")
    data = MultiDict(form.fields)
    data["q"] = query
    return client.post("/journal/search", data=data, headers=headers)


def test_search_finds_own_entries_case_insensitively(app, as_patient, stranger_patient):
    text_id = written(write(as_patient, "reflection", text="The OCEAN was loud."))
    form = new_entry_form(as_patient, "reflection")
    answer_id = written(
        submit(as_patient, form, text="Quiet.", answer=["Waves, an Ocean.", "", ""])
    )
    hope_id = written(
        write(as_patient, "intention", intention="Stay.", hopes="to swim in the océan")
    )
    intention_id = written(write(as_patient, "intention", intention="Like the ocean, steady."))
    written(write(as_patient, "reflection", text="Mountains only."))
    stranger = logged_in_as(app, stranger_patient)
    theirs = written(write(stranger, "reflection", text="My ocean too."))

    response = search(as_patient, "oCeAn")
    page = response.get_data(as_text=True)
    assert "3 entries found." in text_of(response)
    for found in (text_id, answer_id, intention_id):
        assert f"/entries/{found}" in page
    assert f"/entries/{hope_id}" not in page  # "océan" is another word
    assert f"/entries/{theirs}" not in page and "My ocean too." not in page

    page = search(as_patient, "OCÉAN").get_data(as_text=True)
    assert "1 entry found." in page and f"/entries/{hope_id}" in page
    assert "0 entries found." in text_of(search(stranger, "mountains"))


def test_search_answers_htmx_with_only_the_results(as_patient):
    written(write(as_patient, "reflection", text="A heron by the river."))
    fragment = search(as_patient, "heron", **{"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="results"')
    assert "1 entry found." in body and "A heron by the river." in body

    boosted = search(as_patient, "heron", **{"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)

    for query in ("", "   "):
        empty = search(as_patient, query).get_data(as_text=True)
        assert "found." not in empty and "A heron" not in empty


# --- the therapist's view ------------------------------------------------------------------------


def test_therapist_sees_only_shared_entries_grouped_by_session(
    app, as_patient, as_therapist, patient, therapist, other_therapist
):
    page = f"/patients/{patient.id}"
    when = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    submit(
        as_therapist,
        form_on(as_therapist.get(page), f"{page}/sessions"),
        kind="ketamine",
        scheduled_at=datetime_local(when),
    )
    with database(app) as session:
        session_id = session.exec(select(TreatmentSession)).one().id
    share = [str(therapist.id)]
    written(
        write(
            as_patient,
            "intention",
            session_id=session_id,
            intention="Shared intention.",
            share=share,
        )
    )
    written(
        write(
            as_patient, "reflection", session_id=session_id, text="Shared reflection.", share=share
        )
    )
    written(write(as_patient, "reflection", session_id=session_id, text="Private reflection."))
    written(write(as_patient, "check_in", text="Shared check-in.", mood="3", share=share))

    response = as_therapist.get(page)
    assert response.status_code == 200
    groups = groups_of(response.get_data(as_text=True))
    assert [heading for heading, _ in groups] == [f"Ketamine session · {local(when)}"]
    for words in ("Shared intention.", "Shared reflection.", "Shared check-in."):
        assert words in visible(groups[0][1])  # all written since that session
    assert "Private reflection." not in text_of(response)

    filtered = text_of(as_therapist.get(f"{page}?kind=reflection"))
    assert "Shared reflection." in filtered
    assert "Shared intention." not in filtered and "Shared check-in." not in filtered

    rows = log_rows(as_patient.get("/journal/log").get_data(as_text=True).split("<h1", 1)[1])
    reads = [r for r in rows if r.startswith(f"{therapist.name} read")]
    # Three on the first visit; the filter showed one of them again: a count, not a new row.
    assert len(reads) == 3
    assert sum(r.endswith("· 2 times that day") for r in reads) == 1

    assert logged_in_as(app, other_therapist).get(page).status_code == 404


# --- time zones ----------------------------------------------------------------------------------


def test_entry_times_are_shown_in_the_viewers_zone(app, as_patient):
    entry_id = written(write(as_patient, "reflection", text="What time is it?"))
    created = entry_row(app, entry_id).created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    as_patient.set_cookie("tz", "America/New_York")
    page = visible(as_patient.get(f"/entries/{entry_id}").get_data(as_text=True))
    assert local(created, "America/New_York") in page
    assert local(created, "UTC") not in page

    as_patient.set_cookie("tz", "Mars/Olympus_Mons")
    response = as_patient.get(f"/entries/{entry_id}")
    assert response.status_code == 200
    assert local(created, app.config.get("TIMEZONE") or "UTC") in visible(
        response.get_data(as_text=True)
    )


# --- the demo clinic -----------------------------------------------------------------------------


def test_demo_clinic_has_a_course_and_the_therapist_sees_only_what_was_shared(app):
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    logins = {parts[1]: parts[2] for parts in lines}
    emails = sorted(logins)
    patient_email = next(e for e in emails if e.startswith("patient@"))
    therapist_email = next(e for e in emails if e.startswith("therapist@"))
    sam = Persona("patient", patient_email, logins[patient_email], None, "", "Sam Rivera")
    secret = next(p[3] for p in lines if p[1] == therapist_email).removeprefix("totp:")
    vale = Persona("therapist", therapist_email, logins[therapist_email], None, "", "", secret)

    shared = [
        "To meet my grief with curiosity",
        "grandmother's kitchen",
        "To be kind to the part of me that worries.",
    ]
    private = ["Tired but lighter.", "Harder this time.", "Walked by the river."]

    journal_page = logged_in_as(app, sam).get("/journal").get_data(as_text=True)
    groups = groups_of(journal_page)
    coming = visible(journal_page.split('id="upcoming-h">', 1)[1].split("</section>", 1)[0])
    assert coming.startswith("Coming up Ketamine session")  # the next one, in three days
    assert len([g for g in groups if g[0] != "Before your first session"]) == 5
    for words in shared + private:
        assert words in html.unescape(journal_page)

    with database(app) as session:
        sam_id = accounts.find_by_email(session=session, email=patient_email).id
    therapist = logged_in_as(app, vale)
    assert f'href="/patients/{sam_id}"' in therapist.get("/home").get_data(as_text=True)
    page = text_of(therapist.get(f"/patients/{sam_id}"))
    for words in shared:
        assert words in page
    for words in private:
        assert words not in page
    assert "safety plan" in page.lower()  # shared with the care team by default


def test_an_entry_from_the_offline_page_follows_the_standing_default_and_never_a_supporter(
    app, as_patient, patient, therapist, supporter
):
    offline = form_on(app.test_client().get("/write-offline?kind=reflection"), "/entries/new")
    assert offline.values("share_default") == ["1"] and not offline.values("share")

    def send(words: str) -> uuid.UUID:  # as the phone's queue sends it, with a fresh token
        token = csrf_token(as_patient, "/entries/new?kind=reflection")
        return written(submit(as_patient, offline, text=words, csrf_token=token))

    private = send("Written on the bus, no signal.")
    assert grant_readers(app, private) == {patient.id}  # nothing shared by default yet

    form = form_on(as_patient.get("/account/sharing"), "/account/sharing")
    submit(as_patient, form, kinds=["reflection"], password=PASSWORD)
    shared = send("Written on the train, no signal.")
    assert grant_readers(app, shared) == {patient.id, therapist.id}  # not the supporter
