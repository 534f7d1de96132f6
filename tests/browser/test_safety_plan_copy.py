"""A copy of the safety plan on the phone, in a real Chromium at phone size: the patient keeps
one from their plan's page; IndexedDB holds only ciphertext; "Need help now?" shows it with the
network off; an edited plan refreshes the copy; removing it removes it from /help. Another
person logged in on the same phone never sees it, and logging out asks whether to keep it."""

from __future__ import annotations

import re

from conftest import make_user

from .conftest import PHONE
from .test_journal_journey import ENTRY_URL, patient_and_therapist
from .test_offline import DEVICE_STORAGE, READ_QUEUE, queue_an_unsent_entry, ready_for_offline
from .test_registration import heading, log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the conftest skips these tests
    expect = None

SAVED = "Saved on this phone — it opens from “Need help now?” even without a signal."
PLAN = {
    "1. My warning signs": "Pacing the hallway at 2 am, skipping lunch.",
    "2. Things I can do on my own": "Cold water on my face; the heron walk by the canal.",
    "3. People and places that distract me": "The library on Elm Street.",
    "4. People I can ask for help": "My brother Rafe, 555 0199.",
    "5. Professionals and crisis lines": "Dr. Tess Ward, 555 0123; 988 any time.",
    "6. Making my surroundings safe": "Ask Rafe to keep the spare car keys.",
}
COPY_HEADING = re.compile(r"^Your safety plan \(copy on this phone, saved .+\)$")

# The plan copies plan.js keeps: the "meta" store's records under "plan:<owner>", with their
# binary parts as base64.
READ_PLAN_COPIES = """async () => {
  const db = await new Promise((ok, no) => {
    const r = indexedDB.open("kapjournal");
    r.onsuccess = () => ok(r.result);
    r.onerror = () => no(r.error);
  });
  if (!db.objectStoreNames.contains("meta")) return (db.close(), {});
  const store = db.transaction("meta").objectStore("meta");
  const get = (r) => new Promise((ok) => { r.onsuccess = () => ok(r.result); });
  const [keys, values] = await Promise.all([get(store.getAllKeys()), get(store.getAll())]);
  const b64 = (v) =>
    btoa(String.fromCharCode(...new Uint8Array(ArrayBuffer.isView(v) ? v.buffer : v)));
  const out = {};
  keys.forEach((k, i) => String(k).startsWith("plan:") &&
    (out[k] = { ...values[i], iv: b64(values[i].iv), data: b64(values[i].data) }));
  db.close();
  return out;
}"""


def write_safety_plan(page, plan: dict[str, str]) -> None:
    """Through the real form, once logged in; ends on the plan's page."""
    expect(heading(page)).to_have_text("Your journal")
    page.goto("/entries/new?kind=safety_plan")
    expect(heading(page)).to_have_text("My safety plan")
    for label, text in plan.items():
        page.get_by_label(label).fill(text)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(ENTRY_URL)
    expect(heading(page)).to_have_text("Safety plan")


def copy_box(page):
    return page.locator("[data-plan-copy]")


def keep_a_copy(page) -> None:
    """On the plan's page: keep a copy on this phone."""
    box = copy_box(page)
    box.get_by_role("button", name="Keep a copy on this phone").click()
    expect(box.locator("[data-plan-status]")).to_have_text(SAVED)
    expect(box.get_by_role("button", name="Remove the copy from this phone")).to_be_focused()
    expect(box.get_by_role("button", name="Keep a copy on this phone")).to_be_hidden()


def open_help(page):
    """The "Need help now?" link in the header (a full page load: offline, the cached page);
    the plan copy on it."""
    page.get_by_role("banner").get_by_role("link", name="Need help now?").click()
    expect(heading(page)).to_have_text("Need help now?")
    return page.locator("[data-plan-offline]")


def expect_the_copy(help_box, plan: dict[str, str]) -> None:
    expect(help_box).to_be_visible()
    expect(help_box.get_by_role("heading", level=3)).to_have_text(COPY_HEADING)
    for label, text in plan.items():
        expect(help_box.get_by_role("heading", name=label, exact=True)).to_be_visible()
        expect(help_box.get_by_text(text, exact=True)).to_be_visible()


def expect_no_copy(page, help_box, plan: dict[str, str]) -> None:
    page.wait_for_timeout(300)  # plan.js has had its chance
    expect(help_box).to_be_hidden()
    for text in plan.values():
        assert text not in page.content()


def assert_only_ciphertext(page, plan: dict[str, str]) -> None:
    stored = str(page.evaluate(DEVICE_STORAGE)["idb"])
    for text in plan.values():
        for word in text.split():
            if len(word) > 4:
                assert word not in stored, word


def test_a_kept_plan_opens_from_help_offline_follows_edits_and_can_be_removed(live_app, phone):
    patient, _ = patient_and_therapist(live_app)
    page = phone.new_page()
    log_in(page, patient.email)
    write_safety_plan(page, PLAN)
    page.reload()  # the plan's page on a full load, not only an htmx swap
    box = copy_box(page)
    expect(box).to_be_visible()
    expect(box.get_by_role("button", name="Remove the copy from this phone")).to_be_hidden()
    keep_a_copy(page)

    copies = page.evaluate(READ_PLAN_COPIES)
    assert list(copies) == [f"plan:{patient.id}"]
    assert copies[f"plan:{patient.id}"]["owner"] == str(patient.id)
    assert_only_ciphertext(page, PLAN)
    # Not a draft: nothing waits to be sent, and logging out does not count it as a draft.
    stored = page.evaluate(READ_QUEUE)
    assert stored["queue"] == [] and stored["drafts"] == []
    assert stored["keys"] == 1  # the drafts' key, not a second one

    ready_for_offline(page)
    page.context.set_offline(True)
    expect_the_copy(open_help(page), PLAN)
    page.context.set_offline(False)

    # The plan is edited: its page refreshes the copy, and says so.
    page.goto("/safety-plan")
    page.get_by_role("link", name="Edit").click()
    edited = {**PLAN, "4. People I can ask for help": "My brother Rafe, 555 0199; Mo next door."}
    page.get_by_label("4. People I can ask for help").fill(edited["4. People I can ask for help"])
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(ENTRY_URL)
    expect(copy_box(page).locator("[data-plan-status]")).to_have_text(
        "Your plan has changed, so the copy on this phone was updated."
    )
    assert_only_ciphertext(page, edited)
    page.context.set_offline(True)
    expect_the_copy(open_help(page), edited)
    page.context.set_offline(False)

    page.goto("/safety-plan")
    box = copy_box(page)
    expect(box.locator("[data-plan-status]")).to_have_text("A copy is saved on this phone.")
    box.get_by_role("button", name="Remove the copy from this phone").click()
    expect(box.locator("[data-plan-status]")).to_have_text("The copy was removed from this phone.")
    expect(box.get_by_role("button", name="Keep a copy on this phone")).to_be_focused()
    assert page.evaluate(READ_PLAN_COPIES) == {}
    expect_no_copy(page, open_help(page), edited)


def test_another_person_on_the_same_phone_never_sees_the_copy(live_app, phone):
    patient, therapist = patient_and_therapist(live_app)
    other = make_user(
        live_app, role="patient", email="bea@example.org", name="Bea", invited_by=therapist
    )
    page = phone.new_page()
    log_in(page, patient.email)
    write_safety_plan(page, PLAN)
    keep_a_copy(page)
    ready_for_offline(page)
    nav(page).get_by_role("button", name="Log out").click()
    page.get_by_role("dialog").get_by_role("button", name="Log out and keep it").click()
    expect(heading(page)).to_have_text("Log in")
    # Nobody is logged in: "Need help now?" shows the last person's copy, also offline.
    expect_the_copy(open_help(page), PLAN)
    page.context.set_offline(True)
    expect_the_copy(open_help(page), PLAN)
    page.context.set_offline(False)

    log_in(page, other.email)
    expect(heading(page)).to_have_text("Your journal")
    expect_no_copy(page, open_help(page), PLAN)
    page.context.set_offline(True)  # the cached page, with no login on it
    expect_no_copy(page, open_help(page), PLAN)
    page.context.set_offline(False)
    # Bea logs out without a question; the other person's copy stays theirs.
    page.goto("/journal")
    with page.expect_response(lambda r: r.url.endswith("/logout")) as logout:
        nav(page).get_by_role("button", name="Log out").click()
    assert logout.value.all_headers()["clear-site-data"] == '"cache"'
    expect(heading(page)).to_have_text("Log in")
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    expect_the_copy(open_help(page), PLAN)


def test_logout_asks_whether_to_keep_the_copy(live_app, gateway, phone):
    patient, _ = patient_and_therapist(live_app)
    page = phone.new_page()
    log_in(page, patient.email)
    write_safety_plan(page, PLAN)
    keep_a_copy(page)

    nav(page).get_by_role("button", name="Log out").click()
    dialog = page.get_by_role("dialog", name="Keep the copy of your safety plan on this phone?")
    expect(dialog).to_contain_text("for anyone who has this phone")
    here = heading(page).inner_text()  # where Log out is: the plan, or More on a phone
    expect(dialog.get_by_role("button", name="Send them first")).to_be_hidden()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(heading(page)).to_have_text(here)
    nav(page).get_by_role("button", name="Log out").click()
    with page.expect_response(lambda r: r.url.endswith("/logout")) as logout:
        dialog.get_by_role("button", name="Remove it and log out").click()
    assert logout.value.all_headers()["clear-site-data"] == '"cache", "storage"'
    expect(heading(page)).to_have_text("Log in")
    expect_no_copy(page, open_help(page), PLAN)

    # With an entry not sent yet too: the copy is its own choice, kept unless unticked.
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    page.goto("/safety-plan")
    keep_a_copy(page)
    page.goto("/journal")
    queue_an_unsent_entry(page, gateway, "Lantern moss at dusk")
    nav(page).get_by_role("button", name="Log out").click()
    dialog = page.get_by_role("dialog", name="You have 1 unsent entry on this phone")
    keep = dialog.get_by_label("Also keep the copy of my safety plan on this phone")
    expect(keep).to_be_checked()
    with page.expect_response(lambda r: r.url.endswith("/logout")) as logout:
        dialog.get_by_role("button", name="Discard them").click()
    assert logout.value.all_headers()["clear-site-data"] == '"cache"'
    expect(heading(page)).to_have_text("Log in")
    assert page.evaluate(READ_QUEUE)["queue"] == []
    assert list(page.evaluate(READ_PLAN_COPIES)) == [f"plan:{patient.id}"]
    expect_the_copy(open_help(page), PLAN)

    # Unticked, the copy goes; the entry stays.
    log_in(page, patient.email)
    expect(heading(page)).to_have_text("Your journal")
    queue_an_unsent_entry(page, gateway, "Heron at the weir")
    nav(page).get_by_role("button", name="Log out").click()
    dialog = page.get_by_role("dialog", name="You have 1 unsent entry on this phone")
    dialog.get_by_label("Also keep the copy of my safety plan on this phone").uncheck()
    with page.expect_response(lambda r: r.url.endswith("/logout")) as logout:
        dialog.get_by_role("button", name="Log out and keep them").click()
    assert logout.value.all_headers()["clear-site-data"] == '"cache"'
    assert page.evaluate(READ_PLAN_COPIES) == {}
    assert len(page.evaluate(READ_QUEUE)["queue"]) == 1
    expect_no_copy(page, open_help(page), PLAN)


def test_the_copy_offer_is_only_on_the_authors_plan(live_app, new_context):
    patient, therapist = patient_and_therapist(live_app)
    page = new_context(**PHONE).new_page()
    log_in(page, patient.email)
    write_safety_plan(page, PLAN)
    plan_url = page.url
    colleague = new_context(**PHONE).new_page()
    log_in(colleague, therapist.email)
    expect(heading(colleague)).to_have_text(f"Hello, {therapist.name}")
    colleague.goto(plan_url)
    expect(colleague.get_by_text(PLAN["1. My warning signs"])).to_be_visible()
    expect(colleague.locator("[data-plan-copy]")).to_have_count(0)
