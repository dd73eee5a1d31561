"""Budget accounting (brainsearch.train.budget): only training steps after the first are charged, and a seconds
budget's progress is counted in steps planned from the measured step time."""

from __future__ import annotations

import itertools

import pytest

from brainsearch.train.budget import BudgetClock, StepBudget


def test_the_first_step_is_never_charged() -> None:
    clock = BudgetClock(StepBudget(seconds=1.0), timing_warmup_steps=0)
    assert not clock.spent() and clock.first_step_s is None and clock.median_step_s() is None
    clock.record(30.0)  # compilation, CUDA initialisation
    assert clock.charged_s == 0.0 and clock.first_step_s == 30.0 and not clock.spent()
    clock.record(0.6)
    assert clock.charged_s == 0.6 and not clock.spent()
    clock.record(0.6)
    assert clock.charged_s == pytest.approx(1.2) and clock.spent()


def test_a_seconds_budget_takes_two_steps_at_least() -> None:
    clock = BudgetClock(StepBudget(seconds=1e-9), timing_warmup_steps=3)
    clock.record(5.0)
    assert not clock.spent()
    clock.record(5.0)
    assert clock.spent()


def test_step_budget_progress_is_steps_over_the_budget() -> None:
    clock = BudgetClock(StepBudget(steps=4))
    assert clock.planned_steps == 4 and clock.progress() == 0.0
    for _ in range(3):
        clock.record(100.0)  # time does not matter
    assert clock.progress() == 0.75 and not clock.spent() and not clock.is_last()
    clock.record(1.0)
    assert clock.spent() and clock.is_last() and clock.progress() == 1.0


def test_seconds_budget_plans_its_steps_from_the_median_after_warm_up() -> None:
    clock = BudgetClock(StepBudget(seconds=10.0), timing_warmup_steps=3)
    clock.record(20.0)
    clock.record(0.1)
    assert clock.planned_steps is None and clock.progress() == 0.0, "not planned before warm-up is timed"
    clock.record(0.1)
    assert clock.planned_steps == pytest.approx(3 + (10.0 - 0.2) / 0.1)
    assert clock.progress() == pytest.approx(2 / 101), "at most two planned steps' share at once"
    clock.record(0.1)
    assert clock.progress() == pytest.approx(4 / 101)
    assert clock.median_step_s() == pytest.approx(0.1)  # the first step is left out of the timing too


def test_seconds_budget_progress_never_moves_backwards_or_jumps() -> None:
    clock = BudgetClock(StepBudget(seconds=5.0), timing_warmup_steps=2)
    clock.record(60.0)
    progress = [clock.progress()]
    durations = [0.1] * 20 + [0.05] * 60 + [0.1] * 40  # faster, then slower again
    for seconds in durations:
        clock.record(seconds)
        progress.append(clock.progress())
        if clock.spent():
            break
    steps = [b - a for a, b in itertools.pairwise(progress)]
    assert min(steps) >= 0 and max(steps) < 0.05
    assert progress[-1] == pytest.approx(1.0, abs=0.1)
