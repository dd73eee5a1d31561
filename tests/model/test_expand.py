"""Lifelong-MoE expansion of a model: compute per token kept, every old weight copied exactly, new experts as noisy
copies (or fresh), new router rows near the mean of the old ones, deterministic in the seed."""

from __future__ import annotations

import copy

import pytest
import torch

from brainsearch.arch import Architecture, MoESpec, cost, preset, scale
from brainsearch.errors import ArchitectureError, InputError
from brainsearch.model import LanguageModel, MoE, build_model
from brainsearch.model.expand import expand_model, expanded_architecture
from tests.model.reference import expert_tensors


def _tiny(name: str = "glam") -> Architecture:
    return scale(preset(name), "cpu-tiny")


def _low_rank_gated() -> Architecture:
    """Top-1 experts with a gated activation and low-rank factors: an expert dim that is not the first one."""
    doc = _tiny("glam").to_dict()
    doc["block"][3].update(gating="top1", activation="swiglu", rank=8)
    return Architecture.from_json(doc)


ARCHS = {"glam": lambda: _tiny("glam"), "brainformer-1": lambda: _tiny("brainformer-1"), "low-rank": _low_rank_gated}


def _moe_layers(model: LanguageModel) -> list[MoE]:
    return [layer for layer in model.layers if isinstance(layer, MoE)]


@pytest.mark.parametrize("name", ARCHS)
def test_expansion_keeps_routing_and_compute_per_token(name: str) -> None:
    arch = ARCHS[name]()
    bigger = expanded_architecture(arch, 3)
    pairs = [(a, b) for a, b in zip(arch.block, bigger.block, strict=True) if isinstance(a, MoESpec)]
    assert pairs
    for old, new in pairs:
        assert isinstance(new, MoESpec) and new.experts == old.experts + 3
        assert (new.top_k, new.gating, new.capacity_factor) == (old.top_k, old.gating, old.capacity_factor)
        assert new.experts_per_token == old.experts_per_token
    assert [layer.type for layer in bigger.block] == [layer.type for layer in arch.block]
    before, after = cost(arch), cost(bigger)
    moe_layers = sum(isinstance(layer, MoESpec) for layer in arch.layers)
    # A token passes through the same number of experts; only the router grows, by d_model per new expert.
    assert after.params_activated - before.params_activated == moe_layers * arch.d_model * 3
    assert after.params_total > before.params_total + moe_layers * arch.d_model * 3
    assert after.params_embedding == before.params_embedding


@pytest.mark.parametrize("name", ARCHS)
def test_expand_model_copies_every_old_weight_exactly(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(ARCHS[name]())
    original = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    bigger = expand_model(model, 3, seed=7)
    assert torch.equal(torch.get_rng_state(), rng), "expansion must not draw from the global RNG"
    assert all(torch.equal(t, original[k]) for k, t in model.state_dict().items()), "the old model is not changed"
    assert bigger.arch == expanded_architecture(model.arch, 3)
    expert_keys = set()
    for (i, old_moe), new_moe in zip(
        [(i, m) for i, m in enumerate(model.layers) if isinstance(m, MoE)], _moe_layers(bigger), strict=True
    ):
        num_old = old_moe.spec.experts
        for (key, old, dim), (_, new, _) in zip(expert_tensors(old_moe), expert_tensors(new_moe), strict=True):
            expert_keys.add(f"layers.{i}.{key}")
            assert new.shape[dim] == num_old + 3
            assert torch.equal(new.detach().narrow(dim, 0, num_old), old.detach())
            added = new.detach().narrow(dim, num_old, 3)
            if key == "router.weight_ED":
                # New rows start near the mean of the old rows, so new experts start rarely chosen.
                torch.testing.assert_close(
                    added, old.detach().mean(0, keepdim=True).expand_as(added), atol=0.01, rtol=0
                )
            else:
                # New expert j is a noisy copy of old expert j mod E, the noise 1% of the tensor's std.
                parents = old.detach().index_select(dim, torch.arange(3) % num_old)
                assert not torch.equal(added, parents)
                assert (added - parents).std() == pytest.approx(0.01 * old.detach().std(), rel=0.3)
    for key, tensor in bigger.state_dict().items():
        if key not in expert_keys:
            assert torch.equal(tensor, original[key]), key
    again, other = expand_model(model, 3, seed=7), expand_model(model, 3, seed=8)
    assert all(
        torch.equal(a, b) for a, b in zip(again.state_dict().values(), bigger.state_dict().values(), strict=True)
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(other.state_dict().values(), bigger.state_dict().values(), strict=True)
    )


def test_random_expert_init_is_not_a_copy() -> None:
    model = build_model(_tiny())
    bigger = expand_model(model, 4, expert_init="random")
    old_w, new_w = _moe_layers(model)[0].experts.w_in_GXD, _moe_layers(bigger)[0].experts.w_in_GXD
    assert torch.equal(new_w[:4], old_w)
    assert not torch.allclose(new_w[4:], old_w, atol=1e-3)


def test_bad_expansion_is_a_clear_error() -> None:
    model = build_model(_tiny())
    with pytest.raises(InputError, match="add_experts: must be at least 1, got 0"):
        expand_model(model, 0)
    with pytest.raises(ArchitectureError, match="experts"):
        expanded_architecture(model.arch, 5000)
