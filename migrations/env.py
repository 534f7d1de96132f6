"""Alembic environment: runs on the connection handed over by kapjournal.db.upgrade()."""

from alembic import context
from sqlmodel import SQLModel

from kapjournal import models  # noqa: F401  (registers the tables)

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations with `flask --app app db upgrade`.")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
