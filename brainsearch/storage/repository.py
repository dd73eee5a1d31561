"""The repository: every read and write of brainsearch's database, returning plain domain objects.

Database errors are translated into :class:`~brainsearch.errors.StorageError` at one choke point (``_session``),
so callers handle one exception type whatever the backend. Every public method waits out a database that is
briefly unreachable (a restart, a failover, a lost connection): it is retried with backoff for up to
``retry_seconds`` before the error reaches the caller. Only failures before the commit are retried (the transaction
was rolled back); a connection lost during the commit leaves its outcome unknown and raises :class:`CommitFailed`.
Recording a trial's outcome is idempotent: a trial already in a final state keeps it.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from brainsearch.errors import ConflictError, StorageError, TrialNotFound
from brainsearch.storage.domain import Candidate, MetricPoint, Page, Search, SearchStatus, SeedRun, Trial, TrialState
from brainsearch.storage.models import CandidateRow, InstanceRow, MetricPointRow, SearchRow, SeedRunRow, TrialRow

__all__ = [
    "RETRY_SECONDS",
    "TRIAL_SORT_KEYS",
    "CommitFailed",
    "Repository",
    "retrying",
    "transient",
]

D = TypeVar("D", Search, Trial, Candidate, SeedRun)
R = TypeVar("R")
log = logging.getLogger("brainsearch.storage")
# Default wait for a database that went away (a PostgreSQL restart takes a few seconds).
RETRY_SECONDS = 60.0

# Leaderboard sort keys: name -> column (indexed, see migration 0002), and the trainer's metrics kept in the JSON
# document, sortable too (read from the JSON: fine per search, not indexed).
TRIAL_SORT_KEYS: dict[str, Any] = {
    "val_loss": TrialRow.val_loss,
    "step_time_s": TrialRow.step_time_s,
    "params_activated": TrialRow.params_activated,
    "number": TrialRow.number,
    "created_at": TrialRow.created_at,
    **{
        key: TrialRow.metrics[key].as_float()
        for key in (
            "val_bits_per_byte",
            "val_ppl",
            "train_loss",
            "tokens_per_s",
            "mfu",
            "model_flops_per_s",
            "flops_per_token",
            "params_total",
            "steps",
            "tokens",
            "elapsed_s",
        )
    },
}


def _now() -> datetime:
    return datetime.now(UTC)


def _domain(cls: type[D], row: object) -> D:
    """The domain object ``cls`` of an ORM row: its dataclass fields are read off the row's same-named columns."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def _search(row: SearchRow) -> Search:
    return _domain(Search, row)


def _trial(row: TrialRow) -> Trial:
    return _domain(Trial, row)


def _candidate(row: CandidateRow) -> Candidate:
    return _domain(Candidate, row)


def _seed_run(row: SeedRunRow) -> SeedRun:
    return _domain(SeedRun, row)


def _finished_search_row(s: Session, search_id: int, hint: str) -> SearchRow:
    """The search's row, locked, when it has finished; an unknown search is a StorageError, one that is queued,
    running or still leased a ConflictError ending with ``hint``."""
    row = s.get(SearchRow, search_id, with_for_update=True)
    if row is None:
        raise StorageError(f"no search {search_id}")
    if row.status in ("queued", "running") or row.lease_owner is not None:
        raise ConflictError(f"search {search_id} is {row.status}: {hint}")
    return row


class CommitFailed(StorageError):
    """The connection failed during a commit: whether the transaction took effect is unknown, so it is not retried."""


def transient(exc: BaseException) -> bool:
    """Whether a database error (or an error raised from one: ours, Optuna's) is the connection's, worth retrying,
    not the statement's; a failed commit never is."""
    if isinstance(exc, CommitFailed):
        return False
    for e in (exc, exc.__cause__):
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, OperationalError | InterfaceError):
            if isinstance(e.orig, sqlite3.Error):  # SQLite reports schema errors as OperationalError too
                return any(word in str(e.orig).lower() for word in ("locked", "busy"))
            return True
    return False


def retrying(call: Callable[..., R], seconds: float, what: str) -> R:
    """``call()``, retried with backoff while it fails with a transient database error, for up to ``seconds``."""
    deadline, delay = time.monotonic() + seconds, 0.1
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: the database is unavailable (%s); retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


def _retried(method: Callable[..., R]) -> Callable[..., R]:
    @functools.wraps(method)
    def call(self: Repository, *args: Any, **kwargs: Any) -> R:
        return retrying(lambda: method(self, *args, **kwargs), self.retry_seconds, method.__name__)

    return call


class Repository:
    """Reads and writes searches, trials, learning curves and candidates on one engine (public methods wait out a
    briefly unreachable database for up to ``retry_seconds``)."""

    def __init__(self, engine: Engine, retry_seconds: float = RETRY_SECONDS) -> None:
        self.engine, self.retry_seconds = engine, retry_seconds
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._database_id: str | None = None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions() as session, session.begin():
                yield session
                session.flush()  # statement errors surface here, before the commit
                try:
                    session.commit()
                except SQLAlchemyError as exc:
                    # The commit may have reached the database before the connection broke: never retried.
                    raise CommitFailed(
                        f"database error while committing ({self.engine.dialect.name}): {exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0][:300]}"
                    ) from exc
        except (ConflictError, StorageError):
            raise
        except IntegrityError as exc:
            raise StorageError(f"constraint violated: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(
                f"database error ({self.engine.dialect.name}): {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0][:300]}"
            ) from exc

    def database_id(self) -> str:
        """This database's own id (written once by migration 0003): what names its runs' folder on disk."""
        if self._database_id is None:
            with self._session() as s:
                row = s.scalars(select(InstanceRow).order_by(InstanceRow.id).limit(1)).first()
                if row is None:
                    raise StorageError("the database has no identity row (bs_instance): run the migrations")
                self._database_id = row.database_id
        return self._database_id

    # --- searches ---------------------------------------------------------------------------------------------------
    def create_search(
        self,
        *,
        name: str,
        space_name: str,
        space: dict[str, Any],
        settings: dict[str, Any],
        trials_requested: int,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> tuple[Search, bool]:
        """Store a queued search; ``(search, created)``. The same ``idempotency_key`` with the same
        ``request_hash`` returns the first search (``created`` False); with another hash it is a ConflictError."""
        if idempotency_key is not None:
            existing = self._by_idempotency_key(idempotency_key, request_hash)
            if existing is not None:
                return existing, False
        now = _now()
        row = SearchRow(
            name=name,
            space_name=space_name,
            space=space,
            settings=settings,
            status="queued",
            trials_requested=trials_requested,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._session() as s:
                s.add(row)
                s.flush()
                return _search(row), True
        except StorageError as exc:
            # Two requests with one key raced: the loser returns the winner's search.
            if idempotency_key is not None and isinstance(exc.__cause__, IntegrityError):
                existing = self._by_idempotency_key(idempotency_key, request_hash)
                if existing is not None:
                    return existing, False
            raise

    def _by_idempotency_key(self, key: str, request_hash: str | None) -> Search | None:
        with self._session() as s:
            row = s.scalars(select(SearchRow).where(SearchRow.idempotency_key == key)).one_or_none()
            if row is None:
                return None
            if row.request_hash != request_hash:
                raise ConflictError(f"idempotency key {key!r} was used with a different request")
            return _search(row)

    def get_search(self, search_id: int) -> Search | None:
        """The search, or None."""
        with self._session() as s:
            row = s.get(SearchRow, search_id)
            return _search(row) if row else None

    def list_searches(self, *, status: SearchStatus | None = None, limit: int = 50, offset: int = 0) -> Page[Search]:
        """Searches, newest first."""
        with self._session() as s:
            query = select(SearchRow)
            if status is not None:
                query = query.where(SearchRow.status == status)
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(query.order_by(SearchRow.id.desc()).limit(limit).offset(offset)).all()
            return Page([_search(r) for r in rows], total, limit, offset)

    def set_search_status(self, search_id: int, status: SearchStatus, error: str | None = None) -> Search:
        """Move a search to ``status`` (timestamps follow); raises StorageError for an unknown id."""
        with self._session() as s:
            row = s.get(SearchRow, search_id)
            if row is None:
                raise StorageError(f"no search {search_id}")
            now = _now()
            row.status, row.error, row.updated_at = status, error, now
            if status == "running" and row.started_at is None:
                row.started_at = now
            if status in ("completed", "failed", "cancelled"):
                row.finished_at = now
            return _search(row)

    # --- worker leases ----------------------------------------------------------------------------------------------
    def claim_search(self, owner: str, lease_seconds: float) -> Search | None:
        """Claim the oldest queued search, or a running one whose worker's lease expired (it died), for ``owner``;
        None when there is none. Workers never claim the same search: PostgreSQL skips rows another transaction
        holds (``FOR UPDATE SKIP LOCKED``); SQLite claims with a conditional update that only one writer wins."""
        now = _now()
        claimable = (SearchRow.status == "queued") | (
            (SearchRow.status == "running")
            & ((SearchRow.lease_expires_at.is_(None)) | (SearchRow.lease_expires_at < now))
        )
        for _ in range(8):  # SQLite: another worker won the row between our read and our update; try the next
            with self._session() as s:
                query = select(SearchRow.id).where(claimable).order_by(SearchRow.id).limit(1)
                if self.engine.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                search_id = s.scalar(query)
                if search_id is None:
                    return None
                claimed = s.execute(
                    update(SearchRow)
                    .where(SearchRow.id == search_id, claimable)
                    .values(
                        status="running",
                        lease_owner=owner,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                        heartbeat_at=now,
                        updated_at=now,
                        started_at=func.coalesce(SearchRow.started_at, now),
                    )
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    row = s.get(SearchRow, search_id, populate_existing=True)
                    assert row is not None
                    return _search(row)
        return None

    def renew_lease(self, search_id: int, owner: str, lease_seconds: float) -> Search | None:
        """Extend ``owner``'s lease (the heartbeat); returns the search, or None when the lease is no longer
        ``owner``'s (it expired and another worker took the search). The status tells a worker it was cancelled."""
        now = _now()
        with self._session() as s:
            row = s.get(SearchRow, search_id, with_for_update=True)
            if row is None or row.lease_owner != owner:
                return None
            row.lease_expires_at, row.heartbeat_at = now + timedelta(seconds=lease_seconds), now
            return _search(row)

    def release_search(self, search_id: int, owner: str, requeue: bool = False) -> None:
        """Give up ``owner``'s lease; ``requeue`` puts a running search back in the queue (a worker shutting down)."""
        with self._session() as s:
            row = s.get(SearchRow, search_id, with_for_update=True)
            if row is None or row.lease_owner != owner:
                return
            row.lease_owner, row.lease_expires_at = None, None
            if requeue and row.status == "running":
                row.status, row.updated_at = "queued", _now()

    def cancel_search(self, search_id: int) -> Search:
        """Cancel a queued or running search (its worker sees it at the next heartbeat); a finished search is a
        ConflictError, an unknown one a StorageError."""
        with self._session() as s:
            row = s.get(SearchRow, search_id, with_for_update=True)
            if row is None:
                raise StorageError(f"no search {search_id}")
            if row.status in ("completed", "failed"):
                raise ConflictError(f"search {search_id} already {row.status}")
            if row.status != "cancelled":
                now = _now()
                row.status, row.error, row.updated_at = "cancelled", "cancelled by a user", now
                if row.lease_owner is None:
                    row.finished_at = now
            return _search(row)

    def delete_search(self, search_id: int) -> Search:
        """Delete a finished search with its trials, curves and candidates (the rows cascade); a queued or running
        one is a ConflictError (cancel it first), an unknown one a StorageError. Returns what was deleted."""
        with self._session() as s:
            row = _finished_search_row(s, search_id, "cancel it first, then delete it")
            deleted = _search(row)
            s.delete(row)
            return deleted

    def reopen_search(self, search_id: int, settings: dict[str, Any]) -> Search:
        """Queue a finished search again with new ``settings`` (a scale-up stage added to a completed search): its
        trials are kept, a worker resumes it. A queued or running one is a ConflictError, an unknown one a
        StorageError."""
        with self._session() as s:
            row = _finished_search_row(s, search_id, "wait for it to finish")
            row.settings, row.status, row.error = settings, "queued", None
            row.finished_at, row.updated_at = None, _now()
            return _search(row)

    # --- trials -----------------------------------------------------------------------------------------------------
    def add_trial(
        self,
        *,
        search_id: int,
        number: int,
        arch: dict[str, Any],
        arch_digest: str,
        pattern: str,
        params: dict[str, Any],
        cost: dict[str, Any],
        params_activated: int,
        is_baseline: bool = False,
        baseline_name: str | None = None,
        worker: str | None = None,
    ) -> Trial:
        """Record a trial that starts running now."""
        now = _now()
        row = TrialRow(
            search_id=search_id,
            number=number,
            state="running",
            is_baseline=is_baseline,
            baseline_name=baseline_name,
            arch=arch,
            arch_digest=arch_digest,
            pattern=pattern,
            params=params,
            cost=cost,
            metrics={},
            params_activated=params_activated,
            worker=worker,
            created_at=now,
            started_at=now,
        )
        with self._session() as s:
            s.add(row)
            s.flush()
            return _trial(row)

    def finish_trial(
        self,
        trial_id: int,
        *,
        state: TrialState,
        reason: str | None = None,
        metrics: dict[str, Any] | None = None,
        val_loss: float | None = None,
        step_time_s: float | None = None,
        curve: Sequence[MetricPoint] = (),
    ) -> Trial:
        """Record a running trial's outcome and learning curve in one transaction (all or nothing). A trial already
        in a final state is returned as it is: a late or repeated report (a worker that recorded its result, then
        died) never overwrites a result."""
        with self._session() as s:
            row = s.get(TrialRow, trial_id)
            if row is None:
                raise StorageError(f"no trial {trial_id}")
            if row.state != "running":
                log.info("trial %d is %s already; %s not recorded", trial_id, row.state, state)
                return _trial(row)
            row.state, row.reason, row.metrics = state, reason, metrics or {}
            row.val_loss, row.step_time_s, row.finished_at = val_loss, step_time_s, _now()
            s.add_all(
                MetricPointRow(
                    trial_id=trial_id,
                    step=p.step,
                    tokens=p.tokens,
                    elapsed_s=p.elapsed_s,
                    train_loss=p.train_loss,
                    val_loss=p.val_loss,
                    lr=p.lr,
                )
                for p in curve
            )
            return _trial(row)

    def get_trial(self, trial_id: int) -> Trial | None:
        """The trial, or None."""
        with self._session() as s:
            row = s.get(TrialRow, trial_id)
            return _trial(row) if row else None

    def trial_curve(self, trial_id: int) -> list[MetricPoint]:
        """The trial's learning curve, by step."""
        with self._session() as s:
            rows = s.scalars(
                select(MetricPointRow).where(MetricPointRow.trial_id == trial_id).order_by(MetricPointRow.step)
            ).all()
            return [MetricPoint(r.step, r.tokens, r.elapsed_s, r.train_loss, r.val_loss, r.lr) for r in rows]

    def find_trial(self, search_id: int, arch_digest: str) -> Trial | None:
        """A finished (not crashed) trial of the same architecture in this search, for deduplication."""
        with self._session() as s:
            row = s.scalars(
                select(TrialRow)
                .where(
                    TrialRow.search_id == search_id,
                    TrialRow.arch_digest == arch_digest,
                    TrialRow.state.not_in(("running", "crashed")),
                )
                .order_by(TrialRow.id)
                .limit(1)
            ).one_or_none()
            return _trial(row) if row else None

    def list_trials(
        self,
        search_id: int,
        *,
        sort: str = "val_loss",
        order: Literal["asc", "desc"] = "asc",
        state: TrialState | None = None,
        is_baseline: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Trial]:
        """The leaderboard page: completed trials by ``sort``; failed, pruned and running ones after them."""
        if sort not in TRIAL_SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(TRIAL_SORT_KEYS)}, got {sort!r}")
        column = TRIAL_SORT_KEYS[sort]
        key = column.asc() if order == "asc" else column.desc()
        with self._session() as s:
            query = select(TrialRow).where(TrialRow.search_id == search_id)
            if is_baseline is not None:
                query = query.where(TrialRow.is_baseline == is_baseline)
            counted = query.with_only_columns(TrialRow.state, func.count()).group_by(TrialRow.state)
            counts: dict[str, int] = {st: n for st, n in s.execute(counted).all()}
            if state is not None:
                total = counts.get(state, 0)
                segments = [(query.where(TrialRow.state == state), total)]
            else:
                total = sum(counts.values())
                done = counts.get("completed", 0)
                # Two index range scans, (search, state, key): completed trials, then the rest with missing keys last.
                segments = [
                    (query.where(TrialRow.state == "completed"), done),
                    (query.where(TrialRow.state != "completed"), total - done),
                ]
            rows: list[TrialRow] = []
            skip = offset
            for segment, size in segments:
                if skip >= size:
                    skip -= size
                    continue
                want = limit - len(rows)
                if want <= 0:
                    break
                ordered = segment.order_by(key.nulls_last(), TrialRow.number).offset(skip).limit(want)
                rows.extend(s.scalars(ordered).all())
                skip = 0
            return Page([_trial(r) for r in rows], total, limit, offset)

    def count_trials(self, search_id: int, *, is_baseline: bool | None = None) -> dict[str, int]:
        """Trials of the search per state (only baselines, or none of them, when ``is_baseline`` says so)."""
        with self._session() as s:
            query = select(TrialRow.state, func.count()).where(TrialRow.search_id == search_id)
            if is_baseline is not None:
                query = query.where(TrialRow.is_baseline == is_baseline)
            rows = s.execute(query.group_by(TrialRow.state)).all()
            return {state: n for state, n in rows}

    def baselines(self, search_id: int) -> list[Trial]:
        """The search's baseline trials, oldest first (a crashed baseline is followed by its re-run)."""
        with self._session() as s:
            rows = s.scalars(
                select(TrialRow).where(TrialRow.search_id == search_id, TrialRow.is_baseline).order_by(TrialRow.id)
            ).all()
            return [_trial(r) for r in rows]

    def next_trial_number(self, search_id: int) -> int:
        """One past the highest trial number of the search (0 for the first)."""
        with self._session() as s:
            highest = s.scalar(select(func.max(TrialRow.number)).where(TrialRow.search_id == search_id))
            return 0 if highest is None else highest + 1

    def mark_orphans_crashed(self, search_id: int, reason: str = "worker stopped while the trial ran") -> list[Trial]:
        """Running trials left by a dead process become ``crashed``; returns them (used on resume)."""
        with self._session() as s:
            rows = s.scalars(
                select(TrialRow)
                .where(TrialRow.search_id == search_id, TrialRow.state == "running")
                .order_by(TrialRow.id)
                .with_for_update()
            ).all()
            now = _now()
            for row in rows:
                row.state, row.reason, row.finished_at = "crashed", reason, now
            return [_trial(r) for r in rows]

    # --- seed runs ---------------------------------------------------------------------------------------------------
    def add_seed_run(self, *, search_id: int, trial_id: int, seed: int) -> SeedRun:
        """Record that ``trial_id``'s architecture starts training again with ``seed``. A (trial, seed) already
        recorded but not finished (crashed, or left running by a dead worker) starts again in the same row; a
        finished one is a ConflictError."""
        with self._session() as s:
            row = s.scalars(
                select(SeedRunRow).where(SeedRunRow.trial_id == trial_id, SeedRunRow.seed == seed).with_for_update()
            ).one_or_none()
            if row is not None and row.state not in ("running", "crashed"):
                raise ConflictError(f"trial {trial_id} was trained with seed {seed} already ({row.state})")
            if row is None:
                row = SeedRunRow(search_id=search_id, trial_id=trial_id, seed=seed, metrics={}, created_at=_now())
                s.add(row)
            row.state, row.reason, row.val_loss, row.val_loss_stderr = "running", None, None, None
            row.step_time_s, row.finished_at, row.metrics = None, None, {}
            s.flush()
            return _seed_run(row)

    def finish_seed_run(
        self,
        seed_run_id: int,
        *,
        state: TrialState,
        reason: str | None = None,
        metrics: dict[str, Any] | None = None,
        val_loss: float | None = None,
        val_loss_stderr: float | None = None,
        step_time_s: float | None = None,
    ) -> SeedRun:
        """Record a running seed run's outcome; one already final is returned as it is (a late report never
        overwrites a result)."""
        with self._session() as s:
            row = s.get(SeedRunRow, seed_run_id)
            if row is None:
                raise StorageError(f"no seed run {seed_run_id}")
            if row.state != "running":
                return _seed_run(row)
            row.state, row.reason, row.metrics = state, reason, metrics or {}
            row.val_loss, row.val_loss_stderr, row.step_time_s = val_loss, val_loss_stderr, step_time_s
            row.finished_at = _now()
            return _seed_run(row)

    def list_seed_runs(self, search_id: int, trial_ids: Sequence[int] | None = None) -> list[SeedRun]:
        """The search's seed runs (of ``trial_ids`` only, when given), by trial then seed."""
        with self._session() as s:
            query = select(SeedRunRow).where(SeedRunRow.search_id == search_id)
            if trial_ids is not None:
                query = query.where(SeedRunRow.trial_id.in_(list(trial_ids)))
            rows = s.scalars(query.order_by(SeedRunRow.trial_id, SeedRunRow.seed)).all()
            return [_seed_run(r) for r in rows]

    def mark_orphan_seed_runs_crashed(self, search_id: int, reason: str) -> int:
        """Seed runs left running by a dead process become ``crashed`` (they train again); returns how many."""
        with self._session() as s:
            rows = s.scalars(
                select(SeedRunRow)
                .where(SeedRunRow.search_id == search_id, SeedRunRow.state == "running")
                .with_for_update()
            ).all()
            now = _now()
            for row in rows:
                row.state, row.reason, row.finished_at = "crashed", reason, now
            return len(rows)

    # --- candidates --------------------------------------------------------------------------------------------------
    def add_candidate(
        self,
        *,
        search_id: int,
        trial_id: int | None,
        rung: str,
        state: str,
        arch: dict[str, Any],
        arch_digest: str,
        metrics: dict[str, Any],
        val_loss: float | None,
        reason: str | None = None,
    ) -> Candidate:
        """Record a scale-up candidate's run at one rung."""
        row = CandidateRow(
            search_id=search_id,
            trial_id=trial_id,
            rung=rung,
            state=state,
            reason=reason,
            arch=arch,
            arch_digest=arch_digest,
            metrics=metrics,
            val_loss=val_loss,
            created_at=_now(),
        )
        with self._session() as s:
            s.add(row)
            s.flush()
            return _candidate(row)

    def trial_by_number(self, search_id: int, number: int) -> Trial | None:
        """The trial numbered ``number`` in a search (the leaderboard's ``#``)."""
        with self._session() as s:
            row = s.scalars(
                select(TrialRow).where(TrialRow.search_id == search_id, TrialRow.number == number).limit(1)
            ).first()
            return _trial(row) if row is not None else None

    def pick_trial(self, search_id: int, *, trial_id: int | None = None, number: int | None = None) -> Trial:
        """The trial of a search that exactly one selector names: its id or its number (the leaderboard's ``#``, the
        Optuna trial's number). A rank is the search layer's (:func:`brainsearch.search.standings.pick_trial`: it
        needs the runs over seeds). Nothing matching raises :class:`TrialNotFound`; zero or both selectors are a
        caller's bug: ValueError."""
        picks = {k: v for k, v in (("trial_id", trial_id), ("number", number)) if v is not None}
        if len(picks) != 1:
            raise ValueError(f"pick a trial by exactly one of trial_id and number, got {picks}")
        ((selector, value),) = picks.items()
        column = TrialRow.id if selector == "trial_id" else TrialRow.number
        query = select(TrialRow).where(TrialRow.search_id == search_id, column == value)
        ranked = (TrialRow.search_id == search_id, TrialRow.state == "completed", TrialRow.is_baseline.is_(False))
        with self._session() as s:
            row = s.scalars(query.limit(1)).first()
            if row is not None:
                return _trial(row)
            completed = s.scalar(select(func.count()).select_from(TrialRow).where(*ranked)) or 0
        asked = f"#{value}" if selector == "number" else f"with id {value}"
        message = f"search {search_id} has no trial {asked} (it has {completed} completed trial(s))"
        raise TrialNotFound(selector, message)

    def list_candidates(self, search_id: int) -> list[Candidate]:
        """A search's candidates, by rung then loss."""
        with self._session() as s:
            rows = s.scalars(
                select(CandidateRow)
                .where(CandidateRow.search_id == search_id)
                .order_by(CandidateRow.rung, CandidateRow.val_loss.asc().nulls_last())
            ).all()
            return [_candidate(r) for r in rows]


for _name, _method in list(vars(Repository).items()):
    if callable(_method) and not _name.startswith("_"):
        setattr(Repository, _name, _retried(_method))
