"""PHQ-9 and GAD-7 results as FHIR R4 QuestionnaireResponse resources, for the exports
(DESIGN §11): each result a `QuestionnaireResponse` (status "completed") whose `questionnaire`
is the LOINC panel, whose item linkIds are the LOINC item codes, each answer a `valueCoding`
with its LOINC answer code, and the total score an item with a `valueInteger`; all of them in
one `Bundle` of type "collection".

The app builds this JSON itself; the tests validate it with fhir.resources.

Every LOINC code below was checked against two independent published questionnaires, cited
where each list is; none is guessed. Where no published code was found (the difficulty
question after the GAD-7), the item has a plain linkId that is not a LOINC code, and its
answer is coded with the LOINC answer codes of those very answer words.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from ..models import aware
from .instruments import (
    ANSWERS,
    DIFFICULTY_ANSWERS,
    DIFFICULTY_QUESTION,
    GAD7,
    INSTRUMENTS,
    PHQ9,
)

LOINC = "http://loinc.org"

# Sources, both read for this list: (1) the PHQ-9 and GAD-7 Questionnaires as the NLM's LHC-Forms
# exports them (meta.tag "lformsVersion: 34.3.0"; kept as FHIR samples in a public repository),
# (2) the German Medical Informatics Initiative's PRO module, cited by path below.
#
# LOINC answer list LL358-3 (PHQ-9 and GAD-7 items), score 0 to 3: in (1) every item's
# answerOption list carries these codes with ordinalValue 0-3; in (2) the PRO module
# (medizininformatik-initiative/kerndatensatzmodul-proms, input/fsh/definitions/phq-9/
# mii-qst-pro-phq-9.fsh and gad-7/mii-qst-pro-gad-7.fsh; value set LL358-3).
FREQUENCY_CODES = ("LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9")

# LOINC answer list LL359-1 (the difficulty question), 0 to 3. Note that "Very difficult" is
# LA6575-0 and "Extremely difficult" LA6574-3: the codes are not in the order of the words.
# Checked against the LHC-Forms PHQ-9 (item 69722-7) and the MII value set
# mii-vs-phq-9-answer-list-ll359-1.fsh.
DIFFICULTY_CODES = ("LA6572-7", "LA6573-5", "LA6575-0", "LA6574-3")


@dataclass(frozen=True)
class Codes:
    """The LOINC codes of one instrument."""

    panel: str
    items: tuple[str, ...]
    total: str
    difficulty: str  # the difficulty item's linkId: a LOINC code where one is published

    @property
    def canonical(self) -> str:
        return f"{LOINC}/q/{self.panel}"


CODES = {
    # PHQ-9 panel 44249-1, items 1-9, total score 44261-6 and the difficulty question 69722-7:
    # the LHC-Forms PHQ-9 (lformsVersion 34.3.0) and the MII module's
    # input/fsh/definitions/phq-9/mii-qst-pro-phq-9-displayable.fsh agree on every one.
    PHQ9.key: Codes(
        panel="44249-1",
        items=(
            "44250-9",
            "44255-8",
            "44259-0",
            "44254-1",
            "44251-7",
            "44258-2",
            "44252-5",
            "44253-3",
            "44260-8",
        ),
        total="44261-6",
        difficulty="69722-7",
    ),
    # GAD-7 panel 69737-5, items 1-7 and total score 70274-6: the LHC-Forms GAD-7
    # (lformsVersion 34.3.0) and the MII module's input/fsh/definitions/gad-7/
    # mii-qst-pro-gad-7.fsh and mii-obsdef-pro-score-gad-7.fsh agree on every one. Neither
    # has the difficulty question, so it has no LOINC code here (see the module docstring).
    GAD7.key: Codes(
        panel="69737-5",
        items=("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"),
        total="70274-6",
        difficulty="gad7-difficulty",
    ),
}


def _coding(code: str, display: str) -> dict:
    return {"system": LOINC, "code": code, "display": display}


def _instant(moment: datetime) -> str:
    return aware(moment).astimezone(UTC).isoformat(timespec="seconds")


def questionnaire_response(*, entry, body: dict, subject: str | None = None) -> dict:
    """One PHQ-9 or GAD-7 result (an entry and its opened body) as a QuestionnaireResponse."""
    instrument, codes = INSTRUMENTS[entry.kind], CODES[entry.kind]
    labels = dict(ANSWERS)
    items = [
        {
            "linkId": code,
            "text": text,
            "answer": [{"valueCoding": _coding(FREQUENCY_CODES[value], labels[value])}],
        }
        for code, text, value in zip(codes.items, instrument.items, body["items"], strict=True)
    ]
    difficulty = body.get("difficulty")
    if difficulty is not None:
        label = dict(DIFFICULTY_ANSWERS)[difficulty]
        answer = {"valueCoding": _coding(DIFFICULTY_CODES[difficulty], label)}
        items.append({"linkId": codes.difficulty, "text": DIFFICULTY_QUESTION, "answer": [answer]})
    items.append(
        {
            "linkId": codes.total,
            "text": f"{instrument.name} total score",
            "answer": [{"valueInteger": int(body["score"])}],
        }
    )
    resource = {
        "resourceType": "QuestionnaireResponse",
        "id": str(entry.id),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{entry.id}"},
        "questionnaire": codes.canonical,
        "status": "completed",
        "authored": _instant(entry.created_at),
        "item": items,
    }
    if subject:
        resource["subject"] = {"display": subject}
    return resource


def bundle_entry(resource: dict) -> dict:
    """A Bundle entry for a resource, named by its id as a URN."""
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def bundle(results, *, subject: str | None, now: datetime) -> dict:
    """A collection Bundle of (entry, opened body) results; its entries an iterator, written
    one by one as they come (an empty one is left out: FHIR allows no empty array)."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": _instant(now),
        "entry": (
            bundle_entry(questionnaire_response(entry=entry, body=body, subject=subject))
            for entry, body in results
        ),
    }
