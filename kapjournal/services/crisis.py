"""Crisis lines: the defaults (United States) and the clinic's own (KAPJOURNAL_CRISIS_LINES),
for "Need help now?", the support card and the safety response."""

from __future__ import annotations

from datetime import date

from flask import current_app
from flask_babel import get_locale

# The default crisis lines (United States). Clinics add their own with KAPJOURNAL_CRISIS_LINES.
DEFAULT_CRISIS_LINES = [
    ("988 Suicide & Crisis Lifeline — call", "988", "tel"),
    ("988 Suicide & Crisis Lifeline — text", "988", "sms"),
    ("Crisis Text Line — text HOME", "741741", "sms", "HOME"),
    ("Emergency services", "911", "tel"),
]
CRISIS_LINES_REVIEWED = date(2026, 11, 27)
# In Spanish, 988's Spanish-language service as 988 publishes it: when calling, "Spanish-language
# (Press 2)"; when texting, "Spanish-language (text AYUDA)" (988 Suicide & Crisis Lifeline,
# "What to expect", 988lifeline.org/get-help/what-to-expect, read 2026-12-02). Crisis Text Line
# is listed as published in English (text HOME): no Spanish keyword of theirs was found in the
# stored references, so none is invented here.
SPANISH_CRISIS_LINES = [
    ("988 Lifeline: llame al 988 y oprima 2 para hablar en español", "988", "tel"),
    (
        "988 Lifeline: envíe AYUDA por mensaje de texto al 988 para escribir en español",
        "988",
        "sms",
        "AYUDA",
    ),
    ("Crisis Text Line (en inglés): envíe HOME por mensaje de texto", "741741", "sms", "HOME"),
    ("Emergencias", "911", "tel"),
]
SPANISH_LINES_REVIEWED = date(2026, 12, 2)


def clinic_lines() -> list[tuple[str, str, str]]:
    """`Label: number` pairs separated by `;` in KAPJOURNAL_CRISIS_LINES."""
    lines = []
    for item in current_app.config["CRISIS_LINES"].split(";"):
        label, _, number = item.rpartition(":")
        if label.strip() and number.strip():
            lines.append((label.strip(), number.strip(), "tel"))
    return lines


def all_lines() -> dict:
    """The clinic's lines and the defaults (in the page's language), for templates."""
    spanish = str(get_locale() or "en") == "es"
    return {
        "clinic": clinic_lines(),
        "default": SPANISH_CRISIS_LINES if spanish else DEFAULT_CRISIS_LINES,
        "reviewed": SPANISH_LINES_REVIEWED if spanish else CRISIS_LINES_REVIEWED,
    }
