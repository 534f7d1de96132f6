"""Device sessions (DESIGN §5): one row per logged-in device, revocable.

The cookie holds a random id token and K_sess. The row holds only the token's hash and the
user's private key wrapped under K_sess and then under the server KEK (the data keys it cached
likewise), so neither a database dump, nor a dump with an old cookie, nor a stolen cookie of an
ended session opens anything. Rows past their idle or absolute limit are deleted by the server
itself: at each login of their user, and by `sweep` (`flask --app app sessions sweep`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, and_, bindparam, delete, or_
from sqlmodel import Session, col, select

from .. import crypto
from ..models import DeviceSession, User, utcnow
from . import accounts

TOUCH_EVERY = timedelta(seconds=30)
# A password-only session that has not given its login code by then must start again.
MFA_PENDING_FOR = timedelta(minutes=10)


@dataclass
class Unlocked:
    """A live session of this request: the device row, its user and K_sess from the cookie."""

    device: DeviceSession
    user: User
    session_key: bytes

    def private_key(self) -> bytes:
        return _open(self.session_key, self.device.key_wrapped, _ad(self.device))


def _seal(session_key: bytes, plaintext: bytes, ad: dict) -> bytes:
    """Under K_sess (only in the cookie), then under the KEK (only in the environment)."""
    inner = crypto.seal(session_key, plaintext, ad)
    return accounts.keyring().seal(inner, {**ad, "layer": "kek"})


def _open(session_key: bytes, blob: bytes, ad: dict) -> bytes:
    return crypto.open_sealed(
        session_key, accounts.keyring().open(blob, {**ad, "layer": "kek"}), ad
    )


KEY_CACHE_LIMIT = 2000


def key_cache(unlocked: Unlocked) -> dict[str, bytes]:
    """Data keys this device session already unwrapped ("entry:version" → key), sealed under
    K_sess and the KEK in the session row: useless without the cookie, gone when the session
    ends."""
    if not unlocked.device.key_cache:
        return {}
    try:
        raw = _open(unlocked.session_key, unlocked.device.key_cache, _cache_ad(unlocked.device))
        return {slot: base64.b64decode(key) for slot, key in json.loads(raw).items()}
    except (crypto.CryptoError, ValueError):
        return {}  # a cache that does not open is only a cache: start again


def store_key_cache(*, session: Session, unlocked: Unlocked, cache: dict[str, bytes]) -> None:
    """Seal the cache back into the session row (newest KEY_CACHE_LIMIT keys); caller commits."""
    newest = list(cache.items())[-KEY_CACHE_LIMIT:]
    raw = json.dumps({slot: base64.b64encode(key).decode() for slot, key in newest}).encode()
    unlocked.device.key_cache = _seal(unlocked.session_key, raw, _cache_ad(unlocked.device))
    session.add(unlocked.device)


def _cache_ad(device: DeviceSession) -> dict:
    return {"p": "session/key-cache", "session": str(device.id), "user": str(device.user_id)}


def _ad(device: DeviceSession) -> dict:
    return {"p": "private/session", "session": str(device.id), "user": str(device.user_id)}


def reseal(*, session: Session, keyring: crypto.Keyring) -> int:
    """Move the KEK layer of every session row to the active KEK (for `keys rotate`); returns
    how many values. K_sess is not needed: only the outer layer changes."""
    count = 0
    for device in session.exec(select(DeviceSession)):
        device.key_wrapped = keyring.reseal(device.key_wrapped, {**_ad(device), "layer": "kek"})
        count += 1
        if device.key_cache:
            ad = {**_cache_ad(device), "layer": "kek"}
            device.key_cache = keyring.reseal(device.key_cache, ad)
            count += 1
        session.add(device)
    return count


def idle_limit(user: User) -> timedelta:
    cfg = current_app.config
    minutes = cfg["IDLE_MINUTES_THERAPIST"] if user.role == "therapist" else cfg["IDLE_MINUTES"]
    return timedelta(minutes=minutes)


def absolute_limit() -> timedelta:
    return timedelta(hours=current_app.config["ABSOLUTE_HOURS"])


def _is_expired(device: DeviceSession, user: User, now: datetime) -> bool:
    return (
        now - device.last_seen_at > idle_limit(user)
        or now - device.created_at > absolute_limit()
        or user.disabled_at is not None
    )


def _expired(now: datetime) -> ColumnElement[bool]:
    """SQL for "this row is past a limit" (idle by role, absolute, code step, disabled user)."""
    cfg = current_app.config
    therapists = select(User.id).where(User.role == "therapist")
    others = select(User.id).where(User.role != "therapist")
    disabled = select(User.id).where(col(User.disabled_at).is_not(None))
    idle_therapist = now - timedelta(minutes=cfg["IDLE_MINUTES_THERAPIST"])
    idle_other = now - timedelta(minutes=cfg["IDLE_MINUTES"])
    return or_(
        col(DeviceSession.created_at) < now - absolute_limit(),
        and_(
            col(DeviceSession.last_seen_at) < idle_therapist,
            col(DeviceSession.user_id).in_(therapists),
        ),
        and_(col(DeviceSession.last_seen_at) < idle_other, col(DeviceSession.user_id).in_(others)),
        and_(
            col(DeviceSession.mfa_pending),
            col(DeviceSession.created_at) < now - MFA_PENDING_FOR,
        ),
        col(DeviceSession.user_id).in_(disabled),
    )


def sweep(*, session: Session) -> int:
    """Delete every device session past its idle limit (by role), its absolute limit or the
    time for its login code, and every session of a disabled user; returns how many. With
    their rows go the wrapped private keys a kept cookie could have opened. The caller
    commits."""
    statement = delete(DeviceSession).where(_expired(utcnow()))
    return session.exec(statement.execution_options(synchronize_session=False)).rowcount


def end_expired(*, session: Session, user: User) -> int:
    """Delete the user's own expired device sessions (done at each of their logins); returns
    how many. The caller commits."""
    statement = delete(DeviceSession).where(DeviceSession.user_id == user.id, _expired(utcnow()))
    return session.exec(statement.execution_options(synchronize_session=False)).rowcount


def open_session(
    *,
    session: Session,
    user: User,
    private_key: bytes,
    device_label: str = "",
    mfa_pending: bool = False,
) -> str:
    """Start a device session; returns the cookie value (the only copy of K_sess).
    With `mfa_pending` the session may only reach the second-factor step. The user's expired
    sessions are deleted on the way. The caller commits."""
    end_expired(session=session, user=user)
    token, session_key = crypto.new_token(), crypto.random_key()
    device = DeviceSession(
        token_hash=crypto.token_hash(token),
        user_id=user.id,
        device_label=device_label[:120],
        mfa_pending=mfa_pending,
    )
    device.key_wrapped = _seal(session_key, private_key, _ad(device))
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


# Every request of a logged-in person runs this: built once, with the token as a parameter.
_RESUME = (
    select(DeviceSession, User)
    .join(User, User.id == DeviceSession.user_id)
    .where(DeviceSession.token_hash == bindparam("token_hash"))
)


def resume(*, session: Session, cookie_value: str) -> Unlocked | None:
    """The live session for a cookie, or None (unknown, ended, idle or too old: ended now)."""
    parsed = _parse(cookie_value or "")
    if parsed is None:
        return None
    token, session_key = parsed
    row = session.exec(_RESUME, params={"token_hash": crypto.token_hash(token)}).first()
    if row is None:
        return None
    device, user = row
    now = utcnow()
    if _is_expired(device, user, now) or not _opens_under_a_kek(device):
        session.delete(device)
        session.commit()
        return None
    if now - device.last_seen_at > TOUCH_EVERY:
        device.last_seen_at = now
        session.add(device)
        session.commit()
    return Unlocked(device=device, user=user, session_key=session_key)


def _opens_under_a_kek(device: DeviceSession) -> bool:
    """Whether the row's outer layer is sealed under a KEK still configured: not if that KEK
    was retired (without `reseal`); such a session is over, not an error on every page. (A row
    altered otherwise fails loudly when its key is used.)"""
    ring = accounts.keyring()
    return bool(device.key_wrapped) and ring.has(ring.kek_id_of(device.key_wrapped))


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
