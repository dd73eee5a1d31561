"""Diverging and crashing trials become failed trials with reasons; the search goes on and finishes."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from brainsearch.model.lm import LanguageModel, LMOutput
from brainsearch.search.driver import SearchDriver
from brainsearch.search.executor import Finished
from brainsearch.search.jobs import TrialJob
from brainsearch.search.local import LocalExecutor
from brainsearch.search.runner import run_job
from brainsearch.search.submission import create_search
from brainsearch.settings import get_settings
from brainsearch.storage import Repository
from tests.factories import fast_space
from tests.reliability.conftest import slow_space

pytestmark = pytest.mark.slow  # the reliability suite starts processes and breaks them


class _InProcess:
    """The driver's executor protocol, one job at a time in this process, so that the test can poison the forward
    pass of chosen trials (the trainer, the recording and the driver are the real ones)."""

    def __init__(self, repo: Repository, poisoned: set[int]) -> None:
        self.repo, self.poisoned = repo, poisoned
        self.finished: list[Finished] = []

    @property
    def running(self) -> int:
        return len(self.finished)

    @property
    def free(self) -> int:
        return 1 - len(self.finished)

    def submit(self, job: TrialJob) -> None:  # type: ignore[override]
        original = LanguageModel.forward
        calls = {"n": 0}

        def nan_from_step_3(model: LanguageModel, ids: torch.Tensor) -> LMOutput:
            out = original(model, ids)
            calls["n"] += 1
            return LMOutput(out.logits * float("nan"), out.aux_loss, out.moe) if calls["n"] >= 3 else out

        if job.number in self.poisoned:
            LanguageModel.forward = nan_from_step_3  # type: ignore[method-assign]
        try:
            self.finished.append(Finished(job, run_job(job, self.repo)))
        finally:
            LanguageModel.forward = original  # type: ignore[method-assign]

    def wait(self, timeout: float | None = None) -> list[Finished]:
        done, self.finished = self.finished, []
        return done

    def close(self) -> None:
        pass


def test_nan_losses_become_diverged_trials_and_the_search_completes(repo: Repository, database_url: str) -> None:
    """Pass: two trials whose losses turn NaN are recorded `diverged` with the step it happened at; the other
    trials complete and the search completes with the requested number of trials."""
    search, _ = create_search(repo, fast_space(4096, search={"trials": 4, "pruner": "none", "sampler": "random"}))
    done = SearchDriver(repo, search.id, database_url, data_dir=get_settings().data_dir).run(
        _InProcess(repo, poisoned={2, 4})
    )  # numbers 0-1: baselines
    trials = {t.number: t for t in repo.list_trials(search.id, limit=50).items if not t.is_baseline}
    assert sorted(trials) == [2, 3, 4, 5] and done.status == "completed"
    for number, t in trials.items():
        if number in (2, 4):
            assert t.state == "diverged" and t.reason == "training loss became nan at step 3", (t.state, t.reason)
        else:
            assert t.state == "completed" and t.val_loss is not None


def test_a_segfaulting_trial_process_fails_alone(repo: Repository, database_url: str) -> None:
    """Pass: the worker process of one trial dies of SIGSEGV mid-training: that trial is `crashed` with the signal as
    its reason and does not count (another trial takes its place); every other trial completes and the search
    completes with the requested number."""
    search, _ = create_search(repo, slow_space(trials=2))
    executor = LocalExecutor(concurrency=1, threads_per_trial=1)
    killed: list[int] = []
    stop = threading.Event()

    def segfault_one_trial() -> None:
        while not stop.is_set() and not killed:
            for trial_id, pid in executor.busy_workers().items():
                trial = repo.get_trial(trial_id)
                if trial is not None and not trial.is_baseline and trial.state == "running":
                    os.kill(pid, signal.SIGSEGV)
                    killed.append(trial_id)
                    break
            time.sleep(0.02)

    killer = threading.Thread(target=segfault_one_trial, daemon=True)
    killer.start()
    try:
        with executor:
            done = SearchDriver(repo, search.id, database_url, data_dir=get_settings().data_dir).run(executor)
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no trial was caught in flight"
    crashed = repo.get_trial(killed[0])
    assert crashed is not None and crashed.state == "crashed"
    assert crashed.reason == "worker process was killed by SIGSEGV"
    assert done.status == "completed"
    trials = [t for t in repo.list_trials(search.id, limit=50).items if not t.is_baseline]
    assert sorted(t.state for t in trials) == ["completed"] * 2 + ["crashed"]
