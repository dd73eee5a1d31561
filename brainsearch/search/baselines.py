"""The baseline blocks a search measures its candidates against, built at the space's own proxy scale.

Brainformer compares every candidate with GLaM's block trained under the same budget on the same hardware: its step
time bounds the candidates' (``constraints.max_step_time_ratio``) and its loss at a quarter of the budget is the
early-stopping bar. A dense block of the same width is trained too, so the leaderboard shows what sparsity buys.

Both use the space's proxy settings (vocabulary, context, stacked blocks), its largest slot count and the middle
value of each width the space allows (d_model, heads, hidden widths, experts): the baseline sits in the middle of
the space, not at an extreme of it. GLaM's block alternates attention with a gated dense FFN and a top-2 MoE
(capacity factor 2, GELU experts), as in the GLaM paper (arXiv 2112.06905); the dense block replaces each MoE with
the dense FFN.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from brainsearch.arch.spec import Architecture
from brainsearch.space.params import Categorical, Fixed, FloatRange, IntRange
from brainsearch.space.sample import proxy_architecture
from brainsearch.space.schema import AttentionParams, SearchSpace

__all__ = ["BASELINE_NAMES", "BaselineName", "baseline_architectures"]

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
