"""Writing without a connection: a public, login-free form shell the service worker keeps.

The real form pages hold a CSRF token and the names of the care team, so they are never
cached. This page holds neither: the service worker precaches it and serves it for
/entries/new?kind=reflection or ?kind=check_in when the network is gone. drafts.js keeps what
is written there encrypted on the phone and sends it, with a fresh CSRF token from the real
form page, once the phone is online and logged in.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

from .. import policy
from ..services import capture, entry_forms
from . import render

bp = Blueprint("offline", __name__)

OFFLINE_KINDS = ("reflection", "check_in")


@bp.get("/write-offline")
@policy.allow(policy.PUBLIC)
def write():
    kind = request.args.get("kind", "reflection")
    if kind not in OFFLINE_KINDS:
        abort(404)
    if current_user.is_authenticated and current_user.role == "patient":
        # Online and logged in: the real form (it works without JavaScript too).
        return redirect(url_for("journal.new_entry", kind=kind))
    # no-store like every page: the service worker keeps its own copy (Cache API), fetched
    # without cookies, and the HTTP cache must never hold a logged-in rendering of it.
    return render(
        "offline/write.html",
        kind=kind,
        prompts=entry_forms.prompts_for(kind) if kind == "reflection" else [],
        moods=entry_forms.MOODS,
    )


@bp.get("/capture-offline")
@policy.allow(policy.PUBLIC)
def capture_offline():
    """The capture page's login-free copy, kept by the service worker for /capture offline."""
    if current_user.is_authenticated and current_user.role == "patient":
        return redirect(url_for("capture.new"))
    return render(
        "offline/capture.html",
        feelings=capture.FEELINGS,
        chosen=set(),
        values={},
        errors={},
        memo_mb=capture.memo_limit() // (1024 * 1024),
    )
