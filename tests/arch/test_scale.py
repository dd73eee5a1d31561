"""Scale presets: the paper's x2 / x4 scale-up rule and the CPU shrink keep the block's structure."""

from __future__ import annotations

import pytest

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.arch.scale import SCALE_PRESETS, dense_twin
from brainsearch.errors import ArchitectureError


@pytest.mark.parametrize(("name", "factor", "blocks"), [("1b-64e", 2, 6), ("8b-64e", 4, 8)])
def test_scale_up_multiplies_dims_and_stacks_more_blocks(name: str, factor: int, blocks: int) -> None:
    base = preset("brainformer-1")
    big = scale(base, name)
    assert big.d_model == factor * base.d_model and big.num_blocks == blocks
    assert big.pattern == base.pattern
    for small, large in zip(base.block, big.block, strict=True):
        if small.type == "attention":
            assert large.type == "attention" and large.d_attn == factor * small.d_attn
        else:
            assert large.type == small.type and large.hidden == factor * small.hidden
        if small.type == "moe":
            assert large.type == "moe" and large.experts == 64 and large.gating == small.gating
            assert large.capacity_factor == small.capacity_factor


@pytest.mark.parametrize("name", ["cpu-tiny", "cpu-small"])
@pytest.mark.parametrize("arch_name", ["dense", "glam", "brainformer-1", "brainformer-2"])
def test_cpu_presets_shrink_to_fixed_widths(name: str, arch_name: str) -> None:
    base, p = preset(arch_name), SCALE_PRESETS[name]
    small = scale(base, name)
    assert small.d_model == p.d_model and small.seq_len == p.seq_len and small.vocab_size == 256
    assert small.pattern == base.pattern
    assert all(layer.head_dim >= 16 for layer in small.block if layer.type == "attention")
    assert cost(small).params_total < 10e6


def test_proxy_preset_keeps_dims_and_sets_32_experts() -> None:
    glam = preset("glam")
    assert scale(glam, "100m-32e").block == glam.block


def test_unknown_scale_preset() -> None:
    with pytest.raises(ArchitectureError, match="unknown scale preset 'cpu-huge'; known: cpu-tiny"):
        scale(preset("glam"), "cpu-huge")


def test_scaling_past_the_spec_limits_is_an_architecture_error() -> None:
    wide = preset("glam").model_copy(update={"d_model": 20_000})
    with pytest.raises(ArchitectureError, match="scaled to 8b-64e: d_model: Input should be less than or equal"):
        scale(wide, "8b-64e")


@pytest.mark.parametrize("arch_name", ["glam", "brainformer-1", "brainformer-2"])
def test_dense_twin_replaces_each_moe_by_an_ffn_of_its_expert_widths(arch_name: str) -> None:
    arch = preset(arch_name)
    twin = dense_twin(arch)
    assert twin.pattern == arch.pattern.replace("g", "f")
    assert (twin.d_model, twin.vocab_size, twin.seq_len, twin.num_blocks, twin.tie_embeddings) == (
        arch.d_model,
        arch.vocab_size,
        arch.seq_len,
        arch.num_blocks,
        arch.tie_embeddings,
    )
    for old, new in zip(arch.block, twin.block, strict=True):
        if old.type == "moe":
            assert new.type == "ffn"
            assert (new.hidden, new.activation, new.rank) == (old.hidden, old.activation, old.rank)
        else:
            assert new == old
    assert Architecture.from_json(twin.to_json()).digest == twin.digest  # canonical like any other


def test_dense_twin_keeps_low_rank_and_activates_what_a_top1_moe_does_without_its_router() -> None:
    doc = preset("glam").to_dict()
    for layer in doc["block"]:
        if layer["type"] == "moe":
            layer.update(gating="top1", rank=64)
    arch = Architecture.from_json(doc)
    twin = dense_twin(arch)
    assert [layer.rank for layer in twin.block if layer.type == "ffn"][-1] == 64
    routers = sum(arch.d_model * layer.experts for layer in arch.layers if layer.type == "moe")
    assert cost(twin).params_activated == cost(arch).params_activated - routers
    assert cost(twin).params_total < cost(arch).params_total


def test_dense_twin_of_a_dense_architecture_is_itself() -> None:
    dense = preset("dense")
    assert dense_twin(dense) == dense and dense_twin(dense).digest == dense.digest
