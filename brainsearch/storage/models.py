"""SQLAlchemy 2.0 typed table models. Callers never see these: the repository returns domain objects.

Tables are prefixed ``bs_`` because a search's Optuna study lives in the same database, and Optuna's own schema
already has tables named ``studies`` and ``trials`` (and its own ``alembic_version``; ours is
``bs_alembic_version``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "CandidateRow", "InstanceRow", "MetricPointRow", "SearchRow", "SeedRunRow", "TrialRow"]

JSONDoc = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores none and would return naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base of brainsearch's tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONDoc}


class InstanceRow(Base):
    """The database's identity (one row, migration 0003): names the folder of its runs' files on disk."""

    __tablename__ = "bs_instance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    database_id: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SearchRow(Base):
    """A submitted search: its space document, settings, status, progress and worker lease."""

    __tablename__ = "bs_searches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    space_name: Mapped[str] = mapped_column(String(64))
    space: Mapped[dict[str, Any]]
    settings: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), index=True)
    trials_requested: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TrialRow(Base):
    """One proxy trial of a search: the architecture it trained and how that went."""

    __tablename__ = "bs_trials"
    __table_args__ = (
        UniqueConstraint("search_id", "number", name="uq_bs_trials_search_number"),
        Index("ix_bs_trials_search_state", "search_id", "state"),
        Index("ix_bs_trials_search_digest", "search_id", "arch_digest"),
        # The leaderboard: completed trials in sort-key order, then the rest (see Repository.list_trials).
        *(
            Index(f"ix_bs_trials_search_state_{key}", "search_id", "state", key)
            for key in ("val_loss", "step_time_s", "params_activated", "number", "created_at")
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("bs_searches.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    baseline_name: Mapped[str | None] = mapped_column(String(32))
    arch: Mapped[dict[str, Any]]
    arch_digest: Mapped[str] = mapped_column(String(16))
    pattern: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    cost: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    val_loss: Mapped[float | None] = mapped_column(Float)
    step_time_s: Mapped[float | None] = mapped_column(Float)
    params_activated: Mapped[int] = mapped_column(BigInteger)
    worker: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MetricPointRow(Base):
    """One point of a trial's learning curve."""

    __tablename__ = "bs_metric_points"
    trial_id: Mapped[int] = mapped_column(ForeignKey("bs_trials.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    elapsed_s: Mapped[float] = mapped_column(Float)
    train_loss: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)


class CandidateRow(Base):
    """A top-k architecture trained again at a larger rung of the scale-up ladder."""

    __tablename__ = "bs_candidates"
    __table_args__ = (Index("ix_bs_candidates_search_rung", "search_id", "rung"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("bs_searches.id", ondelete="CASCADE"))
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("bs_trials.id", ondelete="SET NULL"))
    rung: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    arch: Mapped[dict[str, Any]]
    arch_digest: Mapped[str] = mapped_column(String(16))
    metrics: Mapped[dict[str, Any]]
    val_loss: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SeedRunRow(Base):
    """A trial's architecture trained again with another seed (migration 0004): the seed-noise measurements."""

    __tablename__ = "bs_seed_runs"
    __table_args__ = (
        UniqueConstraint("trial_id", "seed", name="uq_bs_seed_runs_trial_seed"),
        Index("ix_bs_seed_runs_search", "search_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("bs_searches.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("bs_trials.id", ondelete="CASCADE"))
    seed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_loss_stderr: Mapped[float | None] = mapped_column(Float)
    step_time_s: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
