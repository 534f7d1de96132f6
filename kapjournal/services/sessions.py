"""Device sessions (DESIGN §5): one row per logged-in device, revocable.

The cookie holds a random id token and K_sess. The row holds only the token's hash and the
user's private key wrapped under K_sess, so neither a database dump nor a stolen cookie of an
ended session opens anything.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlmodel import Session, select

from .. import crypto
from ..models import DeviceSession, User, utcnow

TOUCH_EVERY = timedelta(seconds=30)


@dataclass
class Unlocked:
    """A live session of this request: the device row, its user and K_sess from the cookie."""

    device: DeviceSession
    user: User
    session_key: bytes

    def private_key(self) -> bytes:
        return crypto.open_sealed(self.session_key, self.device.key_wrapped, _ad(self.device))


KEY_CACHE_LIMIT = 2000


def key_cache(unlocked: Unlocked) -> dict[str, bytes]:
    """Data keys this device session already unwrapped ("entry:version" → key), sealed under
    K_sess in the session row: useless without the cookie, gone when the session ends."""
    if not unlocked.device.key_cache:
        return {}
    try:
        raw = crypto.open_sealed(
            unlocked.session_key, unlocked.device.key_cache, _cache_ad(unlocked.device)
        )
        return {slot: base64.b64decode(key) for slot, key in json.loads(raw).items()}
    except (crypto.CryptoError, ValueError):
        return {}  # a cache that does not open is only a cache: start again


def store_key_cache(*, session: Session, unlocked: Unlocked, cache: dict[str, bytes]) -> None:
    """Seal the cache back into the session row (newest KEY_CACHE_LIMIT keys); caller commits."""
    newest = list(cache.items())[-KEY_CACHE_LIMIT:]
    raw = json.dumps({slot: base64.b64encode(key).decode() for slot, key in newest}).encode()
    unlocked.device.key_cache = crypto.seal(unlocked.session_key, raw, _cache_ad(unlocked.device))
    session.add(unlocked.device)


def _cache_ad(device: DeviceSession) -> dict:
    return {"p": "session/key-cache", "session": str(device.id), "user": str(device.user_id)}


def _ad(device: DeviceSession) -> dict:
    return {"p": "private/session", "session": str(device.id), "user": str(device.user_id)}


def idle_limit(user: User) -> timedelta:
    cfg = current_app.config
    minutes = cfg["IDLE_MINUTES_THERAPIST"] if user.role == "therapist" else cfg["IDLE_MINUTES"]
    return timedelta(minutes=minutes)


def absolute_limit() -> timedelta:
    return timedelta(hours=current_app.config["ABSOLUTE_HOURS"])


def open_session(
    *,
    session: Session,
    user: User,
    private_key: bytes,
    device_label: str = "",
    mfa_pending: bool = False,
) -> str:
    """Start a device session; returns the cookie value (the only copy of K_sess).
    With `mfa_pending` the session may only reach the second-factor step."""
    token, session_key = crypto.new_token(), crypto.random_key()
    device = DeviceSession(
        token_hash=crypto.token_hash(token),
        user_id=user.id,
        device_label=device_label[:120],
        mfa_pending=mfa_pending,
    )
    device.key_wrapped = crypto.seal(session_key, private_key, _ad(device))
    session.add(device)
    return f"{token}.{base64.urlsafe_b64encode(session_key).decode().rstrip('=')}"


def _parse(cookie_value: str) -> tuple[str, bytes] | None:
    token, _, key_text = cookie_value.partition(".")
    try:
        key = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
    except ValueError:
        return None
    if not token or len(key) != crypto.KEY_BYTES:
        return None
    return token, key


def resume(*, session: Session, cookie_value: str) -> Unlocked | None:
    """The live session for a cookie, or None (unknown, ended, idle or too old: ended now)."""
    parsed = _parse(cookie_value or "")
    if parsed is None:
        return None
    token, session_key = parsed
    row = session.exec(
        select(DeviceSession, User)
        .join(User, User.id == DeviceSession.user_id)
        .where(DeviceSession.token_hash == crypto.token_hash(token))
    ).first()
    if row is None:
        return None
    device, user = row
    now = utcnow()
    expired = (
        now - device.last_seen_at > idle_limit(user)
        or now - device.created_at > absolute_limit()
        or user.disabled_at is not None
    )
    if expired:
        session.delete(device)
        session.commit()
        return None
    if now - device.last_seen_at > TOUCH_EVERY:
        device.last_seen_at = now
        session.add(device)
        session.commit()
    return Unlocked(device=device, user=user, session_key=session_key)


def end(*, session: Session, device: DeviceSession) -> None:
    session.delete(device)


def for_user(*, session: Session, user: User) -> list[DeviceSession]:
    return list(
        session.exec(
            select(DeviceSession)
            .where(DeviceSession.user_id == user.id)
            .order_by(DeviceSession.last_seen_at.desc())
        )
    )
