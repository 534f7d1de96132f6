"""The day of a ketamine session, the patient's part (issue 15, items 1 and 2): the checklist
from 18:00 the evening before until the start, and "I'm home" afterwards. Each action answers
htmx with its own block (nothing else is read again) and redirects (303) without JavaScript.
The supporters' part is shown on their pages (views/home.py, views/support.py)."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, redirect, request, url_for
from sqlalchemy.exc import IntegrityError

from .. import db, pages, policy, web
from ..services import session_day
from . import in_place, render, viewer_zone

bp = Blueprint("day", __name__)

TEMPLATE = "session_day/checklist.html"


def _session(session_id: uuid.UUID):
    return policy.get_checklist_session_for(
        session=db.session(), user=web.me(), session_id=session_id
    )


def _shown(treatment_session):
    """The session day as the patient's home shows it now; 404 once it is not shown."""
    reader = web.reader()
    found = session_day.day_for(
        session=db.session(),
        patient=reader.user,
        treatment_session=treatment_session,
        private_key=reader.private_key,
        zone=viewer_zone(),
    )
    if found is None:
        abort(404)
    return found


def _supporter(field: str):
    """A supporter chosen in the form (one of the patient's own, else 404), or None."""
    value = request.form.get(field, "")
    if not value:
        return None
    try:
        supporter_id = uuid.UUID(value)
    except ValueError:
        abort(404)
    return policy.get_supporter_for(session=db.session(), user=web.me(), supporter_id=supporter_id)


def _answer(day: session_day.Day, *, saved: bool = False):
    if in_place():
        return render(TEMPLATE, block="checklist", **pages.session_day_context(day, saved=saved))
    return redirect(url_for("home.index", _anchor=f"day-{day.session.id}"), code=303)


@bp.get("/sessions/<uuid:session_id>/checklist")
@policy.allow("patient")
def show(session_id: uuid.UUID):
    """The checklist (or "I'm home") on a page of its own, while the home page shows it."""
    return render(TEMPLATE, **pages.session_day_context(_shown(_session(session_id))))


@bp.post("/sessions/<uuid:session_id>/checklist")
@policy.allow("patient")
def save(session_id: uuid.UUID):
    """Keep the ticks (sealed for the patient alone) and whom they named; only while the
    checklist is open (from 18:00 the evening before until the start)."""
    dbs = db.session()
    treatment_session = _session(session_id)
    if _shown(treatment_session).phase != "before":
        abort(404)
    ride, companion = _supporter("ride_id"), _supporter("companion_id")
    for attempt in range(2):  # two first saves at once: the loser saves over the winner
        try:
            session_day.save(
                session=dbs,
                patient=web.me(),
                treatment_session=treatment_session,
                ticked=request.form.getlist("tick"),
                ride=ride,
                companion=companion,
                zone_name=str(viewer_zone()),
            )
            dbs.commit()
            break
        except IntegrityError:
            dbs.rollback()
            if attempt:
                raise
    return _answer(_shown(treatment_session), saved=True)


@bp.post("/sessions/<uuid:session_id>/home")
@policy.allow("patient")
def home(session_id: uuid.UUID):
    """ "I'm home": the supporters the patient named see it. Only after the start, when
    someone was named; a second tap changes nothing."""
    dbs = db.session()
    shown = _shown(_session(session_id))
    if shown.phase != "after":
        abort(404)
    session_day.mark_home(session=dbs, day=shown.day)
    dbs.commit()
    dbs.refresh(shown.day)
    return _answer(shown)
