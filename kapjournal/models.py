"""Database tables (DESIGN §2). Secrets live only as ciphertext columns ending in `_enc`,
`_wrapped` or `_blob`; every one of them is opened in `crypto`, never on attribute access.

Times are timezone-aware UTC (`utcnow()`); SQLModel's UTCDateTime keeps them so on SQLite
and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint, false
from sqlmodel import JSON, Field, SQLModel

ROLES = ("patient", "therapist", "support")


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A stored time as UTC-aware: SQLite gives back naive datetimes, PostgreSQL aware ones."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
    # Two-factor login (TOTP, RFC 6238): the secret under the KEK; the last accepted time
    # step, so a code cannot be replayed (backup codes: BackupCode rows).
    totp_secret_enc: bytes | None = _blob(nullable=True)
    totp_confirmed_at: datetime | None = None
    totp_last_step: int | None = None
    # Entry kinds shared with the care team when written, e.g. {"reflection": true}.
    share_defaults: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # A patient's entries wait for their key (pending grants to wrap, entries to re-encrypt):
    # set when such work is queued, cleared once it is done on one of their requests.
    pending_work: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # The language the user chose (kapjournal/i18n.LANGUAGES); None: their browser's.
    locale: str | None = Field(default=None, max_length=16)
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
    mfa_pending: bool = False  # password given, second factor still to come
    key_cache: bytes | None = _blob(nullable=True)  # data keys already opened, under K_sess
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
ENTRY_KINDS = (
    "intention",
    "reflection",
    "check_in",
    "support_card",
    "free",
    "safety_plan",
    "phq9",  # questionnaire responses are entries too: answers and score in the body
    "gad7",
    "capture",  # after a ketamine session: a voice memo, how the body feels, a few words
)
MEASURE_KINDS = ("phq9", "gad7")  # never readable by a support member


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

    __table_args__ = (
        UniqueConstraint("author_id", "client_id"),
        # Pages of a journal, newest first, cut at (created_at, id): services/timeline.py.
        Index("ix_entry_author_created_id", "author_id", "created_at", "id"),
        # When each questionnaire was last answered: services/measures.latest_taken_all.
        Index("ix_entry_author_kind_created", "author_id", "kind", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    author_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=16)
    session_id: uuid.UUID | None = Field(
        default=None, foreign_key="treatment_session.id", index=True, ondelete="SET NULL"
    )
    client_id: uuid.UUID  # made on the device: a retried submission finds the same entry
    version: int = 1
    # Set when a reader lost access without the author's key at hand (a therapist left the
    # care team): the next request of the author re-encrypts under a new data key.
    needs_rotation: bool = False
    body_blob: bytes = _blob()
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class Grant(SQLModel, table=True):
    """One reader of one entry: the entry's data key wrapped to the reader's public key.
    `wrapped_key` is empty while the grant is pending (the reader has no key yet)."""

    __table_args__ = (
        UniqueConstraint("entry_id", "reader_id"),
        # What was shared with a reader since a moment: services/workspace.shared_since.
        Index("ix_grant_reader_created", "reader_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    entry_id: uuid.UUID = Field(foreign_key="entry.id", index=True, ondelete="CASCADE")
    reader_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    wrapped_key: bytes | None = _blob(nullable=True)
    created_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append-only access log. Each row's MAC covers the previous row's MAC (a hash chain
    keyed from the KEK), so a changed, removed or inserted row shows."""

    __tablename__ = "audit_event"
    # A patient's log, newest first, a page at a time.
    __table_args__ = (Index("ix_audit_event_patient_seq", "patient_id", "seq"),)

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


class AuditHead(SQLModel, table=True):
    """The access log's newest event, kept apart from the rows: a KEK-keyed MAC over the last
    sequence number and that row's MAC. Deleting the newest rows (or all of them) no longer
    goes unnoticed: `audit verify` compares the chain's end with this anchor. One row."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int
    last_mac: bytes = _blob()
    kek_id: str = Field(max_length=64)
    mac: bytes = _blob()


class ReadTally(SQLModel, table=True):
    """Reads of one item by one reader on one day. The first is an access-log event; later
    ones only raise `count` here, so the log says what a person did, not how often a page
    was drawn. `subject_id` is the entry (or, for reading practices and notes, the patient)."""

    __tablename__ = "read_tally"
    __table_args__ = (UniqueConstraint("reader_id", "subject_id", "action", "day"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    reader_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    subject_id: uuid.UUID
    action: str = Field(max_length=32)
    day: date
    count: int = 1
    event_seq: int | None = None  # the access-log event of the first read that day


class BackupCode(SQLModel, table=True):
    """A single-use two-step login backup code, only as its SHA-256. Using one deletes its
    row; of two requests with the same code only one deletes it."""

    __tablename__ = "backup_code"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    code_hash: str = Field(max_length=64)


class ClinicSetup(SQLModel, table=True):
    """Written once, with the clinic owner's account: its fixed id means that of two set-ups
    racing on an empty database, only one can commit."""

    __tablename__ = "clinic_setup"

    id: int = Field(default=1, primary_key=True)
    done_at: datetime = Field(default_factory=utcnow)


class PendingShare(SQLModel, table=True):
    """An entry the patient chose for someone invited but not yet registered (no key yet).
    Becomes a Grant when they join, wrapped on the patient's next request (DESIGN §3 flow 10)."""

    __tablename__ = "pending_share"
    __table_args__ = (UniqueConstraint("entry_id", "invitation_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    entry_id: uuid.UUID = Field(foreign_key="entry.id", index=True, ondelete="CASCADE")
    invitation_id: uuid.UUID = Field(foreign_key="invitation.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)


class SupportLink(SQLModel, table=True):
    """A support member a patient brought in (made when they accept the invitation)."""

    __tablename__ = "support_link"
    __table_args__ = (UniqueConstraint("patient_id", "supporter_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    supporter_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)


class Annotation(SQLModel, table=True):
    """A therapist's note on a paragraph of an entry (or, without an entry, a note taken in an
    integration session). The blob holds the note and the quoted passage; `reply_blob` the
    patient's one reply. Both under the annotation's data key, wrapped in ItemKey rows."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    author_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    entry_id: uuid.UUID | None = Field(
        default=None, foreign_key="entry.id", index=True, ondelete="CASCADE"
    )
    session_id: uuid.UUID | None = Field(
        default=None, foreign_key="treatment_session.id", index=True, ondelete="SET NULL"
    )
    paragraph_index: int | None = None
    visibility: str = Field(default="private", max_length=16)  # "shared" or "private"
    bring_to_session: bool = False
    discussed_at: datetime | None = None
    resolved_at: datetime | None = None
    version: int = 1
    body_blob: bytes = _blob()
    reply_blob: bytes | None = _blob(nullable=True)
    # The quoted passage of the entry, sealed under the entry's own data key (not the note's),
    # so whoever loses the entry loses the quote with it; re-sealed with each entry version.
    quote_blob: bytes | None = _blob(nullable=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class EntryFlag(SQLModel, table=True):
    """A therapist's "bring to session" mark on a shared entry (clear metadata only)."""

    __tablename__ = "entry_flag"
    __table_args__ = (UniqueConstraint("entry_id", "therapist_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    entry_id: uuid.UUID = Field(foreign_key="entry.id", index=True, ondelete="CASCADE")
    therapist_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)
    discussed_at: datetime | None = None


class Practice(SQLModel, table=True):
    """An integration takeaway (what, how often, why it matters), encrypted like an entry."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    created_by_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    session_id: uuid.UUID | None = Field(
        default=None, foreign_key="treatment_session.id", ondelete="SET NULL"
    )
    version: int = 1
    body_blob: bytes = _blob()
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None


class PracticeCheck(SQLModel, table=True):
    """A day on which the patient did a practice."""

    __tablename__ = "practice_check"
    __table_args__ = (UniqueConstraint("practice_id", "day"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    practice_id: uuid.UUID = Field(foreign_key="practice.id", index=True, ondelete="CASCADE")
    day: date
    created_at: datetime = Field(default_factory=utcnow)


class ItemKey(SQLModel, table=True):
    """A reader's wrapped data key for an annotation or a practice (`subject_kind`)."""

    __tablename__ = "item_key"
    __table_args__ = (UniqueConstraint("subject_kind", "subject_id", "reader_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subject_kind: str = Field(max_length=16)  # "annotation" or "practice"
    subject_id: uuid.UUID = Field(index=True)
    reader_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    wrapped_key: bytes = _blob()
    created_at: datetime = Field(default_factory=utcnow)


class SafetyCheck(SQLModel, table=True):
    """What the care team must see after a PHQ-9: one row for every PHQ-9, whatever the answers,
    so that neither a row nor its clear columns tell whether item 9 was answered above 0. The
    blob ({"flag": 0|1}: whether item 9 was answered above 0; checks written before hold item
    9's answer and the score, of which only that much is read) is under its own data key,
    wrapped (ItemKey rows) to each therapist on the care team. `reviewed_at` is set when a
    therapist has seen it: at once for a check with nothing to flag, on acknowledgement for one
    with a flag."""

    __tablename__ = "safety_check"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    response_id: uuid.UUID | None = Field(
        default=None, foreign_key="entry.id", index=True, ondelete="SET NULL"
    )
    body_blob: bytes = _blob()
    created_at: datetime = Field(default_factory=utcnow)
    reviewed_at: datetime | None = None
    reviewed_by_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL"
    )


class PushSubscription(SQLModel, table=True):
    """A device's Web Push subscription (endpoint and keys sealed under the KEK)."""

    __tablename__ = "push_subscription"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    endpoint_hash: bytes = _blob(unique=True)
    subscription_enc: bytes = _blob()
    created_at: datetime = Field(default_factory=utcnow)


class ReminderSent(SQLModel, table=True):
    """A reminder already pushed, so the scheduler never sends one twice."""

    __tablename__ = "reminder_sent"
    __table_args__ = (UniqueConstraint("subscription_id", "session_id", "kind"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subscription_id: uuid.UUID = Field(
        foreign_key="push_subscription.id", index=True, ondelete="CASCADE"
    )
    session_id: uuid.UUID = Field(
        foreign_key="treatment_session.id", index=True, ondelete="CASCADE"
    )
    kind: str = Field(max_length=32)
    sent_at: datetime = Field(default_factory=utcnow)


# --- after the session: capture and seal (helper CAPTURE) ----------------------------------------


class EntryMemo(SQLModel, table=True):
    """A voice memo of an entry (a capture after a session): the audio sealed under the entry's
    data key, bound to its version (re-sealed with each new one). Kept apart from the entry so
    lists never load it; the entry's body says that it exists, its type and size."""

    __tablename__ = "entry_memo"

    entry_id: uuid.UUID = Field(foreign_key="entry.id", primary_key=True, ondelete="CASCADE")
    version: int = 1
    audio_blob: bytes = _blob()
    created_at: datetime = Field(default_factory=utcnow)


class CoolingOff(SQLModel, table=True):
    """An entry written in the hours after a ketamine session (the cooling-off seal): readable
    by its author only until they choose, from `until` on, to share it, keep it or delete it.
    `reader_ids` are those it would have gone to (the standing default), offered then."""

    __tablename__ = "cooling_off"

    entry_id: uuid.UUID = Field(foreign_key="entry.id", primary_key=True, ondelete="CASCADE")
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    session_id: uuid.UUID | None = Field(
        default=None, foreign_key="treatment_session.id", ondelete="SET NULL"
    )
    until: datetime
    reader_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


# --- session day: checklist and ride (helper DAY) ---------------------------------------------


class SessionDay(SQLModel, table=True):
    """The patient's checklist for the day of one ketamine session (DESIGN §11). The ticks are
    one blob under this version's data key, wrapped (ItemKey rows) to the patient only. Clear,
    on purpose: whether the list is all done (the care team sees that much, never which
    ticks), the supporters the patient named as ride home and evening companion (naming is
    their consent: those two see the session time and the "I'm home" mark, no one else), the
    patient's time zone (for the supporters' evening-before reminder) and when they got home."""

    __tablename__ = "session_day"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    session_id: uuid.UUID = Field(
        foreign_key="treatment_session.id", unique=True, ondelete="CASCADE"
    )
    patient_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    version: int = 1
    body_blob: bytes = _blob()
    done: bool = False
    ride_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", index=True, ondelete="SET NULL"
    )
    companion_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", index=True, ondelete="SET NULL"
    )
    zone: str = Field(default="UTC", max_length=64)
    home_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
