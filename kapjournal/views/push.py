"""Reminders on this device (Web Push): the VAPID public key, subscribe and unsubscribe.

The browser's push subscription is made by `static/js/push.js` on the account page and sent
here as JSON with the CSRF token in `X-CSRFToken`; the account page also lists the devices
that get reminders, each with a plain form to stop them (works without JavaScript). Without
VAPID keys in the configuration the option is hidden and the key and subscribing answer 404
(stopping still works).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, jsonify, request
from flask_login import current_user

from .. import db, policy
from ..services import push
from . import see_other

bp = Blueprint("push", __name__, url_prefix="/push")


def _require_enabled() -> None:
    if not push.enabled():
        abort(404)


def _endpoint() -> str | None:
    data = request.get_json(silent=True)
    endpoint = data.get("endpoint") if isinstance(data, dict) else None
    return endpoint if isinstance(endpoint, str) else None


@bp.app_context_processor
def _reminder_helpers() -> dict:
    def reminder_devices():
        return push.devices_of(session=db.session(), user=current_user.user)

    return {"reminders_offered": push.enabled, "reminder_devices": reminder_devices}


@bp.get("/key")
@policy.allow("patient", "support")  # supporters: session-day reminders
def key():
    _require_enabled()
    return jsonify(publicKey=push.public_key())


@bp.post("/subscriptions")
@policy.allow("patient", "support")  # supporters: session-day reminders
def subscribe():
    _require_enabled()
    try:
        subscription = push.parse(request.get_json(silent=True))
    except push.InvalidSubscription as exc:
        return jsonify(error=str(exc)), 400
    dbs = db.session()
    push.subscribe(session=dbs, user=current_user.user, subscription=subscription)
    dbs.commit()
    return jsonify(subscribed=True), 201


@bp.post("/subscriptions/status")
@policy.allow("patient", "support")  # supporters: session-day reminders
def status():
    """Whether this browser's subscription still gets reminders (it may have been stopped
    from the list on the account page, or by another person logging in on it)."""
    endpoint = _endpoint()
    if endpoint is None:
        return jsonify(error="no endpoint"), 400
    known = push.is_subscribed(session=db.session(), user=current_user.user, endpoint=endpoint)
    return jsonify(subscribed=known)


@bp.post("/subscriptions/remove")
@policy.allow("patient", "support")  # supporters: session-day reminders
def unsubscribe():
    """This browser turned its reminders off (by endpoint; nothing to do if unknown)."""
    endpoint = _endpoint()
    if endpoint is None:
        return jsonify(error="no endpoint"), 400
    dbs = db.session()
    push.unsubscribe(session=dbs, user=current_user.user, endpoint=endpoint)
    dbs.commit()
    return "", 204


@bp.post("/subscriptions/<uuid:subscription_id>/delete")
@policy.allow("patient", "support")  # supporters: session-day reminders
def delete(subscription_id: uuid.UUID):
    """Stop reminders on one device, from the account page (a plain form)."""
    dbs = db.session()
    found = policy.get_push_subscription_for(
        session=dbs, user=current_user.user, subscription_id=subscription_id
    )
    push.remove(session=dbs, subscription=found)
    dbs.commit()
    return see_other("account.index")
