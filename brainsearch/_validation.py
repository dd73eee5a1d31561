"""Turn pydantic validation errors into path-named :class:`~brainsearch.errors.Problem` s (one choke point)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from brainsearch.errors import Problem

__all__ = ["dotted", "error_message", "in_document_order", "problems_from_validation_error", "shown"]

# Messages quote the offending input only when it is short: a 4000-digit number or a long string is named, not
# copied into every line of the report.
_MAX_SHOWN = 60


def dotted(loc: Sequence[int | str]) -> str:
    """``("block", 2, "hidden")`` -> ``"block[2].hidden"``. A key with unprintable characters (a line break such as
    U+0085 would split the one-line error) is shown escaped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part)
            name = name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
            out += f".{name}" if out else name
    return out


_UNION_TAGS = frozenset({"attention", "ffn", "moe"})
# Tags of the search-space parameter union (brainsearch.space.params.Param); never a field name.
_PARAM_TAGS = frozenset({"fixed", "choice", "int", "float"})


def _clean_loc(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    # A discriminated union adds its tag after the list index ("block", 2, "moe", "hidden") and function
    # validators add their name; neither is a field the user wrote.
    out: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (
            "[" in part or part in _PARAM_TAGS or (part in _UNION_TAGS and out and isinstance(out[-1], int))
        ):
            continue
        out.append(part)
    return tuple(out)


# Pydantic's error types for "this is not a number" (strict mode refuses booleans with these).
_NUMBER_TYPES = frozenset({"int_type", "float_type", "int_parsing", "float_parsing", "int_from_float"})


def shown(value: object) -> str | None:
    """``repr(value)`` when it is a short scalar worth quoting in a message, else None (containers, long text)."""
    if isinstance(value, dict | list | tuple | set):
        return None
    if isinstance(value, str) and len(value) > _MAX_SHOWN:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**_MAX_SHOWN:
        return None  # repr of a huge int is quadratic and would fill the line
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else None


def in_document_order(problems: Iterable[Problem]) -> list[Problem]:
    """``problems`` sorted by line where lines are known (a YAML file); unlocated ones keep their order, last."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


def problems_from_validation_error(
    exc: ValidationError,
    source: str | None = None,
    prefix: Sequence[int | str] = (),
    line_of: Callable[[tuple[int | str, ...]], int | None] | None = None,
) -> list[Problem]:
    """One :class:`Problem` per pydantic error, its location written as a dotted path."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *_clean_loc(err["loc"]))
        problems.append(Problem(dotted(loc), error_message(err), source, line_of(loc) if line_of else None))
    return problems


def error_message(err: Mapping[str, Any]) -> str:
    """The message of one pydantic error (``{"type", "msg", "input"}``, as FastAPI passes them on too), in the
    project's words: without pydantic's prefixes, the offending value quoted where it is short."""
    message = str(err["msg"])
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif message.startswith("Assertion failed, "):
        message = message.removeprefix("Assertion failed, ")
    if err["type"] not in {"missing", "extra_forbidden"} and "input" in err:
        value = err["input"]
        if isinstance(value, bool) and err["type"] in _NUMBER_TYPES:
            # YAML's true/false (also yes/no, on/off) is a boolean, and a boolean is not a count.
            message = f"{message}, not a boolean"
        if (text := shown(value)) is not None:
            message = f"{message} (got {text})"
    return message
