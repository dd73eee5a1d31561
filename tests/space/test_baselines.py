"""Baselines: GLaM's and a dense block, valid and at the space's own proxy scale, in the middle of its widths."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainsearch.arch import cost
from brainsearch.space import load_space
from brainsearch.space.baselines import baseline_architectures
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
