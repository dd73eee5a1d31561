"""The worker loop (on SQLite; leases on both backends: tests/storage/test_leases.py): a queued search runs to
completion under a lease; cancel stops its running trial promptly; shutdown requeues it with finished trials kept; a
dead worker's search is taken over and resumed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from brainsearch.search.submission import create_search
from brainsearch.settings import get_settings
from brainsearch.storage import Repository, Search
from service.worker import Worker
from tests.factories import fast_space

pytestmark = pytest.mark.slow  # every test trains searches on a worker


def _queue(repo: Repository, trials: int, tokens: int = 2048) -> Search:
    search, _ = create_search(
        repo, fast_space(tokens=tokens), overrides={"trials": trials, "sampler": "random", "pruner": "none"}
    )
    return search


def _wait_for(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_worker_runs_queued_searches_in_order(repo: Repository, database_url: str) -> None:
    first, second = _queue(repo, 2), _queue(repo, 1)
    worker = Worker(repo, database_url, name="w1", lease_seconds=5, data_dir=get_settings().data_dir)
    done = worker.run_once()
    assert done is not None and done.id == first.id and done.status == "completed" and done.lease_owner is None
    assert repo.count_trials(first.id, is_baseline=False) in ({"completed": 2}, {"completed": 1, "pruned": 1})
    assert worker.run_once().id == second.id  # type: ignore[union-attr]
    assert worker.run_once() is None


def test_cancel_stops_the_running_trial_promptly(repo: Repository, database_url: str) -> None:
    search = _queue(repo, 3, tokens=200 * 512)  # long trials: cancel lands mid-trial
    worker = Worker(repo, database_url, name="w", lease_seconds=1.5, data_dir=get_settings().data_dir)
    result: list[Search | None] = []
    thread = threading.Thread(target=lambda: result.append(worker.run_once()))
    thread.start()
    _wait_for(lambda: repo.count_trials(search.id).get("running", 0) > 0)
    cancelled_at = time.monotonic()
    repo.cancel_search(search.id)
    thread.join(60)
    assert not thread.is_alive() and time.monotonic() - cancelled_at < 10
    final = result[0]
    assert final is not None and final.status == "cancelled" and final.lease_owner is None
    stopped = [t for t in repo.list_trials(search.id, limit=50).items if t.state == "crashed"]
    assert stopped and all(t.reason == "the search was cancelled while the trial ran" for t in stopped)
    assert repo.count_trials(search.id).get("running", 0) == 0


def test_shutdown_requeues_and_another_worker_finishes(repo: Repository, database_url: str) -> None:
    search = _queue(repo, 3, tokens=24 * 512)
    worker = Worker(repo, database_url, name="leaving", lease_seconds=3, data_dir=get_settings().data_dir)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait_for(lambda: repo.count_trials(search.id, is_baseline=False).get("completed", 0) >= 1)
    kept = {t.id: t for t in repo.list_trials(search.id, limit=50).items if t.state == "completed"}
    worker.shutdown()
    thread.join(60)
    requeued = repo.get_search(search.id)
    assert requeued is not None and requeued.status == "queued" and requeued.lease_owner is None
    done = Worker(repo, database_url, name="next", lease_seconds=3, data_dir=get_settings().data_dir).run_once()
    assert done is not None and done.id == search.id and done.status == "completed"
    after = {t.id: t for t in repo.list_trials(search.id, limit=50).items}
    assert all(after[tid] == t for tid, t in kept.items())  # finished trials kept exactly
    assert len([t for t in after.values() if not t.is_baseline and t.state != "crashed"]) == 3


def test_a_dead_workers_search_is_taken_over_after_its_lease(
    repo: Repository, database_url: str, database_clock: Any
) -> None:
    search = _queue(repo, 1)
    assert repo.claim_search("dead-worker", lease_seconds=2) is not None  # claimed, then never renewed
    successor = Worker(repo, database_url, name="successor", lease_seconds=5, data_dir=get_settings().data_dir)
    assert successor.run_once() is None  # the lease still holds
    database_clock.advance(2.1)
    done = successor.run_once()
    assert done is not None and done.id == search.id and done.status == "completed"
