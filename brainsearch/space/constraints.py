"""Checking one architecture against a space's static constraints (the ones known before training)."""

from __future__ import annotations

from brainsearch._format import fmt_bytes, fmt_count, fmt_flops
from brainsearch.arch.cost import cost
from brainsearch.arch.plan import min_memory_bytes
from brainsearch.arch.spec import Architecture
from brainsearch.space.baselines import reference_architecture
from brainsearch.space.schema import SearchSpace

__all__ = ["flops_ratio_violation", "memory_floor", "violations"]


def memory_floor(space: SearchSpace, arch: Architecture) -> int:
    """The least training memory per device ``arch`` needs at the space's batch: its smallest memory plan (one
    sequence per forward, activations recomputed per block). Estimated in fp32, the larger precision, since the
    trial's device is not known here; weights, gradients and optimizer state dominate it either way."""
    return min_memory_bytes(arch, space.proxy.batch_size, "fp32")


def flops_ratio_violation(space: SearchSpace, arch: Architecture) -> str | None:
    """Why ``arch`` breaks ``constraints.max_flops_per_token_ratio`` (None when it does not, or the space sets no
    limit): its training FLOPs per token over the reference baseline's, both from the cost model at the space's
    batch, so the verdict is exact and known before any training (the counterpart of ``max_step_time_ratio`` that
    machine load cannot move)."""
    limit = space.constraints.max_flops_per_token_ratio
    reference = reference_architecture(space) if limit is not None else None
    if limit is None or reference is None:
        return None
    batch = space.proxy.batch_size
    mine, theirs = cost(arch, batch_size=batch).flops_per_token, cost(reference, batch_size=batch).flops_per_token
    if mine <= limit * theirs:
        return None
    return (
        f"flops_per_token {fmt_flops(mine)} is {mine / theirs:.2f}x the {space.constraints.baseline} baseline's "
        f"{fmt_flops(theirs)} > max_flops_per_token_ratio {limit:g}"
    )


def violations(space: SearchSpace, arch: Architecture) -> list[str]:
    """Why ``arch`` breaks ``space.constraints`` (empty when it does not); the step-time limit needs a measurement
    and is checked by the search driver. ``max_memory_bytes`` is memory per device at the micro-batch the trainer
    picks, so only a block that fits at no plan breaks it."""
    c = space.constraints
    k = cost(arch, batch_size=space.proxy.batch_size)
    reasons = []
    if c.max_params_total is not None and k.params_total > c.max_params_total:
        reasons.append(f"params_total {fmt_count(k.params_total)} > max_params_total {fmt_count(c.max_params_total)}")
    if c.max_params_activated is not None and k.params_activated > c.max_params_activated:
        reasons.append(
            f"params_activated {fmt_count(k.params_activated)} > max_params_activated "
            f"{fmt_count(c.max_params_activated)}"
        )
    if c.max_memory_bytes is not None and (floor := memory_floor(space, arch)) > c.max_memory_bytes:
        reasons.append(
            f"memory {fmt_bytes(floor)} at the smallest plan (micro-batch 1, checkpointing) > max_memory_bytes "
            f"{fmt_bytes(c.max_memory_bytes)}"
        )
    if (flops := flops_ratio_violation(space, arch)) is not None:
        reasons.append(flops)
    for layer_type, minimum in c.min_layers.items():
        have = sum(layer.type == layer_type for layer in arch.block)
        if have < minimum:
            reasons.append(f"{have} {layer_type} layers in the block < min_layers.{layer_type} {minimum}")
    return reasons
