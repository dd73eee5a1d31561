"""A trial past its memory cap fails alone."""

from __future__ import annotations

import pytest

from brainsearch.arch import Architecture, preset, scale
from brainsearch.search.jobs import TrialJob
from brainsearch.search.local import LocalExecutor
from brainsearch.search.submission import create_search
from brainsearch.storage import Repository
from brainsearch.train.settings import TrainSettings
from tests.factories import add_running_trial, fast_space

pytestmark = pytest.mark.slow  # the reliability suite starts processes and breaks them

CAP = 400 * 2**20

# About 110M parameters: 440 MB of fp32 weights alone, past the cap before the first step.
BIG = {
    "d_model": 1024,
    "vocab_size": 256,
    "seq_len": 64,
    "num_blocks": 4,
    "block": [{"type": "attention", "heads": 8}, {"type": "ffn", "hidden": 8192, "activation": "swiglu"}],
}


def test_a_trial_past_its_memory_cap_fails_alone(repo: Repository, database_url: str) -> None:
    """Pass: under a 400 MiB cap per trial process, a trial whose real allocations pass it (its training-memory
    estimate was let through on purpose) ends `out_of_memory` with the failed allocation as the reason; the same
    worker process then trains the next trial to completion."""
    search, _ = create_search(repo, fast_space())
    settings = TrainSettings(budget={"tokens": 2048}, batch_size=8, device="cpu", memory_limit_bytes=1e12)
    archs = [Architecture.from_json(BIG), scale(preset("glam"), "cpu-tiny")]
    jobs = [
        TrialJob(
            search_id=search.id,
            trial_id=add_running_trial(repo, search.id, n, arch).id,
            number=n,
            database_url=database_url,
            arch=arch.to_dict(),
            settings=settings,
        )
        for n, arch in enumerate(archs)
    ]
    with LocalExecutor(concurrency=1, threads_per_trial=1, memory_per_trial=CAP) as executor:
        outcomes = []
        pids = set()
        for job in jobs:
            executor.submit(job)
            pids.update(executor.busy_workers().values())
            finished = executor.wait(timeout=300)
            assert len(finished) == 1 and finished[0].outcome is not None, finished
            outcomes.append(finished[0].outcome)
    big, small = (repo.get_trial(job.trial_id) for job in jobs)
    assert big is not None and big.state == "out_of_memory"
    assert big.reason and big.reason.startswith("allocation failed at step 0"), big.reason
    assert small is not None and small.state == "completed" and small.val_loss is not None
    assert len(pids) == 1  # one worker process ran both: the failed allocation did not take it down
