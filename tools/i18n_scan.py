"""Find user-facing words not marked for translation (issue 16), in templates and Python.

    .venv/bin/python tools/i18n_scan.py [PATH ...]     # default: every template and module

Prints `path:line: text` for each unmarked string and exits 1 if there is any.
tests/test_languages.py runs it over the whole project, so a new English string that is not
wrapped in `_()` / `_l()` / `ngettext()` (or `{% trans %}`) fails the suite.

Templates: words between tags, the attributes a reader hears or sees (aria-label, alt, title,
placeholder, content of a meta description) and quoted sentences inside `{{ }}` / `{% %}` (a
label in a `{% for %}` list, a default in `.get(kind, 'Entry')`).

Python: string constants that read as words for a person (a capitalised word, or three words
in a row), outside docstrings, translation calls, logging and SQL. Operators' texts (the CLI,
backups, configuration errors) and validated or machine content (PHQ-9/GAD-7 wording, FHIR, the
demo journal) are outside by design: see SKIP_MODULES. One string can be let through with a
`# not-ui` comment on its line, saying why."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Modules whose strings are not shown to a patient, therapist or supporter.
SKIP_MODULES = {
    "kapjournal/cli.py": "the operators' command line (English, like the server logs)",
    "kapjournal/config.py": "configuration errors, read by the operator at start-up",
    "kapjournal/crypto.py": "internal errors; never shown",
    "kapjournal/db.py": "internal",
    "kapjournal/services/backup.py": "backup and restore messages, for the operator's shell",
    "kapjournal/services/audit.py": "audit verify, for the operator's shell",
    "kapjournal/services/demo.py": "the demo journal's content, not the interface",
    "kapjournal/services/instruments.py": (
        "PHQ-9 and GAD-7 wording: validated instruments are shown as published, never "
        "translated ad hoc (issue 16, point 3)"
    ),
    "kapjournal/services/fhir.py": "a machine format (FHIR resource and code names)",
}

TRANSLATION_CALLS = {
    "_",
    "_l",
    "gettext",
    "ngettext",
    "lazy_gettext",
    "lazy_ngettext",
    "pgettext",
    "npgettext",
}
# Calls whose string arguments are for machines or logs, not for people.
MACHINE_CALLS = {
    "debug",
    "info",
    "warning",
    "exception",
    "critical",
    "text",
    "execute",
    "getenv",
    "url_for",
    "redirect",
    "render_template",
    "render",
    "icon",
    "strftime",
    "strptime",
}

# A capitalised word standing alone or starting a phrase ("Entry", "Write the note first."),
# or three lower-case words in a row ("before your ketamine session").
SENTENCE = re.compile(
    r"^[A-Z][a-z]+(?:[ ,.!?'\u2019:;\u2026]|$)"  # "Entry", "Write the note first."
    r"|[a-z]{2,}[,.]? [a-z]{2,} [a-z]{2,}"  # "before your ketamine session"
)
# Strings that look like words but are machine values.
MACHINE_VALUES = re.compile(
    r"^(?:Lax|Strict|None|Bearer|Basic|GET|POST|UTF-8|Content-\w+|[A-Z][a-z]+/\d)$"
    r"|^(?:Android|Windows|Mac|Mac OS X|Linux|iPhone|iPad|Edge|Firefox|Chrome|Safari|Opera)$"
)

# --- Python -------------------------------------------------------------------------------------


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def scan_python(path: Path) -> list[tuple[int, str]]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            skipped.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Call) and _call_name(node) in TRANSLATION_CALLS | MACHINE_CALLS:
            skipped.update(id(sub) for sub in ast.walk(node))
        if isinstance(node, ast.Raise) and node.exc is not None:
            # internal errors (RuntimeError, LookupError…) are for developers; errors a person
            # reads are raised with a translated message, which the call rule above lets through
            skipped.update(id(sub) for sub in ast.walk(node.exc))
        if isinstance(node, ast.Assert):
            skipped.update(id(sub) for sub in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value.strip()
        if id(node) in skipped or not SENTENCE.search(text) or MACHINE_VALUES.match(text):
            continue
        if "# not-ui" in lines[node.lineno - 1]:
            continue
        found.append((node.lineno, text))
    return sorted(found)


# --- templates ----------------------------------------------------------------------------------

JINJA = re.compile(
    r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}|\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.S
)
READ_ATTRIBUTES = re.compile(
    r'\b(?:aria-label|alt|title|placeholder|data-confirm|data-message)="([^"]*)"'
    r'|<meta name="description" content="([^"]*)"'
)
_QUOTED = r"(?:'[^']*'|\"[^\"]*\")"
MARKED_CALL = re.compile(
    rf"\b(?:_|gettext|ngettext|pgettext|npgettext)\(\s*{_QUOTED}(?:\s*,\s*{_QUOTED}){{0,2}}"
)
QUOTED = re.compile(r"'([^'\\]*)'|\"([^\"\\]*)\"")
WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
NOT_WORDS = {"kapjournal", "PHQ-9", "GAD-7", "PHQ", "GAD", "FHIR", "JSON", "ZIP", "PDF", "KB"}
# Files whose text is a machine format or a published instrument, not interface wording.
SKIP_TEMPLATES = {
    "export/journal.css": "a stylesheet",
}


def _line_of(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def scan_template(path: Path) -> list[tuple[int, str]]:
    source = path.read_text()
    found = []

    # words between tags, outside any Jinja, and the attributes people read: Jinja is blanked
    # out first (same length, newlines kept), so that a tag with `{{ }}` inside stays a tag
    def blank(match: re.Match) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    plain = JINJA.sub(blank, source)
    for attribute in READ_ATTRIBUTES.finditer(plain):
        value = (attribute.group(1) or attribute.group(2) or "").strip()
        if WORD.search(value) and value not in NOT_WORDS:
            found.append((_line_of(source, attribute.start()), value))
    text = re.sub(r"<[^>]*>", blank, plain)
    # an attribute outside a tag is part of one built with Jinja (`{% block attrs %} class="x"`)
    text = re.sub(r'[\w-]+="[^"]*"', blank, text)
    text = re.sub(r"&\w+;|&#\d+;", blank, text)
    for word in WORD.finditer(text):
        if word.group(0) not in NOT_WORDS:
            found.append((_line_of(source, word.start()), word.group(0)))
    # sentences inside Jinja expressions and statements
    statements = r"\{\{.*?\}\}|\{%(?!-?\s*(?:trans|endtrans|pluralize)\b).*?%\}"
    for block in re.finditer(statements, source, re.S):
        code = MARKED_CALL.sub("", block.group(0))
        for quoted in QUOTED.finditer(code):
            text = (quoted.group(1) or quoted.group(2) or "").strip()
            if SENTENCE.search(text) and not MACHINE_VALUES.match(text) and text not in NOT_WORDS:
                found.append((_line_of(source, block.start()), text))
    # one finding per line and word is enough to act on
    return sorted(set(found))


# --- the command --------------------------------------------------------------------------------


def targets(paths: list[str]) -> list[Path]:
    if not paths:
        paths = ["templates", "kapjournal"]
    out = []
    for name in paths:
        path = (ROOT / name) if not Path(name).is_absolute() else Path(name)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in {".py", ".html"})
        else:
            out.append(path)
    return out


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def unmarked(paths: list[str] | None = None) -> list[str]:
    """`path:line: text` for every unmarked user-facing string under `paths`."""
    report = []
    for path in targets(paths or []):
        name = relative(path)
        if "/migrations/" in f"/{name}" or name in SKIP_MODULES:
            continue
        if path.suffix == ".py":
            hits = scan_python(path)
        elif name.removeprefix("templates/") in SKIP_TEMPLATES:
            continue
        else:
            hits = scan_template(path)
        by_line: dict[int, list[str]] = {}
        for line, text in hits:
            by_line.setdefault(line, []).append(repr(text[:80]))
        report += [f"{name}:{line}: {' '.join(texts)}" for line, texts in sorted(by_line.items())]
    return report


if __name__ == "__main__":
    lines = unmarked(sys.argv[1:])
    print("\n".join(lines))
    print(f"{len(lines)} unmarked", file=sys.stderr)
    sys.exit(1 if lines else 0)
