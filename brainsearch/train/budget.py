"""Budget accounting: what a run's budget means in training steps and seconds (no torch).

A budget in tokens or training FLOPs is a number of steps known before the first one (FLOPs go through the cost
model's FLOPs per token, so cheaper architectures get more steps). A budget in seconds counts time inside training
steps only, so that every trial gets the same training time: building the model, compiling it, the first step (CUDA
initialisation and compilation happen there), measuring the device's peak and evaluating are measured and reported
separately, never charged. The training loop asks its :class:`BudgetClock` whether the budget is spent before each
step; the learning-rate schedule reads the clock's progress and caps warm-up at a tenth of a step budget.

A seconds budget's progress is counted in steps, not seconds: after ``timing_warmup_steps`` steps the clock plans
``steps so far + remaining seconds / median step time`` (re-estimated at every step), and progress is steps over
planned steps, never moving backwards and never advancing more than two planned steps' share at once. The cosine so
decays step by step to the floor where the time runs out - no cliff when set-up was slow, no jump when the step time
changes - and the LR depends on the step count rather than on the noise of each step's duration.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from brainsearch.space.schema import Budget

__all__ = ["BudgetClock", "StepBudget"]


@dataclass(frozen=True)
class StepBudget:
    """Exactly one of ``steps`` (a fixed number of training steps) or ``seconds`` (train until this much time)."""

    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.seconds is None):
            raise ValueError(f"a step budget is steps or seconds, not {self}")

    @classmethod
    def of(cls, budget: Budget, tokens_per_step: int, flops_per_token: int) -> StepBudget:
        """The steps a token or FLOP budget buys (at least one), or a time budget's seconds."""
        if budget.tokens is not None:
            return cls(steps=max(1, math.ceil(budget.tokens / tokens_per_step)))
        if budget.flops is not None:
            return cls(steps=max(1, math.ceil(budget.flops / flops_per_token / tokens_per_step)))
        return cls(seconds=budget.seconds)

    def spent(self, step: int, elapsed_s: float) -> bool:
        """Whether no step is left after ``step`` steps and ``elapsed_s`` charged seconds (a time budget takes one
        step)."""
        if self.steps is not None:
            return step >= self.steps
        assert self.seconds is not None
        return elapsed_s >= self.seconds and step > 0

    def is_last(self, step: int) -> bool:
        """Whether a step budget ends with step number ``step`` (counted from 1); never known for a time budget."""
        return self.steps is not None and step >= self.steps

    def progress(self, step: int, elapsed_s: float) -> float:
        """The fraction of the budget spent before step ``step`` (counted from 0), ``elapsed_s`` charged seconds
        having passed (a seconds budget's progress in time; the :class:`BudgetClock` counts it in steps)."""
        if self.steps is not None:
            return step / self.steps
        assert self.seconds is not None
        return elapsed_s / self.seconds


@dataclass
class BudgetClock:
    """A run's charged time and progress: record every training step's duration, ask before the next one.

    The first step is never charged (its time is set-up: CUDA initialisation, compilation); ``charged_s`` is the
    time of the others. ``planned_steps`` is a seconds budget's estimated number of steps, None until
    ``timing_warmup_steps`` steps (at least two) have been timed; a step budget's is its number of steps.
    """

    budget: StepBudget
    timing_warmup_steps: int = 3
    step_times: list[float] = field(default_factory=list)
    planned_steps: float | None = None
    reported_progress: float = 0.0  # a seconds budget's last progress (it never moves backwards)

    def __post_init__(self) -> None:
        if self.budget.steps is not None:
            self.planned_steps = float(self.budget.steps)

    @property
    def steps(self) -> int:
        """Steps recorded so far."""
        return len(self.step_times)

    @property
    def charged_s(self) -> float:
        """Seconds charged to the budget: every step's time but the first's."""
        return sum(self.step_times[1:])

    @property
    def first_step_s(self) -> float | None:
        """The first step's time (set-up, not charged); None before it."""
        return self.step_times[0] if self.step_times else None

    def median_step_s(self) -> float | None:
        """The median step time after ``timing_warmup_steps`` (all steps but the first while there are no more;
        None before a step)."""
        timed = self.step_times[self.timing_warmup_steps :] or self.step_times[1:] or self.step_times
        return statistics.median(timed) if timed else None

    def record(self, seconds: float) -> None:
        """Count one training step of ``seconds``; re-plan a seconds budget's steps once warm-up is timed."""
        self.step_times.append(seconds)
        if self.budget.seconds is None or self.steps < max(self.timing_warmup_steps, 2):
            return
        median = statistics.median(self.step_times[1:])
        remaining = max(0.0, self.budget.seconds - self.charged_s)
        self.planned_steps = self.steps + remaining / max(median, 1e-9)

    def spent(self) -> bool:
        """Whether no step is left (a seconds budget takes at least two: the first is never charged)."""
        return self.budget.spent(self.steps, self.charged_s) and (self.budget.seconds is None or self.steps > 1)

    def is_last(self) -> bool:
        """Whether the step just recorded was a step budget's last (never known for a seconds budget)."""
        return self.budget.is_last(self.steps)

    def progress(self) -> float:
        """The fraction of the budget spent before the next step, in steps: 0 until a seconds budget's steps are
        planned, then ``steps / planned_steps`` capped at 1. A seconds budget's never moves backwards, nor forwards
        by more than two planned steps' share at once."""
        if self.budget.seconds is None:
            return self.budget.progress(self.steps, self.charged_s)
        if self.planned_steps is None:
            return 0.0
        target = min(1.0, self.steps / max(self.planned_steps, 1.0))
        self.reported_progress = min(
            max(self.reported_progress, target), self.reported_progress + 2 / max(self.planned_steps, 1.0)
        )
        return self.reported_progress
