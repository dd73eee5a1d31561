"""The repository on SQLite and PostgreSQL alike: searches, idempotency, trials, curves, leaderboard, candidates."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from brainsearch.arch import cost, preset
from brainsearch.errors import ConflictError, StorageError
from brainsearch.storage import MetricPoint, Repository, make_engine, migrate, schema_revision
from tests.factories import add_running_trial


def _search(repo: Repository, **kw: object):
    args = {
        "name": "s",
        "space_name": "tiny",
        "space": {"name": "tiny"},
        "settings": {"trials": 4},
        "trials_requested": 4,
        **kw,
    }
    return repo.create_search(**args)  # type: ignore[arg-type]


def _trial(repo: Repository, search_id: int, number: int, name: str = "glam", **kw: object):
    arch = preset(name)
    c = cost(arch)
    fields = {"params": {"d_model": arch.d_model}, "cost": c.model_dump(), "params_activated": c.params_activated}
    return add_running_trial(repo, search_id, number, arch, **fields, **kw)


def test_schema_is_versioned_and_migrating_twice_is_a_no_op(database_url: str) -> None:
    engine = make_engine(database_url)
    assert schema_revision(engine) is None
    migrate(engine)
    first_id = Repository(engine).database_id()
    migrate(engine)
    assert schema_revision(engine) == "0004"
    tables = set(inspect(engine).get_table_names())
    assert {"bs_searches", "bs_trials", "bs_metric_points", "bs_candidates", "bs_instance"} <= tables
    assert Repository(engine).database_id() == first_id  # written once: a second migration keeps the identity
    engine.dispose()


def test_every_database_has_its_own_id(tmp_path) -> None:
    """What names a database's folder of run files: two databases never share one, even at the same path after
    the first was deleted."""
    ids = []
    for name in ("a", "b", "a"):
        path = tmp_path / f"{name}.db"
        if ids and name == "a":
            path.unlink()  # the same file name, a new database
        engine = make_engine(f"sqlite:///{path}")
        migrate(engine)
        ids.append(Repository(engine).database_id())
        engine.dispose()
    assert len(set(ids)) == 3


def _migrate_in_process(url: str) -> str | None:
    engine = make_engine(url)
    migrate(engine)
    return schema_revision(engine)


def test_workers_starting_together_do_not_race_the_migration(database_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        revisions = pool.map(_migrate_in_process, [database_url] * 4)
    assert revisions == ["0004"] * 4


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x' / 'db.sqlite'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_create_get_list_searches(repo: Repository) -> None:
    a, created = _search(repo, name="first")
    b, _ = _search(repo, name="second")
    assert created and a.status == "queued" and a.space == {"name": "tiny"}
    assert repo.get_search(a.id) == a
    assert repo.get_search(10_000) is None
    page = repo.list_searches(limit=1)
    assert page.total == 2 and [s.id for s in page.items] == [b.id]
    assert repo.list_searches(status="running").total == 0


def test_idempotency_key(repo: Repository) -> None:
    first, created = _search(repo, idempotency_key="k1", request_hash="h1")
    again, created_again = _search(repo, idempotency_key="k1", request_hash="h1")
    assert created and not created_again and again.id == first.id
    with pytest.raises(ConflictError, match="idempotency key 'k1' was used with a different request"):
        _search(repo, idempotency_key="k1", request_hash="h2")
    assert repo.list_searches().total == 1


def test_search_status_timestamps(repo: Repository) -> None:
    s, _ = _search(repo)
    running = repo.set_search_status(s.id, "running")
    assert running.started_at is not None and running.finished_at is None
    done = repo.set_search_status(s.id, "failed", error="5 consecutive failures")
    assert done.finished_at is not None and done.error == "5 consecutive failures"
    with pytest.raises(StorageError, match="no search 999"):
        repo.set_search_status(999, "running")


def test_trial_outcome_and_curve_round_trip(repo: Repository) -> None:
    s, _ = _search(repo)
    t = _trial(repo, s.id, 0, worker="w1")
    assert t.state == "running" and t.started_at is not None and t.worker == "w1"
    curve = [
        MetricPoint(
            step=i,
            tokens=512 * i,
            elapsed_s=0.1 * i,
            train_loss=5.0 - 0.01 * i,
            val_loss=None if i % 2 else 4.9 - 0.01 * i,
            lr=1e-3,
        )
        for i in range(1, 11)
    ]
    done = repo.finish_trial(
        t.id,
        state="completed",
        metrics={"val_loss": 4.8, "moe": {"load_cv": 0.1}},
        val_loss=4.8,
        step_time_s=0.05,
        curve=curve,
    )
    assert done.state == "completed" and done.finished_at is not None
    stored = repo.get_trial(t.id)
    assert stored == done and stored.metrics["moe"] == {"load_cv": 0.1}
    assert repo.trial_curve(t.id) == curve


def test_duplicate_lookup_skips_running_and_crashed(repo: Repository) -> None:
    s, _ = _search(repo)
    digest = preset("glam").digest
    t0 = _trial(repo, s.id, 0)
    assert repo.find_trial(s.id, digest) is None  # still running
    repo.mark_orphans_crashed(s.id)
    assert repo.find_trial(s.id, digest) is None  # crashed: worth retrying
    t1 = _trial(repo, s.id, 1)
    repo.finish_trial(t1.id, state="completed", val_loss=3.0)
    found = repo.find_trial(s.id, digest)
    assert found is not None and found.id == t1.id and found.id != t0.id
    other, _ = _search(repo)
    assert repo.find_trial(other.id, digest) is None


def test_leaderboard_orders_completed_first_and_paginates(repo: Repository) -> None:
    s, _ = _search(repo)
    outcomes = [
        ("completed", 3.0, 0.2),
        ("pruned", None, 0.1),
        ("completed", 2.5, 0.4),
        ("diverged", None, None),
        ("completed", 2.8, 0.3),
        ("out_of_memory", None, None),
    ]
    for n, (state, loss, step_time) in enumerate(outcomes):
        t = _trial(
            repo,
            s.id,
            n,
            name="brainformer-1" if n % 2 else "glam",
            is_baseline=n == 0,
            baseline_name="glam" if n == 0 else None,
        )
        repo.finish_trial(t.id, state=state, val_loss=loss, step_time_s=step_time)  # type: ignore[arg-type]
    _trial(repo, s.id, 6)  # still running
    board = repo.list_trials(s.id)
    assert [t.number for t in board.items] == [2, 4, 0, 1, 3, 5, 6]
    assert board.items[2].is_baseline and board.total == 7
    by_time = repo.list_trials(s.id, sort="step_time_s", order="desc")
    assert [t.number for t in by_time.items][:3] == [2, 4, 0]
    page = repo.list_trials(s.id, limit=2, offset=2)
    assert [t.number for t in page.items] == [0, 1] and page.total == 7
    assert [t.number for t in repo.list_trials(s.id, state="completed").items] == [2, 4, 0]
    assert repo.count_trials(s.id) == {"completed": 3, "pruned": 1, "diverged": 1, "out_of_memory": 1, "running": 1}
    assert repo.count_trials(s.id, is_baseline=True) == {"completed": 1}
    assert [t.number for t in repo.list_trials(s.id, is_baseline=False, limit=2).items] == [2, 4]
    assert [t.number for t in repo.baselines(s.id)] == [0]
    assert repo.next_trial_number(s.id) == 7
    with pytest.raises(ValueError, match="sort must be one of"):
        repo.list_trials(s.id, sort="colour")


def test_orphaned_running_trials_become_crashed(repo: Repository) -> None:
    s, _ = _search(repo)
    running = [_trial(repo, s.id, n) for n in range(3)]
    repo.finish_trial(running[0].id, state="completed", val_loss=2.0)
    assert [t.state for t in repo.mark_orphans_crashed(s.id)] == ["crashed", "crashed"]
    states = {t.number: (t.state, t.reason) for t in repo.list_trials(s.id).items}
    assert states[0] == ("completed", None)
    assert states[1] == ("crashed", "worker stopped while the trial ran")


def test_candidates(repo: Repository) -> None:
    s, _ = _search(repo)
    t = _trial(repo, s.id, 0)
    arch = preset("glam")
    for rung, loss in (("cpu-small", 2.9), ("cpu-tiny", 3.4), ("cpu-small", 2.7)):
        repo.add_candidate(
            search_id=s.id,
            trial_id=t.id,
            rung=rung,
            state="completed",
            arch=arch.to_dict(),
            arch_digest=arch.digest,
            metrics={"val_loss": loss},
            val_loss=loss,
        )
    got = repo.list_candidates(s.id)
    assert [(c.rung, c.val_loss) for c in got] == [("cpu-small", 2.7), ("cpu-small", 2.9), ("cpu-tiny", 3.4)]


def test_deleting_a_search_cascades(repo: Repository) -> None:
    s, _ = _search(repo)
    t = _trial(repo, s.id, 0)
    repo.finish_trial(t.id, state="completed", val_loss=1.0, curve=[MetricPoint(1, 10, 0.1, 2.0, None, 1e-3)])
    with repo.engine.begin() as conn:
        conn.execute(text("DELETE FROM bs_searches WHERE id = :i"), {"i": s.id})
    assert repo.get_trial(t.id) is None and repo.trial_curve(t.id) == []


def test_unreachable_database_is_a_storage_error() -> None:
    # A short retry window: the error must still come out of the retry loop once its deadline passes (the default
    # window, a minute, is tested against a real restart in tests/reliability).
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    repo = Repository(engine, retry_seconds=1.5)
    with pytest.raises(StorageError, match=r"database error \(postgresql\): OperationalError"):
        repo.get_search(1)


def test_migrations_match_the_models(database_url: str) -> None:
    """The versioned schema and the ORM models agree (a model change without a migration fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from brainsearch.storage.models import Base

    engine = make_engine(database_url)
    migrate(engine)
    opts = {
        "version_table": "bs_alembic_version",
        "include_name": lambda name, kind, parent: kind != "table" or name.startswith("bs_"),
    }
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
    assert diff == []
    engine.dispose()


def test_an_optuna_study_shares_the_database(database_url: str) -> None:
    """A search's Optuna study lives in the same database: Optuna's schema and ours coexist in either order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(database_url)
    study = optuna.create_study(study_name="brainsearch-1", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    engine = make_engine(database_url)
    migrate(engine)
    repo = Repository(engine)
    s, _ = _search(repo)
    _trial(repo, s.id, 0)
    assert schema_revision(engine) == "0004"
    assert len(optuna.load_study(study_name="brainsearch-1", storage=storage).trials) == 2
    tables = set(inspect(engine).get_table_names())
    assert {"studies", "trials", "bs_trials", "bs_searches"} <= tables
    engine.dispose()
    storage.engine.dispose()


def test_transient_database_errors_are_retried_and_others_are_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pass: a busy database (SQLite 'database is locked') twice in a row is waited out; a schema error (no such
    table) and a transient error past retry_seconds reach the caller as StorageError."""
    import sqlite3

    from sqlalchemy import event

    engine = make_engine(f"sqlite:///{tmp_path / 'retry.db'}")
    migrate(engine)
    failures = {"left": 2}

    @event.listens_for(engine, "before_cursor_execute")
    def busy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if failures["left"] > 0 and statement.lstrip().upper().startswith("SELECT"):
            failures["left"] -= 1
            raise sqlite3.OperationalError("database is locked")

    repo = Repository(engine, retry_seconds=10)
    assert repo.get_search(1) is None and failures["left"] == 0
    failures["left"] = 1000
    with pytest.raises(StorageError, match="database is locked"):
        Repository(engine, retry_seconds=0.5).get_search(1)
    failures["left"] = 0
    bare = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: not transient, not retried
    caplog.clear()
    with pytest.raises(StorageError, match="no such table"):
        Repository(bare, retry_seconds=60).get_search(1)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
