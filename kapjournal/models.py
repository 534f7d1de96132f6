"""Database tables (DESIGN §2). Secrets live only as ciphertext columns ending in `_enc`,
`_wrapped` or `_blob`; every one of them is opened in `crypto`, never on attribute access.

Times are timezone-aware UTC (`utcnow()`); SQLModel's UTCDateTime keeps them so on SQLite
and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Column, LargeBinary, UniqueConstraint
from sqlmodel import JSON, Field, SQLModel

ROLES = ("patient", "therapist", "support")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _blob(nullable: bool = False, unique: bool = False):
    return Field(sa_column=Column(LargeBinary, nullable=nullable, unique=unique))


class User(SQLModel, table=True):
    """A person with a login. Email and name are stored only encrypted (plus a keyed lookup)."""

    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email_lookup: bytes = _blob(unique=True)
    email_enc: bytes = _blob()
    name_enc: bytes = _blob()
    role: str = Field(max_length=16, index=True)
    is_owner: bool = False
    kdf_salt: bytes = _blob()
    kdf_params: dict = Field(sa_column=Column(JSON, nullable=False))
    verifier_enc: bytes = _blob()
    public_mlkem: bytes = _blob()
    public_x25519: bytes = _blob()
    private_wrapped: bytes = _blob()  # under K_wrap (password), then the KEK
    recovery_wrapped: bytes = _blob()  # under the recovery-code key, then the KEK
    recovery_confirmed_at: datetime | None = None
    # Entry kinds shared with the care team when written, e.g. {"reflection": true}.
    share_defaults: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None


class DeviceSession(SQLModel, table=True):
    """One logged-in device. The cookie holds the id token and K_sess; we keep their hash
    and the private key wrapped under K_sess, useless without the cookie."""

    __tablename__ = "device_session"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    token_hash: bytes = _blob(unique=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    key_wrapped: bytes = _blob()
    device_label: str = Field(default="", max_length=120)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)


class CareTeam(SQLModel, table=True):
    """A therapist caring for a patient (made when the patient accepts an invitation)."""

    __tablename__ = "care_team"
    __table_args__ = (UniqueConstraint("therapist_id", "patient_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    therapist_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)


class Invitation(SQLModel, table=True):
    """A single-use, expiring invitation; only the token's hash is stored."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    token_hash: bytes = _blob(unique=True)
    kind: str = Field(max_length=16)  # "patient" (therapist invites) or "support"
    inviter_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    label_enc: bytes | None = _blob(nullable=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    used_by_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")


SESSION_KINDS = ("preparation", "ketamine", "integration")
SESSION_STATUSES = ("planned", "done", "cancelled")
ENTRY_KINDS = ("intention", "reflection", "check_in", "support_card", "free")


class TreatmentSession(SQLModel, table=True):
    """A preparation, ketamine or integration session in a patient's course of treatment."""

    __tablename__ = "treatment_session"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    created_by_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL"
    )
    kind: str = Field(max_length=16)
    status: str = Field(default="planned", max_length=16)
    scheduled_at: datetime
    created_at: datetime = Field(default_factory=utcnow)


class Entry(SQLModel, table=True):
    """A journal entry. The body is one AES-GCM blob under this version's data key; the
    clear columns are only what sorting and routing need."""

    __table_args__ = (UniqueConstraint("author_id", "client_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    author_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=16)
    session_id: uuid.UUID | None = Field(
        default=None, foreign_key="treatment_session.id", index=True, ondelete="SET NULL"
    )
    client_id: uuid.UUID  # made on the device: a retried submission finds the same entry
    version: int = 1
    body_blob: bytes = _blob()
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class Grant(SQLModel, table=True):
    """One reader of one entry: the entry's data key wrapped to the reader's public key.
    `wrapped_key` is empty while the grant is pending (the reader has no key yet)."""

    __table_args__ = (UniqueConstraint("entry_id", "reader_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    entry_id: uuid.UUID = Field(foreign_key="entry.id", index=True, ondelete="CASCADE")
    reader_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    wrapped_key: bytes | None = _blob(nullable=True)
    created_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append-only access log. Each row's MAC covers the previous row's MAC (a hash chain
    keyed from the KEK), so a changed, removed or inserted row shows."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True)
    at: datetime = Field(default_factory=utcnow)
    actor_id: uuid.UUID | None = Field(default=None, index=True)
    action: str = Field(max_length=32)
    patient_id: uuid.UUID | None = Field(default=None, index=True)
    entry_id: uuid.UUID | None = Field(default=None, index=True)
    target_id: uuid.UUID | None = None  # e.g. the reader a share or revoke was about
    kek_id: str = Field(max_length=64)
    mac: bytes = _blob()
