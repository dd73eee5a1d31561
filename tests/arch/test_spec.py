"""Architecture: canonical JSON, stable digest, validation errors that name the field."""

from __future__ import annotations

import json

import pytest

from brainsearch.arch import Architecture, preset, preset_names
from brainsearch.arch.spec import MoESpec, expert_choice_k
from brainsearch.errors import ArchitectureError

DOC = {
    "d_model": 768,
    "vocab_size": 256,
    "seq_len": 512,
    "num_blocks": 3,
    "block": [
        {"type": "attention", "heads": 12, "head_dim": 64},
        {"type": "ffn", "hidden": 3072, "activation": "geglu"},
        {
            "type": "moe",
            "hidden": 3072,
            "experts": 32,
            "gating": "top2",
            "capacity_factor": 2.0,
            "activation": "gelu",
        },
    ],
}


def test_design_example_parses_and_round_trips() -> None:
    arch = Architecture.from_json(DOC)
    assert arch.pattern == "afg"
    assert Architecture.from_json(arch.to_json()) == arch
    assert Architecture.from_json(json.dumps(DOC)) == arch
    assert len(arch.layers) == 9


def test_head_dim_defaults_to_d_model_over_heads_and_is_canonical() -> None:
    without = {**DOC, "block": [{"type": "attention", "heads": 12}]}
    with_dim = {**DOC, "block": [{"type": "attention", "heads": 12, "head_dim": 64}]}
    a, b = Architecture.from_json(without), Architecture.from_json(with_dim)
    assert a == b and a.digest == b.digest and a.to_json() == b.to_json()


def test_capacity_factor_int_and_float_give_one_digest() -> None:
    as_int = json.loads(json.dumps(DOC))
    as_int["block"][2]["capacity_factor"] = 2
    assert Architecture.from_json(as_int).digest == Architecture.from_json(DOC).digest


def test_digest_changes_with_any_field() -> None:
    other = json.loads(json.dumps(DOC))
    other["block"][2]["experts"] = 16
    assert Architecture.from_json(other).digest != Architecture.from_json(DOC).digest


def test_architecture_is_frozen_and_hashable() -> None:
    arch = Architecture.from_json(DOC)
    assert len({arch, Architecture.from_json(arch.to_dict())}) == 1
    with pytest.raises(Exception, match="frozen"):
        arch.d_model = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("patch", "path", "fragment"),
    [
        ({"d_model": 0}, "d_model", "greater than or equal to 1"),
        ({"d_model": 10**9}, "d_model", "less than or equal to"),
        ({"block": []}, "block", "at least 1"),
        ({"block": [{"type": "conv"}]}, "block[0]", "does not match any of the expected tags"),
        (
            {"block": [{"type": "moe", "hidden": 8, "experts": 4, "gating": "top3"}]},
            "block[0].gating",
            "top1",
        ),
        ({"block": [{"type": "ffn", "hidden": 8, "activation": "tanh"}]}, "block[0].activation", "relu"),
        ({"block": [{"type": "ffn", "hidden": 8, "bias": True}]}, "block[0].bias", "unknown field"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_fields_are_named(patch: dict[str, object], path: str, fragment: str) -> None:
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_json({**DOC, **patch}, source="a.json")
    lines = [str(p) for p in info.value.problems]
    assert any(line.startswith(f"a.json: {path}: ") and fragment in line for line in lines), lines


def test_indivisible_heads_without_head_dim_is_explained() -> None:
    with pytest.raises(ArchitectureError, match="not divisible by heads 20; give head_dim"):
        Architecture.from_json({**DOC, "block": [{"type": "attention", "heads": 20}]})


def test_top2_needs_two_experts() -> None:
    with pytest.raises(ArchitectureError, match="needs at least 2 experts"):
        Architecture.from_json({**DOC, "block": [{"type": "moe", "hidden": 8, "experts": 1, "gating": "top2"}]})


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '"arch"'])
def test_non_object_json_is_an_error(text: str) -> None:
    with pytest.raises(ArchitectureError):
        Architecture.from_json(text)


@pytest.mark.parametrize("name", preset_names())
def test_presets_round_trip(name: str) -> None:
    arch = preset(name)
    assert Architecture.from_json(arch.to_json()) == arch


def test_paper_blocks_have_the_published_layer_order() -> None:
    # Brainformer, arXiv 2306.00008, Figures 8 and 9.
    assert preset("brainformer-1").pattern == "afgggfff"
    assert preset("brainformer-2").pattern == "fagafgfa"
    assert preset("glam").pattern == "afagafag"
    assert all(layer.type != "moe" for layer in preset("dense").block)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ArchitectureError, match="unknown preset 'glum'; known: dense, glam"):
        preset("glum")


@pytest.mark.parametrize(
    ("batch_size", "capacity_factor", "experts", "k"),
    [
        (8, 2.0, 4, 4),  # B * cf / E exactly
        (3, 1.0, 2, 2),  # rounded up
        (2, 1.0, 8, 1),  # B * cf < E: still one token per expert and position
        (4, 64.0, 2, 4),  # cf > E: no more than the B tokens there are
    ],
)
def test_expert_choice_k_is_rounded_up_and_kept_within_the_batch(
    batch_size: int, capacity_factor: float, experts: int, k: int
) -> None:
    assert expert_choice_k(batch_size, capacity_factor, experts) == k
    layer = MoESpec(hidden=8, experts=experts, gating="expert_choice", capacity_factor=capacity_factor)
    assert layer.expert_choice_k(batch_size) == k
