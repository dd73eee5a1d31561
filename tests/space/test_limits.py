"""Every step of validation whose work grows with the input has an explicit bound, exercised here at the bound (the
largest input allowed, which validates) and just past it (refused, with a path-named problem, before the expensive
step runs: the steps are replaced by ones that fail if called, so no timing is involved)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from brainsearch.errors import SpaceError
from brainsearch.space import bounds, load_space, parse_space
from brainsearch.space import loader as loader_module
from brainsearch.space import schema as schema_module
from brainsearch.space.loader import MAX_DOCUMENT_DEPTH, MAX_DOCUMENT_NODES, MAX_INT_DIGITS, MAX_SPACE_FILE_BYTES
from brainsearch.space.params import MAX_CHOICES, MAX_GRID_STEPS
from brainsearch.space.schema import DOMAINS, MAX_SLOTS, SearchSpace


def _doc(**block: Any) -> dict[str, Any]:
    """A small valid space with 32 slots; ``block`` replaces fields of the block."""
    return {
        "name": "limits",
        "block": {
            "slots": MAX_SLOTS,
            "d_model": 32,
            "attention": {"heads": 2, "head_dim": 16},
            "ffn": {"hidden": 64},
            "moe": {"hidden": 64, "experts": 4},
            **block,
        },
        "proxy": {"seq_len": 64, "num_blocks": 1},
        "constraints": {"min_layers": {"attention": 1, "moe": 1}},
    }


def _problems(doc: dict[str, Any] | str) -> list[str]:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(SpaceError) as info:
        parse_space(text, "s.yaml")
    return [f"{p.path}: {p.message}" for p in info.value.problems]


def _load(doc: dict[str, Any]) -> SearchSpace:
    return parse_space(yaml.safe_dump(doc, sort_keys=False), "s.yaml")


def _never(name: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} ran on a document that is outside its bounds")

    return fail


@pytest.fixture
def no_expensive_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps that loop over slots and values, and the costing of the extremes, fail if they run."""
    monkeypatch.setattr(loader_module, "_check_structure", _never("the slot loops"))
    monkeypatch.setattr(loader_module, "_check_fits", _never("the extremes"))
    monkeypatch.setattr(loader_module, "bounds", _never("bounds()"))


# --- slots: every loop over slots -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "slots", [MAX_SLOTS, {"low": 1, "high": MAX_SLOTS}, {"choices": list(range(1, MAX_SLOTS + 1))}], ids=str
)
def test_slots_at_the_bound_validate_with_their_extremes(slots: Any) -> None:
    space = _load({**_doc(slots=slots), "constraints": {"min_layers": {"attention": 16, "moe": 16}}})
    extremes = bounds(space)
    assert extremes is not None and len(extremes.largest_total.block) == MAX_SLOTS


@pytest.mark.parametrize(
    "slots",
    [MAX_SLOTS + 1, 1_000_000_000, {"low": 1, "high": 1_000_000_000}, {"choices": [8, 20_000_000]}],
    ids=str,
)
def test_slots_past_the_bound_are_one_problem_before_any_slot_loop(slots: Any, no_expensive_steps: None) -> None:
    """The reported defect: a billion slots was looped over (minutes) before being reported as out of bounds."""
    problems = _problems(_doc(slots=slots))
    assert len(problems) == 1 and problems[0].startswith("block.slots") and "outside [1, 32]" in problems[0]


def test_slot_types_at_and_past_the_number_of_slots() -> None:
    assert _load(_doc(slot_types=["attention", "moe"] * (MAX_SLOTS // 2))).block.slot_types
    problems = _problems(_doc(slot_types=["attention"] * (MAX_SLOTS + 1)))
    assert problems == [f"block.slot_types: List should have at most {MAX_SLOTS} items after validation, not 33"]
    doc = {**_doc(slots=8, slot_types=["attention"] * 9), "constraints": {"min_layers": {"attention": 1}}}
    problems = _problems(doc)
    assert problems == ["block.slot_types: slot_types has 9 entries but the block can have 8 slots"]


@pytest.mark.parametrize("layer_type", ["attention", "moe", "ffn"])
def test_min_layers_at_and_past_the_bound(layer_type: str) -> None:
    doc = {**_doc(), "constraints": {"min_layers": {layer_type: MAX_SLOTS}}}
    assert _load(doc).constraints.min_layers[layer_type] == MAX_SLOTS
    doc["constraints"]["min_layers"][layer_type] = MAX_SLOTS + 1
    assert _problems(doc) == [f"constraints.min_layers.{layer_type}: Input should be less than or equal to 32 (got 33)"]


# --- choices: checked pairwise for repeats, each against the domain ------------------------------------------------


def test_choices_at_and_past_the_bound(no_expensive_steps: None) -> None:
    hidden = [8 * (i + 1) for i in range(MAX_CHOICES + 1)]
    problems = _problems(_doc(ffn={"hidden": {"choices": hidden}}))
    assert problems == [
        f"block.ffn.hidden.choices: List should have at most {MAX_CHOICES} items after validation, not 257"
    ]


def test_the_longest_choices_validate() -> None:
    space = _load(_doc(ffn={"hidden": {"choices": [8 * (i + 1) for i in range(MAX_CHOICES)]}}))
    assert space.block.ffn is not None and space.block.ffn.hidden.num_values == MAX_CHOICES


# --- head_dim: d_model x heads divisibility ---------------------------------------------------------------------


def test_head_dim_check_at_its_largest() -> None:
    """MAX_CHOICES d_model values (every multiple of 64 up to the domain's 16384) against heads values that divide
    them all into head dims inside head_dim's domain: every pair is checked."""
    d_model = {"choices": [64 * (i + 1) for i in range(MAX_CHOICES)]}
    assert DOMAINS["d_model"].high == d_model["choices"][-1]
    heads = {"choices": [32, 64]}
    space = _load(_doc(d_model=d_model, attention={"heads": heads, "head_dim": None}))
    assert space.block.d_model.num_values == MAX_CHOICES


def test_head_dim_check_of_a_whole_d_model_range_is_arithmetic() -> None:
    """A d_model range of thousands of values is checked by its low end and step, not value by value (it used to
    be refused as too large to enumerate)."""
    ok = _load(_doc(d_model={"low": 32, "high": 16384, "step": 32}, attention={"heads": 32, "head_dim": None}))
    assert ok.block.d_model.num_values == 512
    problems = _problems(_doc(d_model={"low": 8, "high": 16384}, attention={"heads": {"low": 2, "high": 256}}))
    assert problems == [
        "block.attention.head_dim: head_dim may be null (d_model / heads) but d_model 9 is not divisible by heads 2; "
        "give head_dim"
    ]


# --- float grids ------------------------------------------------------------------------------------------------


def test_head_dim_from_d_model_and_heads_stays_inside_its_domain() -> None:
    """d_model / heads used to reach the Architecture's own limit (1024) and escape as a ValidationError (a 500)."""
    problems = _problems(_doc(d_model=16384, attention={"heads": 16, "head_dim": None}))
    assert problems == [
        "block.attention.head_dim: head_dim may be null (d_model / heads) but d_model 16384 / heads 16 = 1024 is "
        "above head_dim's bound 512; give head_dim"
    ]
    assert _load(_doc(d_model=16384, attention={"heads": 32, "head_dim": None}))


def test_float_grid_at_and_past_the_bound() -> None:
    step = 1.0 / MAX_GRID_STEPS
    space = _load(_doc(moe={"hidden": 64, "experts": 4, "capacity_factor": {"low": 1.0, "high": 2.0, "step": step}}))
    assert space.block.moe is not None and space.block.moe.capacity_factor.num_values == MAX_GRID_STEPS + 1
    for finer in (step / 2, 5e-324):  # the smallest float used to make round(inf) raise OverflowError
        cf = {"low": 1.0, "high": 2.0, "step": finer}
        problems = _problems(_doc(moe={"hidden": 64, "experts": 4, "capacity_factor": cf}))
        assert len(problems) == 1 and problems[0].startswith("block.moe.capacity_factor: step"), problems
        assert f"more than {MAX_GRID_STEPS} steps" in problems[0]


# --- the extremes -----------------------------------------------------------------------------------------------


def test_extremes_at_their_largest() -> None:
    """The most candidate layers the extremes try: every gating and activation, both ends of every number and a
    nullable rank (2 x 2 x 3 x 2 x 6 x 3 = 432 MoE layers), for every slot count of a 32-slot range."""
    moe = {
        "hidden": {"low": 8, "high": 512},
        "experts": {"low": 2, "high": 64},
        "gating": {"choices": ["top1", "top2", "expert_choice"]},
        "capacity_factor": {"low": 1.0, "high": 16.0},
        "activation": {"choices": ["relu", "gelu", "silu", "reglu", "geglu", "swiglu"]},
        "rank": {"choices": [8, None, 64]},
    }
    doc = _doc(slots={"low": 1, "high": MAX_SLOTS}, d_model={"low": 8, "high": 1024, "step": 8}, moe=moe)
    doc["proxy"]["batch_size"] = 64
    space = _load(doc)
    extremes = bounds(space)
    assert extremes is not None
    assert len(extremes.largest_total.block) == MAX_SLOTS and len(extremes.smallest_total.block) == 2


def test_bounds_refuses_a_space_that_skipped_validation() -> None:
    space = SearchSpace.model_validate(_doc(slots=1_000_000_000))
    with pytest.raises(ValueError, match="validate the space first"):
        bounds(space)


# --- the YAML document itself -----------------------------------------------------------------------------------


def test_nodes_at_and_past_the_bound() -> None:
    at = "x: [" + ", ".join(["0"] * (MAX_DOCUMENT_NODES - 3)) + "]\n"  # root, key, list: 3 nodes more
    assert not any("more than" in p for p in _problems(at))
    past = "x: [" + ", ".join(["0"] * (MAX_DOCUMENT_NODES - 2)) + "]\n"
    assert _problems(past) == [f": the document has more than {MAX_DOCUMENT_NODES} values"]


def test_aliases_count_expanded() -> None:
    """A billion-laughs document is small on disk; its nodes are counted as many times as aliases repeat them."""
    # root + a's list and 5 items + b's list + 3332 aliases of 6 nodes each = 20000 nodes.
    items = ", ".join(["*a"] * 3332)
    at = f"a: &a [0, 0, 0, 0, 0]\nb: [{items}]\n"
    assert not any("more than" in p for p in _problems(at))
    past = f"a: &a [0, 0, 0, 0, 0]\nb: [{items}, 0]\n"
    assert _problems(past) == [f": the document has more than {MAX_DOCUMENT_NODES} values (aliases expanded)"]
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    assert _problems(laughs) == [f": the document has more than {MAX_DOCUMENT_NODES} values (aliases expanded)"]


def test_nesting_at_and_past_the_bound() -> None:
    """The root mapping is one level; libyaml's composer recursed in C on deep nesting and crashed the process."""
    inner = MAX_DOCUMENT_DEPTH - 1
    assert not any("nested" in p for p in _problems("x: " + "[" * inner + "]" * inner + "\n"))
    past = "x: " + "[" * (inner + 1) + "]" * (inner + 1) + "\n"
    assert _problems(past) == [f": the document is nested more than {MAX_DOCUMENT_DEPTH} levels deep"]
    assert _problems("x: " + "[" * 500_000) == [f": the document is nested more than {MAX_DOCUMENT_DEPTH} levels deep"]


def test_integer_literals_at_and_past_the_bound() -> None:
    at = _problems(_doc(d_model=int("9" * MAX_INT_DIGITS)))
    assert at == ["block.d_model: a number of 100 digits is outside [8, 16384]"]
    # Python refuses to convert more than 4300 digits: that used to escape as a ValueError (exit 1, HTTP 500).
    for digits in (MAX_INT_DIGITS + 1, 5000):
        text = yaml.safe_dump(_doc(), sort_keys=False).replace("d_model: 32", "d_model: " + "9" * digits)
        assert _problems(text) == [f"block.d_model: integer longer than {MAX_INT_DIGITS} digits"]


def test_quantity_strings_at_and_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    at = "0" * 63 + "1"  # 64 characters: one token
    assert _load({**_doc(), "proxy": {"budget": {"tokens": at}}}).proxy.budget.tokens == 1.0
    problems = _problems({**_doc(), "proxy": {"budget": {"tokens": "0" + at}}})
    assert problems == ["proxy.budget.tokens: not a number: longer than 64 characters"]

    class NoRegex:
        def match(self, text: str) -> None:
            raise AssertionError("the quantity regex ran on a long string")

    # Its backtracking is polynomial: on a few kilobytes of digits and a bad suffix it ran for minutes.
    monkeypatch.setattr(schema_module, "_QUANTITY", NoRegex())
    problems = _problems({**_doc(), "proxy": {"budget": {"tokens": "1" * 500_000 + "x!"}}})
    assert problems == ["proxy.budget.tokens: not a number: longer than 64 characters"]


def test_file_size_at_and_past_the_bound(tmp_path: Path) -> None:
    at = tmp_path / "at.yaml"
    at.write_bytes(b"#" * (MAX_SPACE_FILE_BYTES - 1) + b"\n")
    with pytest.raises(SpaceError, match="the document is empty"):
        load_space(at)
    past = tmp_path / "past.yaml"
    past.write_bytes(b"#" * MAX_SPACE_FILE_BYTES + b"\n")
    with pytest.raises(SpaceError, match="larger than"):
        load_space(past)
