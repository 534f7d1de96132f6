"""Two-step login with a time-based one-time code (TOTP, RFC 6238) and backup codes.

The shared secret is stored only sealed under the server KEK; backup codes only as SHA-256
hashes, each good once. A code is accepted for the current 30-second step and one step either
side (clock drift), and never for a step at or before the last one accepted, so a code seen
over someone's shoulder cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

import segno
from sqlalchemy import delete, or_, update
from sqlmodel import Session, func, select

from ..models import BackupCode, User, utcnow
from . import accounts
from .accounts import _

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends
BACKUP_CODE_COUNT = 10


class CodeProblem(Exception):
    """A setup code that does not match; the message is for the user."""


# --- the algorithm (RFC 4226 HOTP over RFC 6238 time steps) ---------------------------------


def new_secret() -> str:
    """A fresh shared secret, base32 without padding (what authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def code_at(secret: str, step: int) -> str:
    """The code an authenticator app shows for `secret` during time step `step`."""
    digest = hmac.new(_key(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def _matching_step(secret: str, code: str, after: int | None, now: float | None) -> int | None:
    """The time step near now whose code is `code`, if later than `after`."""
    step = current_step(now)
    found = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if after is not None and candidate <= after:
            continue
        if hmac.compare_digest(code_at(secret, candidate), code):
            found = candidate  # no early exit: the same work whichever step matches
    return found


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// link a QR code carries (Key Uri Format)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode({"secret": secret, "issuer": issuer, "digits": DIGITS, "period": 30})
    return f"otpauth://totp/{label}?{query}"


def qr_data_uri(uri: str) -> str:
    """An SVG QR code as a data: URI (allowed by the CSP's img-src)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


# --- storage -----------------------------------------------------------------------------------


def secret_ad(user: User) -> dict:
    return {"p": "user/totp", "user": str(user.id)}


def _seal(user: User, secret: str) -> bytes:
    return accounts.keyring().seal(secret.encode(), secret_ad(user))


def secret_of(user: User) -> str:
    """The user's TOTP secret (pending or confirmed); for their own setup page only."""
    return accounts.keyring().open(user.totp_secret_enc, secret_ad(user)).decode()


def enabled(user: User) -> bool:
    return user.totp_secret_enc is not None and user.totp_confirmed_at is not None


def required(user: User) -> bool:
    """Therapists must use two-step login (DESIGN §5); everyone else may."""
    return user.role == "therapist"


def pending_secret(*, session: Session, user: User) -> str:
    """The secret being set up: the one already offered, or a new one. The caller commits."""
    if enabled(user):
        raise ValueError("two-step login is already on")
    if user.totp_secret_enc is not None:
        return secret_of(user)
    secret = new_secret()
    user.totp_secret_enc = _seal(user, secret)
    session.add(user)
    return secret


def _hash_backup(code: str) -> str:
    return hashlib.sha256(b"kapjournal/v1/backup:" + _normal_backup(code).encode()).hexdigest()


def _normal_backup(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def new_backup_codes(*, session: Session, user: User) -> list[str]:
    """Ten fresh single-use backup codes, replacing any earlier ones; shown once."""
    codes = []
    for _number in range(BACKUP_CODE_COUNT):
        raw = secrets.token_hex(5)
        codes.append(f"{raw[:5]}-{raw[5:]}")
    session.exec(delete(BackupCode).where(BackupCode.user_id == user.id))
    for code in codes:
        session.add(BackupCode(user_id=user.id, code_hash=_hash_backup(code)))
    session.add(user)
    return codes


def enable(*, session: Session, user: User, secret: str | None = None) -> list[str]:
    """Turn two-step login on with `secret` (default: the pending one); returns the backup
    codes. Use `confirm_setup` for people: it checks a code from their app first."""
    if secret is not None:
        user.totp_secret_enc = _seal(user, secret)
    if user.totp_secret_enc is None:
        raise ValueError("no secret to enable")
    user.totp_confirmed_at = utcnow()
    user.totp_last_step = None
    return new_backup_codes(session=session, user=user)


def confirm_setup(
    *, session: Session, user: User, code: str, now: float | None = None
) -> list[str]:
    """Check a code from the user's app against the pending secret, then turn two-step
    login on; returns the backup codes. CodeProblem if the code does not match."""
    if user.totp_secret_enc is None or enabled(user):
        raise CodeProblem(_("Start the set-up again."))
    step = _matching_step(secret_of(user), _digits(code), None, now)
    if step is None:
        raise CodeProblem(
            _(
                "That code does not match. Check the time on your phone is set automatically, "
                "then type the code your app shows now."
            )
        )
    codes = enable(session=session, user=user)
    user.totp_last_step = step
    return codes


def turn_off(*, session: Session, user: User) -> None:
    """Forget the secret and the backup codes."""
    user.totp_secret_enc = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    session.exec(delete(BackupCode).where(BackupCode.user_id == user.id))
    session.add(user)


def _digits(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace())


def verify(*, session: Session, user: User, code: str, now: float | None = None) -> str | None:
    """Check a login code: a TOTP code not used before, or an unused backup code (which is
    then used up). Returns "totp" or "backup", or None. The caller commits.

    Each is one conditional statement that only one request can win, so the same code sent
    by several requests at once is accepted once: the time step moves forward only if it is
    still behind, and a backup code's row is deleted only by whoever deletes it first."""
    if not enabled(user):
        return None
    typed = _digits(code)
    if len(typed) == DIGITS and typed.isdigit():
        step = _matching_step(secret_of(user), typed, user.totp_last_step, now)
        if step is None:
            return None
        won = session.exec(
            update(User)
            .where(
                User.id == user.id,
                or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return None
        user.totp_last_step = step
        return "totp"
    if not _normal_backup(typed):
        return None
    used = session.exec(
        delete(BackupCode).where(
            BackupCode.user_id == user.id, BackupCode.code_hash == _hash_backup(typed)
        )
    ).rowcount
    return "backup" if used == 1 else None


def backup_codes_left(*, session: Session, user: User) -> int:
    query = select(func.count()).select_from(BackupCode).where(BackupCode.user_id == user.id)
    return session.exec(query).one()
