"""therapist workspace, supporters, push reminders

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:16:14.410251
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "item_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("reader_id", sa.Uuid(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subject_kind", "subject_id", "reader_id"),
    )
    with op.batch_alter_table("item_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_key_reader_id"), ["reader_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_item_key_subject_id"), ["subject_id"], unique=False)

    op.create_table(
        "push_subscription",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_hash", sa.LargeBinary(), nullable=False),
        sa.Column("subscription_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_hash"),
    )
    with op.batch_alter_table("push_subscription", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_push_subscription_user_id"), ["user_id"], unique=False)

    op.create_table(
        "support_link",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("supporter_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["supporter_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "supporter_id"),
    )
    with op.batch_alter_table("support_link", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_support_link_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_support_link_supporter_id"), ["supporter_id"], unique=False
        )

    op.create_table(
        "practice",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body_blob", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["treatment_session.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("practice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_practice_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "reminder_sent",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["treatment_session.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscription_id"], ["push_subscription.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscription_id", "session_id", "kind"),
    )
    with op.batch_alter_table("reminder_sent", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reminder_sent_session_id"), ["session_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_reminder_sent_subscription_id"), ["subscription_id"], unique=False
        )

    op.create_table(
        "annotation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("paragraph_index", sa.Integer(), nullable=True),
        sa.Column("visibility", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("bring_to_session", sa.Boolean(), nullable=False),
        sa.Column("discussed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("resolved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body_blob", sa.LargeBinary(), nullable=False),
        sa.Column("reply_blob", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entry_id"], ["entry.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["treatment_session.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotation_author_id"), ["author_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_annotation_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_annotation_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_annotation_session_id"), ["session_id"], unique=False)

    op.create_table(
        "entry_flag",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("therapist_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("discussed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["entry_id"], ["entry.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["therapist_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id", "therapist_id"),
    )
    with op.batch_alter_table("entry_flag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entry_flag_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_entry_flag_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_entry_flag_therapist_id"), ["therapist_id"], unique=False
        )

    op.create_table(
        "pending_share",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("invitation_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["entry.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["invitation_id"], ["invitation.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id", "invitation_id"),
    )
    with op.batch_alter_table("pending_share", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_share_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_pending_share_invitation_id"), ["invitation_id"], unique=False
        )

    op.create_table(
        "practice_check",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("practice_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["practice_id"], ["practice.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("practice_id", "day"),
    )
    with op.batch_alter_table("practice_check", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_practice_check_practice_id"), ["practice_id"], unique=False
        )

    with op.batch_alter_table("device_session", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mfa_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("entry", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("needs_rotation", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret_enc", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column("totp_confirmed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("totp_backup_hashes", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_backup_hashes")
        batch_op.drop_column("totp_confirmed_at")
        batch_op.drop_column("totp_secret_enc")

    with op.batch_alter_table("entry", schema=None) as batch_op:
        batch_op.drop_column("needs_rotation")

    with op.batch_alter_table("device_session", schema=None) as batch_op:
        batch_op.drop_column("mfa_pending")

    with op.batch_alter_table("practice_check", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_practice_check_practice_id"))

    op.drop_table("practice_check")
    with op.batch_alter_table("pending_share", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_share_invitation_id"))
        batch_op.drop_index(batch_op.f("ix_pending_share_entry_id"))

    op.drop_table("pending_share")
    with op.batch_alter_table("entry_flag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entry_flag_therapist_id"))
        batch_op.drop_index(batch_op.f("ix_entry_flag_patient_id"))
        batch_op.drop_index(batch_op.f("ix_entry_flag_entry_id"))

    op.drop_table("entry_flag")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_session_id"))
        batch_op.drop_index(batch_op.f("ix_annotation_patient_id"))
        batch_op.drop_index(batch_op.f("ix_annotation_entry_id"))
        batch_op.drop_index(batch_op.f("ix_annotation_author_id"))

    op.drop_table("annotation")
    with op.batch_alter_table("reminder_sent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_sent_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_reminder_sent_session_id"))

    op.drop_table("reminder_sent")
    with op.batch_alter_table("practice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_practice_patient_id"))

    op.drop_table("practice")
    with op.batch_alter_table("support_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_link_supporter_id"))
        batch_op.drop_index(batch_op.f("ix_support_link_patient_id"))

    op.drop_table("support_link")
    with op.batch_alter_table("push_subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_subscription_user_id"))

    op.drop_table("push_subscription")
    with op.batch_alter_table("item_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_key_subject_id"))
        batch_op.drop_index(batch_op.f("ix_item_key_reader_id"))

    op.drop_table("item_key")
