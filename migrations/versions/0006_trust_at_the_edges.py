"""trust at the edges: access-log head and read tally, backup codes as rows, one clinic
set-up, quotes under the entry's key, device sessions under the KEK

Revision ID: 0006_trust
Revises: 0005_safety
Create Date: 2026-12-01 23:30:00

Device sessions are deleted: their wrapped private keys were under K_sess only, and from now
on they are under the KEK as well (everyone logs in again once). Backup codes move from a JSON
list on the user to rows, so that using one is a single DELETE only one request can win.
"""

import json
import uuid

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006_trust"
down_revision = "0005_safety"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("last_mac", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("mac", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "read_tally",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reader_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reader_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reader_id", "subject_id", "action", "day"),
    )
    with op.batch_alter_table("read_tally", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_read_tally_patient_id"), ["patient_id"])
        batch_op.create_index(batch_op.f("ix_read_tally_reader_id"), ["reader_id"])
    op.create_table(
        "backup_code",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "code_hash"),
    )
    with op.batch_alter_table("backup_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_code_user_id"), ["user_id"])
    op.create_table(
        "clinic_setup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quote_blob", sa.LargeBinary(), nullable=True))

    bind = op.get_bind()
    users = sa.table(
        "users", sa.column("id", sa.Uuid()), sa.column("totp_backup_hashes", sa.JSON())
    )
    codes = sa.table(
        "backup_code",
        sa.column("id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("code_hash", sa.String()),
    )
    rows = []
    for user_id, hashes in bind.execute(sa.select(users.c.id, users.c.totp_backup_hashes)):
        if isinstance(hashes, str):
            hashes = json.loads(hashes)
        rows += [{"id": uuid.uuid4(), "user_id": user_id, "code_hash": h} for h in hashes or []]
    if rows:
        op.bulk_insert(codes, rows)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_backup_hashes")

    if bind.execute(sa.text("SELECT COUNT(*) FROM users")).scalar():
        setup = sa.table("clinic_setup", sa.column("id", sa.Integer()), sa.column("done_at"))
        op.execute(setup.insert().values(id=1, done_at=sa.func.current_timestamp()))
    op.execute("DELETE FROM device_session")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("totp_backup_hashes", sa.JSON(), nullable=False, server_default="[]")
        )
    bind = op.get_bind()
    found: dict = {}
    for user_id, code_hash in bind.execute(sa.text("SELECT user_id, code_hash FROM backup_code")):
        found.setdefault(user_id, []).append(code_hash)
    users = sa.table(
        "users", sa.column("id", sa.Uuid()), sa.column("totp_backup_hashes", sa.JSON())
    )
    for user_id, hashes in found.items():
        user_id = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id))
        op.execute(users.update().where(users.c.id == user_id).values(totp_backup_hashes=hashes))
    op.execute("DELETE FROM device_session")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_column("quote_blob")
    op.drop_table("clinic_setup")
    with op.batch_alter_table("backup_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backup_code_user_id"))
    op.drop_table("backup_code")
    with op.batch_alter_table("read_tally", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_read_tally_reader_id"))
        batch_op.drop_index(batch_op.f("ix_read_tally_patient_id"))
    op.drop_table("read_tally")
    op.drop_table("audit_head")
