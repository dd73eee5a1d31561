"""Loading a search-space YAML file: parse, validate strictly, check it against its own constraints.

Every problem becomes a :class:`~brainsearch.errors.Problem` naming the file, the dotted field path and, where the
YAML parser knows it, the line; :class:`~brainsearch.errors.SpaceError` carries them all at once, in document order.

Validation is cheap first and bounded throughout: the file's size, its nesting and number of nodes are checked
before it is built into Python objects; every field's type and bounds (pydantic, then the parameter domains) before
anything iterates over slots, values or choices; and only a space inside every bound has its extreme architectures
costed. Each later step's work is therefore bounded by the earlier steps' limits (``MAX_SLOTS`` slots,
``MAX_CHOICES`` choices, the domains' ranges).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from brainsearch._format import fmt_bytes, fmt_count
from brainsearch._validation import dotted, in_document_order, problems_from_validation_error
from brainsearch.errors import Problem, SpaceError
from brainsearch.settings import DEFAULT_MAX_SPACE_PARAMS
from brainsearch.space.baselines import reference_architecture
from brainsearch.space.constraints import memory_floor
from brainsearch.space.params import Categorical, Fixed, FloatRange, IntRange
from brainsearch.space.sample import bounds
from brainsearch.space.schema import DOMAINS, LAYER_TYPES, SearchSpace

__all__ = [
    "MAX_DOCUMENT_DEPTH",
    "MAX_DOCUMENT_NODES",
    "MAX_INT_DIGITS",
    "MAX_SPACE_FILE_BYTES",
    "load_space",
    "parse_space",
    "validate_document",
]

MAX_SPACE_FILE_BYTES = 1 << 20
# A space document is a few hundred nodes deep at most five levels; the largest meaningful one (every parameter
# with MAX_CHOICES choices) is under 4000 nodes. The limits count aliases expanded ("billion laughs" stay small on
# disk) and are checked on the parser's events, before anything is built: libyaml's composer recurses in C and
# crashes the process on deep nesting, and building a megabyte of tiny nodes takes seconds.
MAX_DOCUMENT_NODES = 20_000
MAX_DOCUMENT_DEPTH = 32
# Longest integer literal read: Python refuses to convert more than 4300 digits, and no field needs more than 20.
MAX_INT_DIGITS = 100

# libyaml's parser when PyYAML was built with it (every binary wheel): about 20 times faster than the pure one.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG = "tag:yaml.org,2002:int"

Loc = tuple[int | str, ...]


class _TooLarge(Exception):
    """The document passes a node-count or depth limit (raised out of a scan, turned into a Problem)."""


class _Lines:
    """Line numbers (1-based) of every key and item of a YAML document, by location."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}
        self._visited = 0

    def walk(self, node: yaml.Node, loc: Loc = ()) -> list[Problem]:
        """Record the lines under ``node``; return its duplicate keys and overlong integers as problems.

        Raises :class:`_TooLarge` past ``MAX_DOCUMENT_NODES`` nodes, aliases expanded.
        """
        self._visited += 1
        if self._visited > MAX_DOCUMENT_NODES:
            raise _TooLarge(f"the document has more than {MAX_DOCUMENT_NODES} values (aliases expanded)")
        self.lines[loc] = node.start_mark.line + 1
        problems: list[Problem] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    problems.append(Problem(dotted((*loc, key)), "duplicate key", line=key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
                problems += self.walk(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                problems += self.walk(item, (*loc, i))
        elif node.tag == _INT_TAG and len(str(node.value)) > MAX_INT_DIGITS:
            problems.append(Problem(dotted(loc), f"integer longer than {MAX_INT_DIGITS} digits", line=self.lines[loc]))
        return problems

    def __call__(self, loc: Loc) -> int | None:
        # The nearest located ancestor: a missing field is reported at its parent's line.
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None


def _scan(text: str) -> None:
    """Raise :class:`_TooLarge` when the document nests deeper than ``MAX_DOCUMENT_DEPTH`` or has more than
    ``MAX_DOCUMENT_NODES`` nodes (before aliases), reading parser events only as far as the first excess."""
    depth = nodes = 0
    parser = _Loader(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DOCUMENT_DEPTH:
                    raise _TooLarge(f"the document is nested more than {MAX_DOCUMENT_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_DOCUMENT_NODES:
                    raise _TooLarge(f"the document has more than {MAX_DOCUMENT_NODES} values")
    finally:
        parser.dispose()


def _problem(source: str | None, loc: Loc, message: str, lines: _Lines | None) -> Problem:
    return Problem(dotted(loc), message, source, lines(loc) if lines else None)


def parse_space(
    text: str | bytes, source: str | None = None, *, max_params: float | None = DEFAULT_MAX_SPACE_PARAMS
) -> SearchSpace:
    """Parse and validate a YAML search-space document; raises :class:`SpaceError` listing every problem.
    ``max_params`` is the hard ceiling on the parameters of the space's largest architecture (None: none)."""
    if isinstance(text, bytes):
        if len(text) > MAX_SPACE_FILE_BYTES:
            raise SpaceError([Problem("", f"file is larger than {MAX_SPACE_FILE_BYTES} bytes", source)])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpaceError([Problem("", f"not UTF-8 text (byte {exc.start})", source)]) from None
    if len(text) > MAX_SPACE_FILE_BYTES:
        raise SpaceError([Problem("", f"document is longer than {MAX_SPACE_FILE_BYTES} characters", source)])
    if "\x00" in text:
        raise SpaceError([Problem("", "not a text file (contains NUL bytes)", source)])
    lines = _Lines()
    try:
        doc, problems = _compose(text, lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpaceError([Problem("", f"YAML syntax error: {reason}", source, line)]) from None
    except _TooLarge as exc:
        raise SpaceError([Problem("", str(exc), source)]) from None
    except RecursionError:
        raise SpaceError([Problem("", "document is nested too deeply", source)]) from None
    if problems:
        raise SpaceError(in_document_order(Problem(p.path, p.message, source, p.line) for p in problems))
    return validate_document(doc, source, lines, max_params=max_params)


def _compose(text: str, lines: _Lines) -> tuple[Any, list[Problem]]:
    """The document's Python value and its structural problems (duplicate keys, overlong integers); the value is
    built only when there are none. Parses once after the cheap scan."""
    _scan(text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        problems = lines.walk(node)
        return (None if problems else loader.construct_document(node)), problems
    finally:
        loader.dispose()


def validate_document(
    doc: Any,
    source: str | None = None,
    lines: _Lines | None = None,
    *,
    max_params: float | None = DEFAULT_MAX_SPACE_PARAMS,
) -> SearchSpace:
    """Validate an already-parsed document (a dict, as from JSON or YAML); raises :class:`SpaceError`.

    Cheap checks first, each later one only on a document that passed the earlier: the fields' types and bounds
    (pydantic), every parameter value inside its domain, the block's structure (a loop over at most ``MAX_SLOTS``
    slots), and last the space's extreme architectures against the hard ceiling ``max_params`` (None: no ceiling;
    the entry points pass the ``BRAINSEARCH_MAX_SPACE_PARAMS`` setting) and its own constraints.
    """
    if doc is None:
        raise SpaceError([Problem("", "the document is empty", source)])
    if not isinstance(doc, dict):
        raise SpaceError([Problem("", f"expected a mapping at the top level, got {type(doc).__name__}", source)])
    try:
        space = SearchSpace.model_validate(doc)
    except ValidationError as exc:
        raise SpaceError(in_document_order(problems_from_validation_error(exc, source, line_of=lines))) from None
    except RecursionError:
        raise SpaceError([Problem("", "document is nested too deeply", source)]) from None
    for check in (_check_domains, _check_structure, functools.partial(_check_fits, max_params=max_params)):
        problems = check(space, source, lines)
        if problems:
            raise SpaceError(in_document_order(problems))
    return space


def load_space(path: str | Path, *, max_params: float | None = DEFAULT_MAX_SPACE_PARAMS) -> SearchSpace:
    """Load a search-space YAML file (a path, or the name of a bundled space such as ``"tiny"``); ``max_params`` as
    in :func:`validate_document`."""
    from brainsearch.space.bundled import resolve_space_path

    file = resolve_space_path(path)
    try:
        size = file.stat().st_size
        if size > MAX_SPACE_FILE_BYTES:
            raise SpaceError([Problem("", f"file is larger than {MAX_SPACE_FILE_BYTES} bytes", str(path))])
        data = file.read_bytes()
    except IsADirectoryError:
        raise SpaceError([Problem("", "is a directory, not a file", str(path))]) from None
    except OSError as exc:
        hint = ""
        if isinstance(exc, FileNotFoundError) and not Path(path).suffix:
            from brainsearch.space.bundled import bundled_space_names

            hint = f" (bundled spaces: {', '.join(bundled_space_names())})"
        raise SpaceError([Problem("", f"cannot read: {exc.strerror or exc}{hint}", str(path))]) from None
    return parse_space(data, str(path), max_params=max_params)


ParamT = Fixed | Categorical | IntRange | FloatRange


def _params(space: SearchSpace) -> list[tuple[Loc, str, ParamT]]:
    """Every parameter of the block with its location and domain name (slots and d_model first)."""
    block = space.block
    out: list[tuple[Loc, str, ParamT]] = [(("block", "slots"), "slots", block.slots)]
    out.append((("block", "d_model"), "d_model", block.d_model))
    for t in LAYER_TYPES:
        section = block.params_of(t)
        if section is not None:
            out += [(("block", t, name), name, getattr(section, name)) for name in type(section).model_fields]
    return out


def _check_domains(space: SearchSpace, source: str | None, lines: _Lines | None) -> list[Problem]:
    """Every parameter value inside its domain: at most MAX_CHOICES values per parameter, no loop over slots."""
    problems: list[Problem] = []
    for loc, domain_name, param in _params(space):
        for sub, message in DOMAINS[domain_name].check_param(param):
            problems.append(_problem(source, (*loc, *_split(sub)), message, lines))
    return problems


def _check_structure(space: SearchSpace, source: str | None, lines: _Lines | None) -> list[Problem]:
    """Slot types against the slots, every used layer type configured, min_layers reachable, enough experts for
    the gating and the batch, head_dim resolvable. Runs on domain-checked parameters only: it loops over at most
    MAX_SLOTS slots and over at most MAX_CHOICES values of heads and of d_model."""
    problems: list[Problem] = []
    block = space.block
    num_slots = block.max_slots
    if block.slot_types is not None and len(block.slot_types) != num_slots:
        problems.append(
            _problem(
                source,
                ("block", "slot_types"),
                f"slot_types has {len(block.slot_types)} entries but the block can have {num_slots} slots",
                lines,
            )
        )
    used = {t for i in range(num_slots) for t in block.types_of_slot(i)}
    for t in LAYER_TYPES:
        if block.params_of(t) is None and t in used:
            problems.append(_problem(source, ("block", t), f"slots may be {t} but no {t} parameters are given", lines))
    for t, n in space.constraints.min_layers.items():
        slots_allowing = sum(t in block.types_of_slot(i) for i in range(num_slots))
        if n > slots_allowing:
            problems.append(
                _problem(
                    source,
                    ("constraints", "min_layers", t),
                    f"asks for {n} {t} layers but only {slots_allowing} slots may be {t}",
                    lines,
                )
            )
    if sum(space.constraints.min_layers.values()) > num_slots:
        problems.append(
            _problem(
                source,
                ("constraints", "min_layers"),
                f"asks for more layers than the block's {num_slots} slots",
                lines,
            )
        )
    if block.moe is not None:
        problems += _check_experts(space, source, lines)
    if block.attention is not None and _may_be_null(block.attention.head_dim):
        problems += _check_head_dim(space, source, lines)
    return problems


def _check_experts(space: SearchSpace, source: str | None, lines: _Lines | None) -> list[Problem]:
    moe = space.block.moe
    assert moe is not None
    problems: list[Problem] = []
    min_experts = min(int(v) for v in moe.experts.extremes() if isinstance(v, int | float))
    gatings = moe.gating.values()  # an enum parameter: a fixed name or at most three choices
    for g in gatings:
        k = {"top1": 1, "top2": 2}.get(str(g), 1)
        if k > min_experts:
            problems.append(
                _problem(
                    source,
                    ("block", "moe", "experts"),
                    f"gating {g} needs at least {k} experts, the space allows {min_experts}",
                    lines,
                )
            )
    if "expert_choice" in gatings:
        max_experts = max(int(v) for v in moe.experts.extremes() if isinstance(v, int | float))
        min_cf = min(float(v) for v in moe.capacity_factor.extremes() if isinstance(v, int | float))
        batch = space.proxy.batch_size
        if batch * min_cf < max_experts:
            problems.append(
                _problem(
                    source,
                    ("proxy", "batch_size"),
                    f"expert choice routes causally per position across the batch, so batch_size x "
                    f"capacity_factor must reach the number of experts ({batch} x {min_cf:g} < "
                    f"{max_experts}); raise batch_size",
                    lines,
                )
            )
    return problems


def _split(sub: str) -> Loc:
    if not sub:
        return ()
    if sub.startswith("choices["):
        return ("choices", int(sub[len("choices[") : -1]))
    return (sub,)


def _may_be_null(p: ParamT) -> bool:
    return isinstance(p, Fixed | Categorical) and None in p.values()


def _check_head_dim(space: SearchSpace, source: str | None, lines: _Lines | None) -> list[Problem]:
    """Where head_dim may be null (d_model / heads), every d_model must be divisible by every heads value, and the
    quotient must lie inside head_dim's own domain.

    heads takes at most 256 values (its domain is [1, 256]); d_model's choices are at most MAX_CHOICES and a
    d_model range is checked arithmetically, so this is at most 256 x MAX_CHOICES remainders.
    """
    block = space.block
    assert block.attention is not None
    loc: Loc = ("block", "attention", "head_dim")
    largest_head_dim = DOMAINS["head_dim"].high
    largest_d_model = max(int(v) for v in block.d_model.extremes() if isinstance(v, int | float))
    # heads is an int parameter inside [1, 256] (a float range is refused earlier): at most 256 distinct values.
    for h in sorted({int(v) for v in block.attention.heads.values() if isinstance(v, int | float)}):
        d = _not_divisible(block.d_model, h)
        if d is not None:
            message = f"head_dim may be null (d_model / heads) but d_model {d} is not divisible by heads {h}"
            return [_problem(source, loc, f"{message}; give head_dim", lines)]
        if largest_d_model // h > largest_head_dim:
            message = (
                f"head_dim may be null (d_model / heads) but d_model {largest_d_model} / heads {h} = "
                f"{largest_d_model // h} is above head_dim's bound {largest_head_dim:g}"
            )
            return [_problem(source, loc, f"{message}; give head_dim", lines)]
    return []


def _not_divisible(d_model: ParamT, h: int) -> int | None:
    """A value of ``d_model`` that ``h`` does not divide, or None."""
    if isinstance(d_model, IntRange):
        # low, low + step, ...: all divisible by h exactly when low is and (for more than one value) step is.
        if d_model.low % h:
            return d_model.low
        if d_model.low != d_model.high and d_model.step % h:
            return d_model.low + d_model.step
        return None
    for v in d_model.values():  # a fixed value or at most MAX_CHOICES choices (a float range is refused earlier)
        if isinstance(v, int | float) and int(v) % h:
            return int(v)
    return None


def _check_fits(
    space: SearchSpace, source: str | None, lines: _Lines | None, *, max_params: float | None
) -> list[Problem]:
    """The space is not empty under its constraints and its largest model is below the hard ceiling."""
    try:
        extremes = bounds(space)
        if extremes is None:
            return [_problem(source, ("constraints", "min_layers"), "no slot assignment satisfies min_layers", lines)]
        batch = space.proxy.batch_size
        small_total, large_total, small_activated, _ = extremes.cost_range(batch)
    except ValidationError as exc:
        # The domains lie inside the Architecture's own limits, so this is a bug; still a problem, not a crash.
        first = exc.errors(include_url=False)[0]
        return [_problem(source, ("block",), f"an extreme architecture of the space is invalid: {first['msg']}", lines)]
    problems: list[Problem] = []
    ceiling = max_params
    if ceiling is not None and large_total.params_total > ceiling:
        problems.append(
            _problem(
                source,
                ("block",),
                f"the largest architecture has {fmt_count(large_total.params_total)} parameters, "
                f"above the hard ceiling {fmt_count(ceiling)} (setting BRAINSEARCH_MAX_SPACE_PARAMS)",
                lines,
            )
        )
    c = space.constraints
    if reference_architecture(space) is None:  # a GLaM reference in a space without MoE layers
        needs = [
            (("proxy", "budget", "compute"), "compute: match_baseline")
            if space.proxy.budget.matches_baseline
            else None,
            (("constraints", "max_flops_per_token_ratio"), "max_flops_per_token_ratio")
            if c.max_flops_per_token_ratio is not None
            else None,
        ]
        for loc, what in (n for n in needs if n is not None):
            problems.append(
                _problem(
                    source,
                    loc,
                    f"{what} compares with the {c.baseline} baseline, which this space cannot build (its blocks have "
                    "no MoE layer): set constraints.baseline: dense",
                    lines,
                )
            )
    checks = [
        ("max_params_total", c.max_params_total, small_total.params_total, fmt_count, "total parameters"),
        (
            "max_params_activated",
            c.max_params_activated,
            small_activated.params_activated,
            fmt_count,
            "activated parameters",
        ),
        (
            "max_memory_bytes",
            c.max_memory_bytes,
            memory_floor(space, extremes.smallest_total),
            fmt_bytes,
            "of training memory at its smallest plan",
        ),
    ]
    for field, limit, smallest, fmt, what in checks:
        if limit is not None and smallest > limit:
            problems.append(
                _problem(
                    source,
                    ("constraints", field),
                    f"even the smallest architecture has {fmt(smallest)} {what}, above the limit "
                    f"{fmt(limit)}: every trial would be pruned",
                    lines,
                )
            )
    return problems
