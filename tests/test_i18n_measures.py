"""Questionnaires, the safety plan, export, import and leaving in Spanish (issue 16): the pages
around the PHQ-9 and GAD-7 speak the reader's language while the instruments' validated
wording stays English (marked `lang="en"`, with a note saying why); the chart's words and dates,
the safety response and the crisis lines; the downloaded journal and its access log in the
downloader's language, its machine keys English; import errors; and the typed phrase that
deletes an account, asked for in Spanish on a Spanish page."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from conftest import PASSWORD, client_for, post, write_entry
from test_export import download, unzip, upload
from test_journal import text_of, visible
from test_measures import ITEM9, QUIET, answer, answered

from kapjournal import i18n
from kapjournal.services import chart, instruments
from kapjournal.services.instruments import PHQ9

NOTE = "Este cuestionario se muestra en inglés, en su versión validada"


def spanish(app, persona):
    """A client logged in as `persona`, who chose Spanish (kept on their account)."""
    client = client_for(app, persona)
    chosen = post(client, "/language", {"lang": "es", "back": "/account"}, token_from="/account")
    assert chosen.status_code == 303
    return client


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return text_of(response)


# --- the questionnaires ----------------------------------------------------------------------


def test_a_spanish_form_keeps_the_validated_english_wording_marked_and_says_why(app, patient):
    client = spanish(app, patient)
    form = page(client, "/measures/phq9/new")
    assert '<html lang="es">' in form and NOTE in form
    assert "Guardar mis respuestas" in form and "Save my answers" not in form
    assert "La pregunta 9 trata sobre pensamientos de muerte" in form
    assert "Nadie revisa esta aplicación en tiempo real" in form and 'href="/help?lang=es"' in form
    # the instrument as published, in English, said in English by a screen reader
    assert f'<p class="lead" lang="en">{PHQ9.stem}</p>' in form
    assert f'<span lang="en">{PHQ9.items[0]}</span>' in form
    assert '<span lang="en">Not at all</span>' in form
    assert "1 de 9." in visible(form) and "(opcional)" in form
    english = page(client_for(app, patient), "/measures/gad7/new?lang=en")
    assert NOTE not in english and "Save my answers" in english


def test_a_missing_answer_is_told_in_spanish(app, patient):
    client = spanish(app, patient)
    response = answer(client, "gad7", [1, 1, 1, None, 1, 1, 1])
    assert response.status_code == 422
    text = text_of(response)
    assert "Elija una respuesta." in text and "Choose one answer." not in text
    assert "Algunas preguntas todavía no tienen respuesta" in text


def test_progress_chart_and_result_speak_spanish_around_the_english_answers(app, patient):
    client = spanish(app, patient)
    answered(client, "phq9", [2] * 6 + [0] * 3)  # 12: moderate
    latest = answered(client, "phq9", QUIET)  # 2: minimal
    progress = page(client, "/measures")
    assert "Cómo se encuentra" in progress and "How you are doing" not in progress
    assert "Estado de ánimo (PHQ-9)" in progress and "Ansiedad (GAD-7)" in progress
    # the chart's text alternative and the table that repeats it
    assert "2 resultados, con puntuación de 0 a 27; más alto significa más síntomas." in progress
    assert re.search(r"Primero 12 \(Moderada\) el \d+ \w+\.? \d{4}; último 2 \(Mínima\)", progress)
    assert "Resultados del PHQ-9, del más antiguo al más reciente" in progress
    assert "Franjas sombreadas: mínima 0\u20134, leve 5\u20139" in progress
    assert "Responder el GAD-7" in progress and "Answer the GAD-7" not in progress
    result = page(client, f"/measures/results/{latest}")
    assert "Su resultado del PHQ-9" in result and NOTE in result
    assert re.search(r"2, menos que el 12 del \d+ \w+", result)
    assert "— Mínima" in result and "Respuesta y remisión" in result
    assert '<li lang="en">Little interest or pleasure in doing things: <strong>' in result


def test_the_safety_response_and_its_crisis_lines_are_in_spanish(app, patient, therapist):
    client = spanish(app, patient)
    result = client.get(f"/measures/results/{answered(client, 'phq9', ITEM9)}")
    text = text_of(result)
    assert "No tiene que cargar con esto a solas" in text
    assert "llame o envíe un mensaje de texto al 988, o llame al 911" in text
    assert re.search(r'href="tel:988"><span>[^<]*oprima 2[^<]*</span>', text)
    assert 'href="sms:988?&amp;body=AYUDA"' in result.get_data(as_text=True)
    assert "Su equipo de atención verá una marca de seguridad" in text
    assert "You don't have to carry this alone" not in text
    # the therapist, in English, reads the flag in English
    caseload = page(client_for(app, therapist), "/home")
    assert "Safety flag" in caseload and "Marca de seguridad" not in caseload


def test_the_chart_says_its_words_and_dates_in_the_language_asked(app):
    points = [
        chart.Point(at=datetime(2026, 11, 3, 9, tzinfo=UTC), score=14),
        chart.Point(at=datetime(2026, 12, 1, 9, tzinfo=UTC), score=6),
    ]
    marker = chart.Marker(at=datetime(2026, 11, 20, 9, tzinfo=UTC), label="Sesión de ketamina")
    arguments = {
        "title": "PHQ-9",
        "max_score": 27,
        "bands": PHQ9.bands,
        "points": points,
        "markers": [marker],
        "zone": ZoneInfo("UTC"),
        "chart_id": "c",
    }
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        english = chart.trend_chart(**arguments)
        with i18n.force_locale("es"):
            spanish_chart = chart.trend_chart(**arguments)
            compared = instruments.compared(
                PHQ9, 6, instruments.Earlier(score=14, day=date(2026, 11, 3)), year=2026
            )
    assert english.rows[0] == ("3 Nov 2026", 14, "Moderate")
    assert spanish_chart.rows[0] == ("3 nov 2026", 14, "Moderada")
    assert "1 treatment session marked." in str(english.svg)
    assert "1 sesión de tratamiento marcada." in str(spanish_chart.svg)
    assert compared == "6, menos que el 14 del 3 nov"


# --- export and import -----------------------------------------------------------------------


def test_the_download_is_in_the_downloaders_language_and_its_keys_stay_machine_english(
    app, patient
):
    client = spanish(app, patient)
    answered(client, "gad7", [1] * 7, difficulty="1")
    files = unzip(download(client))
    html = files["journal.html"]
    assert '<html lang="es">' in html and "Diario de " in html
    assert "¿Necesita ayuda ahora?" in html and "oprima 2" in html
    assert "Sus cuestionarios" in html and "Your questionnaires" not in html
    assert re.search(r"\d+ de 21, leve", html)
    assert "Somewhat difficult" in html  # the GAD-7's own answer, as answered
    document = json.loads(files["journal.json"])
    assert {"format", "version", "entries", "sessions"} <= set(document)
    log = list(csv.DictReader(io.StringIO(files["access-log.csv"])))
    assert set(log[0]) == {"time", "who", "what", "entry", "entry_id", "times_that_day"}
    assert {"who": "Usted", "what": "descargó su diario"}.items() <= log[0].items()
    assert all(row["what"] != "downloaded your journal" for row in log)


def test_the_download_page_and_a_refused_import_speak_spanish(app, patient):
    client = spanish(app, patient)
    text = page(client, "/account/export")
    assert "Descargar su diario" in text and "Su contraseña" in text
    assert "<strong>journal.json</strong>: el mismo diario" in text
    refused = upload(client, b"not json at all")
    assert refused.status_code == 422
    assert "No se pudo leer este archivo como un journal.json (no es JSON)." in text_of(refused)
    wrong = upload(client, {"format": "something else"})
    assert "Este no es un journal.json de una descarga de kapjournal." in text_of(wrong)


# --- leaving ---------------------------------------------------------------------------------


def test_a_spanish_page_asks_for_the_spanish_phrase_and_accepts_it(app, patient):
    client = spanish(app, patient)
    form = page(client, "/account/delete")
    assert "Escriba “eliminar mi cuenta”" in form and "Type “delete my account”" not in form
    wrong = post(
        client,
        "/account/delete",
        {"password": PASSWORD, "confirm": "eliminar cuenta"},
        token_from="/account/delete",
    )
    assert wrong.status_code == 422
    assert "Escriba “eliminar mi cuenta” para confirmar." in text_of(wrong)
    done = post(
        client,
        "/account/delete",
        {"password": PASSWORD, "confirm": "  Eliminar  mi cuenta "},
        token_from="/account/delete",
    )
    assert done.status_code == 200 and "Su cuenta se eliminó" in text_of(done)


def test_the_english_phrase_is_accepted_on_a_spanish_page_too(app, patient):
    client = spanish(app, patient)
    done = post(
        client,
        "/account/delete",
        {"password": PASSWORD, "confirm": "delete my account"},
        token_from="/account/delete",
    )
    assert done.status_code == 200 and "Su cuenta se eliminó" in text_of(done)


def test_deleting_several_entries_counts_them_in_spanish(app, patient):
    for words in ("Uno.", "Dos."):
        write_entry(app, patient, words)
    client = spanish(app, patient)
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    fields = {"session_id": "", "before": tomorrow}
    asked = post(client, "/entries/delete-many", fields, token_from="/entries/delete-many")
    text = text_of(asked)
    assert "¿Eliminar 2 entradas?" in text and "Esto no se puede deshacer." in text
    empty = post(client, "/entries/delete-many", {}, token_from="/entries/delete-many")
    assert empty.status_code == 422 and "Elija una sesión o una fecha." in text_of(empty)
    done = post(
        client,
        "/entries/delete-many",
        fields | {"confirm": "1"},
        token_from="/entries/delete-many",
    )
    assert "2 entradas eliminadas" in text_of(done)
