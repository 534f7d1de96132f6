"""Spanish on the therapist's side (issue 16, slice "care"): the caseload and the patient page,
notes and the integration session with their form errors, practices on the patient's home
with their days named by Babel, leaving a care team, the invitation pages and the invitation
email (in the sender's language: the invitee has no account yet). Course labels are lazy: the
page says them in its language, the database keeps the English keys."""

from __future__ import annotations

import re
from datetime import timedelta

from conftest import Persona, client_for, make_user, post
from sqlmodel import select
from test_invitations import invite
from test_workspace import (
    annotate,
    annotated,
    database,
    record_practice,
    recorded_days_ago,
    text_of,
    write,
)

from kapjournal.models import Annotation, TreatmentSession, User, utcnow
from kapjournal.services import course

WEEKDAY = "(?:lunes|martes|miércoles|jueves|viernes|sábado|domingo)"


def speaks(app, persona: Persona, code: str = "es") -> None:
    """The persona chose `code` on their account (what the language menu stores)."""
    with database(app) as session:
        user = session.get(User, persona.id)
        user.locale = code
        session.add(user)
        session.commit()


def schedule(app, patient: Persona, therapist: Persona, kind: str, days: float) -> None:
    with database(app) as session:
        session.add(
            TreatmentSession(
                patient_id=patient.id,
                created_by_id=therapist.id,
                kind=kind,
                scheduled_at=utcnow() + timedelta(days=days),
            )
        )
        session.commit()


def test_the_caseload_and_the_patient_page_speak_spanish(app, therapist, patient):
    speaks(app, therapist)
    for _ in range(2):
        write(app, patient, "Some words.", share=[therapist])
    schedule(app, patient, therapist, "ketamine", 2)
    as_therapist = client_for(app, therapist)

    home = as_therapist.get("/home").get_data(as_text=True)
    assert '<html lang="es">' in home
    words = text_of(home)
    assert f"Hola, {therapist.name}" in words and "Su lista de pacientes" in words
    assert "Próxima sesión: Sesión de ketamina," in words
    assert (
        "2 entradas compartidas con usted hasta ahora (todavía no hay sesión de integración)"
        in (words)
    )
    assert "Vista para la sesión de integración" in words and "Invitar a un paciente" in words
    for english in ("Your caseload", "Next session", "shared with you", "Ketamine session"):
        assert english not in words

    page = text_of(as_therapist.get(f"/patients/{patient.id}"))
    assert f"Lo que {patient.name} compartió con usted, lo más reciente primero" in page
    assert "Programar una sesión" in page and "Leer y anotar" in page
    assert "Llevar a la próxima sesión" in page
    assert f"Quitar a {patient.name} de su lista de pacientes" in page
    assert "What " + patient.name not in page and "Schedule a session" not in page

    leave = text_of(as_therapist.get(f"/patients/{patient.id}/leave"))
    assert f"¿Quitar a {patient.name} de su lista de pacientes?" in leave
    assert "Seguir trabajando con esta persona" in leave


def test_notes_and_the_integration_session_in_spanish_with_their_form_errors(
    app, therapist, patient
):
    speaks(app, therapist)
    entry_id = write(app, patient, "The kitchen.\n\nLetting go.", share=[therapist])
    as_therapist = client_for(app, therapist)

    notes = text_of(as_therapist.get(f"/entries/{entry_id}/notes"))
    assert "Agregar una nota sobre este pasaje" in notes and "Quién podrá leerlo" in notes
    assert f"Compartida con {patient.name}" in notes
    empty = annotate(as_therapist, entry_id, 0, " ")
    assert empty.status_code == 422 and "Primero escriba la nota." in text_of(empty)
    too_long = annotate(as_therapist, entry_id, 0, "x" * 10_001)
    assert too_long.status_code == 422
    assert "Use como máximo 10.000 caracteres." in text_of(too_long)  # Spanish digit grouping
    annotated(as_therapist, entry_id, 1, "Ask about letting go.", flag=True)
    notes = text_of(as_therapist.get(f"/entries/{entry_id}/notes"))
    assert "Su nota" in notes and "Privada: solo el equipo de atención" in notes
    assert "Para la próxima sesión" in notes and "Marcar como resuelta" in notes

    view = f"/patients/{patient.id}/session"
    session_page = text_of(as_therapist.get(view))
    assert f"Sesión de integración con {patient.name}" in session_page
    assert "Temas para la sesión" in session_page and "0 de 1 conversados." in session_page
    assert "Una nota sobre" in session_page and "Marcar como conversado" in session_page
    assert "Agenda" not in session_page and "talked through" not in session_page

    refused = record_practice(as_therapist, patient, what="", how_often="Daily", why="")
    assert refused.status_code == 422
    assert "Escriba en qué consiste la práctica." in text_of(refused)
    assert "Write what the practice is." not in text_of(refused)

    wrong = post(
        as_therapist,
        f"/patients/{patient.id}/sessions",
        {"kind": "party", "scheduled_at": "not a date"},
        token_from=f"/patients/{patient.id}",
    )
    assert wrong.status_code == 422
    said = text_of(wrong)
    assert "Elija el tipo de sesión." in said and "Escriba una fecha y una hora." in said


def test_the_patient_reads_practices_and_notes_in_spanish_with_days_named_by_babel(
    app, therapist, patient
):
    speaks(app, patient)
    entry_id = write(app, patient, "I let go.", share=[therapist])
    as_therapist = client_for(app, therapist)  # the therapist stays in English
    annotated(as_therapist, entry_id, 0, "Let us start here.", visibility="shared")
    made = record_practice(as_therapist, patient, what="Ten minutes outside", how_often="Daily")
    assert made.status_code == 303
    recorded_days_ago(app, 3)  # so that the days before today can be ticked too

    as_patient = client_for(app, patient)
    home = as_patient.get("/journal").get_data(as_text=True)
    words = text_of(home)
    assert "Sus prácticas" in words and "Hoy lo hice" in words and "Otro día" in words
    assert "Con qué frecuencia: Daily" in words
    assert "Your practices" not in words and "I did this today" not in words
    days = re.findall(r'<option value="\d{4}-\d\d-\d\d">([^<]*)</option>', home)
    assert days and all(re.fullmatch(rf"{WEEKDAY} \d{{1,2}} de \w+", d) for d in days), days

    entry = text_of(as_patient.get(f"/entries/{entry_id}"))
    assert f"Nota de {therapist.name}" in entry
    assert "Respuesta (puede responder una sola vez)" in entry
    with database(app) as session:
        note_id = session.exec(select(Annotation.id)).one()
    empty = post(as_patient, f"/notes/{note_id}/reply", {"reply": " "}, token_from="/journal")
    assert empty.status_code == 422 and "Primero escriba su respuesta." in text_of(empty)

    # The therapist chose nothing: the same pages are English for them.
    page = text_of(as_therapist.get(f"/patients/{patient.id}"))
    assert "How it went:" in page and "Cómo le fue" not in page


def test_session_labels_are_lazy_and_the_database_keeps_the_english_keys(app, therapist, patient):
    speaks(app, therapist)
    as_therapist = client_for(app, therapist)
    made = post(
        as_therapist,
        f"/patients/{patient.id}/sessions",
        {"kind": "integration", "scheduled_at": "2030-01-15T10:00"},
        token_from=f"/patients/{patient.id}",
    )
    assert made.status_code == 303
    with database(app) as session:
        assert session.exec(select(TreatmentSession.kind)).one() == "integration"
    assert "Sesión de integración" in text_of(as_therapist.get(f"/patients/{patient.id}"))
    with app.test_request_context("/", headers={"Accept-Language": "es"}):
        assert str(course.KIND_LABELS["integration"]) == "Sesión de integración"
        assert str(course.STATUS_LABELS["cancelled"]) == "cancelada"
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert str(course.KIND_LABELS["integration"]) == "Integration session"


def test_the_invitation_pages_and_email_are_in_the_senders_language(mail_app):
    app, handler = mail_app, mail_app.mailbox
    spanish = make_user(app, role="therapist", email="es@example.org", name="Dra. Ana Ruiz")
    english = make_user(app, role="therapist", email="en@example.org", name="Dr. Mail Sender")
    speaks(app, spanish)
    days = app.config["INVITATION_DAYS"]

    as_spanish = client_for(app, spanish)
    form = text_of(as_spanish.get("/invitations"))
    assert "Invitaciones pendientes" in form and "Ninguna." in form
    assert f"vence después de {days} días" in form
    page, link, _ = invite(as_spanish, email="invitee@example.net", label="Robin")
    words = text_of(page)
    assert "Invitación lista para Robin" in words
    assert "El enlace se envió por correo electrónico a su paciente." in words
    assert handler.arrived.wait(5)
    [(_, message)] = handler.messages
    body = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    assert message["Subject"] == "Dra. Ana Ruiz le invita a su diario de terapia"
    assert body.startswith("Hola:\n\nDra. Ana Ruiz le invitó a llevar su diario de terapia en ")
    assert f"vence en {days} días):\n\n{link}\n\n" in body
    assert "Si no esperaba este mensaje, puede ignorarlo." in body
    assert "Hello" not in body

    handler.messages.clear()
    handler.arrived.clear()
    as_english = client_for(app, english)
    invite(as_english, email="other@example.net")
    assert handler.arrived.wait(5)
    [(_, message)] = handler.messages
    body = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    assert message["Subject"] == "Dr. Mail Sender invites you to your therapy journal"
    assert body.startswith("Hello,\n\nDr. Mail Sender has invited you to keep your therapy")
    assert f"(it works once and expires in {days} days):" in body
