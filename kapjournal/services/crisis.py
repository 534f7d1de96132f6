"""Crisis lines: the defaults (United States) and the clinic's own (KAPJOURNAL_CRISIS_LINES),
for "Need help now?", the support card and the safety response."""

from __future__ import annotations

from datetime import date

from flask import current_app

# The default crisis lines (United States). Clinics add their own with KAPJOURNAL_CRISIS_LINES.
DEFAULT_CRISIS_LINES = [
    ("988 Suicide & Crisis Lifeline — call", "988", "tel"),
    ("988 Suicide & Crisis Lifeline — text", "988", "sms"),
    ("Crisis Text Line — text HOME", "741741", "sms", "HOME"),
    ("Emergency services", "911", "tel"),
]
CRISIS_LINES_REVIEWED = date(2026, 11, 27)


def clinic_lines() -> list[tuple[str, str, str]]:
    """`Label: number` pairs separated by `;` in KAPJOURNAL_CRISIS_LINES."""
    lines = []
    for item in current_app.config["CRISIS_LINES"].split(";"):
        label, _, number = item.rpartition(":")
        if label.strip() and number.strip():
            lines.append((label.strip(), number.strip(), "tel"))
    return lines


def all_lines() -> dict:
    """The clinic's lines and the defaults, for templates."""
    return {"clinic": clinic_lines(), "default": DEFAULT_CRISIS_LINES}
