"""The optimiser and the learning-rate schedule of every training run, built from :class:`TrainSettings`.

AdamW (betas 0.9 / 0.95, fused on CUDA) or Adafactor, over the parameters that train. Weight decay applies to
matrices (``ndim >= 2``: projections, experts, embeddings), never to norms and biases. The schedule warms up linearly
(capped at a tenth of a step budget, so short proxies spend most steps at full rate), then follows a cosine down to
``min_lr_ratio * lr`` over the budget's progress (:class:`brainsearch.train.budget.BudgetClock`: steps over the
budget's steps, or over the steps planned from the measured step time for a seconds budget), an inverse square root,
or stays constant.

With ``optimizer_in_backward`` the optimiser is an :class:`InBackwardOptimizer`: every parameter steps inside the
backward as soon as its gradient is complete, and that gradient is freed at once, so the gradients of the whole model
never exist together (the leanest single-device recipe, ``bf16-adafactor-fused`` in
:data:`brainsearch.arch.plan.RECIPES`). The loop asks :func:`steps_in_backward` and then neither clips nor steps.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast, overload

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from brainsearch.train.budget import StepBudget
from brainsearch.train.settings import Schedule, TrainSettings

__all__ = [
    "InBackwardOptimizer",
    "LRSchedule",
    "build_optimizer",
    "optimizer_state_bytes",
    "set_lr",
    "steps_in_backward",
]

ParamGroup = dict[str, Any]


def build_optimizer(model: nn.Module, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """``settings.optimizer`` over ``model``'s trainable parameters, decay on matrices only; with
    ``settings.optimizer_in_backward`` an :class:`InBackwardOptimizer` of it (hooks on the parameters from now on)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    make = partial(_torch_optimizer, settings=settings, device=device)
    return InBackwardOptimizer(groups, make) if settings.optimizer_in_backward else make(groups)


def _torch_optimizer(groups: list[ParamGroup], settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    if settings.optimizer == "adafactor":
        # Adafactor clips its own update (RMS at most d = 1, the paper's), per parameter: the only clipping when the
        # optimiser steps in the backward.
        return cast(torch.optim.Optimizer, torch.optim.Adafactor(groups, lr=settings.lr, d=1.0))
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the schedule is computed, not a torch scheduler's state)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def steps_in_backward(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` steps inside the backward: the loop must then neither clip gradients nor step."""
    return isinstance(optimizer, InBackwardOptimizer)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors of ``optimizer``'s state: moments, factored second moments and step counters (those
    live on the CPU, 4 bytes per parameter tensor, unless the optimiser is fused or capturable)."""
    return sum(
        value.nbytes for state in optimizer.state.values() for value in state.values() if isinstance(value, Tensor)
    )


class InBackwardOptimizer(torch.optim.Optimizer):
    """Steps each parameter inside the backward, as soon as its gradient is accumulated, and frees that gradient:
    at no time do all gradients exist (the gradients alive are those of the parameters whose backward is in flight).
    See the PyTorch tutorial "How to save memory by fusing the optimizer step into the backward pass".

    ``make`` builds the optimiser the normal path would use; here it is called once per parameter, over a
    one-parameter group carrying the group's options (the weight-decay rule), so each parameter gets the same
    update as in one optimiser over all of them. A ``Tensor.register_post_accumulate_grad_hook`` on each parameter
    runs its inner optimiser's step and sets ``p.grad = None``. The inner optimisers' group dicts *are* this
    optimiser's ``param_groups`` (one per parameter) and they share this optimiser's ``state``, so :func:`set_lr`,
    ``state_dict`` / ``load_state_dict`` and ``torch.distributed.checkpoint``'s ``get_state_dict`` /
    ``set_state_dict`` see an ordinary optimiser with one group per parameter.

    ``step()`` does nothing (the backward has stepped every parameter that got a gradient) and ``zero_grad()`` only
    frees gradients left over (none after a backward with the hooks; a checkpoint reader may leave zeros), so the
    normal loop's calls are harmless. One backward is one step: no gradient accumulation over micro-batches.

    No gradient clipping by global norm: the norm is known only after every gradient has been computed, and by then
    each one has been applied and freed. Adafactor still clips its own update per parameter (RMS at most ``d``);
    AdamW's per-element normalisation keeps each update near the learning rate. Under ``torch.compile`` one compiled
    backward graph returns all its gradients together before the hooks run: compile per block to keep the saving.
    Call :meth:`remove` to take the hooks off the parameters.
    """

    def __init__(self, groups: Iterable[ParamGroup], make: Callable[[list[ParamGroup]], torch.optim.Optimizer]) -> None:
        inner = [make([{**group, "params": [p]}]) for group in groups for p in cast(Iterable[Tensor], group["params"])]
        if not inner:
            raise ValueError("optimizer got an empty parameter list")
        # The inner optimisers' own group dicts, not copies: the base class appends the dicts it is given.
        super().__init__([opt.param_groups[0] for opt in inner], dict(inner[0].defaults))
        self._inner = inner
        self._link()
        self._handles: list[RemovableHandle] = [
            opt.param_groups[0]["params"][0].register_post_accumulate_grad_hook(partial(_step_and_free, opt))
            for opt in inner
        ]

    def _link(self) -> None:
        """Make every inner optimiser use this optimiser's state (each touches only its own parameter's entry)."""
        for opt in self._inner:
            self.state.update(opt.state)
        for opt in self._inner:
            opt.state = self.state

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Nothing to do: the backward stepped every parameter. A ``closure`` (forward + backward) is run, which
        steps them, and its loss returned."""
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Free any gradient left over (there is none after a backward with the hooks); never zero-filled, as a
        kept gradient would be added to the next backward's and stepped again."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by ``state_dict()`` (one group per parameter, in the same order): each inner optimiser
        loads its part through its own class's rules (dtype, device and step-counter handling)."""
        groups, state = state_dict["param_groups"], state_dict["state"]
        if len(groups) != len(self._inner) or any(len(g["params"]) != 1 for g in groups):
            raise ValueError(
                f"the state has {len(groups)} parameter groups; this optimizer has one per parameter "
                f"({len(self._inner)})"
            )
        for opt, group in zip(self._inner, groups, strict=True):
            (index,) = group["params"]
            own = {0: state[index]} if index in state else {}
            opt.load_state_dict({"state": own, "param_groups": [{**group, "params": [0]}]})
        self.param_groups = [opt.param_groups[0] for opt in self._inner]
        self.state = defaultdict(dict)
        self._link()

    def remove(self) -> None:
        """Take the hooks off the parameters (a later backward leaves its gradients in ``p.grad``, unapplied)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _step_and_free(optimizer: torch.optim.Optimizer, param: Tensor) -> None:
    """Post-accumulate-grad hook: ``param``'s gradient is complete; step it and free the gradient."""
    optimizer.step()
    param.grad = None


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
