"""one read path and pages: the queued-work flag on patients, indexes for pages

Revision ID: 0007_pages
Revises: 0006_trust
Create Date: 2026-12-02 01:00:00

`users.pending_work` lets the request pipeline skip the waiting-work queries when there is
nothing to do; it is set here for every patient who has work waiting now. The two indexes serve
pages cut at a cursor: a journal newest first, a patient's access log newest first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_pages"
down_revision = "0006_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pending_work", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_entry_author_created_id", "entry", ["author_id", "created_at", "id"])
    op.create_index("ix_audit_event_patient_seq", "audit_event", ["patient_id", "seq"])
    op.execute(
        """
        UPDATE users SET pending_work = true WHERE id IN (
            SELECT entry.author_id FROM entry WHERE entry.needs_rotation
            UNION
            SELECT entry.author_id FROM entry JOIN "grant" ON "grant".entry_id = entry.id
            WHERE "grant".wrapped_key IS NULL
        )
        """
    )


def downgrade() -> None:
    op.drop_index("ix_audit_event_patient_seq", table_name="audit_event")
    op.drop_index("ix_entry_author_created_id", table_name="entry")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("pending_work")
