"""safety checks after each PHQ-9, encrypted to the care team

Revision ID: 0005_safety
Revises: 0004_keycache
Create Date: 2026-11-27 07:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_safety"
down_revision = "0004_keycache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safety_check",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("response_id", sa.Uuid(), nullable=True),
        sa.Column("body_blob", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("reviewed_by_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["response_id"], ["entry.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["reviewed_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("safety_check", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_safety_check_patient_id"), ["patient_id"])
        batch_op.create_index(batch_op.f("ix_safety_check_response_id"), ["response_id"])


def downgrade() -> None:
    with op.batch_alter_table("safety_check", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_check_response_id"))
        batch_op.drop_index(batch_op.f("ix_safety_check_patient_id"))
    op.drop_table("safety_check")
