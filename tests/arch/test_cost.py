"""Cost model: exact counts for small hand-checked cases and the published GLaM size tables."""

from __future__ import annotations

import pytest

from brainsearch.arch import Architecture, cost, preset


def _arch(
    block: list[dict[str, object]],
    d: int = 16,
    vocab: int = 10,
    seq: int = 4,
    blocks: int = 1,
    tied: bool = True,
) -> Architecture:
    return Architecture.model_validate(
        {
            "d_model": d,
            "vocab_size": vocab,
            "seq_len": seq,
            "num_blocks": blocks,
            "block": block,
            "tie_embeddings": tied,
        }
    )


def test_hand_counted_small_model() -> None:
    d = 16
    arch = _arch(
        [
            {"type": "attention", "heads": 2, "head_dim": 4},  # 4*16*8 = 512, + norm 16
            {"type": "ffn", "hidden": 32, "activation": "swiglu"},  # 3*16*32 = 1536, + norm 16
            {"type": "moe", "hidden": 8, "experts": 4, "gating": "top1", "activation": "relu"},
            # router 16*4 = 64, experts 4 * 2*16*8 = 1024, + norm 16; activated: 64 + 256 + 16
        ],
        d=d,
        blocks=2,
    )
    c = cost(arch)
    per_block_total = 528 + 1552 + (64 + 1024 + 16)
    per_block_activated = 528 + 1552 + (64 + 256 + 16)
    assert c.params_total == 2 * per_block_total + d
    assert c.params_activated == 2 * per_block_activated + d
    assert c.params_embedding == 10 * d
    assert c.num_attention == 2 and c.num_ffn == 2 and c.num_moe == 2
    # 6 x (activated + head) + 12 x seq x d_attn per attention layer.
    assert c.flops_per_token == 6 * (c.params_activated + d * 10) + 2 * 12 * 4 * 8


def test_untied_head_doubles_embedding_params() -> None:
    block = [{"type": "ffn", "hidden": 8}]
    assert cost(_arch(block, tied=False)).params_embedding == 2 * cost(_arch(block)).params_embedding


def test_low_rank_factorisation_counts_u_and_v() -> None:
    full = cost(_arch([{"type": "ffn", "hidden": 64}], d=32)).params_total
    low = cost(_arch([{"type": "ffn", "hidden": 64, "rank": 4}], d=32)).params_total
    assert full - 32 - 32 == 2 * 32 * 64
    assert low - 32 - 32 == 2 * 4 * (32 + 64)


def test_expert_choice_activates_capacity_factor_experts() -> None:
    def moe(gating: str, cf: float) -> int:
        arch = _arch([{"type": "moe", "hidden": 8, "experts": 8, "gating": gating, "capacity_factor": cf}])
        return cost(arch).params_activated

    expert = 2 * 16 * 8
    assert moe("expert_choice", 2.0) - moe("expert_choice", 1.0) == expert
    assert moe("top2", 1.0) - moe("top1", 1.0) == expert
    assert moe("top2", 1.0) == moe("expert_choice", 2.0)


def test_padded_flops_count_capacity_slots() -> None:
    arch = _arch([{"type": "moe", "hidden": 8, "experts": 8, "gating": "top2", "capacity_factor": 1.5}])
    c = cost(arch)
    expert = 2 * 16 * 8
    assert c.flops_per_token_padded - c.flops_per_token == 6 * round((1.5 * 2 - 2) * expert)


def test_memory_grows_with_batch_and_shrinks_in_bf16() -> None:
    arch = preset("glam")
    assert cost(arch, batch_size=16).memory_bytes > cost(arch, batch_size=8).memory_bytes
    assert cost(arch, precision="bf16").memory_bytes < cost(arch).memory_bytes
    # Training state alone: 16 bytes per parameter.
    c = cost(arch)
    assert c.memory_bytes > 16 * c.params_all


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        cost(preset("dense"), batch_size=0)


# GLaM (arXiv 2112.06905) Table 4 / Expert Choice (arXiv 2202.09368) Table 1: (total, activated), no embeddings.
PUBLISHED = {
    "glam-1.7b-64e": (27e9, 1.879e9),
    "glam-8b-64e": (143e9, 9.8e9),
    "glam-0.1b-64e": (1.9e9, 145e6),
    "glam-0.1b": (130e6, 130e6),
}


@pytest.mark.parametrize("name", ["glam-0.1b-64e", "glam-1.7b-64e", "glam-8b-64e"])
def test_total_params_match_published_tables_within_3_percent(name: str) -> None:
    published_total, _ = PUBLISHED[name]
    assert cost(preset(name)).params_total == pytest.approx(published_total, rel=0.03)


def test_activated_params_8b_64e_within_3_percent() -> None:
    assert cost(preset("glam-8b-64e")).params_activated == pytest.approx(9.8e9, rel=0.03)


@pytest.mark.parametrize("name", ["glam-1.7b-64e", "glam-8b-64e"])
def test_activated_params_with_32k_embedding_match_published(name: str) -> None:
    """The 1.7B row's activated count (1.879B) is 3.6% above the non-embedding count; adding a 32k-token embedding
    (which those tables appear to include in the activated column) lands both large rows within 1%."""
    c = cost(preset(name))
    assert c.params_activated + c.params_embedding == pytest.approx(PUBLISHED[name][1], rel=0.01)


@pytest.mark.parametrize("name", ["glam-0.1b", "glam-0.1b-64e"])
def test_small_glam_rows_known_deviation(name: str) -> None:
    """Known deviation: the 0.1B rows' activated counts (130M dense, 145M) sit 12-13% above this convention's
    113M / 128M, and no single convention found fits them together with the large rows. The test pins how far off
    we are so a change to the counting convention is noticed."""
    c = cost(preset(name))
    published = PUBLISHED[name][1]
    assert 0.10 < (published - c.params_activated) / published < 0.15


def test_glam_proxy_matches_reference_100m_32e_total() -> None:
    # REFERENCE.md: GLaM 0.1B/32E has 1.0B total parameters.
    assert cost(preset("glam")).params_total == pytest.approx(1.0e9, rel=0.03)


def test_causal_expert_choice_costs_more_when_the_batch_is_small() -> None:
    """Per-position expert choice takes at least one token per expert per position: with B * cf < E each token
    meets E / B experts on average, which padded FLOPs and memory count."""
    arch = _arch([{"type": "moe", "hidden": 8, "experts": 32, "gating": "expert_choice", "capacity_factor": 1.0}])
    expert = 2 * 16 * 8
    small, large = cost(arch, batch_size=8), cost(arch, batch_size=64)
    assert small.params_activated == large.params_activated  # the architecture's nominal count
    assert large.flops_per_token_padded == large.flops_per_token
    assert small.flops_per_token_padded - small.flops_per_token == 6 * (32 / 8 - 1) * expert
