"""Worker leases on both backends: a queued search goes to exactly one worker, even when many claim at once; a dead
worker's search is claimed again after its lease expires; heartbeats, release, requeue and cancel."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from brainsearch.errors import ConflictError, StorageError
from brainsearch.storage import Repository, make_engine


def _queue(repo: Repository, n: int) -> list[int]:
    ids = []
    for i in range(n):
        s, _ = repo.create_search(name=f"s{i}", space_name="tiny", space={}, settings={}, trials_requested=1)
        ids.append(s.id)
    return ids


def test_claims_are_oldest_first_and_exclusive_under_concurrency(repo: Repository, database_url: str) -> None:
    ids = _queue(repo, 6)
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        own = Repository(make_engine(database_url))  # each worker its own engine, as separate processes would have
        barrier.wait()
        while (s := own.claim_search(f"w{k}", lease_seconds=60)) is not None:
            with lock:
                claimed.append(s.id)
        own.engine.dispose()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == ids  # every search claimed exactly once
    for search_id in ids:
        s = repo.get_search(search_id)
        assert s is not None and s.status == "running" and s.lease_owner is not None and s.started_at is not None


def test_a_dead_workers_search_is_claimed_again_after_its_lease(repo: Repository, database_clock: Any) -> None:
    (search_id,) = _queue(repo, 1)
    first = repo.claim_search("alive-then-dead", lease_seconds=0.3)
    assert first is not None and first.id == search_id
    database_clock.advance(0.2)
    assert repo.claim_search("other", lease_seconds=60) is None  # the lease still holds
    database_clock.advance(0.2)
    again = repo.claim_search("other", lease_seconds=60)
    assert again is not None and again.id == search_id and again.lease_owner == "other"
    assert repo.renew_lease(search_id, "alive-then-dead", 60) is None  # the old owner lost it
    database_clock.advance(1)
    renewed = repo.renew_lease(search_id, "other", 60)
    assert renewed is not None and renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > again.lease_expires_at  # type: ignore[operator]


def test_release_and_requeue(repo: Repository) -> None:
    (search_id,) = _queue(repo, 1)
    assert repo.claim_search("w", 60) is not None
    repo.release_search(search_id, "not-the-owner", requeue=True)
    assert repo.get_search(search_id).status == "running"  # type: ignore[union-attr]
    repo.release_search(search_id, "w", requeue=True)
    s = repo.get_search(search_id)
    assert s is not None and s.status == "queued" and s.lease_owner is None
    assert repo.claim_search("w2", 60) is not None


def test_cancel(repo: Repository) -> None:
    queued, running, done = _queue(repo, 3)
    assert repo.cancel_search(queued).status == "cancelled"
    assert repo.get_search(queued).finished_at is not None  # type: ignore[union-attr]
    assert repo.claim_search("w", 60).id == running  # type: ignore[union-attr]
    cancelled = repo.cancel_search(running)
    assert cancelled.status == "cancelled" and cancelled.finished_at is None  # its worker finishes the job
    assert repo.renew_lease(running, "w", 60).status == "cancelled"  # type: ignore[union-attr]
    repo.set_search_status(done, "completed")
    with pytest.raises(ConflictError, match="already completed"):
        repo.cancel_search(done)
    with pytest.raises(StorageError, match="no search 999"):
        repo.cancel_search(999)
    assert repo.claim_search("w", 60) is None  # cancelled searches are never claimed
