"""Leaderboard indexes: (search, state, sort key) for every sort key, replacing (search, val_loss).

The leaderboard lists completed trials by a sort key, then the rest: with these indexes each part is an index
range scan in key order instead of a sort of the whole search.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SORT_KEYS = ("val_loss", "step_time_s", "params_activated", "number", "created_at")


def upgrade() -> None:
    with op.batch_alter_table("bs_trials") as batch_op:
        batch_op.drop_index("ix_bs_trials_search_val_loss")
        for key in SORT_KEYS:
            batch_op.create_index(f"ix_bs_trials_search_state_{key}", ["search_id", "state", key], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bs_trials") as batch_op:
        for key in SORT_KEYS:
            batch_op.drop_index(f"ix_bs_trials_search_state_{key}")
        batch_op.create_index("ix_bs_trials_search_val_loss", ["search_id", "val_loss"], unique=False)
