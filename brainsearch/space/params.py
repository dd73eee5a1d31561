"""Parameter kinds of the search-space DSL and the domains that bound them.

In YAML a parameter is written as one of::

    d_model: 768                                 # fixed
    d_model: {choices: [512, 768, 1024]}         # categorical
    hidden: {low: 512, high: 4096, step: 512}    # int range (both ends ints), optional step / log
    capacity_factor: {low: 1.0, high: 4.0}       # float range, optional log

and any of them may add ``per_slot: true`` to be chosen separately for every slot (default: one value shared by all
slots of that layer type).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_validator

from brainsearch._validation import shown

__all__ = [
    "MAX_CHOICES",
    "MAX_ENUMERATED",
    "MAX_GRID_STEPS",
    "STRICT_INPUT",
    "Categorical",
    "Domain",
    "Fixed",
    "FloatRange",
    "IntRange",
    "Param",
    "Scalar",
]

Scalar = int | float | str | bool | None
# User input is strict: YAML's true is not the count 1 (nor "8" the int 8), and NaN or infinity is no bound, size
# or budget. Ints stay accepted where a float is expected.
STRICT_INPUT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
_STRICT = STRICT_INPUT
# Ranges larger than this are not enumerated when a check needs every value.
MAX_ENUMERATED = 4096
# Longest list of choices: each is checked against the domain and against the others (quadratic, so bounded).
MAX_CHOICES = 256
# Finest grid of a stepped float range, in steps between low and high: a finer one is a continuum (leave out step).
MAX_GRID_STEPS = 1 << 20


def _scalar(value: Any) -> Any:
    """One value of a parameter: a number (finite), a name, a boolean or null; anything else is refused here with
    one message (a plain union would report one error per member type)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    raise ValueError(f"expected a number, a name or null, not a {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _described(value: Any) -> str:
    """The value as a message quotes it: its repr when short, else what it is (never a 4000-digit number)."""
    if (text := shown(value)) is not None:
        return text
    if isinstance(value, int):
        digits = int(value.bit_length() * math.log10(2)) + 1  # exact or one too many; str() of it may be refused
        return f"a number of {digits - (10 ** (digits - 1) > abs(value))} digits"
    return f"a long {_kind(value)}" if isinstance(value, str) else f"a {_kind(value)}"


# The BeforeValidator does the checking (one message); the strict union after it keeps each value's own type.
ScalarValue = Annotated[Scalar, BeforeValidator(_scalar)]


class Fixed(BaseModel):
    """A parameter with one value."""

    model_config = _STRICT
    kind: Literal["fixed"] = "fixed"
    value: ScalarValue
    per_slot: bool = False

    @model_validator(mode="before")
    @classmethod
    def _wrap_scalar(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return data
        # Checked before wrapping, so that a problem is reported at the parameter the user wrote, not at ".value".
        return {"value": _scalar(data)}

    def values(self) -> list[Scalar]:
        """Every value the parameter can take."""
        return [self.value]

    def extremes(self) -> list[Scalar]:
        """The values worth trying when looking for the smallest and largest architecture."""
        return [self.value]

    @property
    def num_values(self) -> int | None:
        """How many values the parameter can take (None: a continuum)."""
        return 1


class Categorical(BaseModel):
    """One of a list of values."""

    model_config = _STRICT
    kind: Literal["choice"] = "choice"
    choices: list[ScalarValue] = Field(min_length=1, max_length=MAX_CHOICES)
    per_slot: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> Categorical:
        seen: list[Scalar] = []
        for c in self.choices:
            if any(type(c) is type(s) and c == s for s in seen):
                raise ValueError(f"choice {_described(c)} is listed twice")
            seen.append(c)
        return self

    def values(self) -> list[Scalar]:
        """Every value the parameter can take."""
        return list(self.choices)

    def extremes(self) -> list[Scalar]:
        """Numbers: the smallest and largest (and null if listed); anything else: every choice."""
        numbers = [c for c in self.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        if len(numbers) != len([c for c in self.choices if c is not None]):
            return list(self.choices)
        out: list[Scalar] = [min(numbers), max(numbers)] if numbers else []
        return out + ([None] if None in self.choices else [])

    @property
    def num_values(self) -> int | None:
        """How many values the parameter can take."""
        return len(self.choices)


class IntRange(BaseModel):
    """An integer in ``[low, high]`` on a grid of ``step``, optionally sampled log-uniformly."""

    model_config = _STRICT
    kind: Literal["int"] = "int"
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False
    per_slot: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low {_described(self.low)} is above high {_described(self.high)}")
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"high - low ({_described(self.high - self.low)}) is not a multiple of step {_described(self.step)}"
            )
        if self.log and self.step != 1:
            raise ValueError("log-uniform sampling needs step 1")
        if self.log and self.low < 1:
            raise ValueError("log-uniform sampling needs low >= 1")
        return self

    def values(self) -> list[Scalar]:
        """Every value (only for ranges of at most MAX_ENUMERATED values)."""
        if (self.num_values or 0) > MAX_ENUMERATED:
            raise ValueError("range too large to enumerate")
        return list(range(self.low, self.high + 1, self.step))

    def extremes(self) -> list[Scalar]:
        """Both ends."""
        return [self.low, self.high]

    @property
    def num_values(self) -> int | None:
        """How many grid points the range has."""
        return (self.high - self.low) // self.step + 1


class FloatRange(BaseModel):
    """A float in ``[low, high]``, optionally on a grid of ``step`` or sampled log-uniformly."""

    model_config = _STRICT
    kind: Literal["float"] = "float"
    low: float
    high: float
    step: float | None = Field(default=None, gt=0)
    log: bool = False
    per_slot: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        # low, high and step are finite (the config refuses NaN and infinity) but high - low may still overflow.
        if not math.isfinite(self.high - self.low):
            raise ValueError("high - low is too large")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.step is not None:
            raise ValueError("log-uniform sampling cannot have a step")
        if self.log and self.low <= 0:
            raise ValueError("log-uniform sampling needs low > 0")
        if self.step is not None:
            n = (self.high - self.low) / self.step
            if n > MAX_GRID_STEPS:
                # Also keeps round(n) below: a tiny step makes n infinite, and round(inf) raises OverflowError.
                raise ValueError(
                    f"step {self.step:g} cuts [{self.low:g}, {self.high:g}] into more than {MAX_GRID_STEPS} steps; "
                    "use a coarser step, or none for a continuous range"
                )
            if abs(n - round(n)) > 1e-9:
                raise ValueError(f"high - low ({self.high - self.low}) is not a multiple of step {self.step}")
        return self

    def values(self) -> list[Scalar]:
        """Every value (stepped ranges of at most MAX_ENUMERATED values only)."""
        if self.step is None:
            raise ValueError("a continuous range has no finite list of values")
        if (self.num_values or 0) > MAX_ENUMERATED:
            raise ValueError("range too large to enumerate")
        n = round((self.high - self.low) / self.step)
        return [self.low + i * self.step for i in range(n + 1)]

    def extremes(self) -> list[Scalar]:
        """Both ends."""
        return [self.low, self.high]

    @property
    def num_values(self) -> int | None:
        """Grid points of a stepped range; None for a continuum."""
        return None if self.step is None else round((self.high - self.low) / self.step) + 1


def _param_tag(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        return str(getattr(v, "kind", None))
    if not isinstance(v, dict):
        return "fixed"
    if "choices" in v:
        return "choice"
    if "low" in v or "high" in v:
        ends = (v.get("low"), v.get("high"), v.get("step", 1))
        if all(isinstance(x, int) and not isinstance(x, bool) for x in ends):
            return "int"
        return "float"
    if "value" in v:
        return "fixed"
    return None


Param = Annotated[
    Annotated[Fixed, Tag("fixed")]
    | Annotated[Categorical, Tag("choice")]
    | Annotated[IntRange, Tag("int")]
    | Annotated[FloatRange, Tag("float")],
    Discriminator(
        _param_tag,
        custom_error_type="invalid_parameter",
        custom_error_message="expected a value, {choices: [...]}, or {low: ..., high: ...}",
    ),
]


@dataclass(frozen=True)
class Domain:
    """The values a named parameter may take: a bounded int or float, or one of a set of names."""

    kind: Literal["int", "float", "enum"]
    low: float = 0
    high: float = 0
    options: tuple[str, ...] = ()
    nullable: bool = False
    low_inclusive: bool = True

    def check(self, value: Scalar) -> str | None:
        """Why ``value`` is outside the domain, or None if it is inside."""
        if value is None:
            return None if self.nullable else "null is not allowed here"
        got = _described(value)
        if self.kind == "enum":
            if value not in self.options:
                return f"{got} is not one of {', '.join(self.options)}"
            return None
        if isinstance(value, bool):
            return f"expected a number, not a boolean (got {got})"
        if not isinstance(value, int | float):
            return f"expected a number, got {got}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {got}"
        if self.kind == "int" and isinstance(value, float) and not value.is_integer():
            return f"expected an integer, got {got}"
        # Ints compare exactly with the float ends, however many digits they have (no conversion to float).
        too_low = value < self.low if self.low_inclusive else value <= self.low
        if too_low or value > self.high:
            lo = "[" if self.low_inclusive else "("
            return f"{got} is outside {lo}{_num(self.low)}, {_num(self.high)}]"
        return None

    def check_param(self, param: Fixed | Categorical | IntRange | FloatRange) -> list[tuple[str, str]]:
        """``(sub-path, message)`` for every value of ``param`` outside the domain."""
        if isinstance(param, Fixed):
            msg = self.check(param.value)
            return [("", msg)] if msg else []
        if isinstance(param, Categorical):
            return [(f"choices[{i}]", m) for i, c in enumerate(param.choices) if (m := self.check(c))]
        if self.kind == "enum":
            return [("", "expected one of the names " + ", ".join(self.options) + ", not a range")]
        if self.kind == "int" and isinstance(param, FloatRange):
            return [("", "expected an integer range (ints for low, high and step)")]
        return [(end, m) for end in ("low", "high") if (m := self.check(getattr(param, end)))]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
