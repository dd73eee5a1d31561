"""Initial schema: searches, trials, metric points, scale-up candidates (tables prefixed bs_).

Revision ID: 0001
Revises:
Create Date: 2026-11-28 22:56:56.250068
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bs_searches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("space_name", sa.String(length=64), nullable=False),
        sa.Column(
            "space", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "settings", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trials_requested", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("bs_searches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bs_searches_status"), ["status"], unique=False)

    op.create_table(
        "bs_trials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("is_baseline", sa.Boolean(), nullable=False),
        sa.Column("baseline_name", sa.String(length=32), nullable=True),
        sa.Column(
            "arch", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("arch_digest", sa.String(length=16), nullable=False),
        sa.Column("pattern", sa.String(length=64), nullable=False),
        sa.Column(
            "params", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "cost", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "metrics", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("step_time_s", sa.Float(), nullable=True),
        sa.Column("params_activated", sa.BigInteger(), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["search_id"], ["bs_searches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("search_id", "number", name="uq_bs_trials_search_number"),
    )
    with op.batch_alter_table("bs_trials", schema=None) as batch_op:
        batch_op.create_index("ix_bs_trials_search_digest", ["search_id", "arch_digest"], unique=False)
        batch_op.create_index("ix_bs_trials_search_state", ["search_id", "state"], unique=False)
        batch_op.create_index("ix_bs_trials_search_val_loss", ["search_id", "val_loss"], unique=False)

    op.create_table(
        "bs_candidates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("rung", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "arch", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("arch_digest", sa.String(length=16), nullable=False),
        sa.Column(
            "metrics", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["search_id"], ["bs_searches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trial_id"], ["bs_trials.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bs_candidates", schema=None) as batch_op:
        batch_op.create_index("ix_bs_candidates_search_rung", ["search_id", "rung"], unique=False)

    op.create_table(
        "bs_metric_points",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=False),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("lr", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["trial_id"], ["bs_trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trial_id", "step"),
    )


def downgrade() -> None:
    op.drop_table("bs_metric_points")
    with op.batch_alter_table("bs_candidates", schema=None) as batch_op:
        batch_op.drop_index("ix_bs_candidates_search_rung")

    op.drop_table("bs_candidates")
    with op.batch_alter_table("bs_trials", schema=None) as batch_op:
        batch_op.drop_index("ix_bs_trials_search_val_loss")
        batch_op.drop_index("ix_bs_trials_search_state")
        batch_op.drop_index("ix_bs_trials_search_digest")

    op.drop_table("bs_trials")
    with op.batch_alter_table("bs_searches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bs_searches_status"))

    op.drop_table("bs_searches")
