"""Crisis lines: the defaults (United States) and the clinic's own (KAPJOURNAL_CRISIS_LINES),
for "Need help now?", the support card and the safety response."""

from __future__ import annotations

from datetime import date
from functools import cache

from flask import current_app

from .. import i18n
from ..i18n import lazy_gettext as _l

# The default crisis lines (United States). Clinics add their own with KAPJOURNAL_CRISIS_LINES.
# Each label is translated in the catalogue; the Spanish wording of 988's lines is 988's own:
# when calling, "Spanish-language (Press 2)"; when texting, "Spanish-language (text AYUDA)"
# (988 Suicide & Crisis Lifeline, "What to expect", 988lifeline.org/get-help/what-to-expect,
# read 2026-12-02). Crisis Text Line is listed as published in English (text HOME): no Spanish
# keyword of theirs was found in the stored references, so none is invented here.
DEFAULT_CRISIS_LINES = [
    (_l("988 Suicide & Crisis Lifeline — call"), "988", "tel"),
    (_l("988 Suicide & Crisis Lifeline — text"), "988", "sms"),
    (_l("Crisis Text Line — text HOME"), "741741", "sms", "HOME"),
    (_l("Emergency services"), "911", "tel"),
]
CRISIS_LINES_REVIEWED = date(2026, 11, 27)
# What to text, where a language has its own keyword (a machine value, as published; never
# translated in the catalogue): 988 answers in Spanish to AYUDA.
SMS_KEYWORDS = {"es": {"988": "AYUDA"}}
SPANISH_LINES_REVIEWED = date(2026, 12, 2)


def clinic_lines() -> list[tuple[str, str, str]]:
    """`Label: number` pairs separated by `;` in KAPJOURNAL_CRISIS_LINES."""
    return list(_parsed(current_app.config["CRISIS_LINES"]))


@cache
def _parsed(setting: str) -> tuple[tuple[str, str, str], ...]:
    lines = []
    for item in setting.split(";"):
        label, _, number = item.rpartition(":")
        if label.strip() and number.strip():
            lines.append((label.strip(), number.strip(), "tel"))
    return tuple(lines)


def default_lines(language: str) -> list[tuple]:
    """The default lines in `language` (the page's): each label translated, and the text
    keyword of that language where a service publishes one."""
    keywords = SMS_KEYWORDS.get(language, {})
    lines = []
    for label, number, kind, *body in DEFAULT_CRISIS_LINES:
        keyword = keywords.get(number) if kind == "sms" else None
        keyword = keyword or (body[0] if body else None)
        lines.append((str(label), number, kind, *([keyword] if keyword else [])))
    return lines


def all_lines() -> dict:
    """The clinic's lines and the defaults (in the page's language), for templates."""
    language = i18n.html_lang()
    return {
        "clinic": clinic_lines(),
        "default": default_lines(language),
        "reviewed": SPANISH_LINES_REVIEWED if language == "es" else CRISIS_LINES_REVIEWED,
    }
