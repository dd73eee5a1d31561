"""A worker process killed with SIGKILL in the middle of a trial, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from brainsearch.storage import Repository
from tests.reliability.conftest import Proc, queue_search, slow_space, wait_for

pytestmark = pytest.mark.slow  # the reliability suite starts processes and breaks them

LEASE_S = 3
TRIALS = 4


@pytest.mark.slow
def test_killed_worker_search_is_resumed_by_another_with_nothing_lost(
    repo: Repository, database_url: str, spawn: Callable[..., Proc]
) -> None:
    """Pass: after `kill -9` of the worker mid-trial, a second worker takes the search over once the lease expired;
    every trial finished before the kill is unchanged, no trial is left running, and the requested number of trials
    is reached (the interrupted one is retried)."""
    sid = queue_search(repo, slow_space(TRIALS))
    first = spawn("worker", "--lease", str(LEASE_S), "--db", database_url, name="first")

    def mid_trial() -> bool:
        counts = repo.count_trials(sid, is_baseline=False)
        return counts.get("completed", 0) >= 1 and counts.get("running", 0) == 1

    wait_for(mid_trial, 300, "one finished trial and one in flight", first, interval=0.05)
    first.kill9()
    before = {t.id: t for t in repo.list_trials(sid, limit=100).items if t.state != "running"}
    orphan = next(t for t in repo.list_trials(sid, limit=100).items if t.state == "running")
    time.sleep(1.0)  # the worker's trial process died with it (PDEATHSIG): nothing writes behind our back
    assert repo.get_trial(orphan.id).state == "running"  # type: ignore[union-attr]

    second = spawn("worker", "--lease", str(LEASE_S), "--db", database_url, name="second")
    wait_for(lambda: repo.get_search(sid).status == "completed", 300, "the search to complete", second)  # type: ignore[union-attr]
    after = {t.id: t for t in repo.list_trials(sid, limit=100).items}
    assert all(after[tid] == t for tid, t in before.items())  # finished trials kept exactly, metrics and all
    assert not [t for t in after.values() if t.state == "running"]
    assert after[orphan.id].state == "crashed"
    counted = [t for t in after.values() if not t.is_baseline and t.state != "crashed"]
    assert len(counted) == TRIALS
    retried = next(t for t in counted if t.params == orphan.params and t.id != orphan.id)
    assert retried.state == "completed"  # the interrupted parameters were trained again
