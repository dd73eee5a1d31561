"""The search-space document: what a YAML file in ``search_spaces/`` holds (documented field by field in
``search_spaces/README.md``).

A space describes a whole reproducible search: the block (slots, per-slot layer types, type-conditional parameters),
the proxy model and its training budget, constraints on cost, and the search settings.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import AllowInfNan, BaseModel, BeforeValidator, Field, Strict, field_validator, model_validator

from brainsearch.arch.scale import SCALE_PRESETS
from brainsearch.arch.spec import ACTIVATIONS, GATINGS
from brainsearch.space.params import STRICT_INPUT, Domain, Fixed, Param

__all__ = [
    "DOMAINS",
    "LAYER_TYPES",
    "MAX_BUDGET_FLOPS",
    "MAX_BUDGET_SECONDS",
    "MAX_BUDGET_TOKENS",
    "MAX_CONSTRAINT_BYTES",
    "MAX_CONSTRAINT_PARAMS",
    "MAX_NUM_BLOCKS",
    "MAX_SLOTS",
    "SAMPLER_NAMES",
    "AttentionParams",
    "BlockSpace",
    "Budget",
    "Constraints",
    "EvolutionSettings",
    "FFNParams",
    "LayerType",
    "MoEParams",
    "ProxySettings",
    "Quantity",
    "Rung",
    "ScaleUpSettings",
    "SearchSettings",
    "SearchSpace",
    "parse_quantity",
]

LayerType = Literal["attention", "moe", "ffn"]
LAYER_TYPES: tuple[LayerType, ...] = ("attention", "moe", "ffn")
_STRICT = STRICT_INPUT

# Hard limits on what a space may ask for: no accepted file describes an absurd model. The proxy scales of the
# paper (d 1024, hidden 4096, 64 experts, 8 slots) sit far inside them.
MAX_SLOTS = 32
MAX_NUM_BLOCKS = 128
DOMAINS: dict[str, Domain] = {
    "d_model": Domain("int", 8, 16_384),
    "heads": Domain("int", 1, 256),
    "head_dim": Domain("int", 1, 512, nullable=True),
    "hidden": Domain("int", 8, 131_072),
    "experts": Domain("int", 1, 1024),
    "gating": Domain("enum", options=GATINGS),
    "capacity_factor": Domain("float", 0, 16, low_inclusive=False),
    "activation": Domain("enum", options=ACTIVATIONS),
    "rank": Domain("int", 1, 131_072, nullable=True),
    "slots": Domain("int", 1, MAX_SLOTS),
}

# Upper bounds of the quantities: room for the largest runs at the paper's scales and beyond (GLaM trained 1.2T
# parameters on 1.6T tokens with about 1e24 FLOPs), none for a typo's 1e30.
MAX_BUDGET_TOKENS = 1e13  # 10T tokens per trial or rung
MAX_BUDGET_FLOPS = 1e25
MAX_BUDGET_SECONDS = 30 * 24 * 3600.0  # 30 days
MAX_CONSTRAINT_PARAMS = 1e13  # 10T parameters (the hard ceiling of a space's models defaults to 2T)
MAX_CONSTRAINT_BYTES = float(2**50)  # 1 PiB of training memory

_SUFFIXES = {
    "k": 1e3,
    "m": 1e6,
    "b": 1e9,
    "g": 1e9,
    "t": 1e12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
}
# A sign is read too, so that "-5" is refused by the field's bound (greater than 0), not as "not a number".
_QUANTITY = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
# Longest quantity string read: "1.5e12" or "40 GiB" need a handful of characters; the regex is only ever run on
# short strings (on long ones its backtracking is polynomial: minutes for a few kilobytes of digits).
_MAX_QUANTITY_CHARS = 64


def parse_quantity(v: Any) -> Any:
    """``"1.5B"`` -> 1.5e9, ``"40GiB"`` -> 40 * 2**30, ``"1e9"`` -> 1e9 (YAML reads 1e9 as a string).

    Anything else is returned as it is, for the field's own type check (which refuses booleans, NaN and infinity).
    """
    if isinstance(v, str):
        if len(v) > _MAX_QUANTITY_CHARS:
            raise ValueError(f"not a number: longer than {_MAX_QUANTITY_CHARS} characters")
        m = _QUANTITY.match(v)
        if not m or m.group(2).lower() not in {"", *_SUFFIXES}:
            raise ValueError(f"{v!r} is not a number (suffixes: K, M, B, T; kB, MB, GB, TB; KiB, MiB, GiB, TiB)")
        return float(m.group(1)) * _SUFFIXES.get(m.group(2).lower(), 1)
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 1023:
        raise ValueError("number too large")  # no float holds it: float(v) would raise OverflowError
    return v


_PARSED = BeforeValidator(parse_quantity)
# Strict, finite floats (ints accepted), parsed from suffixed strings first. Quantity is the general form other
# modules use; the space's own fields carry their specific upper bounds.
Quantity = Annotated[float, _PARSED, Strict(), AllowInfNan(False), Field(gt=0, le=1e30)]
TokenCount = Annotated[float, _PARSED, Strict(), AllowInfNan(False), Field(gt=0, le=MAX_BUDGET_TOKENS)]
FlopCount = Annotated[float, _PARSED, Strict(), AllowInfNan(False), Field(gt=0, le=MAX_BUDGET_FLOPS)]
Seconds = Annotated[float, _PARSED, Strict(), AllowInfNan(False), Field(gt=0, le=MAX_BUDGET_SECONDS)]
ParamCount = Annotated[float, _PARSED, Strict(), AllowInfNan(False), Field(gt=0, le=MAX_CONSTRAINT_PARAMS)]
ByteCount = Annotated[float, _PARSED, Strict(), AllowInfNan(False), Field(gt=0, le=MAX_CONSTRAINT_BYTES)]


def _not_bool(v: Any) -> Any:
    # Literal[1] matches True (True == 1 and hash(True) == hash(1)), even in strict mode.
    if isinstance(v, bool):
        raise ValueError("expected the number 1, not a boolean")
    return v


class AttentionParams(BaseModel):
    """Parameters of attention slots."""

    model_config = _STRICT
    heads: Param = Fixed(value=8)
    head_dim: Param = Fixed(value=None)


class FFNParams(BaseModel):
    """Parameters of dense FFN slots."""

    model_config = _STRICT
    hidden: Param
    activation: Param = Fixed(value="gelu")
    rank: Param = Fixed(value=None)


class MoEParams(BaseModel):
    """Parameters of MoE slots."""

    model_config = _STRICT
    hidden: Param
    experts: Param
    gating: Param = Fixed(value="top2")
    capacity_factor: Param = Fixed(value=2.0)
    activation: Param = Fixed(value="gelu")
    rank: Param = Fixed(value=None)


LayerTypes = list[LayerType]


class BlockSpace(BaseModel):
    """The block: its slots, which layer types each slot may take, and each type's parameters."""

    model_config = _STRICT
    slots: Param = Field(description="number of sub-layers in the block: an int or an int range")
    layer_types: LayerTypes = Field(
        default_factory=lambda: list(LAYER_TYPES), min_length=1, max_length=len(LAYER_TYPES)
    )
    slot_types: list[LayerType | Annotated[LayerTypes, Field(max_length=len(LAYER_TYPES))]] | None = Field(
        default=None,
        max_length=MAX_SLOTS,
        description="per-slot layer types, overriding layer_types; one entry per possible slot",
    )
    d_model: Param
    attention: AttentionParams | None = None
    ffn: FFNParams | None = None
    moe: MoEParams | None = None

    def types_of_slot(self, i: int) -> list[LayerType]:
        """The layer types slot ``i`` may take, in a fixed order."""
        allowed: list[LayerType] | LayerType = self.layer_types
        if self.slot_types is not None and i < len(self.slot_types):
            allowed = self.slot_types[i]
        allowed = [allowed] if isinstance(allowed, str) else allowed
        return [t for t in LAYER_TYPES if t in allowed]

    @property
    def max_slots(self) -> int:
        """The largest number of slots the block can have (0 if ``slots`` holds no number).

        Not bounded by the model: the loader checks ``slots`` against ``DOMAINS`` before anything loops over slots.
        """
        return max((int(v) for v in self.slots.extremes() if isinstance(v, int | float)), default=0)

    def params_of(self, layer_type: LayerType) -> AttentionParams | FFNParams | MoEParams | None:
        """The parameter section of a layer type (None where the document leaves it out)."""
        section: AttentionParams | FFNParams | MoEParams | None = getattr(self, layer_type)
        return section

    @model_validator(mode="after")
    def _check_structure(self) -> Self:
        if len(set(self.layer_types)) != len(self.layer_types):
            raise ValueError("layer_types lists a type twice")
        if self.slots.kind not in {"fixed", "int", "choice"}:
            raise ValueError("slots must be an int, a list of int choices or an int range")
        if self.slots.per_slot:
            raise ValueError("slots cannot be per_slot")
        if self.d_model.per_slot:
            raise ValueError("d_model is shared by the whole block and cannot be per_slot")
        # slot_types against the number of slots is the loader's check, once slots is known to be inside its domain.
        return self


class Budget(BaseModel):
    """The training budget of each trial: exactly one of tokens, FLOPs or wall-clock seconds.

    ``compute: match_baseline`` (with ``tokens``) makes the budget equal compute: the reference baseline
    (``constraints.baseline``) trains ``tokens`` tokens, and every trial gets the training FLOPs those cost the
    baseline (its FLOPs per token x ``tokens``), so a block that costs more per token trains on fewer tokens
    (:func:`brainsearch.space.baselines.trial_budget` resolves it to a FLOPs budget)."""

    model_config = _STRICT
    tokens: TokenCount | None = None
    flops: FlopCount | None = None
    seconds: Seconds | None = None
    compute: Literal["match_baseline"] | None = Field(
        default=None,
        description="match_baseline: every trial gets the reference baseline's training compute at `tokens` tokens",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k in ("tokens", "flops", "seconds") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of tokens, flops, seconds (got {', '.join(given) or 'none'})")
        if self.compute is not None and self.tokens is None:
            raise ValueError(
                f"compute: {self.compute} needs the baseline's budget in tokens (got {given[0]}); a flops budget is "
                "already equal compute"
            )
        return self

    @property
    def matches_baseline(self) -> bool:
        """Whether every trial gets the reference baseline's training compute (``compute: match_baseline``)."""
        return self.compute == "match_baseline"


class ProxySettings(BaseModel):
    """The proxy model each trial trains: the sampled block stacked ``num_blocks`` times."""

    model_config = _STRICT
    vocab_size: int = Field(default=256, ge=2, le=262_144)
    seq_len: int = Field(default=256, ge=8, le=32_768)
    num_blocks: int = Field(default=3, ge=1, le=MAX_NUM_BLOCKS)
    batch_size: int = Field(default=8, ge=1, le=4096)
    budget: Budget = Field(default_factory=lambda: Budget(tokens=1e6))
    data: str = Field(default="default", min_length=1, max_length=4096)
    tie_embeddings: bool = True


class Constraints(BaseModel):
    """Limits on a trial's architecture; a sampled architecture that breaks one is pruned with the reason."""

    model_config = _STRICT
    max_params_total: ParamCount | None = None
    max_params_activated: ParamCount | None = None
    max_memory_bytes: ByteCount | None = None
    max_step_time_ratio: float | None = Field(default=None, gt=0, le=1000)
    max_flops_per_token_ratio: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="training FLOPs per token over the reference baseline's, from the cost model: judged before "
        "any training",
    )
    baseline: Literal["glam", "dense"] = "glam"
    min_layers: dict[LayerType, Annotated[int, Field(ge=0, le=MAX_SLOTS)]] = Field(default_factory=dict)


class EvolutionSettings(BaseModel):
    """Regularized (aging) evolution, Real et al. 2019 (arXiv 1802.01548), as Brainformer searches."""

    model_config = _STRICT
    population_size: int = Field(default=32, ge=2, le=10_000)
    tournament_size: int = Field(default=8, ge=1, le=10_000)
    mutation_rate: float = Field(default=0.0, ge=0, le=1, description="per-parameter mutation chance; 0: one")

    @model_validator(mode="after")
    def _tournament_fits(self) -> Self:
        if self.tournament_size > self.population_size:
            raise ValueError("tournament_size must not exceed population_size")
        return self


Objective = Literal["val_loss", "step_time", "params_activated", "flops_per_token"]
SamplerName = Literal["evolution", "random", "tpe", "nsga2"]
SAMPLER_NAMES: tuple[SamplerName, ...] = get_args(SamplerName)
_DEFAULT_OBJECTIVES: tuple[Objective, ...] = ("val_loss",)


def _known_preset(name: str) -> str:
    if name not in SCALE_PRESETS:
        raise ValueError(f"unknown scale preset {name!r}; known: {', '.join(SCALE_PRESETS)}")
    return name


class Rung(BaseModel):
    """One step of the scale-up ladder: a scale preset (``brainsearch.arch.scale``) and, optionally, a token budget
    other than the preset's default."""

    model_config = _STRICT
    preset: str = Field(min_length=1, max_length=32)
    budget_tokens: TokenCount | None = None
    batch_size: int | None = Field(default=None, ge=1, le=4096, description="default: the preset's")
    devices: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="processes (one per GPU) that train each run of this rung, sharded with FSDP2; default: the "
        "fewest the memory plan needs",
    )

    _preset = field_validator("preset")(_known_preset)


def _rung(value: Any) -> Any:
    return {"preset": value} if isinstance(value, str) else value


class ScaleUpSettings(BaseModel):
    """The scale-up stage after the proxy trials (Brainformer, arXiv 2306.00008, section 4): the ``top_k`` distinct
    best trials and the reference baseline are trained again at every rung of ``ladder``; a scaling law fitted over
    each candidate's rungs predicts its loss at ``target``."""

    model_config = _STRICT
    ladder: list[Annotated[Rung, BeforeValidator(_rung)]] = Field(min_length=1, max_length=8)
    target: str = Field(default="8b-64e", min_length=1, max_length=32, description="scale preset to predict at")
    law: Literal["kaplan", "chinchilla"] = "kaplan"
    scale_by: Literal["params_activated", "compute"] = "params_activated"
    evaluations: int = Field(default=10, ge=2, le=1000, description="validation points along each rung's run")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    init: Literal["scratch", "upcycle", "both"] = Field(
        default="scratch",
        description="how a rung's MoE model starts: from scratch, upcycled from its dense twin trained for "
        "dense_fraction of the budget (sparse upcycling), or both, reported side by side",
    )
    dense_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="the share of an upcycled run's token budget spent on the dense twin"
    )
    checkpoint_minutes: float = Field(default=10.0, gt=0, le=10_000, description="minutes between checkpoints")
    checkpoint_keep: int = Field(default=2, ge=1, le=100, description="checkpoints kept per run")

    _target = field_validator("target")(_known_preset)

    @model_validator(mode="after")
    def _distinct_rungs(self) -> Self:
        names = [r.preset for r in self.ladder]
        if len(set(names)) != len(names):
            raise ValueError("ladder lists a preset twice")
        return self


class SearchSettings(BaseModel):
    """How the search runs; every field has a default."""

    model_config = _STRICT
    sampler: SamplerName = "evolution"
    trials: int = Field(default=100, ge=1, le=100_000)
    concurrency: int = Field(default=1, ge=1, le=1024)
    objectives: list[Objective] = Field(default_factory=lambda: list(_DEFAULT_OBJECTIVES), min_length=1, max_length=4)
    top_k: int = Field(default=3, ge=0, le=100)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    pruner: Literal["none", "baseline", "median", "successive_halving"] = "baseline"
    max_consecutive_failures: int = Field(
        default=10, ge=1, le=100_000, description="the search fails after this many failed trials in a row"
    )
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)
    scale_up: ScaleUpSettings | None = Field(default=None, description="none: the search ends with its proxy trials")
    keep_weights: Literal["top_k", "all", "none"] = Field(
        default="top_k", description="trained proxy weights kept on disk: the best top_k (and baselines), all, none"
    )
    baseline_seeds: int = Field(
        default=3,
        ge=1,
        le=32,
        description="seeds the reference baseline trains with (the first before the trials, the others interleaved "
        "with the first trials): their spread is the search's seed noise, behind every interval on the leaderboard",
    )
    top_k_seeds: int = Field(
        default=3,
        ge=1,
        le=32,
        description="seeds each of the best trials trains with after the trials (1: no re-evaluation); the top_k "
        "that is scaled up and exported is chosen on their mean",
    )
    reevaluate: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="how many of the best trials (by their first value) are re-evaluated with top_k_seeds; "
        "default: twice top_k",
    )

    @model_validator(mode="after")
    def _objectives_fit_sampler(self) -> Self:
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError("objectives lists one twice")
        if self.sampler == "nsga2" and len(self.objectives) < 2:
            raise ValueError("sampler nsga2 is multi-objective: give at least two objectives")
        if self.sampler == "evolution" and len(self.objectives) != 1:
            raise ValueError("sampler evolution optimises one objective")
        return self


class SearchSpace(BaseModel):
    """A whole search-space document."""

    model_config = _STRICT
    version: Annotated[Literal[1], BeforeValidator(_not_bool)] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    description: str = Field(default="", max_length=4000)
    block: BlockSpace
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    constraints: Constraints = Field(default_factory=Constraints)
    search: SearchSettings = Field(default_factory=SearchSettings)
