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
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from flask import current_app
from py_vapid import Vapid, VapidException
from pywebpush import WebPushException, webpush
from requests.adapters import HTTPAdapter
from sqlmodel import Session, select

from .. import crypto
from ..i18n import lazy_gettext as _l
from ..models import PushSubscription, User
from . import accounts

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 10
ENDPOINT_MAX = 2000
# Push services that say a subscription is gone for good; the row is deleted.
GONE = {404, 410}
# Which browser a push service belongs to, to name a device on the account page.
SERVICES = {
    "fcm.googleapis.com": _l("Chrome, Edge or Android"),
    "updates.push.services.mozilla.com": "Firefox",
    "web.push.apple.com": _l("Safari, iPhone or iPad"),
    "notify.windows.com": _l("Edge on Windows"),
}


# Names that never lead to a public push service (RFC 6761, RFC 8375, ICANN's .internal).
_PRIVATE_SUFFIXES = ("localhost", "localdomain", "local", "internal", "home.arpa", "lan")
# Tests only: the push service they run on http://127.0.0.1 (never honoured in production).
LOCAL_TEST_SERVICE = "PUSH_TEST_LOCAL_SERVICE"


class InvalidSubscription(ValueError):
    """What the browser sent is not a usable Web Push subscription."""


class EndpointUnreachable(requests.ConnectionError):
    """Nothing was sent, nothing connected: the endpoint's name did not resolve."""


class EndpointNotPublic(EndpointUnreachable):
    """Nothing was sent, nothing connected: the name resolves to an address that is not a
    public one (this machine, a private network, link-local, reserved)."""


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
        return _l("A browser")


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
    """Check a subscription from the browser: a public https push service (see
    `endpoint_target` and `public_addresses`) and the device's P-256 key and 16-byte auth
    secret."""
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
    """Refuse anything but a public https push service: by its form, then by where its name
    resolves now (a name that does not resolve yet is checked again at every send)."""
    _, host, port = endpoint_target(endpoint)
    try:
        public_addresses(host, port)
    except EndpointNotPublic:
        raise InvalidSubscription("endpoint must be a public push service") from None
    except EndpointUnreachable:
        pass  # no answer from DNS now; `send` resolves and checks again before connecting


def _local_test_service() -> bool:
    cfg = current_app.config
    return bool(cfg.get("TESTING") and cfg.get(LOCAL_TEST_SERVICE) and not cfg["PRODUCTION"])


def _is_address(host: str) -> bool:
    """Whether `host` is an IP address in any notation a resolver accepts (127.1, 2130706433,
    0x7f000001, [::1], ...) rather than a name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        pass
    last = host.rsplit(".", 1)[-1]  # a numeric last label makes it an address (URL standard)
    return bool(re.fullmatch(r"[0-9]+|0x[0-9a-f]*", last))


def endpoint_target(endpoint: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an endpoint that may be posted to: https on port 443 to a
    public DNS name, never a bare address, `localhost` or an internal name. Raises
    InvalidSubscription. (Tests may allow plain http to 127.0.0.1, see LOCAL_TEST_SERVICE.)"""
    if len(endpoint) > ENDPOINT_MAX:
        raise InvalidSubscription("endpoint too long")
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        raise InvalidSubscription("endpoint is not a push service URL") from None
    host = (parts.hostname or "").removesuffix(".")
    if parts.username or parts.password or not host:
        raise InvalidSubscription("endpoint is not a push service URL")
    if parts.scheme == "http" and host == "127.0.0.1" and _local_test_service():
        return "http", host, port or 80
    if parts.scheme != "https" or port not in (None, 443):
        raise InvalidSubscription("endpoint must be an https push service on port 443")
    private = "." not in host or any(
        host == suffix or host.endswith("." + suffix) for suffix in _PRIVATE_SUFFIXES
    )
    if private or ".." in host or _is_address(host):
        raise InvalidSubscription("endpoint must be a public push service")
    return "https", host, 443


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def public_addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, if all are public (global unicast); else raise
    EndpointNotPublic, or EndpointUnreachable when the name does not resolve."""
    if host == "127.0.0.1" and _local_test_service():
        return [host]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise EndpointUnreachable(host) from None
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not addresses or not all(_is_public(a) for a in addresses):
        raise EndpointNotPublic(host)
    return addresses


class _PinnedAdapter(HTTPAdapter):
    """Connects to an address it checked itself, so a name cannot resolve to a public address
    when checked and to this machine when connected (DNS rebinding). TLS still checks the
    certificate against the name (SNI too), and the Host header names it. No proxies."""

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        try:
            scheme, host, port = endpoint_target(request.url)
        except InvalidSubscription:
            raise EndpointNotPublic(urlsplit(request.url).hostname) from None
        address = public_addresses(host, port)[0]
        if scheme == "https":
            pool_kwargs = {**pool_kwargs, "server_hostname": host, "assert_hostname": host}
        host_params = {**host_params, "host": address, "port": port}
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

    def add_headers(self, request, **kwargs) -> None:
        request.headers["Host"] = urlsplit(request.url).netloc  # not-ui: a header name


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


def pinned_session() -> requests.Session:
    """An HTTP client that posts only to public push services, connecting to the address it
    checked (see `_PinnedAdapter`), with no proxy and no redirects."""
    http = requests.Session()
    http.trust_env = False  # no proxy from the environment: it would connect for us, unchecked
    http.max_redirects = 0  # a push service answers; it does not send us elsewhere
    pinned = _PinnedAdapter(max_retries=0)
    http.mount("https://", pinned)
    http.mount("http://", pinned)
    return http


def send(subscription: Subscription, message: dict, *, ttl: int = 24 * 3600) -> str:
    """Encrypt `message` (JSON) to the device and post it to its push service.

    The endpoint is checked again here (it may predate the checks, or its name may resolve
    elsewhere now), and the connection goes to the very address that was checked.
    Returns SENT, GONE_FOR_GOOD (the browser unsubscribed, or the endpoint can never be
    posted to: forget the row) or FAILED (try again later). Never raises for a push
    service's answer or a network failure."""
    host = urlsplit(subscription.endpoint).hostname
    try:
        endpoint_target(subscription.endpoint)
    except InvalidSubscription:
        log.warning("push to %s refused: not a public https push service", host)
        return GONE_FOR_GOOD
    http = pinned_session()
    try:
        webpush(
            subscription.as_info(),
            data=json.dumps(message, separators=(",", ":")),
            vapid_private_key=_vapid(),
            vapid_claims={"sub": subject()},
            ttl=ttl,
            timeout=SEND_TIMEOUT_SECONDS,
            headers={"Urgency": "normal"},  # not-ui: a header name
            requests_session=http,
        )
    except WebPushException as exc:
        status = exc.status_code
        log.warning("push to %s failed with status %s", host, status)
        return GONE_FOR_GOOD if status in GONE else FAILED
    except (requests.RequestException, VapidException) as exc:
        log.warning("push to %s failed: %s", host, type(exc).__name__)
        return FAILED
    finally:
        http.close()
    return SENT
