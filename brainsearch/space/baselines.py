"""The baseline blocks a search measures its candidates against, built at the space's own proxy scale, and the
training budget a trial gets when the space asks for equal compute.

Brainformer compares every candidate with GLaM's block trained under the same budget on the same hardware: its step
time bounds the candidates' (``constraints.max_step_time_ratio``) and its loss at a quarter of the budget is the
early-stopping bar. A dense block of the same width is trained too, so the leaderboard shows what sparsity buys.

Both use the space's proxy settings (vocabulary, context, stacked blocks), its largest slot count and the middle
value of each width the space allows (d_model, heads, hidden widths, experts): the baseline sits in the middle of
the space, not at an extreme of it. GLaM's block alternates attention with a gated dense FFN and a top-2 MoE
(capacity factor 2, GELU experts), as in the GLaM paper (arXiv 2112.06905); the dense block replaces each MoE with
the dense FFN.

Equal compute (``proxy.budget.compute: match_baseline``): the reference baseline (``constraints.baseline``) trains
``budget.tokens`` tokens and every trial gets the training FLOPs that costs it (:func:`trial_budget`), the
load-proof counterpart of the paper's equal wall-clock per trial: a block twice as costly per token trains on half
the tokens, so a comparison with the baseline is at the same compute.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from brainsearch._format import fmt_count, fmt_flops
from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture
from brainsearch.space.params import Categorical, Fixed, FloatRange, IntRange
from brainsearch.space.sample import proxy_architecture
from brainsearch.space.schema import AttentionParams, Budget, SearchSpace

__all__ = [
    "BASELINE_NAMES",
    "BaselineName",
    "baseline_architectures",
    "describe_budget",
    "reference_architecture",
    "trial_budget",
]

BaselineName = Literal["glam", "dense"]
BASELINE_NAMES: tuple[BaselineName, ...] = ("glam", "dense")


def _middle(p: Fixed | Categorical | IntRange | FloatRange) -> Any:
    """The middle of a parameter's values: the median choice, the centre of a range (geometric when log)."""
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Categorical):
        values = [v for v in p.choices if v is not None]
        if not values:
            return None
        try:
            ordered = sorted(values)
        except TypeError:
            ordered = values
        return ordered[(len(ordered) - 1) // 2]
    if isinstance(p, IntRange):
        centre = math.sqrt(p.low * p.high) if p.log and p.low > 0 else (p.low + p.high) / 2
        return p.low + p.step * round((centre - p.low) / p.step)
    centre = math.sqrt(p.low * p.high) if p.log and p.low > 0 else (p.low + p.high) / 2
    return centre if p.step is None else p.low + p.step * round((centre - p.low) / p.step)


def baseline_architectures(space: SearchSpace) -> dict[BaselineName, Architecture]:
    """The GLaM block (when the space has MoE layers) and the dense block, at the space's proxy scale."""
    block = space.block
    d_model = int(_middle(block.d_model))
    attention = block.attention or AttentionParams()
    heads = int(_middle(attention.heads))
    head_dim = _middle(attention.head_dim)
    if head_dim is None and d_model % heads:
        head_dim = max(1, d_model // heads)
    dense_hidden = block.ffn.hidden if block.ffn is not None else (block.moe.hidden if block.moe else None)
    hidden = int(_middle(dense_hidden)) if dense_hidden is not None else 4 * d_model
    a: dict[str, Any] = {"type": "attention", "heads": heads, "head_dim": head_dim}
    f: dict[str, Any] = {"type": "ffn", "hidden": hidden, "activation": "geglu"}
    slots = block.max_slots

    def arch(layers: list[dict[str, Any]]) -> Architecture:
        return proxy_architecture(space, d_model, layers)

    out: dict[BaselineName, Architecture] = {}
    if block.moe is not None:
        g: dict[str, Any] = {
            "type": "moe",
            "hidden": int(_middle(block.moe.hidden)),
            "experts": int(_middle(block.moe.experts)),
            "gating": "top2",
            "capacity_factor": 2.0,
            "activation": "gelu",
        }
        if g["experts"] < 2:
            g["gating"] = "top1"
        layers = [[a, f, a, g][i % 4] for i in range(slots)]
        if not any(layer is g for layer in layers):
            layers[-1] = g
        out["glam"] = arch(layers)
    out["dense"] = arch([[a, f][i % 2] for i in range(max(slots, 2))])
    return out


def reference_architecture(space: SearchSpace) -> Architecture | None:
    """The reference baseline's block (``constraints.baseline``) at the space's proxy scale; None when the space
    has none (a GLaM reference in a space without MoE layers)."""
    return baseline_architectures(space).get(space.constraints.baseline)


def trial_budget(space: SearchSpace) -> Budget:
    """The budget every run of the space trains under (trials, baselines, seed runs): ``proxy.budget`` itself, or,
    with ``compute: match_baseline``, the training FLOPs the reference baseline spends on ``budget.tokens`` tokens
    (its FLOPs per token x its tokens rounded up to whole steps, so the baseline trains exactly the steps a token
    budget would give it). Raises ValueError when the space has no reference baseline to match (the loader refuses
    such a space first)."""
    budget = space.proxy.budget
    if not budget.matches_baseline:
        return budget
    reference = reference_architecture(space)
    if reference is None:
        raise ValueError(
            f"compute: match_baseline needs the {space.constraints.baseline} baseline, which this space cannot "
            "build (no MoE layers)"
        )
    assert budget.tokens is not None
    tokens_per_step = space.proxy.batch_size * space.proxy.seq_len
    steps = max(1, math.ceil(budget.tokens / tokens_per_step))
    flops_per_token = cost(reference, batch_size=space.proxy.batch_size).flops_per_token
    return Budget(flops=float(flops_per_token * steps * tokens_per_step))


def describe_budget(space: SearchSpace) -> str:
    """A trial's budget in words: ``the glam baseline's compute at 64K tokens (78.2 GFLOP per trial)``, ``64K tokens``,
    ``2 TFLOP`` or ``3600 s of training``."""
    budget = space.proxy.budget
    if budget.matches_baseline:
        flops = trial_budget(space).flops or 0.0
        return (
            f"the {space.constraints.baseline} baseline's compute at {fmt_count(budget.tokens or 0)} tokens "
            f"({fmt_flops(flops)} per trial)"
        )
    if budget.tokens is not None:
        return f"{fmt_count(budget.tokens)} tokens"
    if budget.flops is not None:
        return fmt_flops(budget.flops)
    return f"{budget.seconds:g} s of training"
