"""Loading spaces: every bundled file loads; every kind of bad file is one path-named problem per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from brainsearch.errors import SpaceError
from brainsearch.space import bounds, dimensions, load_space, parse_space, space_size
from brainsearch.space.schema import SearchSpace

TINY = (Path(__file__).parents[2] / "search_spaces" / "tiny.yaml").read_text()


def _doc() -> dict:
    return yaml.safe_load(TINY)


def _errors(doc: object, source: str = "s.yaml") -> list[str]:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(SpaceError) as info:
        parse_space(text, source)
    return [str(p) for p in info.value.problems]


def test_bundled_space_loads(bundled_space_path: Path) -> None:
    space = load_space(bundled_space_path)
    assert isinstance(space, SearchSpace)
    assert space.name == bundled_space_path.stem
    assert bounds(space) is not None
    assert dimensions(space)


def test_bundled_names_resolve() -> None:
    assert load_space("tiny") == load_space(Path(__file__).parents[2] / "search_spaces" / "tiny.yaml")


def test_tiny_is_the_paper_structure_at_cpu_size() -> None:
    tiny, paper = load_space("tiny"), load_space("brainformer")
    assert tiny.block.slots.values() == paper.block.slots.values() == [8]
    assert tiny.block.layer_types == paper.block.layer_types
    assert tiny.block.moe and paper.block.moe
    assert tiny.block.moe.gating == paper.block.moe.gating
    assert tiny.block.moe.capacity_factor == paper.block.moe.capacity_factor


def test_space_size_counts_shared_and_per_slot_parameters() -> None:
    doc = {
        "name": "count",
        "block": {
            "slots": 2,
            "layer_types": ["attention", "ffn"],
            "d_model": {"choices": [32, 64]},
            "attention": {"heads": {"choices": [2, 4]}},
            "ffn": {"hidden": {"choices": [64, 128, 256], "per_slot": True}},
        },
    }
    space = parse_space(yaml.safe_dump(doc))
    # aa: 2 heads; af, fa: 2 heads x 3 hidden each; ff: 3 x 3 hidden; all x 2 d_model.
    assert space_size(space) == 2 * (2 + 2 * 6 + 9)
    assert dimensions(space) == [
        "d_model",
        "slot0.type",
        "slot1.type",
        "attention.heads",
        "slot0.ffn.hidden",
        "slot1.ffn.hidden",
    ]


def _set(doc: dict, path: str, value: object) -> dict:
    node = doc
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "block.d_model",
            {"choices": [32, 100000]},
            "block.d_model.choices[1]: 100000 is outside [8, 16384]",
        ),
        ("block.moe.experts", 5000, "block.moe.experts: 5000 is outside [1, 1024]"),
        ("block.slots", 40, "block.slots: 40 is outside [1, 32]"),
        (
            "block.moe.gating",
            {"choices": ["top2", "top3"]},
            "block.moe.gating.choices[1]: 'top3' is not one of",
        ),
        ("block.moe.capacity_factor", 0, "block.moe.capacity_factor: 0 is outside (0, 16]"),
        ("block.ffn.hidden", {"low": 512, "high": 64}, "block.ffn.hidden: low 512 is above high 64"),
        ("block.ffn.hidden", {"low": 64, "high": 100, "step": 32}, "is not a multiple of step 32"),
        ("block.ffn.hidden", {"lo": 64}, "block.ffn.hidden: expected a value, {choices: [...]}, or {low"),
        ("block.ffn.hidden", {"choices": []}, "block.ffn.hidden.choices: List should have at least 1 item"),
        ("block.ffn.hidden", {"choices": [64, 64]}, "choice 64 is listed twice"),
        ("block.ffn.colour", "red", "block.ffn.colour: unknown field"),
        ("block.layer_types", ["attention", "conv"], "block.layer_types[1]: Input should be 'attention'"),
        (
            "proxy.budget",
            {"tokens": 10, "seconds": 5},
            "proxy.budget: give exactly one of tokens, flops, seconds",
        ),
        ("proxy.budget", {"tokens": "lots"}, "proxy.budget.tokens: 'lots' is not a number"),
        ("proxy.seq_len", 10**9, "proxy.seq_len: Input should be less than or equal to 32768"),
        ("proxy.batch_size", "eight", "proxy.batch_size: Input should be a valid integer"),
        ("search.sampler", "grid", "search.sampler: Input should be 'evolution', 'random', 'tpe' or 'nsga2'"),
        ("search.objectives", ["val_loss", "step_time"], "sampler evolution optimises one objective"),
        ("search.evolution", {"population_size": 2, "tournament_size": 5}, "tournament_size must not exceed"),
        (
            "constraints.max_params_total",
            "1K",
            "constraints.max_params_total: even the smallest architecture has",
        ),
        (
            "constraints.min_layers",
            {"attention": 9},
            "constraints.min_layers.attention: asks for 9 attention",
        ),
        ("name", "Has Spaces", "name: String should match pattern"),
        ("block.moe.experts", 64, "proxy.batch_size: expert choice routes causally per position across the batch"),
    ],
)
def test_invalid_field_is_reported_with_its_path(path: str, value: object, expected: str) -> None:
    errors = _errors(_set(_doc(), path, value))
    assert any(expected in e for e in errors), errors
    assert all(e.startswith("s.yaml") for e in errors)


def test_problems_carry_the_line_of_the_field() -> None:
    text = TINY.replace("experts: 4", "experts: 0")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "experts: 0" in row)
    assert _errors(text) == [f"s.yaml:{line}: block.moe.experts: 0 is outside [1, 1024]"]


def test_several_problems_reported_together() -> None:
    doc = _set(_set(_doc(), "block.moe.experts", 0), "block.d_model", 4)
    errors = _errors(doc)
    assert len(errors) == 2 and any("block.moe.experts" in e for e in errors)


def test_missing_section_for_a_used_layer_type() -> None:
    doc = _doc()
    del doc["block"]["ffn"]
    assert any("block.ffn: slots may be ffn but no ffn parameters are given" in e for e in _errors(doc))


def test_missing_required_field() -> None:
    doc = _doc()
    del doc["block"]["d_model"]
    assert any("block.d_model: Field required" in e for e in _errors(doc))


def test_head_dim_must_be_given_when_not_divisible() -> None:
    doc = _set(_doc(), "block.attention.head_dim", None)
    doc = _set(doc, "block.attention.heads", {"choices": [3, 4]})
    assert any("block.attention.head_dim: head_dim may be null" in e for e in _errors(doc))


def test_hard_ceiling_rejects_enormous_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    from brainsearch.settings import get_settings

    monkeypatch.setenv("BRAINSEARCH_MAX_SPACE_PARAMS", "1e6")
    get_settings.cache_clear()
    assert any("above the hard ceiling 1M" in e for e in _errors(_doc()))


def test_enormous_space_rejected_by_default_ceiling() -> None:
    doc = _set(_doc(), "block.d_model", 16384)
    doc = _set(doc, "block.moe.hidden", 131072)
    doc = _set(doc, "block.moe.experts", 1024)
    doc = _set(doc, "constraints", {})
    doc = _set(doc, "block.slots", 32)
    doc = _set(doc, "proxy.batch_size", 4096)
    assert any("block: the largest architecture has" in e for e in _errors(doc))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "s.yaml: <root>: the document is empty"),
        ("# only a comment\n", "the document is empty"),
        ("- 1\n- 2\n", "expected a mapping at the top level, got list"),
        ("just a string", "expected a mapping at the top level, got str"),
        ("a: [1, 2\n", "YAML syntax error"),
        ("a: 1\na: 2\n", "s.yaml:2: a: duplicate key"),
        ("\tname: x\n", "YAML syntax error"),
        ("name: !!python/object:os.system {}\n", "YAML syntax error"),
        ("[" * 5000, "s.yaml"),
    ],
)
def test_malformed_documents(text: str, expected: str) -> None:
    assert any(expected in e for e in _errors(text)), _errors(text)


def test_binary_junk_is_rejected() -> None:
    with pytest.raises(SpaceError, match="not UTF-8 text"):
        parse_space(b"\xff\xfe\x00junk\x89PNG", "junk.bin")
    with pytest.raises(SpaceError, match="NUL bytes"):
        parse_space("name: a\x00b", "nul.yaml")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="cannot read: No such file"):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(SpaceError, match="is a directory"):
        load_space(tmp_path)


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (2 << 20))
    with pytest.raises(SpaceError, match="larger than"):
        load_space(big)


def test_quantities_accept_suffixes() -> None:
    doc = _set(_doc(), "constraints.max_memory_bytes", "1.5GiB")
    doc = _set(doc, "proxy.budget", {"flops": "2e12"})
    space = parse_space(yaml.safe_dump(doc))
    assert space.constraints.max_memory_bytes == 1.5 * 2**30
    assert space.proxy.budget.flops == 2e12
