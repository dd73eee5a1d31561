"""Alembic environment: runs on the connection brainsearch passes in (see brainsearch.storage.engine.migrate)."""

from __future__ import annotations

from alembic import context

from brainsearch.storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - brainsearch always passes a connection
    raise RuntimeError("run migrations through brainsearch.storage.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
