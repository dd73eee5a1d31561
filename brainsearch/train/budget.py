"""Budget accounting: what a run's budget means in training steps and seconds (no torch).

A budget in tokens or training FLOPs is a number of steps known before the first one (FLOPs go through the cost
model's FLOPs per token, so cheaper architectures get more steps); a budget in seconds is open-ended and its progress
is the fraction of the wall-clock time spent. The training loop asks whether the budget is spent before each step;
the learning-rate schedule reads its progress and caps warm-up at a tenth of a step budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from brainsearch.space.schema import Budget

__all__ = ["StepBudget"]


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
        """Whether no step is left after ``step`` steps and ``elapsed_s`` seconds (a time budget takes one step)."""
        if self.steps is not None:
            return step >= self.steps
        assert self.seconds is not None
        return elapsed_s >= self.seconds and step > 0

    def is_last(self, step: int) -> bool:
        """Whether a step budget ends with step number ``step`` (counted from 1); never known for a time budget."""
        return self.steps is not None and step >= self.steps

    def progress(self, step: int, elapsed_s: float) -> float:
        """The fraction of the budget spent before step ``step`` (counted from 0)."""
        if self.steps is not None:
            return step / self.steps
        assert self.seconds is not None
        return elapsed_s / self.seconds
