"""MoE routing statistics over a training run: summed on the device step by step (no host sync per step), read
once at the end as a :class:`MoESummary`."""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import Tensor

from brainsearch.model import MoEStats
from brainsearch.train.result import MoESummary

__all__ = ["MoEAccumulator"]


class MoEAccumulator:
    """Sums each step's per-layer :class:`MoEStats`: the layer-mean scalars and each layer's tokens per expert."""

    def __init__(self) -> None:
        self.steps = 0
        self.load: list[Tensor] = []
        self.scalars: Tensor | None = None

    def add(self, stats: list[MoEStats]) -> None:
        """Add one step's statistics (one entry per MoE sub-layer; nothing for a dense model)."""
        if not stats:
            return
        vec = torch.stack(
            [
                torch.stack(
                    [
                        s.dropped_fraction.float(),
                        s.router_entropy.float(),
                        s.load_balance_loss.float(),
                        s.z_loss.float(),
                    ]
                )
                for s in stats
            ]
        ).mean(0)
        self.scalars = vec if self.scalars is None else self.scalars.to(vec.device) + vec
        if not self.load:
            self.load = [s.tokens_per_expert.float() for s in stats]
        else:
            self.load = [
                a.to(s.tokens_per_expert.device) + s.tokens_per_expert.float()
                for a, s in zip(self.load, stats, strict=True)
            ]
        self.steps += 1

    def state(self) -> dict[str, Any] | None:
        """The sums so far, JSON-able (a checkpoint's); None before a step routed anything."""
        if not self.steps or self.scalars is None:
            return None
        return {"steps": self.steps, "scalars": self.scalars.tolist(), "load": [x.tolist() for x in self.load]}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Continue summing from a :meth:`state` (its sums move to the device of the next step's)."""
        if state is None:
            return
        self.steps = int(state["steps"])
        self.scalars = torch.tensor(state["scalars"], dtype=torch.float32)
        self.load = [torch.tensor(x, dtype=torch.float32) for x in state["load"]]

    def summary(self) -> MoESummary | None:
        """The run's averages (None when no step routed anything)."""
        if not self.steps or self.scalars is None:
            return None
        dropped, entropy, lb, z = (self.scalars / self.steps).tolist()
        shares = [(x / x.sum().clamp_min(1)).tolist() for x in self.load]
        cvs = [float(x.std(unbiased=False) / x.mean().clamp_min(1e-9)) for x in self.load]
        maxes = [float(x.max() / x.mean().clamp_min(1e-9)) for x in self.load]
        return MoESummary(
            num_layers=len(self.load),
            load_cv=statistics.fmean(cvs),
            max_load_ratio=statistics.fmean(maxes),
            dropped_fraction=dropped,
            router_entropy=entropy,
            load_balance_loss=lb,
            z_loss=z,
            expert_load=shares,
        )
