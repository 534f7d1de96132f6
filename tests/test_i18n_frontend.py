"""Issue 16, the front end: dates and times through Babel in the page's language (`|local`
keeps its strftime-style argument), the offline pages and the manifest in Spanish, the
scripts' words served as a JSON catalogue per language (what the service worker keeps), and a
stylesheet with logical sides only, ready for a right-to-left language."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from conftest import write_entry

from kapjournal import i18n
from kapjournal.views import local_time

ROOT = Path(__file__).resolve().parent.parent
SPANISH = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}
MOMENT = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)


def page_of(client, path: str, **kw) -> str:
    response = client.get(path, **kw)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


# --- dates and times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "english", "spanish"),
    [
        ("%a %-d %b %Y, %H:%M", "Wed 2 Dec 2026, 06:30", "mié 2 dic 2026, 06:30"),
        ("%A %-d %B, %H:%M", "Wednesday 2 December, 06:30", "miércoles 2 de diciembre, 06:30"),
        ("%-d %B %Y", "2 December 2026", "2 de diciembre de 2026"),
        ("%-d %b", "2 Dec", "2 dic"),
        ("%a %H:%M", "Wed 06:30", "mié 06:30"),
        ("%b", "Dec", "dic"),
        ("%-d", "2", "2"),
        ("%d/%m/%y at %I:%M %p", "02/12/26 at 06:30 AM", "02/12/26 at 06:30 a. m."),
    ],
)
def test_local_renders_strftime_formats_through_babel_in_the_pages_language(
    app, fmt, english, spanish
):
    for headers, expected in ((ENGLISH, english), (SPANISH, spanish)):
        with app.test_request_context("/", headers={**headers, "Cookie": "tz=UTC"}):
            assert local_time(MOMENT, fmt).replace("\u202f", " ") == expected, (headers, fmt)
    assert english == MOMENT.strftime(fmt)  # English as strftime wrote it before


def test_local_keeps_the_viewers_zone_and_the_default_format(app):
    headers = {**SPANISH, "Cookie": "tz=America/Chicago"}
    with app.test_request_context("/", headers=headers):
        assert local_time(MOMENT) == "mié 2 dic 2026, 00:30"
        assert local_time(datetime(2026, 12, 2, 5, 59, tzinfo=UTC)) == "mar 1 dic 2026, 23:59"
        assert local_time(None) == ""


def test_the_compiled_formats_write_what_babel_writes_in_every_language(app):
    """format_moment looks the locale's names up once per format (Babel parses the locale on
    every call); for every strftime directive it knows, in every language, over a year of
    days at every hour, it writes what Babel's own format_datetime writes."""
    from babel.dates import format_datetime

    formats = [f"%{code}" for code in i18n._STRFTIME] + [
        "%a %-d %b %Y, %H:%M",
        "%A %-d %B, %H:%M",
        "%-d %B %Y",
        "%d/%m/%y at %I:%M:%S %p",
        "100%% o'clock %Y",
    ]
    moments = [datetime(2026, 1, 1, 0, 7, 9) + k * timedelta(hours=7) for k in range(1300)]
    moments += [datetime(5, 3, 4, 12, 0), datetime(2009, 12, 31, 23, 59, 59)]
    for language in i18n.LANGUAGES:
        with app.test_request_context("/"), i18n.force_locale(language):
            for fmt in formats:
                pattern = i18n.cldr_pattern(fmt, language)
                for moment in moments:
                    expected = format_datetime(moment, pattern, locale=language)
                    assert i18n.format_moment(moment, fmt) == expected, (language, fmt, moment)
            # The templates' `dateformat` (CLDR patterns, with the catalogue's translations),
            # and a letter the compiled formats leave to Babel (Q: the quarter).
            for pattern in ("EEEE d MMMM", "EEE d MMM", "d MMM y", "QQQ y"):
                for moment in moments[::7]:
                    expected = format_datetime(moment, pattern, locale=language)
                    assert i18n.format_cldr(moment.date(), pattern) == expected, pattern


def test_cldr_patterns_quote_literal_words_and_refuse_unknown_directives():
    assert i18n.cldr_pattern("%-d %b %Y") == "d MMM y"
    assert i18n.cldr_pattern("%H:%M o'clock") == "HH:mm' o''clock'"
    assert i18n.cldr_pattern("100%% %Y") == "100% y"
    with pytest.raises(ValueError):
        i18n.cldr_pattern("%j")


def test_format_day_for_other_slices_charts_and_comparisons(app):
    with app.test_request_context("/", headers=SPANISH):
        assert i18n.format_day(date(2026, 11, 18)) == "18 nov 2026"
        assert i18n.format_day(date(2026, 11, 18), year=False) == "18 nov"
    with app.test_request_context("/", headers=ENGLISH):
        assert i18n.format_day(date(2026, 11, 18), year=False) == "18 Nov"
    assert i18n.format_day(date(2026, 9, 1)) == "1 Sep 2026"  # outside a request: English


def test_a_spanish_journal_shows_its_dates_in_spanish(app, patient, as_patient):
    write_entry(app, patient, "A quiet walk.", when=datetime(2026, 9, 16, 15, 5, tzinfo=UTC))
    as_patient.set_cookie("tz", "UTC")
    english = page_of(as_patient, "/journal", headers=ENGLISH)
    spanish = page_of(as_patient, "/journal", headers=SPANISH)
    assert '<html lang="es">' in spanish
    assert "Sep" in english and "Wed" in english
    assert "sept" in spanish and "mié" in spanish
    assert "Sep" not in spanish and "Wed" not in spanish


# --- the offline pages, the manifest, the language of each page ---------------------------------


def test_the_offline_page_in_spanish_links_to_the_spanish_offline_forms_and_crisis_page(client):
    page = page_of(client, "/offline", headers=SPANISH)
    assert '<h1 tabindex="-1">Está sin conexión</h1>' in page
    assert "You are offline" not in page and "This page needs a connection" not in page
    assert 'href="/write-offline?kind=reflection&amp;lang=es">una reflexión</a>' in page
    assert 'href="/write-offline?kind=check_in&amp;lang=es">un registro breve</a>' in page
    assert 'class="button" href="/help?lang=es">¿Necesita ayuda ahora?</a>' in page
    english = page_of(client, "/offline", headers=ENGLISH)
    assert '<h1 tabindex="-1">You are offline</h1>' in english
    assert 'href="/write-offline?kind=reflection">a reflection</a>' in english


def test_the_offline_writing_pages_speak_the_language_of_their_address(client):
    # What the service worker keeps: fetched without cookies, the language in the address.
    reflection = page_of(client, "/write-offline?kind=reflection&lang=es", headers=ENGLISH)
    assert '<html lang="es">' in reflection and "¿Cómo le fue?" in reflection
    assert "Puede escribir aquí sin conexión." in reflection
    assert ">Guardar</button>" in reflection and "How was it?" not in reflection
    check_in = page_of(client, "/write-offline?kind=check_in&lang=es", headers=ENGLISH)
    assert '<h1 tabindex="-1">Registro breve</h1>' in check_in
    assert "¿Cómo se siente en este momento?" in check_in
    capture = page_of(client, "/capture-offline?lang=es", headers=ENGLISH)
    assert "Después de su sesión" in capture and ">Guardarlo</button>" in capture
    english = page_of(client, "/write-offline?kind=reflection&lang=en", headers=SPANISH)
    assert '<html lang="en">' in english and "How was it?" in english


def test_every_page_says_its_language_for_the_service_worker(client):
    assert client.get("/login", headers=SPANISH).headers["Content-Language"] == "es"
    assert client.get("/login", headers=ENGLISH).headers["Content-Language"] == "en"
    assert "Content-Language" not in client.get("/manifest.webmanifest").headers


def test_the_manifest_speaks_the_browsers_language(client):
    spanish = client.get("/manifest.webmanifest", headers=SPANISH).get_json()
    assert spanish["lang"] == "es" and spanish["short_name"] == "Diario"
    assert spanish["description"] == "Su diario privado para la terapia asistida con ketamina."
    shortcuts = {s["name"]: s["url"] for s in spanish["shortcuts"]}
    assert shortcuts == {
        "Nueva reflexión": "/entries/new?kind=reflection",
        "Necesita ayuda ahora": "/help?lang=es",
    }
    english = client.get("/manifest.webmanifest", headers=ENGLISH)
    assert english.get_json()["short_name"] == "Journal"
    assert {"Accept-Language", "Cookie"} <= set(english.vary)


# --- the scripts' words ---------------------------------------------------------------------------


def script_messages() -> dict[str, tuple | str]:
    """Every t()/tn() in the scripts, as `make i18n-extract` finds them (babel.cfg)."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {"_": None, "ngettext": (1, 2)}
    found = {}
    for name, _line, message, _comments, _context in extract_from_dir(
        str(ROOT / "static"),
        [(p.removeprefix("static/"), m) for p, m in method_map],
        options_map,
        keywords=keywords,
    ):
        assert not name.endswith(".min.js")
        found[message if isinstance(message, str) else message[0]] = message
    return found


def test_the_scripts_words_are_extracted_and_translated_with_every_plural_form():
    found = script_messages()
    assert "Saved on this phone." in found and "Your journal" in found  # drafts.js, sw.js
    assert found["1 unsent entry"] == ("1 unsent entry", "%(n)d unsent entries")
    with (i18n.TRANSLATIONS / "es/LC_MESSAGES/messages.po").open("rb") as source:
        catalogue = read_po(source)
    for msgid, message in found.items():
        entry = catalogue.get(msgid)
        assert entry is not None and not entry.fuzzy, msgid
        if isinstance(message, tuple):
            assert entry.id == message and len(entry.string) == 3 and all(entry.string), msgid
        else:
            assert entry.string, msgid


def test_the_json_catalogue_has_only_the_scripts_words_and_revalidates(client):
    response = client.get("/i18n/es.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_data(as_text=True))
    assert body["lang"] == "es" and body["plural"] == ["one", "many", "other"]
    messages = body["messages"]
    assert messages["Saved on this phone."] == "Guardado en este teléfono."
    assert messages["1 unsent entry"] == [
        "1 entrada sin enviar",
        "%(n)d entradas sin enviar",
        "%(n)d entradas sin enviar",
    ]
    assert messages["Your journal"] == "Su diario"  # the service worker's notification title
    assert set(messages) == set(script_messages())
    assert "Crisis lines" not in messages  # a template's words stay on the server
    assert response.headers["Cache-Control"] == "no-cache"  # revalidated, not refused a cache
    etag = response.headers["ETag"]
    again = client.get("/i18n/es.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    english = client.get("/i18n/en.json").get_json()
    assert english["messages"] == {} and english["plural"] == ["one", "other"]
    assert client.get("/i18n/xx.json").status_code == 404
    assert client.get("/i18n/..%2Fsecret.json").status_code == 404


def test_the_service_worker_keeps_each_language_and_its_catalogue():
    sw = (ROOT / "static/sw.js").read_text()
    langs = json.loads(re.search(r"const LANGS = (\[[^\]]*\]);", sw).group(1))
    assert langs == list(i18n.LANGUAGES) and langs[0] == i18n.DEFAULT
    assert 'const CACHE = "kapjournal-shell-v10"' in sw  # bumped: new CSS, pages per language
    app_js = (ROOT / "static/js/app.js").read_text()
    assert 'fetch("/i18n/" + lang + ".json"' in app_js
    assert re.search(r'"/i18n/" \+ lang \+ "\.json"', sw)


# --- right to left --------------------------------------------------------------------------------

# A property that names a physical side, or a side as a value where a logical one exists.
PHYSICAL = re.compile(
    r"(?<![\w-])(?:left|right|(?:margin|padding|border|inset|scroll-margin|scroll-padding)"
    r"-(?:left|right)[\w-]*|border-(?:top|bottom)-(?:left|right)-radius)\s*:"
    r"|(?:text-align|float|clear|caption-side)\s*:\s*(?:left|right)\b"
    r"|safe-area-inset-(?:left|right)"
)
FOUR_SIDES = re.compile(r"(?<![\w-])(?:margin|padding|inset)\s*:\s*([^;{}]+)")


def test_the_stylesheet_uses_logical_sides_only_except_where_marked_physical():
    lines = (ROOT / "static/css/app.css").read_text().splitlines()
    code = [(n, re.sub(r"/\*.*?\*/", "", line)) for n, line in enumerate(lines, 1)]
    marked = {n for n, line in enumerate(lines, 1) if "physical" in line}
    physical = [f"{n}: {line.strip()}" for n, line in code if PHYSICAL.search(line)]
    lopsided = []
    for n, line in code:
        for values in FOUR_SIDES.findall(line):
            parts = re.findall(r"\w*\([^)]*\)\)?|[^\s]+", values.strip())
            if len(parts) == 4 and parts[1] != parts[3]:
                lopsided.append(f"{n}: {line.strip()}")
    assert [x for x in physical + lopsided if int(x.split(":")[0]) not in marked] == []
    assert len(marked) <= 4  # the safe areas only
