"""Accounts: registration, passwords, recovery codes and the keys that hang off them.

Plaintext keys exist only in local variables for the length of one call; what is stored is
wrapped (DESIGN §3 flows 1, 2 and 6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from flask import current_app, has_request_context
from flask_babel import get_locale
from sqlmodel import Session, col, func, select

from .. import crypto
from ..i18n import gettext as _
from ..models import ROLES, DeviceSession, Invitation, User, utcnow

PASSWORD_MIN, PASSWORD_MAX = 12, 128
NAME_MAX = 80
EMAIL_MAX = 254
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ValidationError(Exception):
    """Form input that cannot be accepted; `errors` maps field name → message for the user."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(", ".join(errors))
        self.errors = errors


class EmailTaken(ValidationError):
    """Registration with an address that already has an account. Web pages must not say so
    (it would tell anyone who has an account here): see services/care.join."""


# Invitation.kind of the row whose pending use means "this new account has not confirmed its
# email address yet" (its inviter_id is the new account; only the token's hash is kept).
CONFIRM_KIND = "confirm"


def keyring() -> crypto.Keyring:
    return current_app.config["KEYRING"]


def kdf_params() -> crypto.KdfParams:
    return current_app.config["KDF_PARAMS"]


def normalize_email(email: str) -> str:
    return email.strip().casefold()


# --- validation -------------------------------------------------------------------------------


@cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("kapjournal.data").joinpath("common-passwords.txt").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why a new password is not acceptable, or None. Length and common-password checks only
    (no composition rules)."""
    if len(password) < PASSWORD_MIN:
        return _("Use at least %(n)d characters. A few unrelated words work well.", n=PASSWORD_MIN)
    if len(password) > PASSWORD_MAX:
        return _("Use at most %(n)d characters.", n=PASSWORD_MAX)
    folded = password.casefold()
    base = folded.rstrip("0123456789!?.#@$*_- ")
    common = _common_passwords()
    if folded in common or (len(base) >= 8 and base in common) or len(set(folded)) < 4:
        return _("That password is on the list of commonly used passwords. Choose another.")
    if email and folded == normalize_email(email):
        return _("Your password cannot be your email address.")
    return None


def email_problem(email: str) -> str | None:
    email = email.strip()
    if not email:
        return _("Enter your email address.")
    if len(email) > EMAIL_MAX or not _EMAIL_RE.match(email):
        return _("Enter an email address like name@example.org.")
    return None


def validate_registration(*, email: str, name: str, password: str, password2: str) -> dict:
    errors: dict[str, str] = {}
    problem = email_problem(email)
    if problem:
        errors["email"] = problem
    name = name.strip()
    if not name:
        errors["name"] = _("Enter the name you would like to be called.")
    elif len(name) > NAME_MAX:
        errors["name"] = _("Use at most %(n)d characters.", n=NAME_MAX)
    problem = password_problem(password, email=email)
    if problem:
        errors["password"] = problem
    elif password != password2:
        errors["password2"] = _("The two passwords are not the same.")
    return errors


# --- reading a user's encrypted fields ---------------------------------------------------------


def _ad(user_id, purpose: str) -> dict:
    return {"p": purpose, "user": str(user_id)}


def email_of(user: User) -> str:
    return keyring().open(user.email_enc, _ad(user.id, "user/email")).decode()


def name_of(user: User) -> str:
    return name_from(user.id, user.name_enc)


def name_from(user_id, name_enc: bytes) -> str:
    """A display name from its row's columns (for queries that load no User)."""
    return keyring().open(name_enc, _ad(user_id, "user/name")).decode()


def public_key(user: User) -> crypto.PublicKey:
    return crypto.PublicKey(mlkem=user.public_mlkem, x25519=user.public_x25519)


def names_of(*, session: Session, user_ids) -> dict:
    """Display names for a set of user ids (unknown ids are left out)."""
    ids = [i for i in user_ids if i is not None]
    if not ids:
        return {}
    users = session.exec(select(User).where(col(User.id).in_(ids)))
    return {user.id: name_of(user) for user in users}


def find_by_email(*, session: Session, email: str) -> User | None:
    lookup = keyring().lookup(normalize_email(email))
    return session.exec(select(User).where(User.email_lookup == lookup)).first()


def user_count(*, session: Session) -> int:
    return session.exec(select(func.count()).select_from(User)).one()


# --- registration --------------------------------------------------------------------------------


def _wrap_private(user: User, private: bytes, keys: crypto.PasswordKeys) -> None:
    ring = keyring()
    inner = crypto.seal(keys.wrap, private, _ad(user.id, "private/password"))
    user.private_wrapped = ring.seal(inner, _ad(user.id, "private/password/kek"))
    user.verifier_enc = ring.seal(crypto.auth_verifier(keys.auth), _ad(user.id, "user/verifier"))


def _wrap_recovery(user: User, private: bytes) -> str:
    code = crypto.new_recovery_code()
    inner = crypto.seal(crypto.recovery_key(code), private, _ad(user.id, "private/recovery"))
    user.recovery_wrapped = keyring().seal(inner, _ad(user.id, "private/recovery/kek"))
    user.recovery_confirmed_at = None
    return code


def _set_password(user: User, private: bytes, password: str) -> None:
    params = kdf_params()
    user.kdf_salt = crypto.new_salt()
    user.kdf_params = params.as_dict()
    _wrap_private(user, private, crypto.derive_password_keys(password, user.kdf_salt, params))


@dataclass
class Registered:
    user: User
    private_key: bytes
    recovery_code: str


def new_account(
    *, email: str, name: str, password: str, password2: str, role: str, is_owner: bool = False
) -> Registered:
    """Check the registration form and make the account with a fresh key pair (one Argon2id
    run), without storing it: `register` does, or the caller adds `user` to a session.

    Returns the private key (to open the first login session) and the recovery code, which
    is shown to the user once and never stored.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    errors = validate_registration(email=email, name=name, password=password, password2=password2)
    if errors:
        raise ValidationError(errors)
    ring = keyring()
    private, public = crypto.generate_keypair()
    user = User(role=role, is_owner=is_owner, email_lookup=ring.lookup(normalize_email(email)))
    if has_request_context():  # the language of the page it registered on (its emails too)
        user.locale = str(get_locale() or "en")
    user.email_enc = ring.seal(email.strip().encode(), _ad(user.id, "user/email"))
    user.name_enc = ring.seal(name.strip().encode(), _ad(user.id, "user/name"))
    user.public_mlkem, user.public_x25519 = public.mlkem, public.x25519
    _set_password(user, private, password)
    code = _wrap_recovery(user, private)
    return Registered(user=user, private_key=private, recovery_code=code)


def register(
    *,
    session: Session,
    email: str,
    name: str,
    password: str,
    password2: str,
    role: str,
    is_owner: bool = False,
) -> Registered:
    """Create an account with a fresh key pair (see `new_account`); the caller commits.
    EmailTaken if the address has an account, after the same work as for a new one."""
    registered = new_account(
        email=email, name=name, password=password, password2=password2, role=role,
        is_owner=is_owner,
    )  # fmt: skip
    if find_by_email(session=session, email=email) is not None:
        raise EmailTaken({"email": _("An account with this email address already exists.")})
    session.add(registered.user)
    session.flush()
    return registered


def awaiting_confirmation(*, session: Session, user: User) -> bool:
    """Whether the account was made from an invitation and its email address is not confirmed
    yet (it cannot log in until then)."""
    query = select(Invitation.id).where(
        Invitation.kind == CONFIRM_KIND,
        Invitation.inviter_id == user.id,
        col(Invitation.used_at).is_(None),
    )
    return session.exec(query).first() is not None


# --- login ---------------------------------------------------------------------------------------


_DUMMY_SALT = b"kapjournal-dummy"


def authenticate(*, session: Session, email: str, password: str) -> tuple[User, bytes] | None:
    """The user and their unwrapped private key, or None.

    An unknown email costs the same Argon2id run as a wrong password, so timing does not
    tell whether an account exists; an account whose address is not confirmed yet gets None
    too, after the same run.
    """
    user = find_by_email(session=session, email=email) if len(password) <= PASSWORD_MAX else None
    if user is None or user.disabled_at is not None:
        crypto.derive_password_keys(password[:PASSWORD_MAX], _DUMMY_SALT, kdf_params())
        return None
    stored_params = crypto.KdfParams.from_dict(user.kdf_params)
    keys = crypto.derive_password_keys(password, user.kdf_salt, stored_params)
    ring = keyring()
    verifier = ring.open(user.verifier_enc, _ad(user.id, "user/verifier"))
    if not crypto.verifier_matches(keys.auth, verifier):
        return None
    if awaiting_confirmation(session=session, user=user):
        return None  # the same answer as a wrong password: login tells nothing either
    private = crypto.open_sealed(
        keys.wrap,
        ring.open(user.private_wrapped, _ad(user.id, "private/password/kek")),
        _ad(user.id, "private/password"),
    )
    if stored_params != kdf_params():  # raise the cost to today's parameters
        _set_password(user, private, password)
        session.add(user)
    return user, private


def change_password(
    *, session: Session, user: User, current: str, new: str, new2: str, keep_session_id
) -> None:
    """Re-wrap the private key under a new password and end every other device session."""
    errors: dict[str, str] = {}
    unlocked = authenticate(session=session, email=email_of(user), password=current)
    if unlocked is None:
        errors["current"] = _("That is not your current password.")
    problem = password_problem(new, email=email_of(user))
    if problem:
        errors["new"] = problem
    elif new != new2:
        errors["new2"] = _("The two new passwords are not the same.")
    if errors:
        raise ValidationError(errors)
    _set_password(user, unlocked[1], new)
    session.add(user)
    end_sessions(session=session, user=user, except_id=keep_session_id)


def new_recovery_code(*, session: Session, user: User, private_key: bytes) -> str:
    """Replace the recovery code (the old one stops working); shown once, never stored."""
    code = _wrap_recovery(user, private_key)
    session.add(user)
    return code


def _open_recovery(user: User, code: str) -> bytes | None:
    try:
        inner = keyring().open(user.recovery_wrapped, _ad(user.id, "private/recovery/kek"))
        return crypto.open_sealed(
            crypto.recovery_key(code), inner, _ad(user.id, "private/recovery")
        )
    except crypto.CryptoError:
        return None


def recovery_code_matches(*, user: User, code: str) -> bool:
    """Whether `code` is the user's current recovery code."""
    return _open_recovery(user, code) is not None


def confirm_recovery_saved(*, session: Session, user: User) -> None:
    user.recovery_confirmed_at = utcnow()
    session.add(user)


def reset_with_recovery_code(
    *, session: Session, email: str, code: str, new: str, new2: str
) -> tuple[User, bytes, str]:
    """Set a new password with the recovery code; issue a new code and end all sessions.

    Returns the user, their private key and the new recovery code.
    """
    errors: dict[str, str] = {}
    problem = password_problem(new, email=email)
    if problem:
        errors["new"] = problem
    elif new != new2:
        errors["new2"] = _("The two new passwords are not the same.")
    user = find_by_email(session=session, email=email)
    private = None
    if user is not None and user.disabled_at is None:
        private = _open_recovery(user, code)
    if private is None:
        errors["code"] = _("That email address and recovery code do not match.")
    if errors:
        raise ValidationError(errors)
    _set_password(user, private, new)
    new_code = _wrap_recovery(user, private)
    session.add(user)
    end_sessions(session=session, user=user)
    return user, private, new_code


def end_sessions(*, session: Session, user: User, except_id=None) -> None:
    query = select(DeviceSession).where(DeviceSession.user_id == user.id)
    if except_id is not None:
        query = query.where(DeviceSession.id != except_id)
    for row in session.exec(query):
        session.delete(row)
