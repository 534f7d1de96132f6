"""The one request pipeline (DESIGN §6): everything that runs before and after a view, in a
stated order, in one place.

Before the view, in this order; each step costs at most one indexed lookup when there is
nothing to do (step 1 is that lookup; the others read the rows it loaded):

1. **Who.** The device session behind the login cookie, with its user (Flask-Login's request
   loader: one query, and only when a cookie came).
2. **Second factor.** A session that has given only its password reaches only the code step;
   a therapist without two-step login reaches only pages without patient data until it is on.
3. **Recovery code.** An account that has not confirmed saving its recovery code reaches only
   the recovery-code pages.
4. **Waiting work.** A patient's queued re-encryptions and pending grants, done now that their
   key is unlocked, only when the `pending_work` flag on their row says there is some.
5. **Authorization.** The endpoint's declared audience (`policy.allow`); default deny.

The PWA's own pages (the crisis page, the offline pages, the manifest, the service worker)
skip steps 2 to 4: they show nothing personal, and "Need help now?" always opens.

After the view: the reads of a delivered page are recorded and the device's key cache is kept
(`web.finish`), then the security headers are set.
"""

from __future__ import annotations

from flask import Flask, redirect, request, url_for
from flask_login import current_user

from . import db, policy, web
from .services import support, totp

# Always reachable, whatever state the login is in: nothing personal, and the crisis page.
ALWAYS_OPEN = "pwa."
# A session that has given only its password reaches these, and nothing else. The new
# recovery code shown right after a reset can be confirmed before the login code.
CODE_STEP = {"mfa.verify", "auth.logout", "auth.recovery_code_confirm"}
# A therapist without two-step login reaches these until they set it up: no patient data.
BEFORE_TWO_STEP_SETUP = ("mfa.", "auth.", "account.")
# An account that has not confirmed saving its recovery code reaches only these.
BEFORE_RECOVERY_CONFIRMED = {
    "auth.recovery_code",
    "auth.recovery_code_new",
    "auth.recovery_code_confirm",
    "auth.logout",
}


def before_request():
    """Steps 1 to 5, in order; the first that answers ends the request there."""
    endpoint = request.endpoint
    if endpoint is None or endpoint == "static":
        return None  # no route (Flask answers 404/405), or a static file
    if not endpoint.startswith(ALWAYS_OPEN):
        for step in (_second_factor, _recovery_code, _waiting_work):
            answer = step(endpoint)
            if answer is not None:
                return answer
    return policy.authorize_request()


def _second_factor(endpoint: str):
    if not current_user.is_authenticated:  # step 1: loads the session, if a cookie came
        return None
    if current_user.unlocked.device.mfa_pending:
        return None if endpoint in CODE_STEP else redirect(url_for("mfa.verify"))
    user = current_user.user
    if (
        totp.required(user)
        and not totp.enabled(user)
        and not endpoint.startswith(BEFORE_TWO_STEP_SETUP)
    ):
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("mfa.setup", next=target))
    return None


def _recovery_code(endpoint: str):
    if not current_user.is_authenticated or current_user.user.recovery_confirmed_at:
        return None
    if current_user.unlocked.device.mfa_pending:
        return None  # the code step first (step 2 let only it through)
    if endpoint in BEFORE_RECOVERY_CONFIRMED:
        return None
    return redirect(url_for("auth.recovery_code"))


def _waiting_work(endpoint: str):
    """Wrap keys for supporters who joined since, and re-encrypt entries someone left
    (DESIGN §3 flows 5 and 10): only when the patient's row says work is queued."""
    if not current_user.is_authenticated or current_user.role != "patient":
        return None
    if not current_user.user.pending_work:
        return None
    dbs = db.session()
    support.finish_waiting_work(
        session=dbs, patient=current_user.user, unlock=current_user.private_key
    )
    dbs.commit()
    return None


def init_app(app: Flask) -> None:
    app.before_request(before_request)
    app.after_request(web.finish)
