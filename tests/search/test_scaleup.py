"""The scale-up stage end to end on the CPU: a tiny search, its top 2 and GLaM trained again at cpu-tiny and
cpu-small, the report (fidelity, speed-ups, scaling-law predictions), the kept weights, and exports that round-trip.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from brainsearch import build_model
from brainsearch.arch import Architecture
from brainsearch.arch.scale import scale
from brainsearch.export import export_document, render_spec, standalone_source
from brainsearch.search.driver import SearchDriver
from brainsearch.search.scaleup import candidate_trials, scale_up_jobs
from brainsearch.search.scaleup_report import scale_up_report
from brainsearch.search.submission import create_search
from brainsearch.storage import Repository
from brainsearch.store import RunStore, load_weights
from tests.search.conftest import fast_space

LADDER = [{"preset": "cpu-tiny", "budget_tokens": 8192}, {"preset": "cpu-small", "budget_tokens": 16384}]


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sqlite_repo(tmp_path: Path) -> tuple[Repository, str]:
    from brainsearch.storage import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'scale.db'}"
    engine = make_engine(url)
    migrate(engine)
    return Repository(engine), url


@pytest.mark.slow
def test_tiny_search_scaled_up_reported_and_exported(sqlite_repo: tuple[Repository, str], tmp_path: Path) -> None:
    """Pass: 6 candidate runs (top 2 + GLaM at 2 rungs), every candidate with fidelity, speed-up and a scaling-law
    prediction whose band holds it; weights kept for the top 2 and the baselines only; a resumed search trains
    nothing again; the JSON export rebuilds the same architecture and the standalone file with the kept weights gives
    brainsearch's logits. (SQLite only, for CI time: the candidate rows and the report's queries run on both
    backends in the test below; searches on PostgreSQL in tests/search/test_driver.py.)"""
    repo, database_url = sqlite_repo
    space = fast_space(
        4096,
        search={
            "trials": 4,
            "top_k": 2,
            "pruner": "none",  # every trial completes: the top 2 are always there
            "scale_up": {"ladder": LADDER, "target": "1b-64e", "evaluations": 4},
        },
    )
    search, _ = create_search(repo, space)
    store = RunStore(tmp_path, repo.database_id())
    notes: list[str] = []
    stages: list[str | None] = []
    done = SearchDriver(
        repo,
        search.id,
        database_url,
        on_note=notes.append,
        on_progress=lambda p: stages.append(p.stage),
        data_dir=tmp_path,
    ).run()
    assert done.status == "completed", notes
    assert stages[0] is None and stages[-1] == "scale-up 6/6" and "scale-up 0/6" in stages  # the bar shows the stage
    assert any(n.startswith("scale-up: 6 candidate run(s) on cpu-tiny, cpu-small") for n in notes), notes

    rows = repo.list_candidates(search.id)
    assert sorted((c.rung, c.state) for c in rows) == [("cpu-small", "completed")] * 3 + [("cpu-tiny", "completed")] * 3
    top = repo.list_trials(search.id, state="completed", is_baseline=False, limit=2).items
    glam = next(t for t in repo.baselines(search.id) if t.baseline_name == "glam")
    assert {c.trial_id for c in rows} == {top[0].id, top[1].id, glam.id}
    small = next(c for c in rows if c.trial_id == top[0].id and c.rung == "cpu-small")
    assert Architecture.from_json(small.arch) == scale(Architecture.from_json(top[0].arch), "cpu-small")
    assert small.metrics["steps"] == 8 and len(small.metrics["val_curve"]) == 4  # 16K tokens / 2048 per step

    report = scale_up_report(repo, search.id, space)
    assert report.complete and report.baseline == "glam" and report.ladder == ["cpu-tiny", "cpu-small"]
    assert [c.trial_id for c in report.candidates] == [top[0].id, top[1].id, glam.id]
    assert [c.proxy_rank for c in report.candidates[:2]] == [1, 2]
    assert set(report.fidelity) == {"cpu-tiny", "cpu-small"}
    assert all(tau is not None and -1 <= tau <= 1 for tau in report.fidelity.values())
    for cand in report.candidates:
        assert [r.rung for r in cand.rungs] == ["cpu-tiny", "cpu-small"]
        fit = cand.prediction
        assert fit is not None and cand.prediction_error is None
        assert fit.low < fit.predicted_loss < fit.high
        assert fit.target_x > max(x for x, _ in fit.points)  # 1B/64E is beyond both rungs
        for r in cand.rungs:
            if cand.is_baseline:
                assert r.steps_per_s_ratio is None and r.convergence_speedup is None
            else:
                assert r.steps_per_s_ratio is not None and r.steps_per_s_ratio > 0
                assert r.reached_baseline_loss is (r.convergence_speedup is not None)
    assert sorted(c.predicted_rank or 0 for c in report.candidates) == [1, 2, 3]
    chinchilla = scale_up_report(repo, search.id, space, law="chinchilla", target="8b-64e")
    assert chinchilla.law == "chinchilla" and all(c.prediction is not None for c in chinchilla.candidates)

    kept = {p.name for p in store.weights_dir(search.id).glob("*.safetensors")}
    completed_baselines = [t for t in repo.baselines(search.id) if t.state == "completed"]
    assert kept == {f"trial-{t.id}.safetensors" for t in [*top, *completed_baselines]}

    # Resumed: every (trial, rung) pair is recorded, so nothing is trained again.
    assert scale_up_jobs(repo, search.id, space, database_url) == ([], [])
    again = SearchDriver(repo, search.id, database_url, data_dir=tmp_path).run()
    assert again.status == "completed" and len(repo.list_candidates(search.id)) == 6

    # Exports of the winner round-trip.
    best = top[0]
    doc = json.loads(render_spec(export_document(best), "json"))
    assert Architecture.from_json(doc["architecture"]).digest == best.arch_digest
    assert doc["search_id"] == search.id and doc["trial_id"] == best.id and doc["cost"] == best.cost
    path = store.trial_weights(search.id, best.id)
    assert store.kept_weights(search.id, best.id) == path.resolve()  # its metadata names this database and trial
    arch, state, meta = load_weights(path)
    assert arch.digest == best.arch_digest and meta["trial_id"] == str(best.id)
    assert meta["database_id"] == repo.database_id()
    ours = build_model(arch)
    ours.load_state_dict(state)
    source = tmp_path / "winner.py"
    source.write_text(standalone_source(arch, provenance=doc))
    theirs = _import(source).build(path)
    ids = torch.randint(0, arch.vocab_size, (2, arch.seq_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(ids), ours.eval()(ids).logits, rtol=1e-5, atol=1e-5)


def test_crashed_candidate_runs_are_retried_and_superseded(repo: Repository, database_url: str) -> None:
    """Pass: a crashed (trial, rung) pair is planned again while completed pairs are not; in the report the newer
    row wins."""
    space = fast_space(4096, search={"top_k": 1, "scale_up": {"ladder": ["cpu-tiny"]}})
    search, _ = create_search(repo, space)
    arch = Architecture.from_json(_glam_tiny())
    trials = []
    for number, loss in enumerate([3.0, 3.2]):
        t = repo.add_trial(
            search_id=search.id,
            number=number,
            arch=arch.to_dict(),
            arch_digest=f"d{number}",
            pattern=arch.pattern,
            params={},
            cost={},
            params_activated=1,
            is_baseline=number == 1,
            baseline_name="glam" if number == 1 else None,
        )
        trials.append(repo.finish_trial(t.id, state="completed", val_loss=loss, metrics={"val_loss": loss}))
    assert [t.id for t in candidate_trials(repo, search.id, 1, "cpu-tiny", "glam")] == [t.id for t in trials]
    common = {"search_id": search.id, "rung": "cpu-tiny", "arch": arch.to_dict(), "arch_digest": arch.digest}
    repo.add_candidate(trial_id=trials[0].id, state="crashed", metrics={}, val_loss=None, reason="killed", **common)
    done = {"params_activated": 1000, "val_curve": [[4, 3.1]], "step_time_s": 0.1}
    repo.add_candidate(trial_id=trials[1].id, state="completed", metrics=done, val_loss=3.1, **common)
    jobs, _ = scale_up_jobs(repo, search.id, space, database_url)
    assert [(j.trial_id, j.rung) for j in jobs] == [(trials[0].id, "cpu-tiny")]
    report = scale_up_report(repo, search.id, space)
    assert not report.complete and report.candidates[0].rungs[0].state == "crashed"
    # One rung: the law refuses to extrapolate, and says why.
    assert report.candidates[1].prediction is None
    assert "two or more sizes" in (report.candidates[1].prediction_error or "")
    repo.add_candidate(trial_id=trials[0].id, state="completed", metrics=done, val_loss=3.05, **common)
    report = scale_up_report(repo, search.id, space)
    assert report.complete and report.candidates[0].rungs[0].val_loss == 3.05
    # Two candidates: tau is +1 or -1 whatever the losses, so no fidelity is claimed.
    assert report.fidelity["cpu-tiny"] is None and report.fidelity_pairs["cpu-tiny"] == 2


def _glam_tiny() -> dict[str, object]:
    from brainsearch.arch.presets import preset

    return scale(preset("glam"), "cpu-tiny").to_dict()


# What a two-device run reports (the fields of ProxyResult a scale-up report shows), as the runner stores it.
SHARDED_RUN = {
    "device": "cuda",
    "devices": 2,
    "sharding": "fsdp2",
    "recipe": "FSDP2 x 2, fp32 AdamW",
    "micro_batch": 4,
    "activation_checkpointing": True,
    "memory_estimate_bytes": 3 * 2**30,
    "memory_peak_bytes": 2 * 2**30,
    "tokens_per_s": 12_500.0,
    "mfu": 0.412,
    "peak_flops_label": "NVIDIA H200 bf16 dense",
    "checkpoints": [{"step": 4, "path": "/x/step-4", "saved_at": 1.8e9, "bytes": 100}],
    "checkpoint_count": 3,
    "resume_count": 1,
    "resumed_from": [4],
}


def save_checkpoint(folder: Path, step: int, saved_at: float, complete: bool = True) -> int:
    """A step-N checkpoint folder as the training loop leaves it: a shard file, then the COMPLETE marker. Returns its
    size in bytes."""
    path = folder / f"step-{step}"
    path.mkdir(parents=True)
    (path / "shard-0.distcp").write_bytes(b"\0" * 1000)
    if complete:
        (path / "COMPLETE").write_text(json.dumps({"step": step, "saved_at": saved_at}))
    return sum(f.stat().st_size for f in path.iterdir())


def test_report_shows_how_each_run_went_and_fits_scratch_runs_only(repo: Repository, tmp_path: Path) -> None:
    """Pass: with init both, each preset has a scratch and a "+upcycle" rung side by side; each run's devices,
    sharding, recipe, memory per device, throughput, MFU with its peak's label, checkpoint and resume counts and init
    come from its metrics (a row stored before them reads as one device, no checkpoints, scratch); the checkpoints
    on disk are listed given the store (an interrupted save is not); the scaling law is fitted to the scratch runs
    only."""
    from brainsearch.search.scaleup_report import is_upcycle_rung, rung_preset
    from brainsearch.store import candidate_run_key

    assert rung_preset("cpu-small+upcycle") == "cpu-small" and rung_preset("cpu-small") == "cpu-small"
    assert is_upcycle_rung("cpu-small+upcycle") and not is_upcycle_rung("cpu-small")
    ladder = {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e", "init": "both"}
    space = fast_space(4096, search={"top_k": 1, "scale_up": ladder})
    search, _ = create_search(repo, space)
    arch = Architecture.from_json(_glam_tiny())
    t = repo.add_trial(
        search_id=search.id,
        number=0,
        arch=arch.to_dict(),
        arch_digest="d0",
        pattern=arch.pattern,
        params={},
        cost={},
        params_activated=1,
    )
    trial = repo.finish_trial(t.id, state="completed", val_loss=3.0, metrics={"val_loss": 3.0})
    common = {"search_id": search.id, "trial_id": trial.id, "arch": arch.to_dict(), "arch_digest": arch.digest}
    runs = [  # rung, loss, activated params, metrics
        ("cpu-tiny", 2.8, 1e5, {"step_time_s": 0.1}),  # an old row: none of the new fields
        ("cpu-small", 2.5, 1e6, {**SHARDED_RUN, "init": "scratch"}),
        ("cpu-tiny+upcycle", 2.6, 1e5, {"init": "upcycle", "upcycle_step": 8, "tokens_per_s": 900.0}),
        ("cpu-small+upcycle", 2.0, 1e6, {**SHARDED_RUN, "init": "upcycle", "upcycle_step": 16}),
    ]
    for rung, loss, n, metrics in runs:
        done = {**metrics, "params_activated": n, "val_curve": [[4, loss]], "val_loss_stderr": 0.01}
        repo.add_candidate(rung=rung, state="completed", metrics=done, val_loss=loss, **common)
    store = RunStore(tmp_path, repo.database_id())
    folder = store.checkpoints_dir(search.id, candidate_run_key(trial.id, "cpu-small+upcycle"))
    sizes = [save_checkpoint(folder, 8, 1.8e9), save_checkpoint(folder, 16, 1.8e9 + 600)]
    save_checkpoint(folder, 24, 1.8e9 + 1200, complete=False)  # interrupted: never listed

    report = scale_up_report(repo, search.id, space, store=store)
    assert report.init == "both"
    assert report.ladder == ["cpu-tiny", "cpu-tiny+upcycle", "cpu-small", "cpu-small+upcycle"]
    (cand,) = report.candidates
    by_rung = {r.rung: r for r in cand.rungs}
    assert list(by_rung) == report.ladder
    old = by_rung["cpu-tiny"]
    assert (old.devices, old.sharding, old.recipe, old.init) == (1, None, None, "scratch")
    assert (old.checkpoint_count, old.resume_count, old.checkpoints_on_disk, old.mfu) == (0, 0, [], None)
    small = by_rung["cpu-small"]
    assert (small.preset, small.devices, small.sharding) == ("cpu-small", 2, "fsdp2")
    assert small.recipe == "FSDP2 x 2, fp32 AdamW" and small.init == "scratch"
    assert small.memory_estimate_bytes == 3 * 2**30 and small.memory_peak_bytes == 2 * 2**30
    assert small.tokens_per_s == 12_500.0 and small.mfu == 0.412
    assert small.peak_flops_label == "NVIDIA H200 bf16 dense"
    assert (small.checkpoint_count, small.resume_count, small.resumed_from) == (3, 1, [4])
    assert small.micro_batch == 4 and small.activation_checkpointing is True
    up = by_rung["cpu-small+upcycle"]
    assert (up.preset, up.init, up.upcycle_step) == ("cpu-small", "upcycle", 16)
    on_disk = [(c.step, c.saved_at, c.bytes) for c in up.checkpoints_on_disk]
    assert on_disk == [(8, 1.8e9, sizes[0]), (16, 1.8e9 + 600, sizes[1])]
    tiny_up = by_rung["cpu-tiny+upcycle"]
    assert (tiny_up.preset, tiny_up.init, tiny_up.devices, tiny_up.tokens_per_s) == ("cpu-tiny", "upcycle", 1, 900.0)
    # The law sees the scratch runs only: one point per size.
    fit = cand.prediction
    assert fit is not None and sorted(loss for _, loss in fit.points) == [2.5, 2.8]
    assert report.fidelity_pairs == dict.fromkeys(report.ladder, 1)
    # Without the store nothing is read from disk.
    assert all(not r.checkpoints_on_disk for r in scale_up_report(repo, search.id, space).candidates[0].rungs)


def test_a_stage_that_only_upcycles_fits_its_upcycled_runs(repo: Repository) -> None:
    """Pass: with init upcycle there is one run per preset, under the preset's name or its "+upcycle" one, and the
    law is fitted to them; a crashed run that recorded nothing has no known init."""
    ladder = {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e", "init": "upcycle"}
    space = fast_space(4096, search={"top_k": 1, "scale_up": ladder})
    search, _ = create_search(repo, space)
    assert scale_up_report(repo, search.id, space).ladder == ["cpu-tiny", "cpu-small"]  # nothing recorded yet
    arch = Architecture.from_json(_glam_tiny())
    t = repo.add_trial(
        search_id=search.id,
        number=0,
        arch=arch.to_dict(),
        arch_digest="d0",
        pattern=arch.pattern,
        params={},
        cost={},
        params_activated=1,
    )
    trial = repo.finish_trial(t.id, state="completed", val_loss=3.0, metrics={"val_loss": 3.0})
    common = {"search_id": search.id, "trial_id": trial.id, "arch": arch.to_dict(), "arch_digest": arch.digest}
    for rung, loss, n in [("cpu-tiny", 2.8, 1e5), ("cpu-small+upcycle", 2.4, 1e6)]:
        done = {"init": "upcycle", "params_activated": n, "val_curve": [[4, loss]]}
        repo.add_candidate(rung=rung, state="completed", metrics=done, val_loss=loss, **common)
    report = scale_up_report(repo, search.id, space)
    assert report.ladder == ["cpu-tiny", "cpu-small+upcycle"]
    (cand,) = report.candidates
    assert [(r.rung, r.preset, r.init) for r in cand.rungs] == [
        ("cpu-tiny", "cpu-tiny", "upcycle"),
        ("cpu-small+upcycle", "cpu-small", "upcycle"),
    ]
    assert cand.prediction is not None and sorted(loss for _, loss in cand.prediction.points) == [2.4, 2.8]
    # A crashed run that recorded nothing: shown in its own column, init unknown; the fit is unchanged.
    repo.add_candidate(rung="cpu-small", state="crashed", metrics={}, val_loss=None, reason="killed", **common)
    report = scale_up_report(repo, search.id, space)
    assert report.ladder == ["cpu-tiny", "cpu-small", "cpu-small+upcycle"]
    crashed = report.candidates[0].rungs[1]
    assert (crashed.rung, crashed.state, crashed.init, crashed.devices, crashed.checkpoint_count) == (
        "cpu-small",
        "crashed",
        None,
        1,
        0,
    )
    assert report.candidates[0].prediction == cand.prediction
