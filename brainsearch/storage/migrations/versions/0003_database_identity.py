"""The database's identity: one row holding a random id, written once.

Files a run leaves on disk (weights, checkpoints, exports) live under a folder named by this id
(:mod:`brainsearch.store`), so two databases sharing one data directory never share a file, whatever URLs reach
them, and a database created again at a deleted one's path does not inherit its files.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "bs_instance",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("database_id", sa.String(36), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "database_id": str(uuid.uuid4()), "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("bs_instance")
