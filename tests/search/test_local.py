"""The local executor: trials in reused worker processes; a worker killed mid-trial fails that trial only."""

from __future__ import annotations

import multiprocessing
import os
import signal

from brainsearch.arch import preset
from brainsearch.arch.scale import scale
from brainsearch.search.local import LocalExecutor
from brainsearch.search.trial import TrialJob
from brainsearch.space.schema import Budget
from brainsearch.storage import Repository
from brainsearch.train import TrainSettings
from tests.search.conftest import add_running_trial


def _jobs(repo: Repository, url: str, budgets: list[int]) -> list[TrialJob]:
    s, _ = repo.create_search(name="t", space_name="tiny", space={}, settings={}, trials_requested=len(budgets))
    arch = scale(preset("glam"), "cpu-tiny")
    jobs = []
    for n, tokens in enumerate(budgets):
        t = add_running_trial(repo, s.id, n, arch)
        settings = TrainSettings(budget=Budget(tokens=tokens), batch_size=8, device="cpu")
        jobs.append(
            TrialJob(search_id=s.id, trial_id=t.id, number=n, database_url=url, arch=arch.to_dict(), settings=settings)
        )
    return jobs


def _workers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "brainsearch-trial"]


def test_workers_are_reused_and_a_killed_worker_fails_only_its_trial(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    from brainsearch.storage import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    repo = Repository(engine)
    short, long, after = _jobs(repo, url, [4 * 512, 100_000 * 512, 4 * 512])
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
