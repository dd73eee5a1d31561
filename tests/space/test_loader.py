"""Loading spaces: every bundled file loads; every kind of bad file is one path-named problem per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from brainsearch.errors import SpaceError
from brainsearch.space import bounds, dimensions, load_space, parse_space, space_size, validate_document
from brainsearch.space.schema import Budget, SearchSpace

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
        (
            "proxy.budget",
            {"flops": 1e12, "compute": "match_baseline"},
            "proxy.budget: compute: match_baseline needs the baseline's budget in tokens (got flops)",
        ),
        (
            "proxy.budget",
            {"tokens": "64K", "compute": "equal"},
            "proxy.budget.compute: Input should be 'match_baseline'",
        ),
        (
            "constraints.max_flops_per_token_ratio",
            0,
            "constraints.max_flops_per_token_ratio: Input should be greater than 0",
        ),
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


def test_equal_compute_needs_a_baseline_the_space_can_build() -> None:
    """Pass: matching the GLaM baseline's compute, or bounding FLOPs per token against it, in a space whose blocks
    have no MoE layer (no GLaM block to build) is a problem at each field that asks for it, with the way out;
    against the dense baseline it loads."""
    doc = _doc()
    doc["block"]["layer_types"] = ["attention", "ffn"]
    del doc["block"]["moe"]
    doc["constraints"] = {"min_layers": {"attention": 1}, "max_flops_per_token_ratio": 1.2}
    errors = _errors(doc)
    assert any("proxy.budget.compute: compute: match_baseline compares with the glam baseline" in e for e in errors)
    assert any(
        "constraints.max_flops_per_token_ratio: max_flops_per_token_ratio compares with the glam" in e for e in errors
    )
    assert all("set constraints.baseline: dense" in e for e in errors) and len(errors) == 2
    doc["constraints"]["baseline"] = "dense"
    space = parse_space(yaml.safe_dump(doc))
    assert space.proxy.budget.matches_baseline and space.constraints.max_flops_per_token_ratio == 1.2


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


def test_hard_ceiling_rejects_enormous_spaces() -> None:
    text = yaml.safe_dump(_doc(), sort_keys=False)
    with pytest.raises(SpaceError) as info:
        parse_space(text, "s.yaml", max_params=1e6)
    assert any("above the hard ceiling 1M" in str(p) for p in info.value.problems)
    assert parse_space(text, "s.yaml", max_params=None).name  # no ceiling: the same space passes


def test_the_entry_points_apply_the_ceiling_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """BRAINSEARCH_MAX_SPACE_PARAMS reaches the library through the CLI and the service, which read the settings."""
    from fastapi.testclient import TestClient

    from brainsearch.cli import main
    from brainsearch.settings import get_settings
    from service.app import create_app

    monkeypatch.setenv("BRAINSEARCH_MAX_SPACE_PARAMS", "1e6")
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        main(["validate", "tiny"])
    assert exited.value.code == 2
    assert "above the hard ceiling 1M" in capsys.readouterr().err
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        answer = client.post("/api/v1/spaces/validate", json={"space": "tiny"})
    assert answer.status_code == 422
    assert "above the hard ceiling 1M" in answer.text


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
        ("", "s.yaml: the document is empty"),
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


# --- strict numbers, finite numbers, bounded quantities, document order -----------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        # The reported defect: NaN passed the domain check and escaped as a ValidationError from the extremes.
        ("block.moe.capacity_factor", float("nan"), "block.moe.capacity_factor: expected a finite number (got nan)"),
        ("block.moe.capacity_factor", {"choices": [1, float("inf")]}, "block.moe.capacity_factor.choices[1]: expected"),
        (
            "block.moe.capacity_factor",
            {"low": float("-inf"), "high": 2.0},
            "capacity_factor.low: Input should be a fin",
        ),
        ("block.moe.capacity_factor", {"low": 1.0, "high": 2.0, "step": float("nan")}, "capacity_factor.step: Input"),
        ("block.moe.experts", float("inf"), "block.moe.experts: expected a finite number (got inf)"),
        ("proxy.budget", {"seconds": float("nan")}, "proxy.budget.seconds: Input should be a finite number"),
        ("constraints.max_step_time_ratio", float("nan"), "constraints.max_step_time_ratio: Input should be a finite"),
        ("search.evolution", {"mutation_rate": float("nan")}, "search.evolution.mutation_rate: Input should be a fin"),
        # Booleans are not numbers (YAML's true used to become 1).
        ("proxy.batch_size", True, "proxy.batch_size: Input should be a valid integer, not a boolean (got True)"),
        ("search.trials", True, "search.trials: Input should be a valid integer, not a boolean"),
        ("block.d_model", True, "block.d_model: expected a number, not a boolean (got True)"),
        ("block.moe.hidden", {"choices": [64, False]}, "block.moe.hidden.choices[1]: expected a number, not a boolean"),
        ("block.moe.hidden", {"low": True, "high": 64}, "block.moe.hidden.low: Input should be a valid number, not a"),
        ("block.moe.capacity_factor", True, "block.moe.capacity_factor: expected a number, not a boolean"),
        ("constraints.max_params_total", True, "constraints.max_params_total: Input should be a valid number, not a"),
        (
            "constraints.min_layers",
            {"attention": True},
            "constraints.min_layers.attention: Input should be a valid int",
        ),
        ("version", True, "version: expected the number 1, not a boolean"),
        ("block.moe.capacity_factor", {"low": 1, "high": 2, "log": 1}, "block.moe.capacity_factor.log: Input should"),
        # An int field takes an int: not a float, not a numeric string.
        ("proxy.batch_size", 8.0, "proxy.batch_size: Input should be a valid integer (got 8.0)"),
        ("proxy.batch_size", "8", "proxy.batch_size: Input should be a valid integer (got '8')"),
        # Quantities have upper bounds a real run could need, not 1e30.
        ("proxy.budget", {"tokens": 1e30}, "proxy.budget.tokens: Input should be less than or equal to 1000000000000"),
        ("proxy.budget", {"tokens": "11T"}, "proxy.budget.tokens: Input should be less than or equal to"),
        ("proxy.budget", {"flops": 2e25}, "proxy.budget.flops: Input should be less than or equal to"),
        (
            "proxy.budget",
            {"seconds": 31 * 86400},
            "proxy.budget.seconds: Input should be less than or equal to 2592000",
        ),
        ("constraints.max_memory_bytes", "2PiB", "constraints.max_memory_bytes: '2PiB' is not a number"),
        ("constraints.max_memory_bytes", "1.5e15", "constraints.max_memory_bytes: Input should be less than or equal"),
        ("constraints.max_params_activated", "20T", "constraints.max_params_activated: Input should be less than"),
    ],
)
def test_numbers_are_strict_finite_and_bounded(path: str, value: object, expected: str) -> None:
    errors = _errors(_set(_doc(), path, value))
    assert any(expected in e for e in errors), errors


def test_ints_stay_accepted_for_floats_and_quantities_at_their_bounds() -> None:
    doc = _set(_doc(), "block.moe.capacity_factor", {"choices": [1, 2.5]})
    doc = _set(doc, "proxy.budget", {"tokens": "10T"})
    doc = _set(doc, "constraints.max_memory_bytes", "1TiB")
    doc = _set(doc, "search.evolution", {"population_size": 6, "tournament_size": 3, "mutation_rate": 1})
    space = parse_space(yaml.safe_dump(doc))
    assert space.proxy.budget.tokens == 1e13 and space.search.evolution.mutation_rate == 1.0
    for budget in ({"flops": 1e25}, {"seconds": 30 * 86400}):
        assert parse_space(yaml.safe_dump(_set(_doc(), "proxy.budget", budget))).proxy.budget == Budget(**budget)


def test_problems_are_listed_in_document_order() -> None:
    """Pydantic reports in the models' field order (proxy before search) and the domain checks in theirs (slots
    before the MoE section); the report follows the file's lines."""
    doc = _doc()
    doc = {"search": {**doc.pop("search"), "trials": 0}, **doc}
    doc["proxy"]["seq_len"] = 1
    errors = _errors(doc)
    assert [e.split(":")[2].strip() for e in errors] == ["search.trials", "proxy.seq_len"], errors
    doc = _doc()
    moe = {**doc["block"].pop("moe"), "experts": 0}
    doc["block"] = {"moe": moe, **doc["block"], "slots": 99}
    errors = _errors(doc)
    assert [e.split(":")[2].strip() for e in errors] == ["block.moe.experts", "block.slots"], errors


def test_a_number_too_large_for_a_float_is_a_problem() -> None:
    """YAML stops at MAX_INT_DIGITS digits; JSON documents (the API) reach validation with any int."""
    with pytest.raises(SpaceError) as info:
        validate_document(_set(_doc(), "proxy.budget", {"tokens": 10**400}), "space")
    assert [str(p) for p in info.value.problems] == ["space: proxy.budget.tokens: number too large"]


def test_no_validation_error_escapes_the_extremes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: should an extreme architecture ever fail the Architecture's own checks, it is a problem
    about the block, not a ValidationError (a 500 in the API, "internal error" in the CLI)."""
    from brainsearch.arch.spec import MoESpec
    from brainsearch.space import loader

    def invalid(space: object) -> None:
        MoESpec.model_validate({"type": "moe", "hidden": 8, "experts": 1, "capacity_factor": float("nan")})

    monkeypatch.setattr(loader, "bounds", invalid)
    assert _errors(_doc()) == [
        "s.yaml:6: block: an extreme architecture of the space is invalid: Input should be less than or equal to 64"
    ]
