"""The one training loop and its parts: budget accounting, optimiser and LR schedule, evaluation, hooks, failures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brainsearch.arch import Architecture, preset, scale
from brainsearch.data import BatchSampler, Corpus
from brainsearch.model import LanguageModel, build_model
from brainsearch.space.schema import Budget
from brainsearch.train import TrainSettings
from brainsearch.train.budget import StepBudget
from brainsearch.train.evaluate import evaluate
from brainsearch.train.loop import Hooks, LoopResult, LossTerm, train_loop
from brainsearch.train.optim import LRSchedule, build_optimizer

CPU = torch.device("cpu")


def _arch() -> Architecture:
    return scale(preset("glam"), "cpu-tiny")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    tokens = (np.arange(20_000, dtype=np.uint16) * 7919) % 256
    return Corpus("synthetic", tokens[:16_000], tokens[16_000:], 256, None, "0")


def _settings(**update: object) -> TrainSettings:
    return TrainSettings(batch_size=2, eval_batches=2, warmup_steps=0, device="cpu").model_copy(update=update)


def _run(
    corpus: Corpus, steps: int, settings: TrainSettings, validation: Corpus | None = None, hooks: Hooks | None = None
) -> tuple[LanguageModel, LoopResult]:
    torch.manual_seed(0)
    model = build_model(_arch())
    batches = BatchSampler(corpus.train, settings.batch_size, model.arch.seq_len, settings.seed)
    budget = StepBudget(steps=steps)
    return model, train_loop(lambda: model, batches, settings, budget, CPU, validation=validation, hooks=hooks)


# --- budget and schedule -------------------------------------------------------------------------------------------


def test_step_budget_of_tokens_flops_and_seconds() -> None:
    assert StepBudget.of(Budget(tokens=1000.0), 512, 10).steps == 2
    assert StepBudget.of(Budget(tokens=1.0), 512, 10).steps == 1  # at least one step
    assert StepBudget.of(Budget(flops=10_240.0 * 3), 512, 10).steps == 6
    timed = StepBudget.of(Budget(seconds=2.0), 512, 10)
    assert timed.steps is None and timed.seconds == 2.0
    assert not timed.spent(0, 5.0), "a time budget takes at least one step"
    assert timed.spent(1, 2.0) and timed.progress(3, 1.0) == 0.5 and not timed.is_last(10**6)
    counted = StepBudget(steps=4)
    assert counted.progress(1, 100.0) == 0.25 and not counted.spent(3, 1e9) and counted.spent(4, 0.0)
    assert counted.is_last(4) and not counted.is_last(3)
    with pytest.raises(ValueError, match="steps or seconds"):
        StepBudget(steps=1, seconds=1.0)


def test_lr_schedule_warms_up_within_a_tenth_of_the_steps_then_decays_to_the_floor() -> None:
    settings = TrainSettings(lr=1.0, min_lr_ratio=0.1, warmup_steps=20)
    cosine = LRSchedule.of(settings, StepBudget(steps=100))
    assert cosine.warmup_steps == 10  # capped at 10% of the budget
    assert [cosine(s, s / 100) for s in (0, 9)] == [0.1, 1.0]
    assert cosine(50, 0.5) == pytest.approx(0.55) and cosine(100, 1.0) == pytest.approx(0.1)
    assert LRSchedule.of(settings, StepBudget(seconds=1.0)).warmup_steps == 20  # not capped by an unknown count
    inverse = LRSchedule.of(settings.model_copy(update={"schedule": "inverse_sqrt"}), StepBudget(steps=100))
    assert inverse(39, 0.39) == pytest.approx(math.sqrt(10 / 40))
    constant = LRSchedule.of(settings.model_copy(update={"schedule": "constant"}), StepBudget(steps=100))
    assert constant(99, 0.99) == 1.0


def test_optimizer_decays_matrices_only_and_skips_frozen_parameters() -> None:
    model = build_model(_arch())
    model.embed.weight.requires_grad_(False)
    optimizer = build_optimizer(model, TrainSettings(weight_decay=0.2), CPU)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.2 and all(p.ndim >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim < 2 for p in no_decay["params"])
    assert all(p is not model.embed.weight for g in optimizer.param_groups for p in g["params"])
    adafactor = build_optimizer(model, TrainSettings(optimizer="adafactor"), CPU)
    assert isinstance(adafactor, torch.optim.Adafactor)


# --- evaluation ------------------------------------------------------------------------------------------------------


def test_evaluation_is_repeatable_restores_the_mode_and_counts_routed_tokens(corpus: Corpus) -> None:
    model = build_model(_arch())
    settings = _settings()
    first, again = evaluate(model, corpus, settings), evaluate(model, corpus, settings)
    assert model.training, "the model's mode is restored"
    assert first.loss == again.loss and first.stderr is not None
    assert len(first.tokens_per_expert) == 2 and all(load.shape == (4,) for load in first.tokens_per_expert)
    share = first.share_beyond([2, 2])
    expected = sum(float(load[2:].sum()) for load in first.tokens_per_expert) / sum(
        float(load.sum()) for load in first.tokens_per_expert
    )
    assert share == pytest.approx(expected) and 0 < share < 1
    assert first.share_beyond([4, 4]) == 0.0


# --- the loop and its hooks ------------------------------------------------------------------------------------------


def test_a_loss_term_is_added_with_its_weight_and_reported_unweighted(corpus: Corpus) -> None:
    calls: list[int] = []

    def sum_of_squares(x_BS: torch.Tensor, logits_TV: torch.Tensor) -> torch.Tensor:
        assert logits_TV.shape == (x_BS.numel(), 256)
        calls.append(1)
        return logits_TV.square().mean()

    _, plain = _run(corpus, 3, _settings())
    _, zero = _run(corpus, 3, _settings(), hooks=Hooks(loss_terms=[LossTerm("sq", 0.0, sum_of_squares)]))
    _, weighted = _run(corpus, 3, _settings(), hooks=Hooks(loss_terms=[LossTerm("sq", 1.0, sum_of_squares)]))
    assert len(calls) == 6 and plain.loss_terms == {} and set(weighted.loss_terms) == {"sq"}
    assert [p.train_loss for p in zero.curve] == [p.train_loss for p in plain.curve]
    assert [p.train_loss for p in weighted.curve][1:] != [p.train_loss for p in plain.curve][1:]


def test_after_step_hooks_run_once_per_step_and_no_validation_means_no_evaluation(corpus: Corpus) -> None:
    steps: list[int] = []
    model, run = _run(
        corpus, 4, _settings(eval_interval=1), hooks=Hooks(after_optimizer_step=[lambda: steps.append(1)])
    )
    assert run.status == "completed" and run.steps == 4 and len(steps) == 4
    assert run.evaluation is None and all(p.val_loss is None for p in run.curve)
    assert run.tokens == 4 * 2 * model.arch.seq_len and run.train_loss == run.curve[-1].train_loss


def test_validation_every_interval_and_after_the_last_step(corpus: Corpus) -> None:
    model, run = _run(corpus, 5, _settings(eval_interval=2), validation=corpus)
    assert [p.val_loss is not None for p in run.curve] == [False, True, False, True, True]
    assert run.evaluation is not None and run.curve[-1].val_loss == run.evaluation.loss
    assert run.evaluation.loss == evaluate(model, corpus, _settings()).loss


def test_an_allocation_failure_while_building_is_out_of_memory(corpus: Corpus) -> None:
    def build() -> LanguageModel:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")

    batches = BatchSampler(corpus.train, 2, 64, 0)
    run = train_loop(build, batches, _settings(), StepBudget(steps=3), CPU)
    assert run.status == "out_of_memory" and run.steps == 0 and run.curve == []
    assert run.reason == "allocation failed at step 0: CUDA out of memory. Tried to allocate 1 TiB"
