"""pages that stay flat as the journal grows: two indexes

Revision ID: 0011_flat
Revises: 0010_day
Create Date: 2026-12-02 07:00:00

`ix_grant_reader_created`: what was shared with a reader since a moment (the caseload and the
patient page count what was shared since the last integration session) is found from the
reader's grants after that moment, not from every entry of the patient.
`ix_entry_author_kind_created`: when the patient last answered each questionnaire is one index
lookup per questionnaire, not a pass over the journal.
"""

from alembic import op

revision = "0011_flat"
down_revision = "0010_day"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_grant_reader_created", "grant", ["reader_id", "created_at"])
    op.create_index("ix_entry_author_kind_created", "entry", ["author_id", "kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_entry_author_kind_created", table_name="entry")
    op.drop_index("ix_grant_reader_created", table_name="grant")
