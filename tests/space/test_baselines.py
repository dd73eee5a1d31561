"""Baselines: GLaM's and a dense block, valid and at the space's own proxy scale, in the middle of its widths."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainsearch.arch import Architecture, cost
from brainsearch.space import load_space, violations
from brainsearch.space.baselines import baseline_architectures, describe_budget, trial_budget
from brainsearch.space.constraints import flops_ratio_violation
from brainsearch.space.schema import SearchSpace


def test_tiny_baselines_are_glam_and_dense_at_proxy_scale() -> None:
    space = load_space("tiny")
    archs = baseline_architectures(space)
    glam, dense = archs["glam"], archs["dense"]
    assert glam.pattern == "afagafag" and dense.pattern == "afafafaf"
    for arch in (glam, dense):
        assert (arch.d_model, arch.vocab_size, arch.seq_len, arch.num_blocks) == (48, 256, 64, 1)
    moe = next(layer for layer in glam.block if layer.type == "moe")
    assert (moe.gating, moe.capacity_factor, moe.experts, moe.hidden) == ("top2", 2.0, 4, 96)
    assert cost(dense).params_total == cost(dense).params_activated
    assert cost(glam).params_total > cost(dense).params_total


def test_every_bundled_space_has_buildable_baselines(bundled_space_path: Path) -> None:
    space = load_space(bundled_space_path)
    archs = baseline_architectures(space)
    assert "dense" in archs and ("glam" in archs) == (space.block.moe is not None)
    for arch in archs.values():
        assert len(arch.block) == space.block.max_slots or arch.pattern == "af"
        assert arch.num_blocks == space.proxy.num_blocks


@pytest.mark.parametrize("slots", [1, 3, 5])
def test_short_blocks_still_hold_an_moe_layer(slots: int) -> None:
    doc = load_space("tiny").model_dump(mode="json")
    doc["block"]["slots"] = {"kind": "fixed", "value": slots}
    doc["constraints"]["min_layers"] = {}
    archs = baseline_architectures(SearchSpace.model_validate(doc))
    assert len(archs["glam"].block) == slots and "g" in archs["glam"].pattern
    assert "g" not in archs["dense"].pattern


def test_the_equal_compute_budget_is_the_reference_baselines_flops_at_its_tokens() -> None:
    """Pass: tiny's budget (GLaM's compute at 64K tokens) is GLaM's FLOPs per token times its 125 steps of 512
    tokens, so GLaM itself trains exactly 64K tokens; against the dense reference it is dense's; a token budget
    stays as it is; each reads as it means."""
    space = load_space("tiny")
    glam = baseline_architectures(space)["glam"]
    assert trial_budget(space).flops == cost(glam, batch_size=8).flops_per_token * 125 * 512
    assert describe_budget(space) == "the glam baseline's compute at 64K tokens (45.5 GFLOP per trial)"
    doc = space.model_dump(mode="json")
    doc["constraints"]["baseline"] = "dense"
    dense_ref = SearchSpace.model_validate(doc)
    dense = baseline_architectures(space)["dense"]
    assert trial_budget(dense_ref).flops == cost(dense, batch_size=8).flops_per_token * 64_000
    doc["proxy"]["budget"] = {"tokens": 1000}
    plain = SearchSpace.model_validate(doc)
    assert trial_budget(plain) == plain.proxy.budget and describe_budget(plain) == "1K tokens"


def test_the_flops_constraint_is_judged_from_the_cost_model() -> None:
    """Pass: max_flops_per_token_ratio rules out a block costing more per token than the limit times GLaM's, with
    the ratio and both costs in the reason, before anything trains; a block within the limit passes."""
    doc = load_space("tiny").model_dump(mode="json")
    doc["constraints"]["max_flops_per_token_ratio"] = 1.2
    space = SearchSpace.model_validate(doc)
    glam = baseline_architectures(space)["glam"]
    assert flops_ratio_violation(space, glam) is None and violations(space, glam) == []
    costly = Architecture.model_validate({**glam.to_dict(), "d_model": 64})
    ratio = cost(costly, batch_size=8).flops_per_token / cost(glam, batch_size=8).flops_per_token
    assert ratio > 1.2
    reason = flops_ratio_violation(space, costly)
    assert reason is not None and reason.endswith("> max_flops_per_token_ratio 1.2")
    assert f"is {ratio:.2f}x the glam baseline's" in reason and reason in violations(space, costly)
