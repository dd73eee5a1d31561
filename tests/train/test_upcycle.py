"""Dense-to-sparse runs: one result for both phases, a continuous curve, the budget's steps split exactly, seeded
like a scratch run, and a failure in either phase reported as that phase's."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.arch.scale import dense_twin
from brainsearch.data import load_corpus
from brainsearch.model import LanguageModel
from brainsearch.train import CurvePoint, TrainSettings, train
from brainsearch.train.upcycle import phase_steps, train_upcycled

HERE = Path(__file__).parent
BATCH = 4
TOKENS_PER_STEP = BATCH * 64


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return load_corpus(str(HERE / "golden_corpus.txt"), 256, tmp_path_factory.mktemp("cache"))


def _tiny() -> Architecture:
    """cpu-tiny GLaM: top-2 MoE layers with 4 experts."""
    return scale(preset("glam"), "cpu-tiny")


def _settings(steps: int, **extra: object) -> TrainSettings:
    return TrainSettings.model_validate(
        {"budget": {"tokens": steps * TOKENS_PER_STEP}, "batch_size": BATCH, "seed": 3, "eval_interval": 3}
        | {"device": "cpu", "warmup_steps": 2}
        | extra
    )


def test_upcycled_run_is_one_result_with_a_continuous_curve(corpus) -> None:
    arch = _tiny()
    seen: list[CurvePoint] = []
    models: list[LanguageModel] = []
    r = train_upcycled(
        arch, _settings(10), dense_fraction=0.4, corpus=corpus, report=seen.append, on_completed=models.append
    )
    assert r.status == "completed" and r.reason is None
    assert (r.init, r.upcycle_step, r.steps, r.tokens) == ("upcycle", 4, 10, 10 * TOKENS_PER_STEP)
    assert [p.step for p in r.curve] == list(range(1, 11))
    assert [p.tokens for p in r.curve] == [p.step * TOKENS_PER_STEP for p in r.curve]
    assert all(a.elapsed_s <= b.elapsed_s for a, b in zip(r.curve, r.curve[1:], strict=False))
    assert r.curve[-1].elapsed_s == pytest.approx(r.steps_seconds)
    assert seen == r.curve  # the report saw the MoE phase's points already offset
    # Evaluations at each phase's interval and last step; the result's losses are the MoE phase's.
    assert [p.step for p in r.curve if p.val_loss is not None] == [3, 4, 7, 10]
    assert r.val_loss == r.curve[-1].val_loss and r.train_loss == r.curve[-1].train_loss
    # The MoE phase restarts its schedule (6 steps: no warm-up, a tenth of them rounds to 0) at the peak rate.
    assert r.curve[3].lr < r.curve[4].lr == 3e-3 and r.curve[4].lr > r.curve[5].lr
    c = cost(arch, batch_size=BATCH)
    assert (r.arch_digest, r.flops_per_token, r.params_activated) == (
        arch.digest,
        c.flops_per_token,
        c.params_activated,
    )
    assert r.moe is not None and r.moe.num_layers == 2 and r.tokens_per_s and r.mfu
    assert any("then upcycled" in note for note in r.notes)
    assert len(models) == 1 and models[0].arch == arch


def test_dense_phase_is_seeded_like_a_scratch_run_of_the_dense_twin(corpus) -> None:
    arch = _tiny()
    up = train_upcycled(arch, _settings(6), dense_fraction=0.5, corpus=corpus)
    twin = train(dense_twin(arch), _settings(3), corpus=corpus)
    assert [p.train_loss for p in up.curve[:3]] == [p.train_loss for p in twin.curve]


def test_budget_steps_are_split_exactly_as_a_scratch_run_would_take_them() -> None:
    arch = _tiny()
    # A budget that is not a whole number of steps: the scratch run's ceil, within one batch of the budget.
    ragged = _settings(10).model_copy(
        update={"budget": _settings(10).budget.model_copy(update={"tokens": 10 * TOKENS_PER_STEP - 100.0})}
    )
    assert phase_steps(arch, ragged, 0.5) == (5, 5)
    assert phase_steps(arch, _settings(10), 0.25) == (2, 8)  # 2.5 rounds to even
    assert phase_steps(arch, _settings(10), 0.01) == (1, 9) and phase_steps(arch, _settings(10), 0.99) == (9, 1)
    flops = TrainSettings(budget={"flops": cost(arch).flops_per_token * 12 * TOKENS_PER_STEP}, batch_size=BATCH)
    assert phase_steps(arch, flops, 0.5) == (6, 6)  # the MoE architecture's tokens, as its scratch run gets
    with pytest.raises(ValueError, match="seconds has no token share"):
        phase_steps(arch, TrainSettings(budget={"seconds": 10}), 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        phase_steps(arch, _settings(1), 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        phase_steps(arch, _settings(10), 1.0)


def test_a_failed_dense_phase_fails_the_run_as_the_dense_phase(corpus) -> None:
    arch = _tiny()
    models: list[LanguageModel] = []
    r = train_upcycled(
        arch, _settings(10), dense_fraction=0.4, corpus=corpus, report=lambda p: False, on_completed=models.append
    )
    assert r.status == "pruned" and r.reason is not None and r.reason.startswith("dense phase: stopped by the caller")
    assert (r.init, r.upcycle_step, r.steps, len(r.curve)) == ("upcycle", None, 1, 1)
    assert r.arch_digest == arch.digest and r.flops_per_token == cost(arch, batch_size=BATCH).flops_per_token
    assert any("failed in the dense phase" in note for note in r.notes)
    assert models == []


def test_a_failed_moe_phase_names_the_phase_and_keeps_both_curves(corpus) -> None:
    arch = _tiny()
    r = train_upcycled(
        arch,
        _settings(8),
        dense_fraction=0.5,
        corpus=corpus,
        report=lambda p: "enough" if p.step == 6 else None,
    )
    assert r.status == "pruned" and r.reason == "sparse phase (upcycled at step 4): enough"
    assert (r.upcycle_step, r.steps, r.tokens) == (4, 6, 6 * TOKENS_PER_STEP)
    assert [p.step for p in r.curve] == [1, 2, 3, 4, 5, 6]


def test_time_limit_covers_both_phases(corpus) -> None:
    arch = _tiny()
    r = train_upcycled(arch, _settings(200, time_limit_s=1e-3), dense_fraction=0.5, corpus=corpus)
    assert r.status == "timed_out" and r.reason is not None and r.reason.startswith("dense phase: time limit")
