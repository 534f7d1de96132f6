"""What each kind of entry asks, and turning a submitted form into an entry body.

The user's text is kept exactly as typed (no trimming or normalising), so nothing is lost.
"""

from __future__ import annotations

from datetime import date

from .accounts import ValidationError
from .journal import body_too_large

KIND_LABELS = {
    "intention": "Intention",
    "reflection": "Reflection",
    "check_in": "Check-in",
    "free": "Journal entry",
    "support_card": "Support card",
    "safety_plan": "Safety plan",
    "capture": "After the session",
}
WRITABLE_KINDS = ("reflection", "intention", "check_in", "free", "support_card", "safety_plan")

# The "how to support me" card: (field, label, hint). At least one is filled in.
SUPPORT_CARD_FIELDS = [
    ("helps", "What helps me", "e.g. sit with me quietly, make tea, remind me to eat."),
    ("unhelpful", "What does not help", "e.g. asking a lot of questions straight away."),
    (
        "after_session",
        "The ride home and the rest of the day after a ketamine session",
        "Who takes you home, and what you need until bedtime. No driving until the next day.",
    ),
    ("who_to_call", "Who to call if you are worried about me", "Names and numbers."),
    (
        "crisis",
        "Crisis lines and anything else for a hard moment",
        "The app also shows the crisis lines from the “Need help now?” page.",
    ),
]

# The Stanley-Brown safety plan: six steps, written with the therapist. (field, label, hint)
SAFETY_PLAN_FIELDS = [
    (
        "warning_signs",
        "1. My warning signs",
        "Thoughts, feelings, images or situations that tell me a crisis may be coming.",
    ),
    (
        "coping",
        "2. Things I can do on my own",
        "To take my mind off things without contacting anyone: a walk, music, a shower.",
    ),
    (
        "distractions",
        "3. People and places that distract me",
        "Someone to be with or a place to go, without having to talk about how I feel.",
    ),
    (
        "people",
        "4. People I can ask for help",
        "Names and phone numbers of people I can tell that I am struggling.",
    ),
    (
        "professionals",
        "5. Professionals and crisis lines",
        "My therapist and clinic, their numbers and hours; 988 (call or text) any time.",
    ),
    (
        "environment",
        "6. Making my surroundings safe",
        "What I can put out of reach or ask someone to keep for me, and how.",
    ),
]
# Kinds whose body is a set of named text fields, shown in this order.
FIELDS_OF = {"support_card": SUPPORT_CARD_FIELDS, "safety_plan": SAFETY_PLAN_FIELDS}

INTENTION_FIELDS = [
    ("intention", "My intention, in one sentence", True),
    ("hopes", "What I hope for", False),
    ("worries", "What worries me", False),
    ("grounding", "A grounding phrase for hard moments", False),
    ("support", "Who is supporting me that day", False),
]
INTENTION_PROMPTS = [
    "What would you like to understand better about yourself?",
    "What are you ready to let go of?",
    "How do you want to treat yourself if things feel difficult?",
    "What would a small change in daily life look like after this?",
    "Who or what do you want to feel more connected to?",
    "What question would you like to carry into the session?",
]
REFLECTION_PROMPTS = [
    "What stood out most?",
    "What did you feel in your body?",
    "Was there an image, memory or phrase that stayed with you?",
    "What surprised you?",
    "What do you want to remember a week from now?",
    "What would you like to bring to your integration session?",
    "How does your intention look to you now?",
]
MOODS = [(1, "Very low"), (2, "Low"), (3, "Okay"), (4, "Good"), (5, "Very good")]
# The face drawn beside each mood (Lucide icons in static/icons/sprite.svg); the words say it.
MOOD_FACES = {1: "frown", 2: "annoyed", 3: "meh", 4: "smile", 5: "laugh"}


def labelled_fields(kind: str) -> list[tuple[str, str]]:
    """An entry body's text fields as (name, label), in the order its page shows them (a
    reflection, a check-in and a free entry: one unlabelled "text")."""
    if kind == "intention":
        return [(name, label) for name, label, _ in INTENTION_FIELDS]
    if kind in FIELDS_OF:
        return [(name, label) for name, label, _ in FIELDS_OF[kind]]
    return [("text", "")]


def prompts_for(kind: str, today: date | None = None, count: int = 3) -> list[str]:
    """A few prompts that rotate day by day; never required."""
    pool = INTENTION_PROMPTS if kind == "intention" else REFLECTION_PROMPTS
    start = (today or date.today()).toordinal() % len(pool)
    return [pool[(start + i) % len(pool)] for i in range(min(count, len(pool)))]


def parse(kind: str, form) -> dict:
    """The body for `kind` from a submitted form; ValidationError with the field's message."""
    if kind == "intention":
        body = {name: form.get(name, "") for name, _, _ in INTENTION_FIELDS}
        errors = {} if body["intention"].strip() else {"intention": "Write your intention."}
    elif kind in FIELDS_OF:
        fields = FIELDS_OF[kind]
        body = {name: form.get(name, "") for name, _, _ in fields}
        filled = any(value.strip() for value in body.values())
        what = "your card" if kind == "support_card" else "your plan"
        errors = {} if filled else {fields[0][0]: f"Write at least one part of {what}."}
    else:
        body = {"text": form.get("text", "")}
        errors = {}
        if kind == "check_in" and not (body["text"].strip() or form.get("mood")):
            errors["text"] = "Choose a mood or write a line."
        elif kind != "check_in" and not body["text"].strip() and not _answers(form):
            errors["text"] = "Write something first."
    body["answers"] = _answers(form)
    mood = form.get("mood", "")
    if mood:
        if mood not in {str(value) for value, _ in MOODS}:
            errors["mood"] = "Choose one of the moods."
        else:
            body["mood"] = int(mood)
    if not errors and body_too_large(body):
        errors["text"] = "This is longer than 64 KB. Please split it into two entries."
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
