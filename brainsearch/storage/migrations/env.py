"""Alembic environment: runs on the connection brainsearch passes in (see brainsearch.storage.engine.migrate)."""

from __future__ import annotations

from alembic import context

from brainsearch.storage.models import Base

VERSION_TABLE = "bs_alembic_version"

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - brainsearch always passes a connection
    raise RuntimeError("run migrations through brainsearch.storage.migrate(engine)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    version_table=VERSION_TABLE,
    # Optuna's tables share the database: autogenerate compares brainsearch's tables only.
    include_name=lambda name, type_, parent: type_ != "table" or name is None or name.startswith("bs_"),
)
with context.begin_transaction():
    context.run_migrations()
