"""Web Push (RFC 8030) for reminders: device subscriptions and sending, through pywebpush.

pywebpush encrypts each message to the device (RFC 8291, aes128gcm) and signs a VAPID token
(RFC 8292) with the clinic's key. A subscription (the push service's URL for one browser and
that browser's keys) is a capability, so it is kept sealed under the KEK; the database finds
it again by a SHA-256 of its endpoint. Messages carry only fixed reminder text, never anything
a patient wrote (services/reminders.py builds them).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from flask import current_app
from py_vapid import Vapid, VapidException
from pywebpush import WebPushException, webpush
from sqlmodel import Session, select

from .. import crypto
from ..models import PushSubscription, User
from . import accounts

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 10
ENDPOINT_MAX = 2000
# Push services that say a subscription is gone for good; the row is deleted.
GONE = {404, 410}
# Which browser a push service belongs to, to name a device on the account page.
SERVICES = {
    "fcm.googleapis.com": "Chrome, Edge or Android",
    "updates.push.services.mozilla.com": "Firefox",
    "web.push.apple.com": "Safari, iPhone or iPad",
    "notify.windows.com": "Edge on Windows",
}


class InvalidSubscription(ValueError):
    """What the browser sent is not a usable Web Push subscription."""


@dataclass(frozen=True)
class Subscription:
    """One browser's push subscription, as `PushSubscription.toJSON()` gives it."""

    endpoint: str
    p256dh: str
    auth: str

    def as_info(self) -> dict:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    @property
    def service(self) -> str:
        host = urlsplit(self.endpoint).hostname or ""
        for suffix, name in SERVICES.items():
            if host == suffix or host.endswith("." + suffix):
                return name
        return "A browser"


# --- configuration --------------------------------------------------------------------------


def enabled() -> bool:
    """Reminders are offered only when the clinic configured a VAPID key pair."""
    cfg = current_app.config
    return bool(cfg.get("VAPID_PRIVATE_KEY") and cfg.get("VAPID_PUBLIC_KEY"))


def public_key() -> str:
    """The VAPID public key for `pushManager.subscribe` (base64url, uncompressed P-256)."""
    return current_app.config["VAPID_PUBLIC_KEY"]


def subject() -> str:
    """Who runs this server, for push services (RFC 8292 `sub`): a mailto: or https: URL."""
    cfg = current_app.config
    if cfg.get("VAPID_SUBJECT"):
        return cfg["VAPID_SUBJECT"]
    base = cfg.get("BASE_URL") or ""
    return base if base.startswith("https://") else f"mailto:{cfg['SMTP_FROM']}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_raw(vapid: Vapid) -> bytes:
    numbers = vapid.public_key.public_numbers()
    return b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def new_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair: (private, public), both base64url (raw P-256 scalar, point)."""
    vapid = Vapid()
    vapid.generate_keys()
    private = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    return _b64(private), _b64(_public_raw(vapid))


def _vapid() -> Vapid:
    """The clinic's signing key; refuses a private key that does not match the public one,
    since browsers would then drop every message signed with it."""
    try:
        vapid = Vapid.from_string(current_app.config["VAPID_PRIVATE_KEY"])
    except (VapidException, ValueError, binascii.Error):
        raise RuntimeError("KAPJOURNAL_VAPID_PRIVATE_KEY is not a VAPID private key") from None
    if _b64(_public_raw(vapid)) != public_key().rstrip("="):
        raise RuntimeError("KAPJOURNAL_VAPID_PUBLIC_KEY does not belong to the private key")
    return vapid


# --- subscriptions --------------------------------------------------------------------------


def parse(data: object) -> Subscription:
    """Check a subscription from the browser: an https endpoint (plain http only to this
    machine, outside production) and the device's P-256 key and 16-byte auth secret."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise InvalidSubscription("not a push subscription")
    endpoint, keys = data.get("endpoint"), data["keys"]
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not all(isinstance(v, str) for v in (endpoint, p256dh, auth)):
        raise InvalidSubscription("not a push subscription")
    _check_endpoint(endpoint)
    try:
        point, secret = _unb64(p256dh), _unb64(auth)
    except (ValueError, binascii.Error):
        raise InvalidSubscription("keys are not base64url") from None
    if len(point) != 65 or point[0] != 4 or len(secret) != 16:
        raise InvalidSubscription("keys have the wrong size")
    return Subscription(endpoint=endpoint, p256dh=_b64(point), auth=_b64(secret))


def _check_endpoint(endpoint: str) -> None:
    if len(endpoint) > ENDPOINT_MAX:
        raise InvalidSubscription("endpoint too long")
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.username or parts.password or not host:
        raise InvalidSubscription("endpoint is not a push service URL")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    local = host == "localhost" or (address is not None and address.is_loopback)
    if current_app.config["PRODUCTION"]:
        # The server posts to this URL: never to itself or to a bare address.
        if parts.scheme != "https" or local or address is not None:
            raise InvalidSubscription("endpoint must be an https push service")
    elif parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise InvalidSubscription("endpoint must be https")


def _ad(row: PushSubscription) -> dict:
    return {"p": "push/subscription", "subscription": str(row.id), "user": str(row.user_id)}


def _endpoint_hash(endpoint: str) -> bytes:
    return crypto.token_hash("push:" + endpoint)


def _seal(row: PushSubscription, subscription: Subscription) -> None:
    plain = json.dumps(subscription.as_info(), sort_keys=True).encode()
    row.subscription_enc = accounts.keyring().seal(plain, _ad(row))


def open_subscription(row: PushSubscription) -> Subscription:
    """The endpoint and keys of a stored subscription."""
    data = json.loads(accounts.keyring().open(row.subscription_enc, _ad(row)))
    return Subscription(data["endpoint"], data["keys"]["p256dh"], data["keys"]["auth"])


def subscribe(*, session: Session, user: User, subscription: Subscription) -> PushSubscription:
    """Remember a device's subscription for `user`; the caller commits. A browser that
    subscribes again (new keys, or another person logged in on it) replaces its old row."""
    found = session.exec(
        select(PushSubscription).where(
            PushSubscription.endpoint_hash == _endpoint_hash(subscription.endpoint)
        )
    ).first()
    if found is not None and found.user_id != user.id:
        session.delete(found)  # its reminders were about someone else
        session.flush()
        found = None
    row = found or PushSubscription(
        user_id=user.id, endpoint_hash=_endpoint_hash(subscription.endpoint)
    )
    _seal(row, subscription)
    session.add(row)
    session.flush()
    return row


def _find(session: Session, user: User, endpoint: str) -> PushSubscription | None:
    return session.exec(
        select(PushSubscription).where(
            PushSubscription.endpoint_hash == _endpoint_hash(endpoint),
            PushSubscription.user_id == user.id,
        )
    ).first()


def is_subscribed(*, session: Session, user: User, endpoint: str) -> bool:
    """Whether this endpoint gets the user's reminders."""
    return _find(session, user, endpoint) is not None


def unsubscribe(*, session: Session, user: User, endpoint: str) -> bool:
    """Forget the user's subscription for this endpoint; whether there was one."""
    row = _find(session, user, endpoint)
    if row is None:
        return False
    session.delete(row)
    return True


def remove(*, session: Session, subscription: PushSubscription) -> None:
    session.delete(subscription)


def devices_of(*, session: Session, user: User) -> list[tuple[PushSubscription, str]]:
    """The user's subscribed devices, oldest first, each with the name of its browser."""
    rows = session.exec(
        select(PushSubscription)
        .where(PushSubscription.user_id == user.id)
        .order_by(PushSubscription.created_at)
    ).all()
    return [(row, open_subscription(row).service) for row in rows]


def reseal(*, session: Session, keyring: crypto.Keyring) -> int:
    """KEK rotation: re-seal every subscription under the active KEK; returns how many."""
    count = 0
    for row in session.exec(select(PushSubscription)):
        row.subscription_enc = keyring.reseal(row.subscription_enc, _ad(row))
        session.add(row)
        count += 1
    return count


# --- sending -------------------------------------------------------------------------------


SENT, GONE_FOR_GOOD, FAILED = "sent", "gone", "failed"


def send(subscription: Subscription, message: dict, *, ttl: int = 24 * 3600) -> str:
    """Encrypt `message` (JSON) to the device and post it to its push service.

    Returns SENT, GONE_FOR_GOOD (the browser unsubscribed: forget the row) or FAILED (try
    again later). Never raises for a push service's answer or a network failure."""
    http = requests.Session()
    http.max_redirects = 0  # a push service answers; it does not send us elsewhere
    try:
        webpush(
            subscription.as_info(),
            data=json.dumps(message, separators=(",", ":")),
            vapid_private_key=_vapid(),
            vapid_claims={"sub": subject()},
            ttl=ttl,
            timeout=SEND_TIMEOUT_SECONDS,
            headers={"Urgency": "normal"},
            requests_session=http,
        )
    except WebPushException as exc:
        status = exc.status_code
        log.warning(
            "push to %s failed with status %s", urlsplit(subscription.endpoint).hostname, status
        )
        return GONE_FOR_GOOD if status in GONE else FAILED
    except (requests.RequestException, VapidException) as exc:
        log.warning(
            "push to %s failed: %s", urlsplit(subscription.endpoint).hostname, type(exc).__name__
        )
        return FAILED
    finally:
        http.close()
    return SENT
