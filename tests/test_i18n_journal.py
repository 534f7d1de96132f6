"""The journal in Spanish (issue 16, slice "journal"): the patient's home, the writing forms
(prompt chips, mood faces, field labels and their errors), the sharing panel and the consent
asked before sharing with a supporter, the access log and search, for a patient whose account
says Spanish; the words stored stay as typed, the kinds and keys English."""

from __future__ import annotations

import re

from conftest import client_for
from sqlmodel import Session
from test_journal import (
    form_on,
    press,
    read_back,
    search,
    submit,
    text_of,
    visible,
    write,
    written,
)

from kapjournal import db
from kapjournal.models import Entry, User
from kapjournal.services import entry_forms, sharing

SPANISH = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}


def speaks_spanish(app, *personas) -> None:
    """The personas chose Spanish on their account (what the language switch stores)."""
    with app.app_context(), Session(db.engine()) as session:
        for persona in personas:
            user = session.get(User, persona.id)
            user.locale = "es"
            session.add(user)
        session.commit()


def log_rows(page: str) -> list[str]:
    rows = re.findall(r"<li>(.*?)</li>", page.split("<h1", 1)[1], re.S)
    return [re.sub(r" · .*", "", visible(row)) for row in rows]


def test_the_journal_home_speaks_spanish_to_a_spanish_browser(as_patient):
    page = text_of(as_patient.get("/journal", headers=SPANISH))
    assert '<html lang="es">' in page
    for words in ("Su diario", "Escribir una reflexión", "Registro breve", "Quién leyó qué"):
        assert words in page
    assert "Solo usted puede leer lo que escribe aquí, a menos que lo comparta." in page
    assert "Your journal" not in page and "Write a reflection" not in page
    english = text_of(as_patient.get("/journal"))
    assert "Your journal" in english and "Su diario" not in english


def test_the_reflection_form_has_spanish_prompts_moods_and_errors(app, as_patient, patient):
    speaks_spanish(app, patient)
    page = text_of(as_patient.get("/entries/new?kind=reflection"))
    assert "¿Cómo le fue?" in page and "Algunas preguntas, por si le ayudan:" in page
    assert "<legend>Estado de ánimo (opcional)</legend>" in page
    for mood in ("Muy mal", "Mal", "Regular", "Bien", "Muy bien"):
        assert f"<span>{mood}</span>" in page
    chips = re.findall(r"<summary>(.*?)</summary>", page)
    assert len(chips) == 3 and all(chip.startswith("¿") for chip in chips)
    english_prompts = entry_forms.REFLECTION_PROMPTS + entry_forms.INTENTION_PROMPTS
    assert not any(str(prompt) in page for prompt in english_prompts)

    refused = write(as_patient, "reflection", text="  ")
    assert refused.status_code == 422
    assert "Primero escriba algo." in text_of(refused)
    assert "Write something first." not in text_of(refused)

    # The answer keeps the question as its author saw it; the mood is stored as its number.
    form = form_on(refused, "/entries/new")
    answers = ["Los colores.", "", ""]
    entry_id = written(submit(as_patient, form, text="Tranquila.", answer=answers, mood="4"))
    body = read_back(app, patient, entry_id)
    assert body["answers"] == [{"prompt": chips[0], "answer": "Los colores."}]
    assert body["mood"] == 4
    with app.app_context(), Session(db.engine()) as session:
        assert session.get(Entry, entry_id).kind == "reflection"
    shown = visible(text_of(as_patient.get(f"/entries/{entry_id}")))
    assert "Reflexión" in shown and "Estado de ánimo: Bien" in shown
    assert f"{chips[0]} Los colores." in shown
    assert "Editar" in shown and "Quién puede leer esto" in shown


def test_the_intention_and_safety_plan_forms_label_their_fields_in_spanish(
    app, as_patient, patient
):
    speaks_spanish(app, patient)
    intention = text_of(as_patient.get("/entries/new?kind=intention"))
    assert "Mi intención, en una frase" in intention and "Lo que me preocupa" in intention
    assert "(opcional)" in intention and "What I hope for" not in intention
    missing = write(as_patient, "intention", intention=" ")
    assert missing.status_code == 422 and "Escriba su intención." in text_of(missing)
    plan = text_of(as_patient.get("/entries/new?kind=safety_plan"))
    assert "1. Mis señales de alerta" in plan and "6. Hacer que mi entorno sea seguro" in plan
    assert "My warning signs" not in plan
    empty = write(as_patient, "safety_plan")
    assert "Escriba al menos una parte de su plan." in text_of(empty)


def test_the_field_lists_give_plain_strings_in_the_language_of_the_request(app):
    with app.test_request_context("/", headers=SPANISH):
        rows = list(entry_forms.INTENTION_FIELDS)
        assert rows[1] == ("hopes", "Lo que espero", False)
        assert all(type(label) is str for _, label, _ in rows)
        assert entry_forms.SUPPORT_CARD_FIELDS[0][1] == "Lo que me ayuda"
        assert entry_forms.labelled_fields("safety_plan")[0] == (
            "warning_signs",
            "1. Mis señales de alerta",
        )
        assert entry_forms.INTENTION_FIELDS[1:][0][0] == "hopes"
        in_words = sharing.in_words(
            [sharing.Reader("Ana", "therapist"), sharing.Reader("Sue", "invited", pending=True)]
        )
        assert in_words == "Ana y Sue (invitación enviada, aún sin unirse)"
    with app.test_request_context("/"):
        assert entry_forms.INTENTION_FIELDS[1] == ("hopes", "What I hope for", False)


def test_sharing_with_a_supporter_asks_in_spanish_naming_them_and_what_they_will_read(
    app, as_patient, patient, supporter
):
    speaks_spanish(app, patient)
    entry_id = written(write(as_patient, "reflection", text="Solo para Sue."))
    asked = press(as_patient, f"/entries/{entry_id}", f"Compartir con {supporter.name}")
    assert asked.status_code == 200
    words = visible(text_of(asked))
    assert f"¿Compartir esta entrada (reflexión) con {supporter.name}?" in words
    assert (
        f"{supporter.name} podrá leer esta entrada (reflexión): el texto, su estado de ánimo y "
        "sus respuestas a las preguntas, y cuándo la escribió. Verá el contenido tal como está "
        "ahora y los cambios que usted haga después."
    ) in words
    assert "Esa persona podrá leerlo hasta que usted deje de compartirlo con ella" in words
    assert "will be able to read" not in words
    shared = submit(as_patient, form_on(asked, button=f"Compartir con {supporter.name}"))
    assert shared.status_code == 303
    panel = visible(text_of(as_patient.get(f"/entries/{entry_id}")))
    assert f"Dejar de compartir con {supporter.name}" in panel
    home = visible(text_of(as_patient.get("/journal")))
    assert f"Compartido con {supporter.name}" in home


def test_the_access_log_and_search_read_in_spanish(app, as_patient, patient, therapist):
    speaks_spanish(app, patient)
    entry_id = written(write(as_patient, "reflection", text="Una garza junto al río."))
    page = f"/entries/{entry_id}"
    press(as_patient, page, f"Compartir con {therapist.name}")
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(page).status_code == 200
    assert as_therapist.get(page).status_code == 200

    log = as_patient.get("/journal/log").get_data(as_text=True)
    assert log_rows(log) == [
        f"{therapist.name} leyó una entrada",
        f"Usted compartió una entrada con {therapist.name}",
        "Usted escribió una entrada",
    ]
    assert "2 veces ese día" in visible(log)
    assert "Cada vez que alguien lee, comparte o deja de compartir" in log
    assert log_rows(as_patient.get(f"{page}/log").get_data(as_text=True))[-1] == (
        "Usted escribió esta entrada"
    )

    found = visible(text_of(search(as_patient, "garza")))
    assert "Se encontró 1 entrada." in found and "entry found" not in found
    none = visible(text_of(search(as_patient, "montaña")))
    assert "Se encontraron 0 entradas." in none
