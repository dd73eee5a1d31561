"""The scale-up stage beyond one process, end to end on the CPU: a rung sharded over 2 processes (FSDP2 on gloo,
launched by torchrun from the local executor's worker) with checkpoints in the data directory, a rung the hardware
cannot hold refused before it starts, and the upcycled runs of ``init: both`` beside the scratch ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainsearch.arch import Architecture, preset, scale
from brainsearch.search.driver import SearchDriver
from brainsearch.search.hardware import Hardware
from brainsearch.search.scaleup import scale_up_jobs
from brainsearch.search.scaleup_report import scale_up_report
from brainsearch.search.submission import create_search
from brainsearch.storage import Repository
from brainsearch.store import RunStore, candidate_run_key, list_checkpoints
from tests.factories import fast_space, sqlite_repository


@pytest.fixture
def sqlite_repo(tmp_path: Path) -> tuple[Repository, str]:
    return sqlite_repository(tmp_path, "scale.db")


def _search(repo: Repository, scale_up: dict[str, object]):
    space = fast_space(4096, search={"trials": 2, "top_k": 1, "pruner": "none", "scale_up": scale_up})
    search, _ = create_search(repo, space)
    return space, search


@pytest.mark.slow
def test_a_rung_sharded_over_two_processes_runs_end_to_end(sqlite_repo, tmp_path: Path) -> None:
    repo, url = sqlite_repo
    rung = {"preset": "cpu-tiny", "budget_tokens": 4096, "devices": 2}
    space, search = _search(repo, {"ladder": [rung], "target": "cpu-small", "evaluations": 2})
    notes: list[str] = []
    done = SearchDriver(repo, search.id, url, on_note=notes.append, data_dir=tmp_path).run()
    assert done.status == "completed", notes
    rows = repo.list_candidates(search.id)
    assert len(rows) == 2 and all(c.state == "completed" for c in rows), [(c.state, c.reason) for c in rows]
    store = RunStore(tmp_path, repo.database_id())
    for row in rows:
        m = row.metrics
        assert (m["devices"], m["sharding"], m["recipe"]) == (2, "fsdp2", "FSDP2 x 2, fp32 AdamW")
        assert m["steps"] == 8 and m["checkpoint_count"] >= 1 and m["resume_count"] == 0
        saved = list_checkpoints(store.checkpoints_dir(search.id, candidate_run_key(row.trial_id, row.rung)))
        assert saved and saved[-1].step == 8  # the final checkpoint, in the data directory
    report = scale_up_report(repo, search.id, space, store=store)
    runs = [r for c in report.candidates for r in c.rungs]
    assert [(r.devices, r.sharding) for r in runs] == [(2, "fsdp2")] * 2
    assert all(r.checkpoint_count >= 1 for r in runs)


def test_a_rung_the_hardware_cannot_hold_is_refused_before_it_starts(sqlite_repo) -> None:
    repo, url = sqlite_repo
    space, search = _search(repo, {"ladder": [{"preset": "cpu-tiny", "devices": 4}], "target": "cpu-small"})
    _completed_trial(repo, search.id)
    two = Hardware(available=2, memory_bytes=10**12, unit="process", precision="fp32", use_gpu=False)
    jobs, notes = scale_up_jobs(repo, search.id, space, url, hardware=two)
    assert jobs == []
    assert any("cpu-tiny refused: cpu-tiny needs 4 processes of 1000 GB; the cluster has 2" in n for n in notes), notes
    small = Hardware(available=8, memory_bytes=10**6, unit="process", precision="fp32", use_gpu=False)
    jobs, notes = scale_up_jobs(repo, search.id, space, url, hardware=small)
    assert jobs == [] and any(n.startswith("cpu-tiny refused:") for n in notes), notes


def _completed_trial(repo: Repository, search_id: int) -> None:
    """One completed proxy trial (GLaM at cpu-tiny) for the stage to scale up."""
    arch: Architecture = scale(preset("glam"), "cpu-tiny")
    trial = repo.add_trial(
        search_id=search_id,
        number=0,
        arch=arch.to_dict(),
        arch_digest="d0",
        pattern=arch.pattern,
        params={},
        cost={},
        params_activated=1,
    )
    repo.finish_trial(trial.id, state="completed", val_loss=3.0, metrics={"val_loss": 3.0})


@pytest.mark.slow
def test_init_both_trains_upcycled_runs_beside_scratch_ones(sqlite_repo, tmp_path: Path) -> None:
    repo, url = sqlite_repo
    rung = {"preset": "cpu-tiny", "budget_tokens": 4096}
    space, search = _search(repo, {"ladder": [rung], "target": "cpu-small", "evaluations": 2, "init": "both"})
    notes: list[str] = []
    done = SearchDriver(repo, search.id, url, on_note=notes.append, data_dir=tmp_path).run()
    assert done.status == "completed", notes
    rows = repo.list_candidates(search.id)
    assert sorted(c.rung for c in rows) == ["cpu-tiny", "cpu-tiny", "cpu-tiny+upcycle", "cpu-tiny+upcycle"]
    for row in rows:
        assert row.state == "completed", row.reason
        upcycled = row.rung.endswith("+upcycle")
        assert row.metrics["init"] == ("upcycle" if upcycled else None)
        assert (row.metrics["upcycle_step"] == 4) if upcycled else row.metrics["upcycle_step"] is None
        assert row.metrics["steps"] == 8
    report = scale_up_report(repo, search.id, space)
    assert report.ladder == ["cpu-tiny", "cpu-tiny+upcycle"]


@pytest.mark.slow
def test_the_ray_executor_runs_a_sharded_rung_through_ray_train(sqlite_repo, tmp_path: Path, ray_session) -> None:
    """A 2-worker candidate job on the Ray executor: its actor holds nothing and launches a TorchTrainer gang."""
    from brainsearch.search.ray_executor import RayExecutor

    repo, url = sqlite_repo
    rung = {"preset": "cpu-tiny", "budget_tokens": 4096, "devices": 2}
    space, search = _search(repo, {"ladder": [rung], "target": "cpu-small", "evaluations": 2})
    _completed_trial(repo, search.id)
    store = RunStore(tmp_path, repo.database_id())
    two = Hardware(available=4, memory_bytes=10**12, unit="process", precision="fp32", use_gpu=False)
    (job,), _ = scale_up_jobs(repo, search.id, space, url, hardware=two, store=store, launcher="ray")
    assert job.resources.workers == 2 and job.launcher == "ray" and job.plan is not None
    with RayExecutor(concurrency=1) as executor:
        executor.submit(job)
        finished = []
        while not finished:
            finished = executor.wait(timeout=5)
    assert finished[0].outcome is not None and finished[0].outcome.state == "completed", finished[0]
    (row,) = repo.list_candidates(search.id)
    assert (row.metrics["devices"], row.metrics["sharding"], row.metrics["steps"]) == (2, "fsdp2", 8)
