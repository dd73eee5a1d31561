"""Scale presets: the same block at another size (Brainformer, arXiv 2306.00008, section 4).

The paper's scale-up rule multiplies a proxy-scale block's model and hidden dims by 2 and 4 and stacks it 6 and 8
times with 64 experts (1B/64E, 8B/64E). The CPU presets shrink a block to fixed widths instead, keeping every ratio
(hidden / d_model, layer types, gating, capacity, activation), so any architecture can be tried on a laptop.

| preset | d_model | blocks | experts | seq_len | vocab | batch | default budget |
|---|---|---|---|---|---|---|---|
| cpu-tiny | 48 | 1 | 4 | 64 | 256 | 8 | 64K tokens (seconds on 2 CPU cores) |
| cpu-small | 128 | 2 | 8 | 128 | 256 | 16 | 200K tokens (about a minute on 2 CPU cores) |
| 100m-32e | x1 | 3 | 32 | 1024 | 32000 | 64 | 100M tokens (GPU) |
| 1b-64e | x2 | 6 | 64 | 1024 | 32000 | 64 | 400M tokens (GPU) |
| 8b-64e | x4 | 8 | 64 | 1024 | 32000 | 64 | 1B tokens (GPUs) |

A multiplier applies to the architecture's own dims (meant for a block at the 100M/32E proxy scale). Attention
scales its width (heads x head_dim) like d_model: the head width scales, kept between 16 and 256 (a multiple of 8;
narrower heads run far below matmul speed in fused attention kernels), and the number of heads absorbs the rest.
Hidden widths are rounded to multiples of 8.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from brainsearch._validation import problems_from_validation_error
from brainsearch.arch.spec import Architecture, FFNSpec, MoESpec
from brainsearch.errors import ArchitectureError, Problem

__all__ = ["SCALE_PRESETS", "ScalePreset", "dense_twin", "scale", "scale_preset"]


@dataclass(frozen=True)
class ScalePreset:
    """A target size: either an absolute ``d_model`` or a ``factor`` on the architecture's dims."""

    name: str
    num_blocks: int
    experts: int
    seq_len: int
    vocab_size: int
    batch_size: int
    budget_tokens: float
    d_model: int | None = None
    factor: float | None = None


SCALE_PRESETS: dict[str, ScalePreset] = {
    p.name: p
    for p in (
        ScalePreset(
            "cpu-tiny",
            num_blocks=1,
            experts=4,
            seq_len=64,
            vocab_size=256,
            batch_size=8,
            budget_tokens=64e3,
            d_model=48,
        ),
        ScalePreset(
            "cpu-small",
            num_blocks=2,
            experts=8,
            seq_len=128,
            vocab_size=256,
            batch_size=16,
            budget_tokens=200e3,
            d_model=128,
        ),
        ScalePreset(
            "100m-32e",
            num_blocks=3,
            experts=32,
            seq_len=1024,
            vocab_size=32000,
            batch_size=64,
            budget_tokens=100e6,
            factor=1,
        ),
        ScalePreset(
            "1b-64e",
            num_blocks=6,
            experts=64,
            seq_len=1024,
            vocab_size=32000,
            batch_size=64,
            budget_tokens=400e6,
            factor=2,
        ),
        ScalePreset(
            "8b-64e",
            num_blocks=8,
            experts=64,
            seq_len=1024,
            vocab_size=32000,
            batch_size=64,
            budget_tokens=1e9,
            factor=4,
        ),
    )
}


def scale_preset(name: str) -> ScalePreset:
    """The named scale preset; an unknown name raises :class:`ArchitectureError` listing the known ones."""
    try:
        return SCALE_PRESETS[name]
    except KeyError:
        known = ", ".join(SCALE_PRESETS)
        raise ArchitectureError([Problem("preset", f"unknown scale preset {name!r}; known: {known}")]) from None


def _round(x: float, multiple: int) -> int:
    return max(multiple, multiple * round(x / multiple))


def scale(arch: Architecture, preset: ScalePreset | str) -> Architecture:
    """``arch`` resized to ``preset``: same layer sequence and routing, new widths, depth, experts and context."""
    p = scale_preset(preset) if isinstance(preset, str) else preset
    s = p.d_model / arch.d_model if p.d_model is not None else float(p.factor or 1)
    block = []
    for layer in arch.block:
        doc = layer.model_dump(exclude_none=True)
        if layer.type == "attention":
            assert layer.head_dim is not None
            head_dim = min(256, max(16, _round(layer.head_dim * s, 8)))
            doc["head_dim"] = head_dim
            doc["heads"] = max(1, round(layer.heads * layer.head_dim * s / head_dim))
        else:
            doc["hidden"] = _round(layer.hidden * s, 8)
            if layer.rank is not None:
                doc["rank"] = _round(layer.rank * s, 8)
            if layer.type == "moe":
                doc["experts"] = p.experts
        block.append(doc)
    doc = {
        "d_model": p.d_model if p.d_model is not None else _round(arch.d_model * s, 8),
        "vocab_size": p.vocab_size,
        "seq_len": p.seq_len,
        "num_blocks": p.num_blocks,
        "block": block,
        "tie_embeddings": arch.tie_embeddings,
    }
    try:
        return Architecture.model_validate(doc)
    except ValidationError as exc:
        raise ArchitectureError(problems_from_validation_error(exc, f"scaled to {p.name}")) from None


def dense_twin(arch: Architecture) -> Architecture:
    """``arch`` with every MoE sub-layer replaced by a dense FFN of the same ``hidden``, ``activation`` and ``rank``.

    The source model of sparse upcycling (Komatsuzaki et al. 2022, arXiv 2212.05055): trained first, then each of
    its FFNs is copied into every expert of the MoE layer in its place (:func:`brainsearch.model.upcycle.upcycle`).
    Its activated parameters per token are a top-1 MoE's without the router (one expert's FFN per token); a top-2 or
    expert-choice MoE activates more. Everything else (widths, depth, attention, dense FFNs, context, vocabulary,
    tied embeddings) is unchanged; an architecture without MoE sub-layers is its own twin.
    """
    block = [
        FFNSpec(hidden=layer.hidden, activation=layer.activation, rank=layer.rank)
        if isinstance(layer, MoESpec)
        else layer
        for layer in arch.block
    ]
    # Validated again (not model_copy), so the twin is canonical like any other Architecture.
    return Architecture.model_validate(
        {**arch.to_dict(), "block": [layer.model_dump(exclude_none=True) for layer in block]}
    )
