"""the session day: the patient's checklist (sealed ticks) and the supporters named for it

Revision ID: 0010_day
Revises: 0009_capture
Create Date: 2026-12-02 03:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010_day"
down_revision = "0009_capture"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_day",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body_blob", sa.LargeBinary(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("ride_id", sa.Uuid(), nullable=True),
        sa.Column("companion_id", sa.Uuid(), nullable=True),
        sa.Column("zone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("home_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["treatment_session.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ride_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["companion_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id"),
    )
    with op.batch_alter_table("session_day", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_session_day_patient_id"), ["patient_id"])
        batch_op.create_index(batch_op.f("ix_session_day_ride_id"), ["ride_id"])
        batch_op.create_index(batch_op.f("ix_session_day_companion_id"), ["companion_id"])


def downgrade() -> None:
    with op.batch_alter_table("session_day", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_day_companion_id"))
        batch_op.drop_index(batch_op.f("ix_session_day_ride_id"))
        batch_op.drop_index(batch_op.f("ix_session_day_patient_id"))
    op.drop_table("session_day")
