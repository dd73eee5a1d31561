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
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from brainsearch.search.submission import search_noise_view, study_name
from brainsearch.storage import Repository, Search
from brainsearch.storage.optuna_storage import optuna_storage
from tests.factories import fast_space

pytestmark = pytest.mark.slow  # it trains a search in a process, kills it and resumes it

TRIALS = 5


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "brainsearch", *args]


def _kill_search_when(
    args: list[str], repo: Repository, ready: Callable[[Search], bool], what: str, folder: Path
) -> list[Search]:
    """Run ``brainsearch ARGS`` in a process and SIGKILL it once its search is ``ready`` (polled); the searches."""
    log = folder / "search.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(_cli(*args), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            searches = repo.list_searches().items
            if searches and ready(searches[0]):
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.02)
        else:
            raise AssertionError(f"the search never reached {what}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return searches


def test_kill_and_resume(repo: Repository, database_url: str, tmp_path: Path) -> None:
    space_file = tmp_path / "space.yaml"
    doc = fast_space(tokens=24 * 512).model_dump(mode="json", exclude_defaults=False)
    space_file.write_text(yaml.safe_dump(doc))
    args = ["--trials", str(TRIALS), "--sampler", "random", "--pruner", "none", "--threads", "1", "--db", database_url]

    def two_done_and_one_running(search: Search) -> bool:
        counts = repo.count_trials(search.id, is_baseline=False)
        return counts.get("completed", 0) >= 2 and counts.get("running", 0) == 1

    searches = _kill_search_when(
        ["search", str(space_file), *args], repo, two_done_and_one_running, "two finished trials", tmp_path
    )
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


def test_killed_while_the_baseline_trains_resumes_against_its_retry(
    executor_kind: str, database_url: str, repo: Repository, tmp_path: Path
) -> None:
    """Pass: a search killed with SIGKILL while its GLaM baseline trains, then resumed, trains GLaM again and judges
    its trials against that run (the newest completed one): no "pruning rules are off", the trials' comparisons are
    with GLaM, and the retry is named as the run that judges them."""
    space_file = tmp_path / "space.yaml"
    doc = fast_space(tokens=48 * 512).model_dump(mode="json", exclude_defaults=False)
    space_file.write_text(yaml.safe_dump(doc))
    args = ["--trials", "2", "--sampler", "random", "--threads", "1", "--db", database_url]
    if executor_kind == "ray":
        import ray

        args += ["--executor", "ray", "--ray-address", ray.get_runtime_context().gcs_address]

    def glam_in_flight(search: Search) -> bool:
        glam = [t for t in repo.baselines(search.id) if t.baseline_name == "glam"]
        return bool(glam) and glam[0].state == "running"

    searches = _kill_search_when(["search", str(space_file), *args], repo, glam_in_flight, "GLaM training", tmp_path)
    search_id = searches[0].id

    resumed = subprocess.run(
        _cli("resume", str(search_id), "--db", database_url), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "rules are off" not in resumed.stderr + resumed.stdout
    runs = [t for t in repo.baselines(search_id) if t.baseline_name == "glam"]
    assert runs[-1].state == "completed"
    if executor_kind == "local":  # a local worker dies with its driver; a Ray actor may finish the run on its own
        assert [t.state for t in runs] == ["crashed", "completed"]
    if runs[0].state == "crashed":
        assert f"the glam baseline's run #{runs[-1].number} judges the trials" in resumed.stderr
    view = search_noise_view(repo, repo.get_search(search_id))  # type: ignore[arg-type]
    assert view.reference is not None and view.reference.id == runs[-1].id
    trials = [t for t in repo.list_trials(search_id, is_baseline=False, limit=100).items if t.state != "crashed"]
    assert len(trials) == 2 and {t.state for t in trials} <= {"completed", "pruned"}
    assert all(view.of(t).vs_baseline is not None for t in trials if t.state == "completed")
