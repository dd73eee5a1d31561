"""Equal compute end to end: a space whose budget matches the baseline's compute trains every trial with GLaM's FLOPs,
its FLOPs-per-token constraint prunes before training with the reason, every row and rung states its compute ratio,
and a scale-up rung at the proxy's own scale reuses the proxy runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainsearch.arch import Architecture, cost
from brainsearch.arch.scale import scale
from brainsearch.search.driver import SearchDriver
from brainsearch.search.noise import EQUAL_COMPUTE
from brainsearch.search.scaleup import rung_budget, same_training
from brainsearch.search.submission import (
    RunOptions,
    create_search,
    search_noise_view,
    search_scale_up_report,
    search_verdict_of,
    trial_train_settings,
)
from brainsearch.space import SearchSpace
from brainsearch.space.baselines import reference_architecture, trial_budget
from brainsearch.space.schema import Rung
from tests.factories import fast_space, sqlite_repository

TOKENS = 16_384  # 32 steps of 512 tokens for the baseline: 22 or more for any block the constraint admits


def _space(**search: object) -> SearchSpace:
    """The fast tiny space at GLaM's compute, with blocks above 1.5x its FLOPs per token ruled out."""
    doc = fast_space(TOKENS, constraints={"max_flops_per_token_ratio": 1.5}, search=search).model_dump(mode="json")
    doc["proxy"]["budget"] = {"tokens": TOKENS, "compute": "match_baseline"}
    return SearchSpace.model_validate(doc)


def test_the_budget_resolves_to_the_baselines_flops_at_its_tokens() -> None:
    space = _space()
    glam = reference_architecture(space)
    assert glam is not None and glam.pattern == "afagafag"
    budget = trial_budget(space)
    assert budget.tokens is None and budget.flops == cost(glam, batch_size=8).flops_per_token * TOKENS
    settings = trial_train_settings(space)
    assert settings.budget == budget
    # A rung of the same space matches compute too: GLaM scaled to the rung, on the rung's tokens.
    small = rung_budget(Rung(preset="cpu-small", budget_tokens=20_480), space)
    assert small == {"flops": float(cost(scale(glam, "cpu-small"), batch_size=16).flops_per_token * 20_480)}
    assert rung_budget(Rung(preset="cpu-small", budget_tokens=20_480), fast_space()) == {"tokens": 20_480}


def test_same_training_ignores_what_does_not_change_the_run() -> None:
    settings = trial_train_settings(_space())
    assert same_training(settings, settings.model_copy(update={"eval_interval": 3, "device": "cpu", "compile": True}))
    assert not same_training(settings, settings.model_copy(update={"seed": 1}))
    assert not same_training(settings, settings.model_copy(update={"lr": 1e-3}))


@pytest.mark.slow
def test_an_equal_compute_search_prunes_by_flops_and_states_every_compute_ratio(tmp_path: Path) -> None:
    """Pass: the GLaM baseline trains its 32 steps; every completed trial trains with GLaM's compute (1.00-1.05x),
    a costlier block on fewer tokens; a block costing more than 1.5x GLaM's FLOPs per token is pruned before any
    training with the reason (no curve, no metrics); every leaderboard row and every scale-up run states its compute
    ratio; the cpu-tiny rung, the proxies' own scale, records the proxy runs of the blocks it leaves unchanged
    (same loss, no training) and trains the others at GLaM's compute."""
    repo, url = sqlite_repository(tmp_path, "equal.db")
    # The rung trains with the search's seed, so a run at the proxies' scale is the proxy run itself.
    rung = {"preset": "cpu-tiny", "budget_tokens": TOKENS}
    space = _space(scale_up={"ladder": [rung], "target": "cpu-small", "seed": 5})
    search, _ = create_search(
        repo,
        space,
        overrides={"trials": 6, "concurrency": 2, "sampler": "random", "seed": 5, "pruner": "none", "top_k": 2},
        options=RunOptions(executor="local", threads_per_trial=1),
    )
    done = SearchDriver(repo, search.id, url, data_dir=tmp_path).run()
    assert done.status == "completed", done.error
    trials = repo.list_trials(search.id, limit=100).items
    glam = next(t for t in trials if t.baseline_name == "glam")
    assert glam.metrics["steps"] == 32 and glam.metrics["tokens"] == TOKENS
    glam_flops = glam.cost["flops_per_token"]
    view = search_noise_view(repo, done)
    for t in trials:
        ratio = t.cost["flops_per_token"] / glam_flops
        if not t.is_baseline and ratio > 1.5:
            assert t.state == "pruned" and "> max_flops_per_token_ratio 1.5" in (t.reason or "")
            assert f"is {ratio:.2f}x the glam baseline's" in (t.reason or "")
            assert repo.trial_curve(t.id) == [] and t.metrics == {}  # judged before training: nothing trained
            continue
        assert t.state == "completed", t.reason
        row = view.of(t)
        assert row.flops_per_token_ratio == pytest.approx(ratio)
        assert row.compute_ratio is not None and 1.0 <= row.compute_ratio <= EQUAL_COMPUTE
        if ratio > 1.05:
            assert t.metrics["tokens"] < TOKENS  # a costlier block, fewer tokens
    assert any(t.state == "pruned" for t in trials), "seed 5 samples blocks above 1.5x GLaM's FLOPs per token"
    report = search_scale_up_report(repo, done)
    runs = [(c, r) for c in report.candidates for r in c.rungs]
    assert runs and all(r.state == "completed" for _, r in runs)
    by_id = {t.id: t for t in trials}
    for c, r in runs:
        if not c.is_baseline:
            assert r.compute_ratio is not None and 1.0 <= r.compute_ratio <= EQUAL_COMPUTE
            assert r.vs_baseline is not None
        proxy = Architecture.from_json(by_id[c.trial_id].arch)
        if scale(proxy, "cpu-tiny").digest == proxy.digest:
            assert r.reused_proxy_run and r.val_loss == by_id[c.trial_id].val_loss
            assert r.checkpoint_count == 0 and r.convergence_speedup is None  # evaluated at its end only
        else:
            assert not r.reused_proxy_run
    assert any(r.reused_proxy_run for _, r in runs)  # GLaM itself is at the proxies' scale
    verdict = search_verdict_of(repo, done)
    assert verdict.text and (verdict.winner == "baseline" or verdict.compute_ratio is not None)
    repo.engine.dispose()
