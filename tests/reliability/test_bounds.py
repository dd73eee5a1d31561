"""Bounded, cheap and never a 500: every bounded field of the space document at its largest allowed value and at the
first value past it, and NaN, infinities and booleans in every numeric field, through the three ways in (the CLI's
``brainsearch validate FILE``, ``POST /api/v1/spaces/validate`` and ``POST /api/v1/searches``).

The fields come from the pydantic models and ``DOMAINS``, so a new bounded field is tested without touching this
file. The value past a bound must be refused with a problem naming the field's path (exit 2 / 422); the largest
allowed value must not be: it may still make the whole space fail another check (a model above the parameter
ceiling), so the assertion is that no problem names the field under test.

Every call runs under a hang guard (``HANG_GUARD_S``): a validation that loops over a billion slots is caught as a
failure instead of stalling CI. It is a hang guard, not a performance test: validation answers in milliseconds, and
the guard is generous so that a loaded machine never trips it.

One live server (SQLite, no worker: nothing trains) serves the whole module; the CLI runs in-process, plus a few
real subprocesses.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import signal
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import httpx
import pytest
import typer.main
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from brainsearch.cli import app, main
from brainsearch.settings import Settings
from brainsearch.space.schema import DOMAINS, SearchSpace
from tests.service.conftest import LiveServer

# Hang guard, not a performance threshold: see the module docstring.
HANG_GUARD_S = 10.0
# A subprocess also starts Python and imports brainsearch (seconds on a loaded CI machine).
SUBPROCESS_HANG_GUARD_S = 120.0

# A small valid space that uses every section (scale_up included), so every field has a place to be set. No budget:
# setting one of proxy.budget's fields then gives a budget of exactly that field. 32 slots, so that min_layers' bound
# (32 layers of a type) is reachable.
BASE: dict[str, Any] = {
    "name": "bounds",
    "block": {
        "slots": 32,
        "d_model": 32,
        "attention": {"heads": 2, "head_dim": 16},
        "ffn": {"hidden": 64},
        "moe": {"hidden": 64, "experts": 4, "gating": "top1"},
    },
    "proxy": {"seq_len": 64, "num_blocks": 1},
    "constraints": {"min_layers": {"attention": 1}},
    "search": {"trials": 2, "scale_up": {"ladder": [{"preset": "cpu-tiny"}], "target": "cpu-small"}},
}


# --- the bounded and the numeric fields, from the models --------------------------------------------------------------


@dataclass(frozen=True)
class NumericField:
    """A numeric field of the space document: its dotted path, kind and bounds (None: unbounded on that side)."""

    path: str
    kind: str  # "int" or "float"
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True


def _limits(metadata: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, FieldInfo):
            out.update(_limits(m.metadata))
        elif isinstance(m, annotated_types.Le):
            out.update(high=m.le, high_inclusive=True)
        elif isinstance(m, annotated_types.Lt):
            out.update(high=m.lt, high_inclusive=False)
        elif isinstance(m, annotated_types.Ge):
            out.update(low=m.ge, low_inclusive=True)
        elif isinstance(m, annotated_types.Gt):
            out.update(low=m.gt, low_inclusive=False)
    return out


def _visit(path: str, annotation: Any, metadata: list[Any]) -> Iterator[NumericField]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _visit(path, args[0], [*metadata, *annotation.__metadata__])
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _visit(path, arg, metadata)
    elif origin is list:
        yield from _visit(f"{path}[0]", args[0], [])
    elif origin is dict and typing.get_origin(args[0]) is typing.Literal:
        for key in typing.get_args(args[0]):
            yield from _visit(f"{path}.{key}", args[1], [])
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _model_fields(annotation, path)
    elif annotation in (int, float):
        yield NumericField(path, annotation.__name__, **_limits(metadata))


def _model_fields(model: type[BaseModel], prefix: str = "") -> Iterator[NumericField]:
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if prefix.startswith("block") and name in DOMAINS:
            domain = DOMAINS[name]
            if domain.kind != "enum":
                yield NumericField(path, domain.kind, domain.low, domain.low_inclusive, domain.high)
            continue
        yield from _visit(path, info.annotation, list(info.metadata))


NUMERIC = {f.path: f for f in _model_fields(SearchSpace)}
PARAMS = [f for f in NUMERIC.values() if f.path.startswith("block.")]


def _largest_and_next(f: NumericField) -> tuple[Any, Any]:
    """(the largest allowed value of ``f``, the first disallowed one above it)."""
    assert f.high is not None
    if f.kind == "int":
        largest = int(f.high) if f.high_inclusive else int(f.high) - 1
        return largest, largest + 1
    largest = float(f.high) if f.high_inclusive else math.nextafter(f.high, -math.inf)
    return largest, math.nextafter(largest, math.inf)


BOUND_CASES = [pytest.param(f.path, *_largest_and_next(f), id=f.path) for f in NUMERIC.values() if f.high is not None]


def test_the_field_walk_finds_the_known_fields() -> None:
    """Guards the walk itself: if it broke, the parametrised tests below would silently test nothing."""
    expected = {
        "block.slots",
        "block.d_model",
        "block.moe.capacity_factor",
        "block.attention.head_dim",
        "proxy.seq_len",
        "proxy.budget.tokens",
        "proxy.budget.flops",
        "proxy.budget.seconds",
        "constraints.max_memory_bytes",
        "constraints.min_layers.moe",
        "search.trials",
        "search.evolution.mutation_rate",
        "search.scale_up.ladder[0].budget_tokens",
        "search.scale_up.ladder[0].batch_size",
    }
    assert expected <= set(NUMERIC), sorted(expected - set(NUMERIC))
    unbounded = sorted(f.path for f in NUMERIC.values() if f.high is None)
    assert not unbounded, f"numeric fields without an upper bound: {unbounded}"


# --- the three ways in ---------------------------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the hang guard; a BaseException so that the CLI's catch-all does not turn it into exit 1."""


@contextmanager
def hang_guard(seconds: float = HANG_GUARD_S) -> Iterator[None]:
    """Fail (not wait forever) when the block runs past ``seconds``: a hang guard, not a performance assertion."""

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds:g} s (hang guard)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``doc`` with ``path`` (``a.b[0].c``) set to ``value``, creating mappings on the way."""
    keys: list[str | int] = []
    for part in path.split("."):
        name, *indices = part.split("[")
        keys.append(name)
        keys += [int(i.rstrip("]")) for i in indices]
    node: Any = doc
    for key, following in itertools.pairwise(keys):
        # A missing or scalar step becomes a container (a fixed ``hidden: 64`` becomes ``hidden: {choices: ...}``).
        if isinstance(key, str) and not isinstance(node.get(key), dict | list):
            node[key] = [] if isinstance(following, int) else {}
        node = node[key]
    node[keys[-1]] = value
    return doc


def _doc(path: str, value: Any) -> dict[str, Any]:
    return _set(json.loads(json.dumps(BASE)), path, value)


def _names(loc: str, path: str) -> bool:
    """Whether a problem at ``loc`` is about ``path`` (the API may prefix it with ``space.``, the CLI does not)."""
    return loc == path or loc.endswith("." + path)


@dataclass
class Answer:
    """What one way in answered: refused or not, the problems' locations, and the raw text for messages."""

    way: str
    refused: bool
    locs: list[str]
    text: str

    def names(self, path: str) -> bool:
        return any(_names(loc, path) for loc in self.locs)


def _cli(doc: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Answer:
    file = tmp_path / "space.yaml"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    with hang_guard(), pytest.raises(SystemExit) as info:
        main(["validate", str(file)])
    code = int(info.value.code or 0)
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit {code}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    pattern = re.compile(rf"^{re.escape(str(file))}(?::\d+)?: (\S+): ")
    locs = [m.group(1) for line in err.splitlines() if (m := pattern.match(line))]
    assert code == 0 or locs, f"exit 2 without a path-named line: {err}"
    return Answer("cli", code == 2, locs, err)


def _post(api: httpx.Client, route: str, body: dict[str, Any]) -> Answer:
    # Python's json writes NaN and Infinity (not standard JSON, but what Python clients send): still a 4xx.
    content = json.dumps(body, allow_nan=True)
    with hang_guard():
        r = api.post(route, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, f"{route}: {r.status_code} {r.text[:500]}"
    assert r.status_code in (200, 201, 422), f"{route}: {r.status_code} {r.text[:500]}"
    locs: list[str] = []
    if r.status_code == 422:
        detail = r.json()["detail"]
        assert isinstance(detail, list) and detail, r.text
        locs = [str(d["loc"]) if isinstance(d["loc"], str) else ".".join(map(str, d["loc"])) for d in detail]
    return Answer(route, r.status_code == 422, locs, r.text[:2000])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One live API server for the module: SQLite, no worker, no token."""
    tmp = tmp_path_factory.mktemp("bounds-server")
    settings = Settings(database_url=f"sqlite:///{tmp / 'bounds.db'}", data_dir=tmp / "data", api_token=None)
    server = LiveServer(settings, embedded_worker=False)
    # The per-request timeout is a second hang guard (the alarm above covers the client's own code too).
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=HANG_GUARD_S) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def _cli_built_once() -> Iterator[None]:
    """Typer rebuilds the click command tree from ``app`` on every call (about 0.1 s of CPU, most of an in-process
    ``validate``); the tree is the same each time, so the module's hundreds of runs share one."""
    original = typer.main.get_command
    built = original(app)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.main, "get_command", lambda typer_app: built if typer_app is app else original(typer_app))
        yield


def _all_ways(
    doc: dict[str, Any], api: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> list[Answer]:
    return [
        _cli(doc, tmp_path, capsys),
        _post(api, "/spaces/validate", {"space": doc}),
        _post(api, "/searches", {"space": doc}),
    ]


# --- bounds ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "allowed", "refused"), BOUND_CASES)
def test_bounded_field_at_its_bound_and_just_past_it(
    path: str, allowed: Any, refused: Any, api: httpx.Client, tmp_path: Path, capsys: Any
) -> None:
    """Pass: the most extreme allowed value raises no problem about the field (the space may fail another check);
    the first value past it is refused with a problem naming the field, on every way in, within the hang guard."""
    for answer in _all_ways(_doc(path, allowed), api, tmp_path, capsys):
        assert not answer.names(path), f"{answer.way}: {path}={allowed!r} refused: {answer.text}"
    for answer in _all_ways(_doc(path, refused), api, tmp_path, capsys):
        assert answer.refused and answer.names(path), f"{answer.way}: {path}={refused!r} not refused: {answer.text}"


# The quantities' upper bounds, as search_spaces/README.md documents them: room for the paper's scales and beyond,
# not for a typo's 1e30 (which every one of them used to accept).
QUANTITY_BOUNDS = {
    "proxy.budget.tokens": 1e13,
    "proxy.budget.flops": 1e25,
    "proxy.budget.seconds": 30 * 24 * 3600,
    "constraints.max_params_total": 1e13,
    "constraints.max_params_activated": 1e13,
    "constraints.max_memory_bytes": 2**50,
    "search.scale_up.ladder[0].budget_tokens": 1e13,
}


@pytest.mark.parametrize(("path", "high"), QUANTITY_BOUNDS.items(), ids=list(QUANTITY_BOUNDS))
def test_quantities_have_sane_upper_bounds(
    path: str, high: float, api: httpx.Client, tmp_path: Path, capsys: Any
) -> None:
    """Pass: each quantity's bound is the documented one, and 1e30 is refused naming the field on every way in."""
    assert NUMERIC[path].high == high
    for answer in _all_ways(_doc(path, 1e30), api, tmp_path, capsys):
        assert answer.refused and answer.names(path), f"{answer.way}: {path}=1e30: {answer.text}"


LENGTH_CASES = [
    # (path, a valid element, the longest allowed list); a list one longer is refused.
    pytest.param("block.moe.hidden.choices", lambda i: 8 + 8 * i, 256, id="choices"),
    pytest.param("block.slot_types", lambda i: "attention", 32, id="slot_types"),
    pytest.param("search.scale_up.ladder", lambda i: {"preset": "cpu-tiny"}, 8, id="ladder"),
    pytest.param("description", None, 4000, id="description"),
]


@pytest.mark.parametrize(("path", "element", "longest"), LENGTH_CASES)
def test_lists_and_texts_at_their_longest_and_one_past(
    path: str, element: Any, longest: int, api: httpx.Client, tmp_path: Path, capsys: Any
) -> None:
    """Pass: the longest allowed list (or text) raises no length problem about the field; one more item is refused
    naming it. The lists are what the validation loops over (choices pairwise, slot types per slot)."""

    def value(n: int) -> Any:
        return "d" * n if element is None else [element(i) for i in range(n)]

    for answer in _all_ways(_doc(path, value(longest)), api, tmp_path, capsys):
        assert "at most" not in answer.text, f"{answer.way}: {path} of {longest} refused: {answer.text}"
    for answer in _all_ways(_doc(path, value(longest + 1)), api, tmp_path, capsys):
        assert answer.refused and answer.names(path), f"{answer.way}: {path} of {longest + 1}: {answer.text}"


@pytest.mark.parametrize("slots", [1_000_000_000, {"low": 1, "high": 1_000_000_000}, {"choices": [8, 20_000_000]}])
def test_a_billion_slots_is_refused_at_once(slots: Any, api: httpx.Client, tmp_path: Path, capsys: Any) -> None:
    """Pass: the reported defect (validation looped over every slot before checking the bound) is one problem about
    block.slots, answered within the hang guard on every way in."""
    for answer in _all_ways(_doc("block.slots", slots), api, tmp_path, capsys):
        assert answer.refused and answer.locs and all("block.slots" in loc for loc in answer.locs), answer.text


# --- NaN, infinities and booleans --------------------------------------------------------------------------------

BAD_NUMBERS = [float("nan"), float("inf"), float("-inf"), True]


def _param_forms(f: NumericField) -> list[tuple[str, Any]]:
    """(where the bad value lands, a document value for the parameter holding ``x``) in every form of a param."""
    good = int(f.low or 1) if f.kind == "int" else 1.0
    return [
        ("", "X"),
        (".choices[1]", {"choices": [good, "X"]}),
        (".low", {"low": "X", "high": good}),
        (".high", {"low": good, "high": "X"}),
        (".step", {"low": good, "high": good, "step": "X"}),
    ]


def _substituted(template: Any, x: Any) -> Any:
    if template == "X":
        return x
    if isinstance(template, dict):
        return {k: _substituted(v, x) for k, v in template.items()}
    if isinstance(template, list):
        return [_substituted(v, x) for v in template]
    return template


BAD_CASES = [pytest.param(f.path, "", "X", id=f.path) for f in NUMERIC.values() if not f.path.startswith("block.")] + [
    pytest.param(f.path, sub, form, id=f"{f.path}{sub or '-fixed'}") for f in PARAMS for sub, form in _param_forms(f)
]


@pytest.mark.parametrize(("path", "sub", "form"), BAD_CASES)
def test_nan_infinity_and_booleans_are_refused_naming_the_field(
    path: str, sub: str, form: Any, api: httpx.Client, tmp_path: Path, capsys: Any
) -> None:
    """Pass: NaN, +inf, -inf and true in a numeric field (a parameter's fixed value, choices, low, high, step too)
    are each refused with a problem naming the field's path: exit 2 and 422, never a 500 or a traceback."""
    for x in BAD_NUMBERS:
        doc = _doc(path, _substituted(form, x))
        for answer in _all_ways(doc, api, tmp_path, capsys):
            assert answer.refused and answer.names(path + sub), f"{answer.way}: {path}{sub}={x!r}: {answer.text}"


def test_version_is_the_number_1_not_a_boolean(api: httpx.Client, tmp_path: Path, capsys: Any) -> None:
    """Pass: ``version: true`` (which equals 1 in Python) and NaN are refused naming ``version``."""
    for x in BAD_NUMBERS:
        for answer in _all_ways(_doc("version", x), api, tmp_path, capsys):
            assert answer.refused and answer.names("version"), f"{answer.way}: version={x!r}: {answer.text}"


# --- POST /searches' own fields (service/schemas.py SearchCreate) ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "allowed", "refused"),
    [
        ("trials", 100_000, [0, 100_001, True, float("nan"), float("inf"), 2.0]),
        ("concurrency", 1024, [0, 1025, True, float("nan"), float("-inf")]),
        ("seed", 2**32 - 1, [-1, 2**32, False, float("nan"), float("inf")]),
        ("top_k", 100, [-1, 101, True, float("nan")]),
    ],
)
def test_search_overrides_are_strict_and_bounded(field: str, allowed: int, refused: list[Any], api: Any) -> None:
    """Pass: a body-level override at its bound is accepted (201); past it, a boolean, NaN or infinity is a 422
    naming the field, never a 500."""
    ok = _post(api, "/searches", {"space": "tiny", field: allowed})
    assert not ok.refused, ok.text
    for x in refused:
        answer = _post(api, "/searches", {"space": "tiny", field: x})
        assert answer.refused and answer.names(field), f"{field}={x!r}: {answer.text}"


# --- real processes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("block.slots", 1_000_000_000),
        ("block.moe.capacity_factor", float("nan")),
        ("proxy.budget.tokens", 1e30),
        ("proxy.batch_size", True),
    ],
)
def test_the_installed_command_refuses_quickly(path: str, value: Any, tmp_path: Path) -> None:
    """Pass: ``python -m brainsearch validate`` in its own process exits 2 with a line naming the field, no
    traceback, within the (subprocess) hang guard."""
    file = tmp_path / "space.yaml"
    file.write_text(yaml.safe_dump(_doc(path, value), sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "brainsearch", "validate", str(file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=SUBPROCESS_HANG_GUARD_S,
    )
    assert proc.returncode == 2, proc.stderr
    assert re.search(rf"^{re.escape(str(file))}:\d+: {re.escape(path)}: ", proc.stderr, re.MULTILINE), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
