"""Spanish for the accounts slice (issue 16): registering, logging in, two-step login, the
recovery code, the welcome, the account page and the error pages speak the page's language;
form errors and rate limits too; the joining emails go out in the recipient's language (a new
account keeps the language it registered in); a 404 says the same whatever was asked for, in
Spanish as in English; outside a request (the operators' command line) messages stay English."""

from __future__ import annotations

import re
import uuid

import pytest
from conftest import PASSWORD, fresh_totp_code, login, make_user, post, write_entry
from sqlmodel import Session
from test_push import PRIVATE_KEY, PUBLIC_KEY, SUBJECT, push_service, subscribe  # noqa: F401
from test_trust_accounts import (
    NEW,
    body_of,
    comparable,
    messages_to,
    patient_link,
    register,
    try_login,
    user_by_email,
)

from kapjournal import db
from kapjournal.models import User
from kapjournal.services import accounts

SPANISH = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}
FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
_CSRF = re.compile(r'name="csrf_token" value="[^"]*"')


def page(client, path: str, status: int = 200, **kw) -> str:
    response = client.get(path, **kw)
    assert response.status_code == status, path
    return response.get_data(as_text=True)


def spanish_client(app, persona=None):
    """A client whose browser asks for Spanish (every request carries the header)."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = SPANISH["Accept-Language"]
    client.environ_base["HTTP_USER_AGENT"] = FIREFOX_ON_LINUX
    if persona is not None:
        login(client, persona)
    return client


def set_locale(app, persona, locale: str | None) -> None:
    with app.app_context(), Session(db.engine()) as session:
        user = session.get(User, persona.id)
        user.locale = locale
        session.add(user)
        session.commit()


# --- pages ---------------------------------------------------------------------------------------


def test_the_account_and_two_step_pages_speak_spanish(app, patient, therapist):
    client = spanish_client(app, patient)
    account = page(client, "/account")
    assert '<html lang="es">' in account
    for words in ("Su cuenta", "Cambie su contraseña", "Verificación en dos pasos", "desactivada"):
        assert words in account, words
    assert "Dónde tiene la sesión iniciada" in account and "este dispositivo" in account
    assert "Firefox en Linux" in account  # the stored label ("Firefox on Linux"), in words
    # The device's time, by Babel, in UTC as the line says: "2 dic 2026, 03:14 UTC".
    assert re.search(r"Sesión iniciada el \d{1,2} \w+\.? \d{4}, \d\d:\d\d UTC", account)
    for english in ("Your account", "Where you are logged in", "Logged in ", "this device"):
        assert english not in account, english
    two_step = page(client, "/mfa")
    assert "La verificación en dos pasos está desactivada." in two_step
    assert "Two-step login is off" not in two_step
    setup = page(client, "/mfa/setup")
    assert 'alt="Código QR para la verificación en dos pasos"' in setup
    password = page(client, "/account/password")
    assert "Contraseña actual" in password and "Current password" not in password

    doctor = spanish_client(app, therapist)
    codes = page(doctor, "/mfa")
    assert "Le quedan 10 códigos de respaldo sin usar." in codes
    assert "unused backup" not in codes


def test_the_welcome_pages_speak_spanish_for_each_role(app, patient, therapist, supporter):
    client = spanish_client(app, patient)
    welcome = page(client, "/welcome")
    assert f"Le damos la bienvenida, {patient.name}" in welcome
    assert "Está cifrado" in welcome and "pasos opcionales para prepararse" in welcome
    assert "It is encrypted" not in welcome and "Welcome," not in welcome
    step = page(client, "/welcome/safety-plan")
    assert "Paso 1 de" in step and "Escribir mi plan de seguridad" in step
    assert "Saltar este paso" in step and "Step 1 of" not in step
    screen = page(client, "/welcome/home-screen")
    assert "Agregar a la pantalla de inicio" in screen and "al paso 1" in screen
    assert "Add to home screen" not in screen

    doctor = page(spanish_client(app, therapist), "/welcome")
    assert "Sus pacientes eligen lo que usted lee" in doctor
    assert "Patients choose what you read" not in doctor
    helper = page(spanish_client(app, supporter), "/welcome")
    assert f"Gracias por acompañar a {patient.name}" in helper
    assert f"Ver lo que {patient.name} comparte con usted" in helper
    assert "Thank you for being there" not in helper


def test_the_english_pages_are_unchanged(app, patient):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = ENGLISH["Accept-Language"]
    login(client, patient)
    account = page(client, "/account")
    assert "Where you are logged in" in account and "this device" in account
    assert "<p>A browser <span" in account  # the test client's User-Agent names no browser
    assert re.search(r"Logged in \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC · last active", account)
    assert "Welcome, " + patient.name in page(client, "/welcome")


def test_the_reminders_on_the_account_page_speak_spanish(make_app, push_service):  # noqa: F811
    app = make_app(
        VAPID_PRIVATE_KEY=PRIVATE_KEY,
        VAPID_PUBLIC_KEY=PUBLIC_KEY,
        VAPID_SUBJECT=SUBJECT,
        PUSH_TEST_LOCAL_SERVICE=True,
    )
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    pat = make_user(app, role="patient", email="p@example.org", name="Pia", invited_by=therapist)
    client = spanish_client(app, pat)
    off = page(client, "/account")
    assert "Recordatorios amables en este teléfono" in off
    assert "Los recordatorios están desactivados." in off and "Reminders are off" not in off
    assert subscribe(client, push_service.device()).status_code == 201
    on = page(client, "/account")
    assert "Los recordatorios están activados en 1 dispositivo." in on
    assert "Dispositivos que reciben recordatorios" in on
    assert re.search(r"· desde el \d{1,2} ", on) and "Reminders are on" not in on


# --- form errors, rate limits, expired forms -----------------------------------------------------


def test_password_rules_and_a_wrong_login_code_are_told_in_spanish(app, therapist):
    token = patient_link(app, therapist)
    client = spanish_client(app)
    short = register(client, f"/invite/{token}", email="new@example.org", password="short")
    assert short.status_code == 422
    text = short.get_data(as_text=True)
    assert "Use al menos 12 caracteres." in text and "Use at least" not in text
    assert "Cree su cuenta" in text and "Create your account" not in text
    differ = register(client, f"/invite/{token}", email="new@example.org", password2="x" * 20)
    assert "Las dos contraseñas no son iguales." in differ.get_data(as_text=True)

    doctor = spanish_client(app)
    step = try_login(doctor, therapist.email).headers["Location"]
    assert step.startswith("/mfa/verify")
    assert "Ahora escriba el código" in page(doctor, step)
    wrong = post(doctor, step, {"code": "000000"}, token_from=step)
    assert wrong.status_code == 422
    assert "Ese código no funcionó." in wrong.get_data(as_text=True)
    right = post(doctor, step, {"code": fresh_totp_code(app, therapist)}, token_from=step)
    assert right.status_code == 303


def test_too_many_attempts_and_an_expired_form_are_told_in_spanish(make_app):
    app = make_app(LOGIN_LIMITS="2 per minute")
    user = make_user(app, role="patient", email="limited@example.org", name="Lim Ited")
    client = spanish_client(app)
    for _ in range(2):
        assert try_login(client, user.email, "wrong password, long enough").status_code == 422
    limited = try_login(client, user.email, PASSWORD)
    assert limited.status_code == 429
    text = limited.get_data(as_text=True)
    assert "Demasiados intentos" in text and "Too many attempts" not in text
    expired = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert expired.status_code == 400
    assert "Este formulario había vencido." in expired.get_data(as_text=True)


# --- a 404 is the same page whatever was asked for -----------------------------------------------


def test_a_spanish_404_does_not_tell_missing_from_not_shared(app, patient, stranger_patient):
    theirs = write_entry(app, stranger_patient, "Not for you")
    client = spanish_client(app, patient)
    answers = [
        client.get(path)
        for path in (f"/entries/{theirs}", f"/entries/{uuid.uuid4()}", "/no/such/page")
    ]
    assert {a.status_code for a in answers} == {404}
    pages = {_CSRF.sub("", a.get_data(as_text=True)) for a in answers}
    assert len(pages) == 1
    [text] = pages
    assert "Página no encontrada" in text and "Aquí no hay nada para usted." in text
    assert "Page not found" not in text and "Not for you" not in text


# --- emails in the recipient's language ----------------------------------------------------------


def test_a_new_account_keeps_the_language_it_registered_in_and_gets_its_email_in_it(
    mail_app,
    mailbox,
):
    app, (handler, _) = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    answer = register(
        spanish_client(app), f"/invite/{patient_link(app, therapist)}", email="rosa@example.org"
    )
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    assert "Revise su correo electrónico" in text and "Check your email" not in text
    [message] = messages_to(handler, "rosa@example.org")
    assert message["Subject"] == "Termine de unirse a kapjournal"
    body = body_of(message)
    assert body.startswith("Hola:") and "http://localhost/confirm/" in body
    assert "To finish joining" not in body
    assert user_by_email(app, "rosa@example.org").locale == "es"

    english = app.test_client()
    english.environ_base["HTTP_ACCEPT_LANGUAGE"] = ENGLISH["Accept-Language"]
    register(english, f"/invite/{patient_link(app, therapist)}", email="ann@example.org")
    [message] = messages_to(handler, "ann@example.org")
    assert message["Subject"] == "Finish joining kapjournal"
    assert body_of(message).startswith("Hello,")
    assert user_by_email(app, "ann@example.org").locale == "en"


def test_an_existing_account_is_told_in_its_own_language_not_the_visitors(
    mail_app,
    mailbox,
):
    app, (handler, _) = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    rosa = make_user(app, role="patient", email="rosa@example.org", name="Rosa")
    set_locale(app, rosa, "es")
    english = app.test_client()  # someone registering her address from an English page
    english.environ_base["HTTP_ACCEPT_LANGUAGE"] = ENGLISH["Accept-Language"]
    answer = register(english, f"/invite/{patient_link(app, therapist)}", email=rosa.email)
    assert "Check your email" in answer.get_data(as_text=True)  # the visitor's page: English
    [notice] = messages_to(handler, rosa.email)
    assert message_subject(notice) == "Se usó una invitación a kapjournal con su correo electrónico"
    assert "Si fue usted, inicie sesión y se le preguntará si la acepta." in body_of(notice)
    # An account that never chose a language is written to in English.
    set_locale(app, rosa, None)
    register(english, f"/invite/{patient_link(app, therapist)}", email=rosa.email)
    [_, second] = messages_to(handler, rosa.email, count=2)
    assert message_subject(second) == "An invitation to kapjournal was used with your address"


def message_subject(message) -> str:
    return str(message["Subject"])


def test_in_spanish_a_known_and_a_new_address_still_get_the_same_page(
    mail_app,
    mailbox,
):
    """The calm answer that tells no one whether an address has an account holds in Spanish."""
    app, _ = mail_app, mailbox
    therapist = make_user(app, role="therapist", email="t@example.org", name="Dr. T")
    known = make_user(app, role="patient", email="known@example.org", name="Known")
    answers = [
        register(spanish_client(app), f"/invite/{patient_link(app, therapist)}", email=email)
        for email in (known.email, "unknown@example.org")
    ]
    assert [a.status_code for a in answers] == [200, 200]
    first, second = (comparable(a, "unknown@example.org", known.email) for a in answers)
    assert first == second and "Revise su correo electrónico" in first


# --- outside a request -------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["short", "password1234"])
def test_outside_a_request_the_messages_stay_english(app, password):
    """The operators' command line has no request (so no language): the English as written."""
    with app.app_context():
        problem = accounts.password_problem(password)
    assert problem in {
        "Use at least 12 characters. A few unrelated words work well.",
        "That password is on the list of commonly used passwords. Choose another.",
    }
    errors = accounts.validate_registration(**{**NEW, "email": "", "name": ""})
    assert errors["email"] == "Enter your email address."
