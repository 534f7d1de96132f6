"""after the session: voice memos of entries, and the cooling-off seal

Revision ID: 0009_capture
Revises: 0008_intent_locale
Create Date: 2026-12-02 03:10:00

`entry_memo` holds an entry's voice memo, sealed under the entry's data key (ciphertext only);
`cooling_off` the entries written in the hours after a ketamine session that wait, readable by
their author only, for the author's choice the next day.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009_capture"
down_revision = "0008_intent_locale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entry_memo",
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("audio_blob", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["entry.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    op.create_table(
        "cooling_off",
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("reader_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["entry.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["treatment_session.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    with op.batch_alter_table("cooling_off", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cooling_off_patient_id"), ["patient_id"])


def downgrade() -> None:
    with op.batch_alter_table("cooling_off", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cooling_off_patient_id"))
    op.drop_table("cooling_off")
    op.drop_table("entry_memo")
