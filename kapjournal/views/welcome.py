"""The first run: a short welcome after a new account has confirmed saving its recovery code
(views/auth.py sends it here once), by role. A patient then gets up to three optional steps,
each with "Step n of N", a way to skip it and "Go to my journal": their safety plan, the app
on the home screen, and reminders (only when the clinic offers them).

Nothing is stored about the steps: the pages only link to what exists (the safety-plan form,
the browser's own install prompt, the reminders of the account page), and they stay open to
come back to from the account page.
"""

from __future__ import annotations

from flask import Blueprint, abort

from .. import db, policy, web
from ..services import measures, push, support
from . import render

bp = Blueprint("welcome", __name__)

STEPS = ("safety-plan", "home-screen", "reminders")


def steps() -> tuple[str, ...]:
    """A patient's steps: reminders only when the clinic set them up (VAPID keys)."""
    return STEPS if push.enabled() else STEPS[:-1]


@bp.get("/welcome")
@policy.allow(policy.AUTHENTICATED)
def index():
    me = web.me()
    if me.role == "support":
        people = support.names(support.patients_of(session=db.session(), supporter=me))
        return render("welcome/support.html", people=people)
    if me.role == "therapist":
        return render("welcome/therapist.html")
    return render("welcome/patient.html", steps=steps())


@bp.get("/welcome/<name>")
@policy.allow("patient")
def step(name: str):
    order = steps()
    if name not in order:
        abort(404)
    number = order.index(name) + 1
    has_plan = name == "safety-plan" and (
        measures.safety_plan_entry(session=db.session(), patient=web.me()) is not None
    )
    return render(
        "welcome/step.html",
        step=name,
        number=number,
        count=len(order),
        previous=order[number - 2] if number > 1 else None,
        following=order[number] if number < len(order) else None,
        has_plan=has_plan,
    )
