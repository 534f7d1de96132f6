"""Questionnaires, their trends, the safety plan, and the care team's safety checks."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, redirect, request, url_for
from sqlalchemy.exc import IntegrityError

from .. import db, pages, policy, web
from ..i18n import gettext as _
from ..models import Entry, User
from ..services import (
    accounts,
    care,
    entry_forms,
    instruments,
    measures,
    reading,
)
from ..services import timeline as course_pages
from ..services.accounts import ValidationError
from ..services.instruments import INSTRUMENTS, Instrument
from . import in_viewer_zone, render, see_other

bp = Blueprint("measures", __name__)

MODES = ("all", "one")  # all items on one page, or one item per screen


def _me() -> User:
    return web.me()


def _instrument(key: str) -> Instrument:
    found = INSTRUMENTS.get(key)
    if found is None:
        abort(404)
    return found


# --- the patient's progress page ----------------------------------------------------------------


@bp.get("/measures")
@policy.allow("patient")
def index():
    before = course_pages.Cursor.parse(request.args.get("before"))
    return render(
        "measures/index.html",
        due=measures.due(session=db.session(), patient=_me()),
        **pages.trends(web.reader(), _me(), scale=request.args.get("scale"), before=before),
    )


# --- answering ----------------------------------------------------------------------------------


@bp.route("/measures/<key>/new", methods=["GET", "POST"])
@policy.allow("patient")
def answer(key: str):
    instrument = _instrument(key)
    mode = request.values.get("mode", "all")
    mode = mode if mode in MODES else "all"
    if request.method == "GET":
        return _form(instrument, mode=mode, values={"client_id": str(uuid.uuid4())}, step=1)
    values = request.form
    step = _step(instrument, values)
    nav = values.get("nav", "save")
    if nav == "switch":  # to the other layout, keeping every answer given so far
        other = "one" if mode == "all" else "all"
        return _form(
            instrument, mode=other, values=values, step=_first_unanswered(instrument, values)
        )
    if mode == "one" and nav == "back":
        return _form(instrument, mode=mode, values=values, step=max(1, step - 1))
    if mode == "one" and nav == "next":
        name = _name(instrument, step)
        if step <= len(instrument.items) and values.get(name) not in ("0", "1", "2", "3"):
            errors = {name: _("Choose one answer.")}
            return _form(instrument, mode=mode, values=values, step=step, errors=errors, status=422)
        return _form(instrument, mode=mode, values=values, step=step + 1)
    return _save(instrument, mode=mode, values=values)


def _first_unanswered(instrument: Instrument, values) -> int:
    """The step of the first question without an answer (the last step if all have one)."""
    answered = instruments.answers_so_far(instrument, values)
    count = len(instrument.items)
    return next((n for n in range(1, count + 1) if f"item-{n}" not in answered), count + 1)


def _name(instrument: Instrument, step: int) -> str:
    return f"item-{step}" if step <= len(instrument.items) else "difficulty"


def _step(instrument: Instrument, values) -> int:
    try:
        step = int(values.get("step", "1"))
    except ValueError:
        step = 1
    return min(max(step, 1), len(instrument.items) + 1)


def _save(instrument: Instrument, *, mode: str, values):
    dbs = db.session()
    try:
        body = instruments.parse(instrument, values)
    except ValidationError as exc:
        first = _first_unanswered(instrument, values)
        return _form(
            instrument, mode=mode, values=values, step=first, errors=exc.errors, status=422
        )
    try:
        client_id = uuid.UUID(values.get("client_id", ""))
    except ValueError:
        client_id = uuid.uuid4()
    readers = care.therapists_of(session=dbs, patient=_me())
    if values.get("share") != "1":
        readers = []
    new = {"instrument": instrument, "body": body, "client_id": client_id, "readers": readers}
    try:
        entry, _created = measures.record(session=dbs, patient=_me(), **new)
    except IntegrityError:  # the same submission twice at once: the first one made it
        dbs.rollback()
        entry, _created = measures.record(session=dbs, patient=_me(), **new)
    dbs.commit()
    return see_other("measures.result", entry_id=entry.id)


def _form(instrument: Instrument, *, mode, values, step, errors=None, status=200):
    share = values.get("share") == "1" if "nav" in values else None
    if share is None:
        share = measures.shares_by_default(_me(), instrument.key)
    return render(
        "measures/form.html",
        status=status,
        instrument=instrument,
        mode=mode,
        step=step,
        answers=instruments.answers_so_far(instrument, values),
        client_id=values.get("client_id", ""),
        errors=errors or {},
        share=share,
        has_care_team=bool(care.therapists_of(session=db.session(), patient=_me())),
        answer_choices=instruments.ANSWERS,
        difficulty_question=instruments.DIFFICULTY_QUESTION,
        difficulty_choices=instruments.DIFFICULTY_ANSWERS,
    )


# --- one result ---------------------------------------------------------------------------------


@bp.get("/measures/results/<uuid:entry_id>")
@policy.allow("patient", "therapist")
def result(entry_id: uuid.UUID):
    dbs = db.session()
    entry, wrapped = policy.get_entry_to_read_for(
        session=dbs, user=_me(), entry_id=entry_id, need="read", kinds=INSTRUMENTS
    )
    instrument = INSTRUMENTS[entry.kind]
    reader = web.reader()
    body = pages.entry_body(reader, entry, wrapped)
    mine = entry.author_id == _me().id
    safety = mine and instruments.needs_safety_response(instrument, body["items"])
    sharing = pages.sharing_panel(_me(), entry) if mine else {}
    return render(
        "measures/result.html",
        entry=entry,
        instrument=instrument,
        body=body,
        comparison=_comparison(entry, instrument, body["score"], mine=mine),
        scale=_own_scale(entry) if mine else None,
        band=instruments.band(instrument, body["score"]),
        mine=mine,
        safety=safety,
        plan=pages.safety_plan(reader) if safety else None,
        **sharing,
        has_care_team=mine and bool(care.therapists_of(session=dbs, patient=_me())),
        care_team_reads=any(
            person.role == "therapist" and not pending
            for person, _role, pending in sharing.get("readers", [])
        ),
        patient_name=None if mine else accounts.name_of(dbs.get(User, entry.author_id)),
        answer_labels=dict(instruments.ANSWERS),
        difficulty_labels=dict(instruments.DIFFICULTY_ANSWERS),
        difficulty_question=instruments.DIFFICULTY_QUESTION,
    )


def _comparison(entry: Entry, instrument: Instrument, score: int, *, mine: bool) -> str | None:
    """This result next to the reader's previous one of the same questionnaire, in words (a
    read of that one, when not the reader's own); None when that one does not open."""
    dbs = db.session()
    rows, _after = course_pages.entries_page(
        session=dbs,
        patient_id=entry.author_id,
        reader_id=_me().id,
        kinds=[entry.kind],
        before=course_pages.Cursor.after(entry),
        size=1,
    )
    earlier = None
    if rows:
        item = reading.open_entries(session=dbs, reader=web.reader(), rows=rows)[0]
        if item.body is None:
            return None
        day = in_viewer_zone(item.entry.created_at).date()
        earlier = instruments.Earlier(score=item.body["score"], day=day)
    year = in_viewer_zone(entry.created_at).year
    first = "" if mine else _("the first %(name)s shared with you", name=instrument.name)
    return instruments.compared(instrument, score, earlier, year=year, first=first)


def _own_scale(entry: Entry) -> dict | None:
    """The chart and table of the patient's own results of this questionnaire."""
    scales = pages.trends(web.reader(), _me())["scales"]
    return next((s for s in scales if s["instrument"].key == entry.kind), None)


# --- the safety plan ----------------------------------------------------------------------------


@bp.app_template_global()
def answer_label(value: int) -> str:
    return dict(instruments.ANSWERS).get(value, str(value))


@bp.app_template_global()
def safety_plan_fields() -> list[tuple[str, str, str]]:
    return entry_forms.SAFETY_PLAN_FIELDS


@bp.get("/safety-plan")
@policy.allow("patient")
def safety_plan():
    entry = measures.safety_plan_entry(session=db.session(), patient=_me())
    if entry is None:
        return redirect(url_for("journal.new_entry", kind="safety_plan"), code=303)
    return redirect(url_for("journal.show_entry", entry_id=entry.id), code=303)


# --- the care team's safety checks --------------------------------------------------------------


@bp.post("/safety-checks/<uuid:check_id>/acknowledge")
@policy.allow("therapist")
def acknowledge(check_id: uuid.UUID):
    dbs = db.session()
    check = policy.get_safety_check_for(session=dbs, user=_me(), check_id=check_id)
    if check.reviewed_at is None:
        measures.mark_reviewed(session=dbs, check=check, therapist=_me())
        dbs.commit()
    if request.form.get("back") == "patient":
        return see_other("patients.show", patient_id=check.patient_id)
    return see_other("home.index")
