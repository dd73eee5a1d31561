"""The scale-up stage end to end on the CPU: a tiny search, its top 2 and GLaM trained again at cpu-tiny and
cpu-small, the report (fidelity, speed-ups, scaling-law predictions), the kept weights, and exports that round-trip.
On SQLite (the candidate rows on PostgreSQL too: tests/storage)."""

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
from tests.factories import (
    SHARDED_RUN,
    candidate_run,
    completed_trials,
    fast_space,
    glam_tiny,
    save_checkpoint,
    sqlite_repository,
    timing_probe,
)

LADDER = [{"preset": "cpu-tiny", "budget_tokens": 8192}, {"preset": "cpu-small", "budget_tokens": 8192}]


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sqlite_repo(tmp_path: Path) -> tuple[Repository, str]:
    return sqlite_repository(tmp_path, "scale.db")


@pytest.mark.slow
def test_tiny_search_scaled_up_reported_and_exported(sqlite_repo: tuple[Repository, str], tmp_path: Path) -> None:
    """Pass: 6 candidate runs (top 2 + GLaM at 2 rungs), every candidate with fidelity, speed-up and a scaling-law
    prediction whose band holds it; weights kept for the top 2 and the baselines only; a resumed search trains
    nothing again; the JSON export rebuilds the same architecture and the standalone file with the kept weights gives
    brainsearch's logits. (Searches on PostgreSQL: tests/search/test_driver.py, with the Ray executor.)"""
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
    assert small.metrics["steps"] == 4 and len(small.metrics["val_curve"]) == 4  # 8K tokens / 2048 per step

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
        # One target for all: GLaM's block at 1b-64e, and how far past the largest rung it is.
        assert fit.target == report.target_scale and fit.target_x == report.target_scale.params_activated
        assert fit.extrapolation == pytest.approx(fit.target_x / max(x for x, _ in fit.points))
        for r in cand.rungs:
            if cand.is_baseline:
                assert r.steps_per_s_ratio is None and r.convergence_speedup is None
            else:
                # From a timing probe: a number, or "uncertain" when the machine's load moved its rounds apart.
                assert r.speed_source == "probe"
                assert r.speed_uncertain or (r.steps_per_s_ratio is not None and r.steps_per_s_ratio > 0)
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


def test_crashed_candidate_runs_are_retried_and_superseded(repo: Repository, database_url: str, tmp_path: Path) -> None:
    """Pass: a crashed (trial, rung) pair is planned again while completed pairs are not; in the report the newer
    row wins."""
    space = fast_space(4096, search={"top_k": 1, "scale_up": {"ladder": ["cpu-tiny"]}})
    search, _ = create_search(repo, space)
    arch = glam_tiny()
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
    jobs, _ = scale_up_jobs(repo, search.id, space, database_url, data_dir=tmp_path)
    assert [(j.trial_id, j.rung) for j in jobs] == [(trials[0].id, "cpu-tiny")]
    assert jobs[0].settings.data_dir == tmp_path  # its worker caches the corpus in the search's data directory
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
    arch = glam_tiny()
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
    arch = glam_tiny()
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


# Honest extrapolation, intervals and timing in the report: candidate rows written directly, no training.


def test_every_candidate_is_predicted_and_ranked_at_the_baselines_scale(repo: Repository) -> None:
    """Pass: one target for all (the preset applied to the baseline's block, in activated parameters and compute),
    even for a candidate whose own block would scale elsewhere; the predicted ranks follow the losses at that one
    target; each prediction says how far it extrapolates (flagged past 100x); a target past 10,000x is refused with
    the reason; without a baseline among the candidates the proxy's best block sets the target."""
    from brainsearch.arch.cost import cost
    from brainsearch.arch.presets import preset
    from brainsearch.arch.scale import scale_preset
    from brainsearch.search.scaleup_report import target_scale
    from brainsearch.search.scaling import fit_law

    space = fast_space(4096, search={"top_k": 2, "scale_up": {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e"}})
    search, _ = create_search(repo, space)
    tiny = glam_tiny()
    # The baseline's block is at the proxy scale (d_model 768): at 1b-64e it has ~1B activated parameters, while
    # trial #1's own block (d_model 48) would scale to ~4M: it is predicted at the baseline's size all the same.
    ids = completed_trials(repo, search.id, [(preset("glam"), 3.1, "glam"), (tiny, 2.9, None), (tiny, 3.0, None)])
    losses = {ids[0]: (3.1, 2.7), ids[1]: (3.0, 2.5), ids[2]: (2.9, 2.6)}
    for trial_id, (small_x, big_x) in losses.items():
        candidate_run(
            repo, search.id, trial_id, "cpu-tiny", small_x, params_activated=1e5, flops_per_token=1e6, tokens=1e4
        )
        candidate_run(
            repo, search.id, trial_id, "cpu-small", big_x, params_activated=1e6, flops_per_token=1e7, tokens=1e4
        )

    report = scale_up_report(repo, search.id, space)
    at_1b = cost(scale(preset("glam"), "1b-64e"))
    target = report.target_scale
    assert target is not None and (target.preset, target.reference) == ("1b-64e", "glam baseline")
    assert target.params_activated == at_1b.params_activated
    assert target.compute_flops == at_1b.flops_per_token * scale_preset("1b-64e").budget_tokens
    assert target == target_scale(repo.get_trial(ids[0]), "1b-64e", "glam baseline")  # type: ignore[arg-type]
    predictions = {c.trial_id: c for c in report.candidates}
    for trial_id, (small_x, big_x) in losses.items():
        fit = predictions[trial_id].prediction
        assert fit is not None and fit.target == target and fit.target_x == target.params_activated
        expected = fit_law([1e5, 1e6], [small_x, big_x], target.params_activated, errors=[0.01, 0.01])
        assert fit.predicted_loss == pytest.approx(expected.predicted_loss)
        assert fit.extrapolation == pytest.approx(target.params_activated / 1e6) and fit.far_extrapolation
    by_prediction = sorted(report.candidates, key=lambda c: c.prediction.predicted_loss)  # type: ignore[union-attr]
    assert [c.predicted_rank for c in by_prediction] == [1, 2, 3]
    assert by_prediction[0].trial_id == ids[1]  # the steepest law wins at the target, not the best proxy loss

    # In compute the target is ~2.7e18 FLOPs against rungs of 1e11: refused, with the reason, for every candidate.
    in_compute = scale_up_report(repo, search.id, space, scale_by="compute")
    assert in_compute.target_scale == target
    for c in in_compute.candidates:
        assert c.prediction is None and c.predicted_rank is None
        assert "largest run fitted in training compute" in (c.prediction_error or "")
        assert "beyond 10,000x" in (c.prediction_error or "")
    # A nearer target: cpu-small's own scale in the baseline's block, inside the fit's range, not flagged.
    near = scale_up_report(repo, search.id, space, target="cpu-small")
    assert all(c.prediction is not None and not c.prediction.far_extrapolation for c in near.candidates)

    # No baseline among the candidates: the proxy's best block (trial #1) sets the one target.
    lone_space = fast_space(4096, search={"top_k": 2, "scale_up": {"ladder": ["cpu-tiny", "cpu-small"]}})
    lone, _ = create_search(repo, lone_space)
    lone_ids = completed_trials(repo, lone.id, [(preset("glam"), 3.0, None), (tiny, 2.9, None)])
    for trial_id in lone_ids:
        candidate_run(repo, lone.id, trial_id, "cpu-tiny", 3.0, params_activated=1e5)
        candidate_run(repo, lone.id, trial_id, "cpu-small", 2.6, params_activated=1e6)
    lone_report = scale_up_report(repo, lone.id, lone_space, target="8b-64e")
    assert lone_report.target_scale is not None and lone_report.target_scale.reference == "trial #1"
    assert lone_report.target_scale.params_activated == cost(scale(tiny, "8b-64e")).params_activated
    assert {c.prediction.target_x for c in lone_report.candidates if c.prediction} == {
        lone_report.target_scale.params_activated
    }


def test_speed_ups_come_from_timing_probes_with_their_range_and_losses_carry_intervals(repo: Repository) -> None:
    """Pass: a probed run's steps/s ratio is 1 / the probe's ratio with the range [1 / high, 1 / low]; an uncertain
    probe gives no number, only the reason; a run without a probe (or probed against another baseline) falls back to
    separate runs' step times; the baseline is re-timed by the probes that timed it; each loss has its 95%
    evaluation-error interval."""
    space = fast_space(4096, search={"top_k": 3, "scale_up": {"ladder": ["cpu-tiny"]}})
    search, _ = create_search(repo, space)
    tiny = glam_tiny()
    ids = completed_trials(repo, search.id, [(tiny, 3.1, "glam")] + [(tiny, 3.0 - i / 10, None) for i in range(4)])
    candidate_run(repo, search.id, ids[0], "cpu-tiny", 3.0, step_time_s=0.1, val_loss_stderr=0.02)
    candidate_run(repo, search.id, ids[1], "cpu-tiny", 2.9, step_time_s=0.5, timing_probe=timing_probe(0.8, 0.75, 0.9))
    uncertain = timing_probe(0.5, 0.3, 1.2, uncertain=True, baseline_step_s=0.3)
    candidate_run(repo, search.id, ids[2], "cpu-tiny", 2.8, step_time_s=0.05, timing_probe=uncertain)
    candidate_run(repo, search.id, ids[3], "cpu-tiny", 2.7, step_time_s=0.2)
    other = timing_probe(0.5, 0.45, 0.55, baseline="dense")
    candidate_run(repo, search.id, ids[4], "cpu-tiny", 2.6, step_time_s=0.2, timing_probe=other)

    report = scale_up_report(repo, search.id, space)
    assert "evaluation error only" in report.val_loss_interval
    rungs = {c.trial_id: c.rungs[0] for c in report.candidates}
    base = rungs[ids[0]]
    assert (base.val_loss_low, base.val_loss_high) == (
        pytest.approx(3.0 - 1.96 * 0.02, rel=1e-4),
        pytest.approx(3.0 + 1.96 * 0.02, rel=1e-4),
    )
    assert base.steps_per_s_ratio is None and base.speed_source is None and not base.speed_uncertain
    assert base.retimed_step_time_s == pytest.approx(0.2)  # the median of the baseline's probe timings 0.1 and 0.3
    probed = rungs[ids[1]]
    assert probed.speed_source == "probe" and not probed.speed_uncertain
    assert probed.steps_per_s_ratio == pytest.approx(1 / 0.8)  # not 0.1 / 0.5 from the separate runs
    assert (probed.steps_per_s_low, probed.steps_per_s_high) == (pytest.approx(1 / 0.9), pytest.approx(1 / 0.75))
    assert probed.retimed_step_time_s == pytest.approx(0.08)
    assert probed.val_loss_low == pytest.approx(2.9 - 1.96 * 0.01)
    doubtful = rungs[ids[2]]
    assert doubtful.speed_uncertain and doubtful.steps_per_s_ratio is None and doubtful.speed_source == "probe"
    assert doubtful.speed_note == "timing probe's spread 180% over 3 rounds exceeds its bound 20%"
    for trial_id in (ids[3], ids[4]):
        run_ratio = rungs[trial_id]
        assert run_ratio.speed_source == "separate runs" and not run_ratio.speed_uncertain
        assert run_ratio.steps_per_s_ratio == pytest.approx(0.1 / 0.2)
        assert run_ratio.steps_per_s_low is None and run_ratio.retimed_step_time_s is None


def test_a_slowed_run_is_marked_retimed_and_never_a_speed_up(repo: Repository) -> None:
    """Pass: with 4 runs with an MFU at a rung, the baseline's 12% against a median of 57% is slowed: its step time
    is repeated as the probes measured it, and no candidate's separate-runs ratio against it is reported (a probed
    candidate keeps its probe's); a candidate slowed itself gets no ratio either; with fewer than 3 MFUs nothing is
    called slowed."""
    space = fast_space(4096, search={"top_k": 3, "scale_up": {"ladder": ["cpu-tiny", "cpu-small"]}})
    search, _ = create_search(repo, space)
    tiny = glam_tiny()
    ids = completed_trials(repo, search.id, [(tiny, 3.1, "glam")] + [(tiny, 3.0 - i / 10, None) for i in range(3)])
    mfus = [0.12, 0.56, 0.58, 0.60]
    for trial_id, mfu in zip(ids, mfus, strict=True):
        probe = {"timing_probe": timing_probe(0.9, 0.85, 0.95)} if trial_id == ids[1] else {}
        candidate_run(
            repo, search.id, trial_id, "cpu-small", 2.5, step_time_s=0.1 if mfu > 0.5 else 0.45, mfu=mfu, **probe
        )
    # cpu-tiny: trial #2 slowed itself (20% against a median of 58%); trial #3 has no MFU.
    for trial_id, mfu in zip(ids, [0.58, 0.6, 0.2, None], strict=True):
        candidate_run(repo, search.id, trial_id, "cpu-tiny", 2.8, step_time_s=0.1, mfu=mfu)

    report = scale_up_report(repo, search.id, space)
    rungs = {(c.trial_id, r.rung): r for c in report.candidates for r in c.rungs}
    base = rungs[(ids[0], "cpu-small")]
    assert base.slowed and base.slowed_note == "MFU 12.0% against the rung's median 57.0%"
    assert base.step_time_s == 0.45 and base.retimed_step_time_s == pytest.approx(0.1)
    assert [rungs[(i, "cpu-small")].slowed for i in ids[1:]] == [False, False, False]
    probed = rungs[(ids[1], "cpu-small")]
    assert probed.speed_source == "probe" and probed.steps_per_s_ratio == pytest.approx(1 / 0.9)
    for trial_id in ids[2:]:
        r = rungs[(trial_id, "cpu-small")]
        assert r.speed_uncertain and r.steps_per_s_ratio is None and r.speed_source == "separate runs"
        assert "glam baseline was slowed (MFU 12.0%" in (r.speed_note or "")
    slow = rungs[(ids[2], "cpu-tiny")]
    assert slow.slowed and slow.speed_uncertain and slow.steps_per_s_ratio is None
    assert (slow.speed_note or "").startswith("this run was slowed (MFU 20.0% against the rung's median 58.0%)")
    assert rungs[(ids[1], "cpu-tiny")].steps_per_s_ratio == pytest.approx(1.0)
    assert not rungs[(ids[0], "cpu-tiny")].slowed

    # Three runs with an MFU are needed to call one slowed: with two, a low MFU is only a low MFU.
    few, _ = create_search(repo, space)
    few_ids = completed_trials(repo, few.id, [(tiny, 3.1, "glam"), (tiny, 3.0, None)])
    for trial_id, mfu in zip(few_ids, [0.12, 0.6], strict=True):
        candidate_run(repo, few.id, trial_id, "cpu-tiny", 2.8, step_time_s=0.1, mfu=mfu)
    few_rungs = [r for c in scale_up_report(repo, few.id, space).candidates for r in c.rungs]
    assert not any(r.slowed for r in few_rungs) and not any(r.speed_uncertain for r in few_rungs)


# Timing probes of the scale-up runs: a single-device candidate is timed against the baseline at its rung.


def _probe_search(repo: Repository, ladder: list[dict[str, object]]) -> tuple[int, list[int]]:
    """A search of the fast tiny space scaled up on ``ladder`` (:func:`_probe_settings`) with one completed trial
    (Brainformer-1's block at cpu-tiny) and the completed GLaM baseline; returns the search id and the trial ids."""
    from brainsearch.arch.presets import preset

    search, _ = create_search(repo, fast_space(4096, search=_probe_settings(ladder)))
    specs = [(scale(preset("brainformer-1"), "cpu-tiny"), 3.0, None), (glam_tiny(), 3.0, "glam")]
    return search.id, completed_trials(repo, search.id, specs, digest=True)


def _probe_settings(ladder: list[dict[str, object]]) -> dict[str, object]:
    """The search settings of :func:`_probe_search`'s space: the top trial scaled up on ``ladder``."""
    return {"top_k": 1, "scale_up": {"ladder": ladder}}


def test_a_single_device_candidate_run_is_timed_against_the_baseline_at_its_rung(
    repo: Repository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass: the candidate's job carries GLaM scaled to the same rung (the baseline's own job carries nothing), and
    its completed run stores a timing probe against it, which the report's steps/s ratio reads. (The probe is cut
    to three one-step rounds: what it measures is tested in tests/train/test_timing.py.)"""
    from typing import Any

    from brainsearch.arch.presets import preset
    from brainsearch.search.runner import run_job
    from brainsearch.train import timing
    from brainsearch.train.timing import TimingProbe

    real = timing.timing_probe

    def short_probe(*args: Any, **kwargs: Any) -> TimingProbe:
        return real(*args, **{**kwargs, "rounds": 3, "steps": 1, "attempts": 1, "warmup_steps": 1})

    monkeypatch.setattr(timing, "timing_probe", short_probe)

    ladder: list[dict[str, object]] = [{"preset": "cpu-tiny", "budget_tokens": 1024}]
    search_id, (trial_id, glam_id) = _probe_search(repo, ladder)
    jobs, notes = scale_up_jobs(
        repo, search_id, fast_space(4096, search=_probe_settings(ladder)), database_url, device="cpu"
    )
    by_trial = {j.trial_id: j for j in jobs}
    assert set(by_trial) == {trial_id, glam_id}, notes
    job = by_trial[trial_id]
    assert job.plan is None and job.baseline_name == "glam"
    assert job.baseline_arch == scale(preset("glam"), "cpu-tiny").to_dict()
    assert by_trial[glam_id].baseline_arch is None and by_trial[glam_id].baseline_name is None

    outcome = run_job(job, repo)
    row = next(c for c in repo.list_candidates(search_id) if c.trial_id == trial_id)
    assert outcome.state == row.state == "completed"
    probe = TimingProbe.from_metrics(row.metrics)
    assert probe is not None and probe.baseline == "glam" and probe.rounds == 3 and len(probe.ratios) == 3
    assert probe.ratio > 0 and probe.candidate_step_s > 0 and probe.baseline_step_s > 0


def test_a_sharded_rung_carries_no_baseline_to_time(repo: Repository, database_url: str) -> None:
    """Pass: a rung over two devices plans no probe (both models would need the whole process group)."""
    from brainsearch.search.hardware import Hardware

    ladder: list[dict[str, object]] = [{"preset": "cpu-tiny", "budget_tokens": 1024, "devices": 2}]
    search_id, _ = _probe_search(repo, ladder)
    two = Hardware(available=2, memory_bytes=10**12, unit="process", precision="fp32", use_gpu=False)
    jobs, notes = scale_up_jobs(
        repo, search_id, fast_space(4096, search=_probe_settings(ladder)), database_url, device="cpu", hardware=two
    )
    assert len(jobs) == 2, notes
    assert all(j.plan is not None and j.plan.recipe.shards == 2 for j in jobs)
    assert all(j.baseline_arch is None and j.baseline_name is None for j in jobs)
