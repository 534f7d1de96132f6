"""KEK rotation (DESIGN §3 flow 8): move every server-layer blob to the active KEK."""

from __future__ import annotations

from sqlmodel import Session, select

from .. import crypto
from ..models import Invitation, User
from . import accounts, audit, care, push, sessions, totp

# Each KEK-sealed column of User and the purpose its associated data names.
USER_BLOBS = {
    "email_enc": "user/email",
    "name_enc": "user/name",
    "verifier_enc": "user/verifier",
    "private_wrapped": "private/password/kek",
    "recovery_wrapped": "private/recovery/kek",
}


def rotate(*, session: Session, keyring: crypto.Keyring) -> int:
    """Re-seal under the active KEK, recompute email lookups and re-key the access log (its
    chain and its anchor); returns how many values. Raises audit.ChainBroken (changing
    nothing) on a tampered or truncated log."""
    count = audit.rekey(session=session, keyring=keyring)
    for user in session.exec(select(User)):
        for column, purpose in USER_BLOBS.items():
            ad = {"p": purpose, "user": str(user.id)}
            setattr(user, column, keyring.reseal(getattr(user, column), ad))
            count += 1
        if user.totp_secret_enc is not None:  # two-step login secret (optional)
            user.totp_secret_enc = keyring.reseal(user.totp_secret_enc, totp.secret_ad(user))
            count += 1
        user.email_lookup = keyring.lookup(accounts.normalize_email(accounts.email_of(user)))
        session.add(user)
    for invitation in session.exec(select(Invitation).where(Invitation.label_enc.is_not(None))):
        invitation.label_enc = keyring.reseal(invitation.label_enc, care.label_ad(invitation))
        session.add(invitation)
        count += 1
    count += push.reseal(session=session, keyring=keyring)
    count += sessions.reseal(session=session, keyring=keyring)
    return count
