"""Sampling architectures from a space through a suggester, and the space's extremes and size.

Parameter names are stable and conditional, so any Optuna sampler can drive sampling through its trial object:
``slots``, ``d_model``, ``slot{i}.type``; shared parameters ``{type}.{name}`` (only suggested when some slot has
that type); per-slot parameters ``slot{i}.{type}.{name}`` (only when slot i has that type). Fixed parameters and
single-choice lists are not suggested at all.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from brainsearch.arch.cost import Cost, cost, layer_params
from brainsearch.arch.spec import Architecture, AttentionSpec, FFNSpec, MoESpec
from brainsearch.space.params import Categorical, Fixed, FloatRange, IntRange
from brainsearch.space.schema import LAYER_TYPES, MAX_SLOTS, LayerType, SearchSpace

__all__ = [
    "RandomSuggester",
    "SpaceBounds",
    "Suggester",
    "bounds",
    "dimensions",
    "proxy_architecture",
    "sample",
    "space_size",
]

ParamT = Fixed | Categorical | IntRange | FloatRange


def _num_slots(space: SearchSpace) -> int:
    """The block's largest number of slots, refusing a space that skipped the loader's checks: every loop over
    slots here is bounded by MAX_SLOTS."""
    n = space.block.max_slots
    if not 1 <= n <= MAX_SLOTS:
        raise ValueError(f"block.slots {n} is outside [1, {MAX_SLOTS}]: validate the space first (validate_document)")
    return n


class Suggester(Protocol):
    """What sampling needs from its driver; an ``optuna.Trial`` is one."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...


class RandomSuggester:
    """Uniform (or log-uniform) independent sampling from a seeded ``random.Random``; records what it suggested."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """A uniformly chosen element of ``choices``."""
        self.params[name] = value = self._rng.choice(list(choices))
        return value

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        """An int on the grid ``low, low + step, .. high``; log-uniform when ``log``."""
        if log:
            value = min(high, max(low, round(math.exp(self._rng.uniform(math.log(low), math.log(high + 1)) - 0.5))))
        else:
            value = low + step * self._rng.randint(0, (high - low) // step)
        self.params[name] = value
        return value

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """A float in ``[low, high]``; on the step grid or log-uniform when asked."""
        if step is not None:
            value = low + step * self._rng.randint(0, round((high - low) / step))
        elif log:
            value = math.exp(self._rng.uniform(math.log(low), math.log(high)))
        else:
            value = self._rng.uniform(low, high)
        self.params[name] = value
        return value


def _suggest(s: Suggester, name: str, p: ParamT) -> Any:
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Categorical):
        return p.choices[0] if len(p.choices) == 1 else s.suggest_categorical(name, p.choices)
    if isinstance(p, IntRange):
        return p.low if p.low == p.high else s.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    return p.low if p.low == p.high else s.suggest_float(name, p.low, p.high, step=p.step, log=p.log)


def _section_params(space: SearchSpace, t: LayerType) -> dict[str, ParamT]:
    section = space.block.params_of(t)
    if section is None:
        return {}
    return {name: getattr(section, name) for name in type(section).model_fields}


def _layer_dict(t: LayerType, values: dict[str, Any]) -> dict[str, Any]:
    return {"type": t, **{k: v for k, v in values.items() if v is not None}}


def proxy_architecture(space: SearchSpace, d_model: int, layers: list[dict[str, Any]]) -> Architecture:
    """The proxy model of ``space`` (its vocabulary, context, stacked blocks) with this width and block."""
    proxy = space.proxy
    return Architecture.model_validate(
        {
            "d_model": d_model,
            "vocab_size": proxy.vocab_size,
            "seq_len": proxy.seq_len,
            "num_blocks": proxy.num_blocks,
            "block": layers,
            "tie_embeddings": proxy.tie_embeddings,
        }
    )


def sample(space: SearchSpace, suggester: Suggester) -> Architecture:
    """Draw one Architecture, asking ``suggester`` for every free parameter (names in the module docstring)."""
    block = space.block
    _num_slots(space)
    num_slots = int(_suggest(suggester, "slots", block.slots))
    d_model = int(_suggest(suggester, "d_model", block.d_model))
    types: list[LayerType] = []
    for i in range(num_slots):
        allowed = block.types_of_slot(i)
        types.append(allowed[0] if len(allowed) == 1 else suggester.suggest_categorical(f"slot{i}.type", allowed))
    shared: dict[LayerType, dict[str, Any]] = {}
    for t in LAYER_TYPES:
        if t in types:
            params = _section_params(space, t)
            shared[t] = {n: _suggest(suggester, f"{t}.{n}", p) for n, p in params.items() if not p.per_slot}
    layers = []
    for i, t in enumerate(types):
        params = _section_params(space, t)
        values = {n: _suggest(suggester, f"slot{i}.{t}.{n}", p) for n, p in params.items() if p.per_slot}
        layers.append(_layer_dict(t, {**shared[t], **values}))
    return proxy_architecture(space, d_model, layers)


# --- extremes ----------------------------------------------------------------------------------------------------

Metric = Literal["params_total", "params_activated"]


@dataclass(frozen=True)
class SpaceBounds:
    """The smallest and largest architectures of a space by total and by activated parameters."""

    smallest_total: Architecture
    largest_total: Architecture
    smallest_activated: Architecture
    largest_activated: Architecture

    def cost_range(self, batch_size: int) -> tuple[Cost, Cost, Cost, Cost]:
        """Costs of the four extremes, in field order."""
        return (
            cost(self.smallest_total, batch_size),
            cost(self.largest_total, batch_size),
            cost(self.smallest_activated, batch_size),
            cost(self.largest_activated, batch_size),
        )


def _layer_candidates(space: SearchSpace, t: LayerType, d_model: int) -> Iterator[dict[str, Any]]:
    # The product of every parameter's extremes: two per number (three with null), at most the domain's names per
    # enum (3 gatings, 6 activations), so at most 2 * 2 * 3 * 2 * 6 * 3 = 432 MoE layers.
    if space.block.params_of(t) is None:
        return
    params = _section_params(space, t)
    names = list(params)
    for combo in itertools.product(*(params[n].extremes() for n in names)):
        layer = _layer_dict(t, dict(zip(names, combo, strict=True)))
        if t == "attention" and layer.get("head_dim") is None:
            if d_model % int(layer["heads"]):
                continue
            layer["head_dim"] = d_model // int(layer["heads"])
        yield layer


def _layer_metric(layer: dict[str, Any], d_model: int, metric: Metric) -> int:
    spec: AttentionSpec | FFNSpec | MoESpec
    if layer["type"] == "attention":
        spec = AttentionSpec.model_validate(layer)
    elif layer["type"] == "ffn":
        spec = FFNSpec.model_validate(layer)
    else:
        spec = MoESpec.model_validate(layer)
    total, activated = layer_params(spec, d_model)
    return total if metric == "params_total" else activated


def _best_assignment(
    space: SearchSpace, num_slots: int, per_type: dict[LayerType, tuple[int, dict[str, Any]]], largest: bool
) -> list[LayerType] | None:
    """Slot types optimising the summed metric under ``min_layers`` (a small DP over capped type counts)."""
    mins = {t: n for t, n in space.constraints.min_layers.items() if n > 0}
    keys = sorted(mins)
    sign = -1 if largest else 1
    # state: counts of each required type, capped at its minimum -> (score, assignment)
    states: dict[tuple[int, ...], tuple[int, list[LayerType]]] = {tuple(0 for _ in keys): (0, [])}
    for i in range(num_slots):
        nxt: dict[tuple[int, ...], tuple[int, list[LayerType]]] = {}
        for state, (score, assigned) in states.items():
            for t in space.block.types_of_slot(i):
                if t not in per_type:
                    continue
                counts = tuple(min(c + (k == t), mins[k]) for c, k in zip(state, keys, strict=True))
                cand = (score + sign * per_type[t][0], [*assigned, t])
                if counts not in nxt or cand[0] < nxt[counts][0]:
                    nxt[counts] = cand
        states = nxt
    goal = tuple(mins[k] for k in keys)
    return states[goal][1] if goal in states else None


def _extreme(space: SearchSpace, metric: Metric, largest: bool) -> Architecture | None:
    pick = max if largest else min
    best: tuple[int, Architecture] | None = None
    slot_values = [int(v) for v in space.block.slots.values() if isinstance(v, int | float)]
    for d_model in {int(v) for v in space.block.d_model.extremes() if isinstance(v, int | float)}:
        per_type: dict[LayerType, tuple[int, dict[str, Any]]] = {}
        for t in LAYER_TYPES:
            scored = [(_layer_metric(c, d_model, metric), c) for c in _layer_candidates(space, t, d_model)]
            if scored:
                per_type[t] = pick(scored, key=lambda x: x[0])
        for num_slots in slot_values:
            types = _best_assignment(space, num_slots, per_type, largest)
            if types is None:
                continue
            arch = proxy_architecture(space, d_model, [per_type[t][1] for t in types])
            value = getattr(cost(arch), metric)
            if best is None or (value > best[0] if largest else value < best[0]):
                best = (value, arch)
    return None if best is None else best[1]


def bounds(space: SearchSpace) -> SpaceBounds | None:
    """The space's extreme architectures, or None when no slot assignment meets ``constraints.min_layers``.

    ``space`` must have passed :func:`~brainsearch.space.validate_document` (every parameter inside its domain): the
    work is then bounded by MAX_SLOTS slots, two d_model extremes and a few hundred candidate layers per type.
    """
    _num_slots(space)
    found = [_extreme(space, m, largest) for m in ("params_total", "params_activated") for largest in (False, True)]
    if any(a is None for a in found):
        return None
    a, b, c, d = found
    assert a and b and c and d
    return SpaceBounds(a, b, c, d)


def space_size(space: SearchSpace) -> int | None:
    """How many distinct architectures the space holds before constraints; None for a continuous space.

    Shared parameters count once per layer type present; per-slot ones once per slot of that type. The number of
    slot-type assignments using exactly a set S of types comes from inclusion-exclusion over subsets of S.
    """
    block = space.block
    _num_slots(space)
    d_count = block.d_model.num_values
    if d_count is None:
        return None
    shared: dict[LayerType, int] = {}
    per_slot: dict[LayerType, int] = {}
    for t in LAYER_TYPES:
        shared[t] = per_slot[t] = 1
        for p in _section_params(space, t).values():
            n = p.num_values
            if n is None:
                return None
            if p.per_slot:
                per_slot[t] *= n
            else:
                shared[t] *= n
    total = 0
    for num_slots_value in block.slots.values():
        num_slots = int(num_slots_value) if isinstance(num_slots_value, int | float) else 0
        allowed = [block.types_of_slot(i) for i in range(num_slots)]

        def assignments(types: frozenset[LayerType], allowed: list[list[LayerType]] = allowed) -> int:
            return math.prod(sum(per_slot[t] for t in a if t in types) for a in allowed)

        for r in range(1, len(LAYER_TYPES) + 1):
            for used in itertools.combinations(LAYER_TYPES, r):
                exact = sum(
                    (-1) ** (r - k) * assignments(frozenset(sub))
                    for k in range(r + 1)
                    for sub in itertools.combinations(used, k)
                )
                total += exact * math.prod(shared[t] for t in used)
    return d_count * total


def dimensions(space: SearchSpace) -> list[str]:
    """Names of every parameter a sampler may be asked for (conditional ones included), in suggestion order."""
    block = space.block
    _num_slots(space)
    free = [n for n, p in (("slots", block.slots), ("d_model", block.d_model)) if (p.num_values or 2) > 1]
    free += [f"slot{i}.type" for i in range(block.max_slots) if len(block.types_of_slot(i)) > 1]
    used = [t for t in LAYER_TYPES if any(t in block.types_of_slot(i) for i in range(block.max_slots))]
    for t in used:
        free += [f"{t}.{n}" for n, p in _section_params(space, t).items() if not p.per_slot and _is_free(p)]
    for i in range(block.max_slots):
        for t in block.types_of_slot(i):
            free += [f"slot{i}.{t}.{n}" for n, p in _section_params(space, t).items() if p.per_slot and _is_free(p)]
    return free


def _is_free(p: ParamT) -> bool:
    return p.num_values is None or p.num_values > 1
