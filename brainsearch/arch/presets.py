"""Named architectures: the baselines and the paper's discovered blocks at the 100M/32E proxy scale, and the
published GLaM sizes used to check the cost model.

Proxy scale (Brainformer, arXiv 2306.00008, section 4): an 8-sub-layer block stacked 3x, 32 experts, sequence
length 1024; the vocabulary (32k) is a choice of ours (the paper does not publish one). Where the paper does not
give an activation, dense FFNs use gated GELU and experts plain GELU, as in GLaM (arXiv 2112.06905).
"""

from __future__ import annotations

from collections.abc import Callable

from brainsearch.arch.spec import Architecture, AttentionSpec, FFNSpec, MoESpec
from brainsearch.errors import ArchitectureError, Problem

__all__ = ["PRESETS", "preset", "preset_names"]

PROXY_VOCAB = 32_000
PROXY_SEQ_LEN = 1024
PROXY_EXPERTS = 32


def _glam_block(d_model: int, hidden: int, heads: int, head_dim: int, experts: int) -> list[dict[str, object]]:
    """GLaM's pair of transformer layers: attention + gated dense FFN, attention + top-2 MoE."""
    attention = AttentionSpec(heads=heads, head_dim=head_dim).model_dump()
    return [
        attention,
        FFNSpec(hidden=hidden, activation="geglu").model_dump(),
        attention,
        MoESpec(hidden=hidden, experts=experts, gating="top2", capacity_factor=2.0, activation="gelu").model_dump(),
    ]


def _arch(d_model: int, block: list[dict[str, object]], num_blocks: int, vocab: int = PROXY_VOCAB) -> Architecture:
    return Architecture.model_validate(
        {
            "d_model": d_model,
            "vocab_size": vocab,
            "seq_len": PROXY_SEQ_LEN,
            "num_blocks": num_blocks,
            "block": block,
        }
    )


def _dense() -> Architecture:
    attention = {"type": "attention", "heads": 12, "head_dim": 64}
    ffn = {"type": "ffn", "hidden": 3072, "activation": "geglu"}
    return _arch(768, [attention, ffn] * 4, num_blocks=3)


def _glam() -> Architecture:
    return _arch(768, _glam_block(768, 3072, 12, 64, PROXY_EXPERTS) * 2, num_blocks=3)


def _brainformer_1() -> Architecture:
    # Paper, Figure 8: a f g g g f f f; d=1024, ffn 1536, moe 2048, expert choice, capacity factor 1, 20 heads.
    a = {"type": "attention", "heads": 20, "head_dim": 64}
    f = {"type": "ffn", "hidden": 1536, "activation": "geglu"}
    g = {
        "type": "moe",
        "hidden": 2048,
        "experts": PROXY_EXPERTS,
        "gating": "expert_choice",
        "capacity_factor": 1.0,
        "activation": "gelu",
    }
    return _arch(1024, [a, f, g, g, g, f, f, f], num_blocks=3)


def _brainformer_2() -> Architecture:
    # Paper, Figure 9: f a g a f g f a; d=1024, ffn 2048, moe 2048, expert choice, capacity factor 2, 16 heads.
    a = {"type": "attention", "heads": 16, "head_dim": 64}
    f = {"type": "ffn", "hidden": 2048, "activation": "geglu"}
    g = {
        "type": "moe",
        "hidden": 2048,
        "experts": PROXY_EXPERTS,
        "gating": "expert_choice",
        "capacity_factor": 2.0,
        "activation": "gelu",
    }
    return _arch(1024, [f, a, g, a, f, g, f, a], num_blocks=3)


def _glam_published(
    layers: int, d_model: int, hidden: int, heads: int, head_dim: int, experts: int | None
) -> Callable[[], Architecture]:
    def build() -> Architecture:
        if experts is None:
            a = {"type": "attention", "heads": heads, "head_dim": head_dim}
            return _arch(d_model, [a, {"type": "ffn", "hidden": hidden, "activation": "geglu"}], layers)
        return _arch(d_model, _glam_block(d_model, hidden, heads, head_dim, experts), layers // 2)

    return build


PRESETS: dict[str, Callable[[], Architecture]] = {
    "dense": _dense,
    "glam": _glam,
    "brainformer-1": _brainformer_1,
    "brainformer-2": _brainformer_2,
    # GLaM, arXiv 2112.06905, Table 4 (the sizes the cost model is checked against).
    "glam-0.1b": _glam_published(12, 768, 3072, 12, 64, None),
    "glam-0.1b-64e": _glam_published(12, 768, 3072, 12, 64, 64),
    "glam-1.7b-64e": _glam_published(24, 2048, 8192, 16, 128, 64),
    "glam-8b-64e": _glam_published(32, 4096, 16384, 32, 128, 64),
}


def preset_names() -> list[str]:
    """Names accepted by :func:`preset`."""
    return list(PRESETS)


def preset(name: str) -> Architecture:
    """The named preset; an unknown name raises :class:`ArchitectureError` listing the known ones."""
    try:
        factory = PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ArchitectureError([Problem("preset", f"unknown preset {name!r}; known: {known}")]) from None
    return factory()
