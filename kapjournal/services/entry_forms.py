"""What each kind of entry asks, and turning a submitted form into an entry body.

The user's text is kept exactly as typed (no trimming or normalising), so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from .accounts import ValidationError
from .journal import body_too_large

# Labels are translated when shown (lazy strings: str() them where a plain str is needed);
# the keys, the kinds stored on entries, stay English.
KIND_LABELS = {
    "intention": _l("Intention"),
    "reflection": _l("Reflection"),
    "check_in": _l("Check-in"),
    "free": _l("Journal entry"),
    "support_card": _l("Support card"),
    "safety_plan": _l("Safety plan"),
    "capture": _l("After the session"),
}
WRITABLE_KINDS = ("reflection", "intention", "check_in", "free", "support_card", "safety_plan")


class Fields(Sequence):
    """A form's fields as (name, label, …) rows, whose words are marked with `_l`: reading a
    row gives plain `str`s in the language of the request (safe to compare, join or put in
    JSON), the field names English as stored."""

    def __init__(self, rows: list[tuple]):
        self._rows = rows

    @staticmethod
    def _plain(row: tuple) -> tuple:
        return tuple(v if isinstance(v, str | bool | None) else str(v) for v in row)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._plain(row) for row in self._rows[index]]
        return self._plain(self._rows[index])

    def __len__(self) -> int:
        return len(self._rows)


# The "how to support me" card: (field, label, hint). At least one is filled in.
SUPPORT_CARD_FIELDS = Fields(
    [
        ("helps", _l("What helps me"), _l("e.g. sit with me quietly, make tea, remind me to eat.")),
        (
            "unhelpful",
            _l("What does not help"),
            _l("e.g. asking a lot of questions straight away."),
        ),
        (
            "after_session",
            _l("The ride home and the rest of the day after a ketamine session"),
            _l(
                "Who takes you home, and what you need until bedtime. "
                "No driving until the next day."
            ),
        ),
        ("who_to_call", _l("Who to call if you are worried about me"), _l("Names and numbers.")),
        (
            "crisis",
            _l("Crisis lines and anything else for a hard moment"),
            _l("The app also shows the crisis lines from the “Need help now?” page."),
        ),
    ]
)

# The Stanley-Brown safety plan: six steps, written with the therapist. (field, label, hint)
SAFETY_PLAN_FIELDS = Fields(
    [
        (
            "warning_signs",
            _l("1. My warning signs"),
            _l("Thoughts, feelings, images or situations that tell me a crisis may be coming."),
        ),
        (
            "coping",
            _l("2. Things I can do on my own"),
            _l("To take my mind off things without contacting anyone: a walk, music, a shower."),
        ),
        (
            "distractions",
            _l("3. People and places that distract me"),
            _l("Someone to be with or a place to go, without having to talk about how I feel."),
        ),
        (
            "people",
            _l("4. People I can ask for help"),
            _l("Names and phone numbers of people I can tell that I am struggling."),
        ),
        (
            "professionals",
            _l("5. Professionals and crisis lines"),
            _l("My therapist and clinic, their numbers and hours; 988 (call or text) any time."),
        ),
        (
            "environment",
            _l("6. Making my surroundings safe"),
            _l("What I can put out of reach or ask someone to keep for me, and how."),
        ),
    ]
)
# Kinds whose body is a set of named text fields, shown in this order.
FIELDS_OF = {"support_card": SUPPORT_CARD_FIELDS, "safety_plan": SAFETY_PLAN_FIELDS}

INTENTION_FIELDS = Fields(
    [
        ("intention", _l("My intention, in one sentence"), True),
        ("hopes", _l("What I hope for"), False),
        ("worries", _l("What worries me"), False),
        ("grounding", _l("A grounding phrase for hard moments"), False),
        ("support", _l("Who is supporting me that day"), False),
    ]
)
INTENTION_PROMPTS = [
    _l("What would you like to understand better about yourself?"),
    _l("What are you ready to let go of?"),
    _l("How do you want to treat yourself if things feel difficult?"),
    _l("What would a small change in daily life look like after this?"),
    _l("Who or what do you want to feel more connected to?"),
    _l("What question would you like to carry into the session?"),
]
REFLECTION_PROMPTS = [
    _l("What stood out most?"),
    _l("What did you feel in your body?"),
    _l("Was there an image, memory or phrase that stayed with you?"),
    _l("What surprised you?"),
    _l("What do you want to remember a week from now?"),
    _l("What would you like to bring to your integration session?"),
    _l("How does your intention look to you now?"),
]
MOODS = [
    (1, _l("Very low")),
    (2, _l("Low")),
    (3, _l("Okay")),
    (4, _l("Good")),
    (5, _l("Very good")),
]
# The face drawn beside each mood (Lucide icons in static/icons/sprite.svg); the words say it.
MOOD_FACES = {1: "frown", 2: "annoyed", 3: "meh", 4: "smile", 5: "laugh"}


def labelled_fields(kind: str) -> list[tuple[str, str]]:
    """An entry body's text fields as (name, label), in the order its page shows them (a
    reflection, a check-in and a free entry: one unlabelled "text")."""
    if kind == "intention":
        return [(name, label) for name, label, _needed in INTENTION_FIELDS]
    if kind in FIELDS_OF:
        return [(name, label) for name, label, _hint in FIELDS_OF[kind]]
    return [("text", "")]


def prompts_for(kind: str, today: date | None = None, count: int = 3) -> list[str]:
    """A few prompts that rotate day by day; never required. In the request's language: an
    answer keeps the question as its author saw it."""
    pool = INTENTION_PROMPTS if kind == "intention" else REFLECTION_PROMPTS
    start = (today or date.today()).toordinal() % len(pool)
    return [str(pool[(start + i) % len(pool)]) for i in range(min(count, len(pool)))]


def parse(kind: str, form) -> dict:
    """The body for `kind` from a submitted form; ValidationError with the field's message."""
    if kind == "intention":
        body = {name: form.get(name, "") for name, *_rest in INTENTION_FIELDS}
        errors = {} if body["intention"].strip() else {"intention": _("Write your intention.")}
    elif kind in FIELDS_OF:
        fields = FIELDS_OF[kind]
        body = {name: form.get(name, "") for name, *_rest in fields}
        filled = any(value.strip() for value in body.values())
        if kind == "support_card":
            missing = _("Write at least one part of your card.")
        else:
            missing = _("Write at least one part of your plan.")
        errors = {} if filled else {fields[0][0]: missing}
    else:
        body = {"text": form.get("text", "")}
        errors = {}
        if kind == "check_in" and not (body["text"].strip() or form.get("mood")):
            errors["text"] = _("Choose a mood or write a line.")
        elif kind != "check_in" and not body["text"].strip() and not _answers(form):
            errors["text"] = _("Write something first.")
    body["answers"] = _answers(form)
    mood = form.get("mood", "")
    if mood:
        if mood not in {str(value) for value, _label in MOODS}:
            errors["mood"] = _("Choose one of the moods.")
        else:
            body["mood"] = int(mood)
    if not errors and body_too_large(body):
        errors["text"] = _("This is longer than 64 KB. Please split it into two entries.")
    if errors:
        raise ValidationError(errors)
    return body


def _answers(form) -> list[dict]:
    """Prompt answers as [{prompt, answer}], keeping only answered ones."""
    answers = []
    prompts = form.getlist("prompt")
    replies = form.getlist("answer")
    for prompt, answer in zip(prompts, replies, strict=False):
        if answer.strip():
            answers.append({"prompt": prompt[:300], "answer": answer})
    return answers


def form_values(body: dict) -> dict:
    """A body back as form values, for the edit form."""
    values = {k: v for k, v in body.items() if isinstance(v, str)}
    if "mood" in body:
        values["mood"] = str(body["mood"])
    return values
