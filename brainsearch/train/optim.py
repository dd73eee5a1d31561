"""The optimiser and the learning-rate schedule of every training run, built from :class:`TrainSettings`.

AdamW (betas 0.9 / 0.95, fused on CUDA) or Adafactor, over the parameters that train. Weight decay applies to
matrices (``ndim >= 2``: projections, experts, embeddings), never to norms and biases. The schedule warms up linearly
(capped at a tenth of a step budget, so short proxies spend most steps at full rate), then follows a cosine down to
``min_lr_ratio * lr`` over the budget's progress (:class:`brainsearch.train.budget.BudgetClock`: steps over the
budget's steps, or over the steps planned from the measured step time for a seconds budget), an inverse square root,
or stays constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from brainsearch.train.budget import StepBudget
from brainsearch.train.settings import Schedule, TrainSettings

__all__ = ["LRSchedule", "build_optimizer", "set_lr"]


def build_optimizer(model: nn.Module, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """``settings.optimizer`` over ``model``'s trainable parameters, decay on matrices only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if settings.optimizer == "adafactor":
        return cast(torch.optim.Optimizer, torch.optim.Adafactor(groups, lr=settings.lr))
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the schedule is computed, not a torch scheduler's state)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate at a step: warm-up, then ``schedule`` over the budget's progress."""

    peak: float
    min_ratio: float
    kind: Schedule
    warmup_steps: int

    @classmethod
    def of(cls, settings: TrainSettings, budget: StepBudget) -> LRSchedule:
        """The schedule ``settings`` ask for, its warm-up capped at 10% of a step budget."""
        warmup = settings.warmup_steps if budget.steps is None else min(settings.warmup_steps, budget.steps // 10)
        return cls(peak=settings.lr, min_ratio=settings.min_lr_ratio, kind=settings.schedule, warmup_steps=warmup)

    def __call__(self, step: int, progress: float) -> float:
        """The rate of step ``step`` (from 0), ``progress`` being the fraction of the budget spent before it."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.peak
        if self.kind == "inverse_sqrt":
            return self.peak * math.sqrt(max(self.warmup_steps, 1) / (step + 1))
        floor = self.peak * self.min_ratio
        return floor + (self.peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
