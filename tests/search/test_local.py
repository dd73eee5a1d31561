"""The local executor: trials in reused worker processes; a worker killed mid-trial fails that trial only."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from brainsearch.search.executor import worker_environment
from brainsearch.search.jobs import Resources
from brainsearch.search.local import LocalExecutor
from tests.factories import trial_jobs

pytestmark = pytest.mark.slow  # it starts worker processes that train


def _workers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "brainsearch-trial"]


def test_workers_are_reused_and_a_killed_worker_fails_only_its_trial(tmp_path) -> None:
    _, (short, long, after) = trial_jobs(tmp_path, [4 * 512, 100_000 * 512, 4 * 512], Resources(cpus=1))
    with LocalExecutor(concurrency=2, threads_per_trial=1) as ex:
        ex.submit(short)
        ex.submit(long)
        assert ex.free == 0 and ex.running == 2
        done = []
        while not done:
            done = ex.wait(timeout=60)
        assert [f.job.trial_id for f in done] == [short.trial_id] and done[0].outcome is not None
        assert done[0].outcome.state == "completed"
        pids = {p.pid for p in _workers()}
        assert len(pids) == 2
        # The long trial is running in the other worker: kill it as the kernel's OOM killer would.
        os.kill(ex.busy_workers()[long.trial_id], signal.SIGKILL)
        crashed = ex.wait(timeout=30)
        assert [f.job.trial_id for f in crashed] == [long.trial_id]
        assert crashed[0].outcome is None and crashed[0].crash is not None and "SIGKILL" in crashed[0].crash
        # The idle worker is reused for the next trial: no new process for it.
        ex.submit(after)
        finished = []
        while not finished:
            finished = ex.wait(timeout=60)
        assert finished[0].outcome is not None and finished[0].outcome.state == "completed"
        assert {p.pid for p in _workers()} <= pids
    assert _workers() == []


def test_a_worker_with_several_threads_waits_passively() -> None:
    """Pass: a training worker with more than one torch thread starts with OpenMP's passive wait policy (spinning
    threads collapse every process sharing the cores: benchmarks/thread_policy.py); a one-thread worker needs none."""
    assert worker_environment(1) == {}
    assert worker_environment(2) == worker_environment(16) == {"OMP_WAIT_POLICY": "PASSIVE"}
