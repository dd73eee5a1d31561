"""Seed runs: a trial's architecture trained again with other seeds, to measure seed noise.

A search trains its reference baseline with ``search.baseline_seeds`` seeds and re-evaluates its best trials with
``search.top_k_seeds``; the first seed of each is the trial's own row in ``bs_trials`` (the value the sampler saw),
the others are rows here, one per (trial, seed).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bs_seed_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("bs_searches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("bs_trials.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("val_loss_stderr", sa.Float(), nullable=True),
        sa.Column("step_time_s", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("trial_id", "seed", name="uq_bs_seed_runs_trial_seed"),
    )
    op.create_index("ix_bs_seed_runs_search", "bs_seed_runs", ["search_id"])


def downgrade() -> None:
    op.drop_index("ix_bs_seed_runs_search", table_name="bs_seed_runs")
    op.drop_table("bs_seed_runs")
