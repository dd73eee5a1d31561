"""Kill -9 of a running search, then resume (on SQLite; a killed worker's search resumed on PostgreSQL:
tests/reliability/test_worker_killed.py): finished trials are kept with identical
metrics, the orphaned trial is marked crashed and retried with the same parameters, nothing is counted twice, and
the requested number of trials is reached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml

from brainsearch.search.submission import study_name
from brainsearch.storage import Repository
from brainsearch.storage.optuna_storage import optuna_storage
from tests.factories import fast_space

pytestmark = pytest.mark.slow  # it trains a search in a process, kills it and resumes it

TRIALS = 5


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "brainsearch", *args]


def test_kill_and_resume(repo: Repository, database_url: str, tmp_path: Path) -> None:
    space_file = tmp_path / "space.yaml"
    doc = fast_space(tokens=24 * 512).model_dump(mode="json", exclude_defaults=False)
    space_file.write_text(yaml.safe_dump(doc))
    args = ["--trials", str(TRIALS), "--sampler", "random", "--pruner", "none", "--threads", "1", "--db", database_url]
    log = tmp_path / "search.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(_cli("search", str(space_file), *args), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait for two finished candidates and a third in flight
            searches = repo.list_searches().items
            if searches:
                counts = repo.count_trials(searches[0].id, is_baseline=False)
                if counts.get("completed", 0) >= 2 and counts.get("running", 0) == 1:
                    break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        else:
            raise AssertionError("the search never reached two finished trials")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    search_id = searches[0].id
    before = {t.id: t for t in repo.list_trials(search_id, limit=100).items}
    orphan = next(t for t in before.values() if t.state == "running")
    time.sleep(1.0)  # the worker died with the search: nothing finishes the orphan behind our back
    assert repo.get_trial(orphan.id).state == "running"  # type: ignore[union-attr]
    assert repo.get_search(search_id).status == "running"  # type: ignore[union-attr]

    resumed = subprocess.run(
        _cli("resume", str(search_id), "--db", database_url), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "will be retried" in resumed.stderr

    after = {t.id: t for t in repo.list_trials(search_id, limit=100).items}
    for tid, old in before.items():  # every trial finished before the kill is kept exactly
        if old.state not in ("running",):
            assert after[tid] == old
    crashed = after[orphan.id]
    assert crashed.state == "crashed" and crashed.reason == "worker stopped while the trial ran"
    retries = [t for t in after.values() if t.id not in before and t.params == orphan.params]
    assert len(retries) == 1 and retries[0].arch_digest == orphan.arch_digest and retries[0].state != "running"
    candidates = [t for t in after.values() if not t.is_baseline and t.state != "crashed"]
    assert len(candidates) == TRIALS
    assert repo.get_search(search_id).status == "completed"  # type: ignore[union-attr]
    study = optuna.load_study(study_name=study_name(search_id), storage=optuna_storage(database_url))
    told = Counter(ot.user_attrs["bs_trial_id"] for ot in study.trials if "bs_trial_id" in ot.user_attrs)
    assert set(told.values()) == {1}  # no brainsearch trial behind two Optuna trials
    assert all(ot.state != optuna.trial.TrialState.RUNNING for ot in study.trials)
    complete = [
        ot for ot in study.trials if ot.state == optuna.trial.TrialState.COMPLETE and "bs_trial_id" in ot.user_attrs
    ]
    assert sorted(ot.user_attrs["bs_trial_id"] for ot in complete) == sorted(
        t.id for t in candidates if t.state == "completed"
    )
    for ot in complete:
        assert ot.value == after[ot.user_attrs["bs_trial_id"]].val_loss
