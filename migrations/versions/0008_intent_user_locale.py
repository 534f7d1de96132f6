"""languages: the language a user chose

Revision ID: 0008_intent_locale
Revises: 0007_pages
Create Date: 2026-12-02 03:20:00

`users.locale` keeps the language a user chose (issue 16); empty, their browser's is used.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_intent_locale"
down_revision = "0007_pages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("locale")
