"""Spanish, the support slice (issue 16): the patient's "My supporters" pages and the
invitation, the supporter's pages, the session day ("I'm home"), capture after a session and
intentions over time speak the reader's language; form errors too; the invitation email goes
out in the sender's language; reminders by push in the recipient's own (the language stored on
their account, English when they chose none), whoever sends them (cron has no request)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_user, post
from test_journal import form_on, submit, text_of
from test_journal_security import client_for, database_session
from test_push import PRIVATE_KEY, PUBLIC_KEY, SUBJECT, PushService, schedule, subscribe
from test_support import invite, write_card

from kapjournal import i18n
from kapjournal.models import TreatmentSession, User
from kapjournal.services import reminders, session_day

SPANISH = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}


def speaks(app, persona, code: str | None) -> None:
    """The language kept on the account, as the language form keeps it."""
    with database_session(app) as dbs:
        user = dbs.get(User, persona.id)
        user.locale = code
        dbs.add(user)
        dbs.commit()


def page(client, path: str, **kw) -> str:
    response = client.get(path, **kw)
    assert response.status_code == 200, path
    return text_of(response)


# --- the patient's supporters, the invitation, the supporter's view -----------------------------


def test_my_supporters_and_a_new_invitation_in_spanish_with_errors_and_plurals(app, patient):
    speaks(app, patient, "es")
    client = client_for(app, patient)
    card = write_card(client)
    shown = page(client, "/supporters")
    assert '<html lang="es">' in shown
    for words in (
        "Mis personas de apoyo",
        "Su tarjeta de apoyo",
        "Invitar a alguien",
        "vence en 7 días",  # a plural, from the clinic's setting
        "Crear enlace de invitación",
    ):
        assert words in shown, words
    assert "Invite someone" not in shown and "Your support card" not in shown
    # A refused form says why in Spanish.
    form = form_on(client.get("/supporters"), "/supporters/invite")
    refused = submit(client, form, name="  ")
    assert refused.status_code == 422
    assert "Escriba el nombre de la persona" in text_of(refused)
    assert "Enter their name" not in text_of(refused)
    # The link page, then the waiting invitation with its chosen entry (singular).
    created, _ = invite(client, "Kim", entries=[])
    assert "Invitación lista para Kim" in created
    assert "Código QR del enlace de invitación" in created
    invite(client, "Lu", entries=[card])
    waiting = page(client, "/supporters")
    assert "Invitaciones aún sin usar" in waiting
    assert "1 entrada elegida" in waiting and "0 entradas elegidas" in waiting


def test_the_invitation_page_speaks_the_visitors_language_and_english_is_unchanged(app, as_patient):
    _, token = invite(as_patient, "Kim")
    visitor = app.test_client()
    spanish = page(visitor, f"/invite/support/{token}", headers=SPANISH)
    assert "Pat Quinn le envió una invitación" in spanish
    assert "Cree su cuenta" in spanish and "El nombre con el que Pat Quinn le conoce." in spanish
    assert "invited you" not in spanish
    english = page(app.test_client(), f"/invite/support/{token}")
    assert "Pat Quinn invited you" in english and "The name Pat Quinn knows you by." in english
    used = app.test_client().get("/invite/support/not-a-token", headers=SPANISH)
    assert used.status_code == 404 and "Este enlace de invitación no funciona" in text_of(used)


def test_the_supporter_reads_their_pages_in_their_language(app, patient, supporter):
    speaks(app, supporter, "es")
    as_patient = client_for(app, patient)
    card = write_card(as_patient)
    path = f"/supporters/{supporter.id}"
    share = form_on(as_patient.get(path), f"{path}/share")
    assert submit(as_patient, share, entry_id=[str(card)]).status_code == 303
    as_patient.get("/journal")  # the patient's next request wraps the waiting key
    as_sue = client_for(app, supporter)
    shown = page(as_sue, f"/supporting/{patient.id}")
    for words in (
        "Apoyando a Pat Quinn",
        "Cómo apoyar a Pat Quinn",
        "Lo que Pat Quinn compartió con usted",
        "Dejar de apoyar a Pat Quinn",
        "¿Dejar de apoyar a Pat Quinn? Ya no podrá leer lo que le compartió.",
    ):
        assert words in shown, words
    assert "Supporting Pat Quinn" not in shown and "How to support" not in shown
    # The patient, in English, sees the same consent page in English.
    english = page(as_patient, path)
    assert "What Sue Porter can read" in english and "Stop all sharing" in english


def test_the_invitation_email_is_in_the_senders_language(mail_app):
    app, handler = mail_app, mail_app.mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    patient = make_user(
        app, role="patient", email="p@example.org", name="Pat", invited_by=therapist
    )
    speaks(app, patient, "es")
    client = client_for(app, patient)
    shown, token = invite(client, "Kim", email="kim@example.net")
    assert "El enlace se envió por correo electrónico." in shown
    assert handler.arrived.wait(5)
    [(_, message)] = handler.messages
    body = message.get_content().replace("\r\n", "\n")
    assert message["subject"] == "Pat le invita a ser parte de su red de apoyo"
    assert body.startswith("Hola:\n\nPat quiere que usted forme parte de su red de apoyo")
    assert "vence en 7 días" in body and f"/invite/support/{token}" in body
    assert "Hello" not in body


# --- the session day ----------------------------------------------------------------------------


def test_the_session_day_in_spanish_for_the_patient_and_the_supporter(app, patient, supporter):
    speaks(app, patient, "es")
    speaks(app, supporter, "es")
    start = datetime.now(UTC) + timedelta(hours=2)
    session_id = schedule(app, patient, "ketamine", start)
    as_patient = client_for(app, patient)
    home = page(as_patient, "/home")
    for words in (
        "Preparándose para su sesión",
        "Llegue 15 minutos antes.",  # a default instruction of the clinic's
        "No manejar hasta mañana",  # one of the list's own items
        "¿Quién le lleva a casa?",
        "Al nombrar a alguien, usted da su consentimiento",
    ):
        assert words in home, words
    assert "Arrive 15 minutes early." not in home
    saved = post(
        as_patient,
        f"/sessions/{session_id}/checklist",
        {"tick": ["ride"], "ride_id": str(supporter.id)},
        token_from="/account",
        headers={"HX-Request": "true"},
    )
    assert saved.status_code == 200 and "Guardado" in text_of(saved)
    as_sue = client_for(app, supporter)
    sue = page(as_sue, "/home")
    assert "Día de sesión de Pat Quinn" in sue and "llevarle a casa después" in sue
    assert "Pat Quinn todavía no marcó “Ya llegué a casa”." in sue
    # After the start: "I'm home" in Spanish, and Sue sees it in Spanish.
    with database_session(app) as dbs:
        found = dbs.get(TreatmentSession, session_id)
        found.scheduled_at = datetime.now(UTC) - timedelta(hours=3)
        dbs.add(found)
        dbs.commit()
    after = page(as_patient, "/home")
    assert "Ya llegué a casa" in after and "avise a Sue Porter con un toque" in after
    tapped = post(as_patient, f"/sessions/{session_id}/home", {}, headers={"HX-Request": "true"})
    assert tapped.status_code == 200 and "Ya está en casa" in text_of(tapped)
    assert "Pat Quinn ya está en casa" in page(as_sue, "/home")


# --- capture after a session, intentions over time ----------------------------------------------


def test_capture_in_spanish_its_error_and_a_stored_feeling_shown_by_its_label(app, patient):
    speaks(app, patient, "es")
    client = client_for(app, patient)
    shown = page(client, "/capture")
    assert "Después de su sesión" in shown and "En calma" in shown and "Con náuseas" in shown
    assert "Calm" not in shown and "Record or choose a sound file" not in shown
    data = {"client_id": str(uuid.uuid4()), "text": ""}
    empty = post(client, "/capture", data, token_from="/capture")
    assert empty.status_code == 422
    assert "Toque cómo se siente, diga algo o escriba unas palabras." in text_of(empty)
    kept = post(client, "/capture", {**data, "feeling": "nauseous"}, token_from="/capture")
    assert kept.status_code == 303
    entry = page(client, kept.headers["Location"])
    assert '<span class="badge">Con náuseas</span>' in entry
    speaks(app, patient, None)  # English again: the same stored value, its English label
    english = client_for(app, patient)
    assert '<span class="badge">Nauseous</span>' in page(english, kept.headers["Location"])


def test_intentions_over_time_in_spanish(app, patient):
    speaks(app, patient, "es")
    shown = page(client_for(app, patient), "/journal/intentions")
    assert "Sus intenciones a lo largo del tiempo" in shown
    assert "Todavía no hay intenciones ni reflexiones." in shown
    assert "Your intentions over time" not in shown


# --- reminders by push, in the recipient's language ---------------------------------------------


@pytest.fixture
def push_app(make_app):
    return make_app(
        VAPID_PRIVATE_KEY=PRIVATE_KEY,
        VAPID_PUBLIC_KEY=PUBLIC_KEY,
        VAPID_SUBJECT=SUBJECT,
        PUSH_TEST_LOCAL_SERVICE=True,
    )


def test_a_reminder_is_sent_in_each_recipients_stored_language(push_app):
    app = push_app
    therapist = make_user(app, role="therapist", email="t@example.org", name="Tia")
    people = {
        code: make_user(
            app, role="patient", email=f"{code}@example.org", name=code, invited_by=therapist
        )
        for code in ("es", "en")
    }
    speaks(app, people["es"], "es")  # the English patient chose nothing: English
    service = PushService()
    try:
        devices = {}
        for code, persona in people.items():
            devices[code] = service.device()
            # Each subscribes from a browser set to the other language: it does not count.
            client = client_for(app, persona)
            client.set_cookie(i18n.COOKIE, "en" if code == "es" else "es")
            assert subscribe(client, devices[code]).status_code == 201
            schedule(app, persona, "ketamine", datetime.now(UTC) + timedelta(hours=23))
        with database_session(app) as dbs:
            report = reminders.send_due(session=dbs)  # as cron: no request, no Accept-Language
        assert (report.sent, report.failed) == (2, 0)
        got = {}
        for received in service.received:
            for code, device in devices.items():
                if received["path"] == "/" + device.endpoint.split("/", 3)[3]:
                    got[code] = device.decrypt(received["body"])
    finally:
        service.close()
    assert got["es"]["title"] == "Su sesión se acerca"
    assert got["es"]["body"] == "Quizá quiera volver a leer su intención antes."
    assert got["en"]["title"] == "Your session is coming up"


def test_a_supporters_session_day_reminder_is_in_the_supporters_language(app):
    ts = TreatmentSession(id=uuid.uuid4(), scheduled_at=datetime.now(UTC), kind="ketamine")
    at = datetime.now(UTC)
    reminder = session_day.SupporterReminder(session_day.EVENING, ts, at, at)
    with app.app_context():  # no request: what cron has
        spanish = session_day.message_for(reminder, locale="es")
        english = session_day.message_for(reminder)
    assert spanish["title"] == "Un recordatorio para mañana"
    assert "Alguien a quien usted apoya" in spanish["body"] and "kapjournal" in spanish["body"]
    assert english["title"] == "A reminder for tomorrow"


def test_every_message_of_this_slice_is_in_the_catalogue_with_its_plural_forms():
    from babel.messages.pofile import read_po

    with (i18n.TRANSLATIONS / "es/LC_MESSAGES/messages.po").open("rb") as source:
        catalogue = read_po(source)
    plurals = [m for m in catalogue if m.id and isinstance(m.id, tuple)]
    assert plurals  # this slice brings plurals: each with its three Spanish forms, none empty
    assert all(len(m.string) == 3 and all(m.string) for m in plurals)
    assert not [m.id for m in catalogue if m.id and m.fuzzy]
    assert [(m.id, errors) for m, errors in catalogue.check()] == []
