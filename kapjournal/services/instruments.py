"""The PHQ-9 and GAD-7: their standard wording, scoring and severity bands (DESIGN §2).

Both are in the public domain (developed by Drs Spitzer, Williams, Kroenke and colleagues with
an educational grant from Pfizer; no permission is needed to reproduce them). The wording
here is the standard one, with the standard two-week recall and 0 to 3 answer scale.

Languages: the instruments' own wording (stem, items, answers, the difficulty question) is
deliberately not marked for translation. A validated instrument may only be shown in its
published translation, word for word (for Spanish: the PHQ-9 and GAD-7 "Spanish for the USA"
versions from the PHQ screeners' publishers). That wording was not found in the stored
references searched on 2026-12-02 (only third-party copies that differ from each other), so
Spanish-speaking patients see the English questionnaires, with a note saying so, until the
published text is added here with its source named. Never an ad-hoc translation. The app's own
words around them (titles, severity names, progress, comparisons, form errors) are interface
text and are translated like any other (`_l`, `_`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from .accounts import ValidationError
from .chart import Band, day_text

ANSWERS = [
    (0, "Not at all"),
    (1, "Several days"),
    (2, "More than half the days"),
    (3, "Nearly every day"),
]
DIFFICULTY_QUESTION = (
    "If you checked off any problems, how difficult have these problems made it for you to "
    "do your work, take care of things at home, or get along with other people?"
)
DIFFICULTY_ANSWERS = [
    (0, "Not difficult at all"),
    (1, "Somewhat difficult"),
    (2, "Very difficult"),
    (3, "Extremely difficult"),
]
RESPONSE_DROP = 0.5  # response: the score fell by at least half from the first one
REMISSION_BELOW = 5  # remission: a score under 5


@dataclass(frozen=True)
class Instrument:
    key: str  # the entry kind: "phq9" or "gad7"
    name: str  # "PHQ-9"
    title: str  # what it asks about, in plain words
    stem: str
    items: tuple[str, ...]
    bands: tuple[Band, ...]

    @property
    def max_score(self) -> int:
        return 3 * len(self.items)


PHQ9 = Instrument(
    key="phq9",
    name="PHQ-9",
    title=_l("Mood (PHQ-9)"),
    stem=(
        "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
    ),
    items=(
        "Little interest or pleasure in doing things",
        "Feeling down, depressed, or hopeless",
        "Trouble falling or staying asleep, or sleeping too much",
        "Feeling tired or having little energy",
        "Poor appetite or overeating",
        "Feeling bad about yourself — or that you are a failure or have let yourself or your "
        "family down",
        "Trouble concentrating on things, such as reading the newspaper or watching television",
        "Moving or speaking so slowly that other people could have noticed? Or the opposite — "
        "being so fidgety or restless that you have been moving around a lot more than usual",
        "Thoughts that you would be better off dead or of hurting yourself in some way",
    ),
    bands=(
        Band(0, 4, _l("Minimal")),
        Band(5, 9, _l("Mild")),
        Band(10, 14, _l("Moderate")),
        Band(15, 19, _l("Moderately severe")),
        Band(20, 27, _l("Severe")),
    ),
)
GAD7 = Instrument(
    key="gad7",
    name="GAD-7",
    title=_l("Anxiety (GAD-7)"),
    stem=("Over the last 2 weeks, how often have you been bothered by the following problems?"),
    items=(
        "Feeling nervous, anxious, or on edge",
        "Not being able to stop or control worrying",
        "Worrying too much about different things",
        "Trouble relaxing",
        "Being so restless that it is hard to sit still",
        "Becoming easily annoyed or irritable",
        "Feeling afraid, as if something awful might happen",
    ),
    bands=(
        Band(0, 4, _l("Minimal")),
        Band(5, 9, _l("Mild")),
        Band(10, 14, _l("Moderate")),
        Band(15, 21, _l("Severe")),
    ),
)
INSTRUMENTS = {PHQ9.key: PHQ9, GAD7.key: GAD7}
LABELS = {key: instrument.name for key, instrument in INSTRUMENTS.items()}
SAFETY_ITEM = 8  # PHQ-9 item 9 (0-based): thoughts of being better off dead or of self-harm


def score(instrument: Instrument, items: list[int]) -> int:
    """The total: the sum of the item answers (each 0 to 3)."""
    if len(items) != len(instrument.items) or any(a not in (0, 1, 2, 3) for a in items):
        raise ValueError("one answer from 0 to 3 for every item")
    return sum(items)


def band(instrument: Instrument, total: int) -> Band:
    """The severity band a total falls in."""
    for found in instrument.bands:
        if found.low <= total <= found.high:
            return found
    raise ValueError(f"{total} is outside 0 to {instrument.max_score}")


def needs_safety_response(instrument: Instrument, items: list[int]) -> bool:
    """PHQ-9 item 9 answered above 0."""
    return instrument is PHQ9 and items[SAFETY_ITEM] > 0


def parse(instrument: Instrument, form) -> dict:
    """The answers from a submitted form as a body {items, difficulty, score};
    ValidationError names each unanswered item (`item-N`, 1-based)."""
    items, errors = [], {}
    for number in range(1, len(instrument.items) + 1):
        value = form.get(f"item-{number}", "")
        if value not in ("0", "1", "2", "3"):
            errors[f"item-{number}"] = _("Choose one answer.")
            items.append(None)
        else:
            items.append(int(value))
    difficulty = form.get("difficulty", "")
    if difficulty not in ("", "0", "1", "2", "3"):
        errors["difficulty"] = _("Choose one answer, or leave it out.")
    if errors:
        raise ValidationError(errors)
    return {
        "items": items,
        "difficulty": int(difficulty) if difficulty else None,
        "score": score(instrument, items),
    }


def answers_so_far(instrument: Instrument, form) -> dict[str, str]:
    """The answers given so far in a step-by-step form ("item-N" → "0".."3")."""
    names = [f"item-{n}" for n in range(1, len(instrument.items) + 1)] + ["difficulty"]
    return {name: form[name] for name in names if form.get(name) in ("0", "1", "2", "3")}


@dataclass(frozen=True)
class Progress:
    """How a scale moved over a course of treatment, in plain words."""

    first: int
    latest: int
    response: bool  # latest ≤ half the first (and the first was above 0)
    remission: bool  # latest under 5

    @property
    def words(self) -> str:
        if self.remission and self.response:
            return _(
                "Response and remission: the score has fallen by half or more, and is under 5."
            )
        if self.remission:
            return _("Remission: the latest score is under 5.")
        if self.response:
            return _("Response: the score has fallen by half or more since the first one.")
        return ""


def progress(scores: list[int]) -> Progress | None:
    """Response and remission from scores oldest first; None with fewer than two."""
    if len(scores) < 2:
        return None
    first, latest = scores[0], scores[-1]
    response = first > 0 and latest <= first * (1 - RESPONSE_DROP)
    return Progress(first, latest, response, latest < REMISSION_BELOW)


@dataclass(frozen=True)
class Earlier:
    """The result before this one, as its reader may see it."""

    score: int
    day: date  # in the reader's time zone


def compared(
    instrument: Instrument, score: int, earlier: Earlier | None, *, year: int, first: str = ""
) -> str:
    """A result next to the one before it, in words: "4, down from 9 on 18 Nov", "9, the same
    as on 18 Nov", "12, up from 9 on 18 Nov" (with the earlier year when it is not `year`);
    with none before, `first` or "your first PHQ-9"."""
    if earlier is None:
        return first or _("your first %(name)s", name=instrument.name)
    on = day_text(earlier.day, year=earlier.day.year != year)
    then = {"score": score, "earlier": earlier.score, "on": on}
    if score < earlier.score:
        return _("%(score)d, down from %(earlier)d on %(on)s", **then)
    if score > earlier.score:
        return _("%(score)d, up from %(earlier)d on %(on)s", **then)
    return _("%(score)d, the same as on %(on)s", **then)
