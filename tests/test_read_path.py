"""One read path and pages that stay fast as the journal grows: the same number of SQL
statements per page at 20 and 20,000 entries (within the budgets of DESIGN §9), pages cut at a
cursor with a "Show earlier" link that works without JavaScript and in place with htmx, a
search that never opens the whole journal, the request pipeline doing nothing when there is
nothing to do, and the code keeping its shape (no view imports another; no view decrypts or
writes the access log)."""

from __future__ import annotations

import ast
import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Persona, client_for, counted_statements, make_user, post, write_entry
from sqlalchemy import insert
from sqlmodel import Session, select

from kapjournal import crypto, db
from kapjournal.models import AuditEvent, Entry, Grant, User, utcnow
from kapjournal.services import support, timeline

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = {  # SQL statements per page, request pipeline included (DESIGN §9)
    "patient's timeline": 8,
    "patient's own entry": 6,
    "therapist's patient page": 8,
    "therapist reading an entry": 6,
    "supporter reading an entry": 6,
    "a page without data, logged in": 1,
}


def visible(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def bury(app, patient: Persona, therapist: Persona, count: int) -> None:
    """`count` older entries, all shared with the therapist, inserted in bulk: a journal of
    years behind the page. Their blobs are random (they are never on a first page; a page of
    them would show "could not be opened")."""
    start = utcnow() - timedelta(days=3 * 365)
    entries, grants = [], []
    for n in range(count):
        entry_id = uuid.uuid4()
        at = start + timedelta(minutes=n)
        entries.append(
            {
                "id": entry_id,
                "author_id": patient.id,
                "kind": "reflection",
                "client_id": uuid.uuid4(),
                "version": 1,
                "needs_rotation": False,
                "body_blob": crypto.random_key(),
                "created_at": at,
                "updated_at": at,
            }
        )
        for reader in (patient, therapist):
            grants.append(
                {
                    "id": uuid.uuid4(),
                    "entry_id": entry_id,
                    "reader_id": reader.id,
                    "wrapped_key": crypto.random_key(),
                    "created_at": at,
                }
            )
    with app.app_context(), db.engine().begin() as conn:
        conn.execute(insert(Entry), entries)
        conn.execute(insert(Grant), grants)


def statements_per_page(app, database, clients: dict, pages: dict) -> dict:
    found = {}
    for name, (who, path) in pages.items():
        client = clients[who]
        for _ in range(2):  # warm: the device's key cache, the day's first reads
            assert client.get(path).status_code == 200, (name, path)
        for _ in range(2):
            with counted_statements(database["engine"]) as statements:
                response = client.get(path)
            assert response.status_code == 200, (name, path)
            # A device's session row is touched at most every 30 s (sessions.TOUCH_EVERY),
            # on whichever request comes then: that request is counted again, not the page.
            if not any(s.startswith("UPDATE device_session SET last_seen_at") for s in statements):
                break
        found[name] = len(statements)
    return found


def test_each_page_costs_the_same_statements_at_20_and_20000_entries_within_budget(
    app, database, patient, therapist, supporter
):
    newest = [write_entry(app, patient, f"Entry {n}.", readers=[therapist]) for n in range(20)]
    for_supporter = write_entry(app, patient, "For Sue.", readers=[supporter])
    clients = {p.role: client_for(app, p) for p in (patient, therapist, supporter)}
    pages = {
        "patient's timeline": ("patient", "/journal"),
        "patient's own entry": ("patient", f"/entries/{newest[-1]}"),
        "therapist's patient page": ("therapist", f"/patients/{patient.id}"),
        "therapist reading an entry": ("therapist", f"/entries/{newest[-1]}"),
        "supporter reading an entry": ("support", f"/entries/{for_supporter}"),
        "a page without data, logged in": ("patient", "/help"),
    }
    small = statements_per_page(app, database, clients, pages)
    bury(app, patient, therapist, 20_000 - 21)
    large = statements_per_page(app, database, clients, pages)
    print(f"SQL statements per page, 20 vs 20,000 entries: {small} / {large}")
    assert small == large
    assert {name: n for name, n in large.items() if n > BUDGETS[name]} == {}


def test_show_earlier_brings_the_next_page_without_javascript_and_in_place_with_htmx(
    app, patient, therapist
):
    start = utcnow() - timedelta(days=30)
    ids = [
        write_entry(app, patient, f"Entry number {n}.", when=start + timedelta(hours=n))
        for n in range(45)
    ]
    client = client_for(app, patient)
    first = client.get("/journal").get_data(as_text=True)
    shown = re.findall(r"Entry number (\d+)\.", first)
    assert shown == [str(n) for n in range(44, 24, -1)]  # the newest 20, newest first
    link = re.search(r'href="(/journal\?before=[^"]+)"', first).group(1)
    assert f'hx-get="{link}"' in first
    second = client.get(link).get_data(as_text=True)  # no JavaScript: a whole page
    assert "<html" in second
    assert re.findall(r"Entry number (\d+)\.", second) == [str(n) for n in range(24, 4, -1)]
    in_place = client.get(link, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in in_place and "Entry number 24." in in_place
    third_link = re.search(r'href="(/journal\?before=[^"]+)"', second).group(1)
    third = client.get(third_link).get_data(as_text=True)
    assert re.findall(r"Entry number (\d+)\.", third) == ["4", "3", "2", "1", "0"]
    assert "Show earlier entries" not in third
    assert str(ids[0]) in third


def test_entries_written_at_the_same_instant_are_neither_lost_nor_repeated_across_pages(
    app, patient
):
    same = utcnow() - timedelta(days=1)
    written = {write_entry(app, patient, f"Twin {n}.", when=same) for n in range(25)}
    client = client_for(app, patient)
    seen: list[str] = []
    path = "/journal"
    while path:
        page = client.get(path).get_data(as_text=True)
        seen += re.findall(r'href="/entries/([0-9a-f-]{36})"', page)
        found = re.search(r'href="(/journal\?before=[^"]+)"', page)
        path = found.group(1) if found else None
    assert sorted(seen) == sorted(str(i) for i in written)


def test_a_cursor_that_is_nonsense_shows_the_first_page(app, patient):
    write_entry(app, patient, "Only one.")
    page = client_for(app, patient).get("/journal?before=not-a-cursor")
    assert page.status_code == 200 and "Only one." in page.get_data(as_text=True)


def test_search_opens_at_most_a_few_hundred_entries_and_offers_to_search_earlier(
    app, patient, therapist
):
    start = utcnow() - timedelta(days=400)
    old = write_entry(app, patient, "The heron at the lake.", when=start)
    for n in range(timeline.SCAN_LIMIT + 10):
        write_entry(app, patient, f"Ordinary day {n}.", when=start + timedelta(hours=n + 1))
    client = client_for(app, patient)
    form_page = client.get("/journal/search").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form_page).group(1)
    first = client.post("/journal/search", data={"q": "heron", "csrf_token": token})
    text = first.get_data(as_text=True)
    assert "0 entries found among your newest 200" in visible(text)
    before = re.search(r'name="before" value="([^"]+)"', text).group(1)
    more = client.post(
        "/journal/search", data={"q": "heron", "before": before, "csrf_token": token}
    ).get_data(as_text=True)
    assert f'href="/entries/{old}"' in more
    assert "Search earlier entries" not in more  # the whole journal has been searched


def test_the_access_log_comes_a_page_at_a_time(app, patient):
    for n in range(30):  # each write is one event; 60 events in all with the shares below
        write_entry(app, patient, f"Entry {n}.")
    client = client_for(app, patient)
    page = client.get("/journal/log").get_data(as_text=True)
    assert visible(page).count("You wrote") == 30 and "Show earlier events" not in page
    for n in range(30, 60):
        write_entry(app, patient, f"Entry {n}.")
    page = client.get("/journal/log").get_data(as_text=True)
    assert visible(page).count("You wrote") == 50
    earlier = re.search(r'href="(/journal/log\?before=\d+)"', page).group(1)
    rest = client.get(earlier, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert visible(rest).count("You wrote") == 10 and "<html" not in rest


def next_page(page: str, path: str) -> str:
    """The 'Show earlier' link of a page: the same URL for a plain link and for htmx."""
    found = re.search(r'<a class="button button-secondary" href="([^"]+)" hx-get="([^"]+)"', page)
    assert found and found.group(1) == found.group(2) and found.group(1).startswith(path), page
    return found.group(1).replace("&amp;", "&")


def test_the_caseload_comes_twenty_patients_at_a_time(app, therapist):
    for n in range(23):
        make_user(
            app, role="patient", email=f"p{n}@example.org", name=f"Pat {n:02}", invited_by=therapist
        )
    client = client_for(app, therapist)
    first = client.get("/home").get_data(as_text=True)
    shown = set(re.findall(r"Pat \d\d", visible(first)))
    assert len(shown) == 20 and "Show more patients" in first
    link = next_page(first, "/home?before=")
    plain = client.get(link).get_data(as_text=True)  # no JavaScript: the whole page
    in_place = client.get(link, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" in plain and "<html" not in in_place
    rest = set(re.findall(r"Pat \d\d", visible(in_place)))
    assert len(rest) == 3 and not rest & shown and "Show more patients" not in in_place


def test_the_supporters_view_comes_twenty_entries_at_a_time(app, patient, supporter):
    written = {write_entry(app, patient, f"For Sue {n}.", readers=[supporter]) for n in range(23)}
    client = client_for(app, supporter)
    path = f"/supporting/{patient.id}"

    def listed(page: str) -> set:
        return {uuid.UUID(i) for i in re.findall(r'href="/entries/([0-9a-f-]{36})"', page)}

    first = client.get(path).get_data(as_text=True)
    assert len(listed(first)) == 20 and "Show earlier entries" in first
    link = next_page(first, path + "?before=")
    in_place = client.get(link, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in in_place and "Show earlier entries" not in in_place
    assert listed(first) | listed(in_place) == written and not listed(first) & listed(in_place)


# --- the request pipeline --------------------------------------------------------------------


def pending_work(app, patient: Persona) -> bool:
    with app.app_context(), Session(db.engine()) as session:
        return session.get(User, patient.id).pending_work


def test_waiting_work_is_flagged_when_queued_and_done_on_the_patients_next_request(app, patient):
    entry_id = write_entry(app, patient, "For my friend.")
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        me = session.get(User, patient.id)
        issued = support.invite(
            session=session, patient=me, name="Fay", entries=[session.get(Entry, entry_id)]
        )
        session.commit()
    friend = make_user(app, role="support", email="fay@example.org", name="Fay")
    with app.app_context(), Session(db.engine(), expire_on_commit=False) as session:
        found = session.get(User, friend.id)
        invitation = session.get(type(issued.invitation), issued.invitation.id)
        support.accept(session=session, invitation=invitation, supporter=found)
        session.commit()
    assert pending_work(app, patient)  # a grant waits for the patient's key
    assert client_for(app, friend).get(f"/entries/{entry_id}").status_code == 404
    client_for(app, patient).get("/account")  # any page of theirs (not the crisis page)
    assert not pending_work(app, patient)
    assert client_for(app, friend).get(f"/entries/{entry_id}").status_code == 200


def test_a_supporter_leaving_flags_the_re_encryption_for_the_patients_next_request(
    app, patient, supporter
):
    entry_id = write_entry(app, patient, "Shared then left.", readers=[supporter])
    with app.app_context(), Session(db.engine()) as session:
        version = session.get(Entry, entry_id).version
    as_supporter = client_for(app, supporter)
    left = post(as_supporter, f"/supporting/{patient.id}/leave", token_from="/home")
    assert left.status_code == 303
    assert pending_work(app, patient)
    client_for(app, patient).get("/journal")
    assert not pending_work(app, patient)
    with app.app_context(), Session(db.engine()) as session:
        assert session.get(Entry, entry_id).version == version + 1


def test_a_page_read_twice_in_a_day_is_one_event_and_actions_read_nothing(app, patient, therapist):
    entry_id = write_entry(app, patient, "Read me.", readers=[therapist])
    as_therapist = client_for(app, therapist)
    for _ in range(3):
        as_therapist.get(f"/patients/{patient.id}")
    post(
        as_therapist,
        f"/entries/{entry_id}/flag",
        {"flagged": "1"},
        token_from=f"/patients/{patient.id}",
        headers={"HX-Request": "true"},
    )
    with app.app_context(), Session(db.engine()) as session:
        actions = [
            e.action
            for e in session.exec(select(AuditEvent).where(AuditEvent.actor_id == therapist.id))
        ]
    assert sorted(actions) == ["flag", "read"]


# --- the shape of the code ---------------------------------------------------------------------

VIEWS = ROOT / "kapjournal" / "views"
VIEW_MODULES = {p.stem for p in VIEWS.glob("*.py") if p.stem != "__init__"}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            found.append((module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("module", sorted(VIEW_MODULES))
def test_no_view_imports_another_view(module):
    for source, names in imports_of(VIEWS / f"{module}.py"):
        target = source.lstrip(".")
        if source.startswith(".") and not source.startswith(".."):  # the views package
            assert target not in VIEW_MODULES, (module, source)
            if target == "":
                assert not set(names) & VIEW_MODULES, (module, names)
        assert not target.startswith("views."), (module, source)


@pytest.mark.parametrize("module", sorted(VIEW_MODULES))
def test_no_view_decrypts_or_writes_the_access_log(module):
    text = (VIEWS / f"{module}.py").read_text()
    for forbidden in ("audit.record", "journal.read(", "crypto.", "open_sealed", "unwrap_key"):
        assert forbidden not in text, (module, forbidden)


def test_no_module_outside_crypto_imports_cryptography():
    for path in (ROOT / "kapjournal").rglob("*.py"):
        if path.name == "crypto.py":
            continue
        assert "cryptography" not in {m.lstrip(".") for m, _ in imports_of(path)}, path
