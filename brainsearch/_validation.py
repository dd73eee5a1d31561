"""Turn pydantic validation errors into path-named :class:`~brainsearch.errors.Problem` s (one choke point)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ValidationError

from brainsearch.errors import Problem

__all__ = ["dotted", "problems_from_validation_error"]


def dotted(loc: Sequence[int | str]) -> str:
    """``("block", 2, "hidden")`` -> ``"block[2].hidden"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
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
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        elif message.startswith("Assertion failed, "):
            message = message.removeprefix("Assertion failed, ")
        if err["type"] not in {"missing", "extra_forbidden"} and "input" in err:
            shown = repr(err["input"])
            if len(shown) <= 60 and not isinstance(err["input"], dict | list):
                message = f"{message} (got {shown})"
        problems.append(Problem(dotted(loc), message, source, line_of(loc) if line_of else None))
    return problems
