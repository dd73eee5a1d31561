"""Loading a search-space YAML file: parse, validate strictly, check it against its own constraints.

Every problem becomes a :class:`~brainsearch.errors.Problem` naming the file, the dotted field path and, where the
YAML parser knows it, the line; :class:`~brainsearch.errors.SpaceError` carries them all at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from brainsearch._format import fmt_bytes, fmt_count
from brainsearch._validation import dotted, problems_from_validation_error
from brainsearch.errors import Problem, SpaceError
from brainsearch.settings import get_settings
from brainsearch.space.params import MAX_ENUMERATED, Categorical, Fixed, FloatRange, IntRange
from brainsearch.space.sample import bounds
from brainsearch.space.schema import DOMAINS, LAYER_TYPES, SearchSpace

__all__ = ["MAX_SPACE_FILE_BYTES", "load_space", "parse_space", "validate_document"]

MAX_SPACE_FILE_BYTES = 1 << 20

Loc = tuple[int | str, ...]


class _Lines:
    """Line numbers (1-based) of every key and item of a YAML document, by location."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}

    def walk(self, node: yaml.Node, loc: Loc = ()) -> list[Problem]:
        self.lines[loc] = node.start_mark.line + 1
        duplicates: list[Problem] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    duplicates.append(Problem(dotted((*loc, key)), "duplicate key", line=key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
                duplicates += self.walk(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                duplicates += self.walk(item, (*loc, i))
        return duplicates

    def __call__(self, loc: Loc) -> int | None:
        # The nearest located ancestor: a missing field is reported at its parent's line.
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None


def _problem(source: str | None, loc: Loc, message: str, lines: _Lines | None) -> Problem:
    return Problem(dotted(loc), message, source, lines(loc) if lines else None)


def parse_space(text: str | bytes, source: str | None = None) -> SearchSpace:
    """Parse and validate a YAML search-space document; raises :class:`SpaceError` listing every problem."""
    if isinstance(text, bytes):
        if len(text) > MAX_SPACE_FILE_BYTES:
            raise SpaceError([Problem("", f"file is larger than {MAX_SPACE_FILE_BYTES} bytes", source)])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpaceError([Problem("", f"not UTF-8 text (byte {exc.start})", source)]) from None
    if "\x00" in text:
        raise SpaceError([Problem("", "not a text file (contains NUL bytes)", source)])
    lines = _Lines()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        duplicates = lines.walk(node) if node is not None else []
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpaceError([Problem("", f"YAML syntax error: {reason}", source, line)]) from None
    except RecursionError:
        raise SpaceError([Problem("", "document is nested too deeply", source)]) from None
    if duplicates:
        raise SpaceError([Problem(p.path, p.message, source, p.line) for p in duplicates])
    return validate_document(doc, source, lines)


def validate_document(doc: Any, source: str | None = None, lines: _Lines | None = None) -> SearchSpace:
    """Validate an already-parsed document (a dict, as from JSON or YAML); raises :class:`SpaceError`."""
    if doc is None:
        raise SpaceError([Problem("", "the document is empty", source)])
    if not isinstance(doc, dict):
        raise SpaceError([Problem("", f"expected a mapping at the top level, got {type(doc).__name__}", source)])
    try:
        space = SearchSpace.model_validate(doc)
    except ValidationError as exc:
        raise SpaceError(problems_from_validation_error(exc, source, line_of=lines)) from None
    except RecursionError:
        raise SpaceError([Problem("", "document is nested too deeply", source)]) from None
    problems = _check_values(space, source, lines)
    if not problems:
        problems = _check_fits(space, source, lines)
    if problems:
        raise SpaceError(problems)
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Load a search-space YAML file (a path, or the name of a bundled space such as ``"tiny"``)."""
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
    return parse_space(data, str(path))


def _check_values(space: SearchSpace, source: str | None, lines: _Lines | None) -> list[Problem]:
    """Every parameter value inside its domain, every used layer type configured, head_dim resolvable."""
    problems: list[Problem] = []
    block = space.block

    def check(loc: Loc, domain_name: str, param: Fixed | Categorical | IntRange | FloatRange) -> None:
        for sub, message in DOMAINS[domain_name].check_param(param):
            full = (*loc, *(_split(sub)))
            problems.append(_problem(source, full, message, lines))

    check(("block", "slots"), "slots", block.slots)
    check(("block", "d_model"), "d_model", block.d_model)
    used = {t for i in range(block.max_slots) for t in block.types_of_slot(i)}
    for t in LAYER_TYPES:
        section = block.params_of(t)
        if section is None:
            if t in used:
                problems.append(
                    _problem(source, ("block", t), f"slots may be {t} but no {t} parameters are given", lines)
                )
            continue
        for name in type(section).model_fields:
            check(("block", t, name), name, getattr(section, name))
    for t, n in space.constraints.min_layers.items():
        slots_allowing = sum(t in block.types_of_slot(i) for i in range(block.max_slots))
        if n > slots_allowing:
            problems.append(
                _problem(
                    source,
                    ("constraints", "min_layers", t),
                    f"asks for {n} {t} layers but only {slots_allowing} slots may be {t}",
                    lines,
                )
            )
    if sum(space.constraints.min_layers.values()) > block.max_slots:
        problems.append(
            _problem(
                source,
                ("constraints", "min_layers"),
                f"asks for more layers than the block's {block.max_slots} slots",
                lines,
            )
        )
    if problems:
        return problems
    if block.moe is not None:
        min_experts = min(int(v) for v in block.moe.experts.extremes() if isinstance(v, int | float))
        for g in block.moe.gating.values():
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
    if block.moe is not None and "expert_choice" in block.moe.gating.values():
        max_experts = max(int(v) for v in block.moe.experts.extremes() if isinstance(v, int | float))
        min_cf = min(float(v) for v in block.moe.capacity_factor.extremes() if isinstance(v, int | float))
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
    if block.attention is not None and None in _finite_values(block.attention.head_dim):
        problems += _check_head_dim(space, source, lines)
    return problems


def _split(sub: str) -> Loc:
    if not sub:
        return ()
    if sub.startswith("choices["):
        return ("choices", int(sub[len("choices[") : -1]))
    return (sub,)


def _finite_values(p: Fixed | Categorical | IntRange | FloatRange) -> list[Any]:
    if p.num_values is None or p.num_values > MAX_ENUMERATED:
        return []
    return p.values()


def _check_head_dim(space: SearchSpace, source: str | None, lines: _Lines | None) -> list[Problem]:
    block = space.block
    assert block.attention is not None
    loc: Loc = ("block", "attention", "head_dim")
    d_values, h_values = _finite_values(block.d_model), _finite_values(block.attention.heads)
    if not d_values or not h_values:
        return [_problem(source, loc, "give head_dim when d_model or heads is a large range", lines)]
    for d in d_values:
        for h in h_values:
            if int(d) % int(h):
                return [
                    _problem(
                        source,
                        loc,
                        f"head_dim may be null (d_model / heads) but d_model {d} is not "
                        f"divisible by heads {h}; give head_dim",
                        lines,
                    )
                ]
    return []


def _check_fits(space: SearchSpace, source: str | None, lines: _Lines | None) -> list[Problem]:
    """The space is not empty under its constraints and its largest model is below the hard ceiling."""
    extremes = bounds(space)
    if extremes is None:
        return [_problem(source, ("constraints", "min_layers"), "no slot assignment satisfies min_layers", lines)]
    batch = space.proxy.batch_size
    small_total, large_total, small_activated, _ = extremes.cost_range(batch)
    problems: list[Problem] = []
    ceiling = get_settings().max_space_params
    if large_total.params_total > ceiling:
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
    checks = [
        ("max_params_total", c.max_params_total, small_total.params_total, fmt_count, "total parameters"),
        (
            "max_params_activated",
            c.max_params_activated,
            small_activated.params_activated,
            fmt_count,
            "activated parameters",
        ),
        ("max_memory_bytes", c.max_memory_bytes, small_total.memory_bytes, fmt_bytes, "of training memory"),
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
