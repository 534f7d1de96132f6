"""device sessions keep the data keys they opened, sealed under K_sess

Revision ID: 0004_keycache
Revises: 0003
Create Date: 2026-11-27 04:35:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_keycache"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_cache", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_session", schema=None) as batch_op:
        batch_op.drop_column("key_cache")
