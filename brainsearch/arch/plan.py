"""The memory plan of a training run: how the global batch is cut into micro-batches and whether blocks are
recomputed in the backward (activation checkpointing), chosen from the cost model's peak-memory estimate so that
any architecture fits the device's memory before anything is allocated. The global batch never changes.

Candidates are the micro-batches that divide the batch, largest first (fewer, larger forwards are faster). The
checkpointing policy ``auto`` takes the largest micro-batch that fits without checkpointing and checkpoints (about a
third more compute) only when none does; ``off`` never checkpoints, ``on`` always.

Causal expert choice routes per micro-batch: every expert takes ``k = ceil(m * cf / E)`` of the ``m`` rows at each
position (:func:`brainsearch.arch.spec.expert_choice_k`), so a micro-batch can change a layer's effective capacity
factor ``E * k / m`` - the model trained would not be the one the full batch trains. Micro-batches that keep every
expert-choice layer's effective capacity factor equal to the full batch's are preferred; the others are taken only
when none of those fits, and the plan says so (``capacity_preserved``).

A plan is for one :class:`~brainsearch.arch.cost.TrainingRecipe` (the state's dtype and optimiser, and the FSDP2
shards): with ``shards = N`` each device takes ``batch_size // N`` sequences and the micro-batches divide that
share; a recipe stepping the optimiser inside the backward runs one backward per step (the whole share). Which
recipe and how many devices is :mod:`brainsearch.arch.devices`' choice.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import Precision, TrainingRecipe, cost
from brainsearch.arch.spec import Architecture, MoESpec
from brainsearch.errors import ResourceError

__all__ = [
    "RECIPES",
    "CheckpointingPolicy",
    "MemoryPlan",
    "NoPlanFits",
    "TrainingRecipe",
    "effective_capacity_factors",
    "min_memory_bytes",
    "plan_memory",
]

CheckpointingPolicy = Literal["off", "auto", "on"]


# The single-device recipes, leanest last: the proxy's (fp32 weights, AdamW: 16 bytes of state per parameter), bf16
# weights and gradients with factored Adafactor (about 4), and the same stepping inside the backward (about 2 plus
# the largest gradient).
RECIPES: dict[str, TrainingRecipe] = {
    "fp32-adamw": TrainingRecipe(),
    "bf16-adafactor": TrainingRecipe(param_dtype="bf16", optimizer="adafactor"),
    "bf16-adafactor-fused": TrainingRecipe(param_dtype="bf16", optimizer="adafactor", optimizer_in_backward=True),
}


class NoPlanFits(ResourceError):
    """No micro-batch (with the allowed checkpointing) brings the estimated training memory under the limit."""

    def __init__(self, smallest: int, limit_bytes: int, micro_batch: int, checkpointing: bool) -> None:
        how = f"micro-batch {micro_batch}" + (", activation checkpointing" if checkpointing else "")
        super().__init__(
            f"estimated training memory {smallest / 2**30:.2f} GiB (the smallest plan: {how}) "
            f"exceeds the limit {limit_bytes / 2**30:.2f} GiB"
        )
        self.smallest_bytes, self.limit_bytes = smallest, limit_bytes


class MemoryPlan(BaseModel):
    """How one step of ``batch_size`` sequences runs: ``batch_size // micro_batch`` forwards and backwards of
    ``micro_batch`` sequences, blocks recomputed when ``checkpointing``; ``memory_bytes`` is the cost model's peak
    estimate for it, ``limit_bytes`` what it had to fit. ``capacity_preserved``: every expert-choice layer routes
    with the full batch's effective capacity factor (always true without expert choice)."""

    model_config = ConfigDict(frozen=True)
    batch_size: int
    micro_batch: int
    checkpointing: bool
    precision: Precision
    memory_bytes: int
    limit_bytes: int
    capacity_preserved: bool = True
    recipe: TrainingRecipe = TrainingRecipe()

    @property
    def num_micro_batches(self) -> int:
        """Forwards per optimiser step on each device (gradient accumulation); with ``recipe.shards`` devices each
        takes ``batch_size // shards`` sequences of the global batch."""
        return self.batch_size // self.recipe.shards // self.micro_batch


def effective_capacity_factors(arch: Architecture, batch: int) -> tuple[Fraction, ...]:
    """Each expert-choice layer's effective capacity factor ``E * k / batch`` when routing ``batch`` sequences
    (exact fractions, so equal factors compare equal); empty without expert choice."""
    return tuple(
        Fraction(layer.experts * layer.expert_choice_k(batch), batch)
        for layer in arch.block
        if isinstance(layer, MoESpec) and layer.top_k is None
    )


def _divisors_descending(n: int) -> list[int]:
    return [m for m in range(n, 0, -1) if n % m == 0]


def _micro_batches(batch_size: int, recipe: TrainingRecipe, micro_batch: int | None) -> list[int]:
    """The micro-batches a plan may use, largest first: divisors of each device's share of the batch (only the
    whole share when the optimiser steps in the backward: one backward per step); validates the arguments."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size % recipe.shards:
        raise ValueError(f"shards ({recipe.shards}) must divide batch_size ({batch_size})")
    share = batch_size // recipe.shards
    if micro_batch is not None and (micro_batch < 1 or share % micro_batch):
        what = f"batch_size {batch_size}" if recipe.shards == 1 else f"batch_size // shards ({share})"
        raise ValueError(f"micro_batch {micro_batch} does not divide {what}")
    if recipe.optimizer_in_backward:
        if micro_batch not in (None, share):
            raise ValueError(
                f"micro_batch {micro_batch}: a recipe stepping in the backward runs one backward per step, "
                f"micro_batch {share}"
            )
        return [share]
    return [micro_batch] if micro_batch is not None else _divisors_descending(share)


def plan_memory(
    arch: Architecture,
    batch_size: int,
    precision: Precision,
    limit_bytes: int,
    *,
    checkpointing: CheckpointingPolicy = "auto",
    micro_batch: int | None = None,
    recipe: TrainingRecipe = TrainingRecipe(),  # noqa: B008 (frozen: one shared default is safe)
) -> MemoryPlan:
    """The fastest plan with ``recipe`` whose estimated peak memory per device is at most ``limit_bytes``: see the
    module docstring for the order. A given ``micro_batch`` (which must divide each device's share of the batch,
    ``batch_size // recipe.shards``) is the only candidate; a recipe stepping in the backward allows only the
    whole share.

    Raises :class:`NoPlanFits` when nothing fits, ``ValueError`` for a micro-batch that does not divide the share.
    """
    sizes = _micro_batches(batch_size, recipe, micro_batch)
    full = effective_capacity_factors(arch, batch_size)
    preserving = [m for m in sizes if effective_capacity_factors(arch, m) == full]
    others = [m for m in sizes if m not in preserving]
    modes = {"off": [False], "auto": [False, True], "on": [True]}[checkpointing]
    smallest: tuple[int, int, bool] | None = None
    for group in (preserving, others):
        for ckpt in modes:
            for m in group:
                estimate = cost(
                    arch, batch_size, precision, micro_batch=m, checkpointing=ckpt, recipe=recipe
                ).memory_bytes
                smallest = min(smallest or (estimate, m, ckpt), (estimate, m, ckpt))
                if estimate <= limit_bytes:
                    return MemoryPlan(
                        batch_size=batch_size,
                        micro_batch=m,
                        checkpointing=ckpt,
                        precision=precision,
                        memory_bytes=estimate,
                        limit_bytes=int(limit_bytes),
                        capacity_preserved=group is preserving,
                        recipe=recipe,
                    )
    assert smallest is not None
    raise NoPlanFits(smallest[0], int(limit_bytes), smallest[1], smallest[2])


def min_memory_bytes(
    arch: Architecture,
    batch_size: int,
    precision: Precision,
    recipe: TrainingRecipe = TrainingRecipe(),  # noqa: B008 (frozen: one shared default is safe)
) -> int:
    """The estimated peak memory per device of the smallest plan with ``recipe`` (activation checkpointing,
    usually micro-batch 1; expert choice can make a larger micro-batch no bigger): a device with less memory cannot
    train ``arch`` that way at all, which is what the space's constraint checker asks."""
    return min(
        cost(arch, batch_size, precision, micro_batch=m, checkpointing=True, recipe=recipe).memory_bytes
        for m in _micro_batches(batch_size, recipe, None)
    )
