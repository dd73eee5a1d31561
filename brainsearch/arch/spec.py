"""The Architecture: a frozen, canonical, hashable description of a Brainformer-style MoE language model.

An Architecture is pure data (no torch): a block, an ordered list of sub-layer specs, stacked ``num_blocks`` times
between a token embedding and an output head (Brainformer, arXiv 2306.00008, section 3). Its JSON form is the
exchange format of the whole project: what exports, the API and the database store.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from brainsearch._validation import problems_from_validation_error
from brainsearch.errors import ArchitectureError, Problem

__all__ = [
    "ACTIVATIONS",
    "GATED_ACTIVATIONS",
    "GATINGS",
    "LAYER_LETTERS",
    "Activation",
    "Architecture",
    "AttentionSpec",
    "FFNSpec",
    "Gating",
    "LayerSpec",
    "MoESpec",
    "expert_choice_k",
]

Activation = Literal["relu", "gelu", "silu", "reglu", "geglu", "swiglu"]
Gating = Literal["top1", "top2", "expert_choice"]
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "silu", "reglu", "geglu", "swiglu")
GATED_ACTIVATIONS = frozenset({"reglu", "geglu", "swiglu"})
GATINGS: tuple[str, ...] = ("top1", "top2", "expert_choice")
# The paper writes blocks as strings: a = attention, g = gated (MoE) FFN, f = dense FFN.
LAYER_LETTERS = {"attention": "a", "moe": "g", "ffn": "f"}

# Hard limits of the spec itself: generous enough for the largest published MoE models (GLaM 1.2T: d=8192,
# hidden 32768, 64 experts), tight enough that no document can describe a model nobody could build.
MAX_D_MODEL = 65_536
MAX_HIDDEN = 1 << 20
MAX_EXPERTS = 4096
MAX_HEADS = 1024
MAX_HEAD_DIM = 1024
MAX_BLOCK_LEN = 64
MAX_NUM_BLOCKS = 1024
MAX_VOCAB = 1 << 21
MAX_SEQ_LEN = 1 << 20
MAX_CAPACITY_FACTOR = 64.0

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def expert_choice_k(batch_size: int, capacity_factor: float, num_experts: int) -> int:
    """Tokens each expert takes at each position under causal expert choice (brainsearch.model.routing).

    Every expert picks ``ceil(B * capacity_factor / E)`` of the B tokens at a position across the batch, at least 1
    (so every expert works when ``B * capacity_factor < E``, and the effective capacity factor ``E * k / B`` exceeds
    the given one) and at most B (all there are). The router and the cost model both use this one rule.
    """
    return min(batch_size, max(1, math.ceil(batch_size * capacity_factor / num_experts)))


class AttentionSpec(BaseModel):
    """Causal multi-head self-attention; ``head_dim`` defaults to ``d_model / heads``."""

    model_config = _FROZEN
    type: Literal["attention"] = "attention"
    heads: int = Field(ge=1, le=MAX_HEADS)
    head_dim: int | None = Field(default=None, ge=1, le=MAX_HEAD_DIM)

    @property
    def d_attn(self) -> int:
        """Width of the attention projections, ``heads * head_dim`` (after the Architecture resolved head_dim)."""
        assert self.head_dim is not None, "head_dim is resolved by Architecture"
        return self.heads * self.head_dim


class FFNSpec(BaseModel):
    """Dense feed-forward sub-layer. Gated activations use three matrices; ``rank`` factorises each as V(Ux)."""

    model_config = _FROZEN
    type: Literal["ffn"] = "ffn"
    hidden: int = Field(ge=1, le=MAX_HIDDEN)
    activation: Activation = "gelu"
    rank: int | None = Field(default=None, ge=1, le=MAX_HIDDEN)

    @property
    def gated(self) -> bool:
        """Whether the activation is a GLU variant (three matrices instead of two)."""
        return self.activation in GATED_ACTIVATIONS


class MoESpec(BaseModel):
    """Sparsely gated FFN: ``experts`` FFNs of width ``hidden`` behind a router with ``gating``."""

    model_config = _FROZEN
    type: Literal["moe"] = "moe"
    hidden: int = Field(ge=1, le=MAX_HIDDEN)
    experts: int = Field(ge=1, le=MAX_EXPERTS)
    gating: Gating = "top2"
    capacity_factor: float = Field(default=2.0, gt=0, le=MAX_CAPACITY_FACTOR)
    activation: Activation = "gelu"
    rank: int | None = Field(default=None, ge=1, le=MAX_HIDDEN)

    @property
    def gated(self) -> bool:
        """Whether each expert's activation is a GLU variant (three matrices instead of two)."""
        return self.activation in GATED_ACTIVATIONS

    @property
    def top_k(self) -> int | None:
        """k of token-choice routing (1 or 2); None for expert choice."""
        return {"top1": 1, "top2": 2}.get(self.gating)

    @property
    def experts_per_token(self) -> float:
        """Average number of experts that process a token: k for top-k, capacity_factor for expert choice.

        Expert choice gives each of E experts k = T * c / E tokens, so T tokens are processed c times on average
        (Zhou et al. 2022, arXiv 2202.09368, section 3.1).
        """
        return float(self.top_k) if self.top_k is not None else self.capacity_factor

    def expert_choice_k(self, batch_size: int) -> int:
        """Tokens each expert takes at each position when ``gating`` is expert choice (:func:`expert_choice_k`)."""
        return expert_choice_k(batch_size, self.capacity_factor, self.experts)

    @model_validator(mode="after")
    def _check_top_k(self) -> Self:
        if self.top_k is not None and self.top_k > self.experts:
            raise ValueError(f"gating {self.gating} needs at least {self.top_k} experts, got {self.experts}")
        return self


LayerSpec = Annotated[AttentionSpec | FFNSpec | MoESpec, Field(discriminator="type")]


class Architecture(BaseModel):
    """A decoder-only LM: ``block`` (a list of sub-layer specs) repeated ``num_blocks`` times.

    Frozen and canonical: ``head_dim`` is always resolved, ``capacity_factor`` is a float, so two equal models have
    the same :meth:`to_json` and :attr:`digest`. ``tie_embeddings`` shares the token embedding with the output head.
    """

    model_config = _FROZEN
    d_model: int = Field(ge=1, le=MAX_D_MODEL)
    vocab_size: int = Field(ge=2, le=MAX_VOCAB)
    seq_len: int = Field(ge=1, le=MAX_SEQ_LEN)
    num_blocks: int = Field(ge=1, le=MAX_NUM_BLOCKS)
    block: tuple[LayerSpec, ...] = Field(min_length=1, max_length=MAX_BLOCK_LEN)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _resolve_head_dim(self) -> Self:
        resolved = []
        for i, layer in enumerate(self.block):
            if isinstance(layer, AttentionSpec) and layer.head_dim is None:
                if self.d_model % layer.heads:
                    raise ValueError(
                        f"block[{i}]: d_model {self.d_model} is not divisible by heads {layer.heads}; "
                        "give head_dim explicitly"
                    )
                layer = layer.model_copy(update={"head_dim": self.d_model // layer.heads})
            resolved.append(layer)
        # Frozen model: the resolved block replaces the given one once, during validation.
        object.__setattr__(self, "block", tuple(resolved))
        return self

    # --- views -------------------------------------------------------------------------------------------------
    @property
    def pattern(self) -> str:
        """The block as the paper writes it, e.g. ``"afgggfff"`` for Brainformer-1."""
        return "".join(LAYER_LETTERS[layer.type] for layer in self.block)

    @property
    def layers(self) -> tuple[AttentionSpec | FFNSpec | MoESpec, ...]:
        """Every sub-layer of the model in order (the block repeated ``num_blocks`` times)."""
        return self.block * self.num_blocks

    # --- exchange ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-able dict (None-valued optional fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: keys sorted, optional empty fields left out."""
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=separators)

    @property
    def digest(self) -> str:
        """A stable 16-hex-digit hash of the canonical JSON; equal architectures have equal digests."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, data: str | bytes | dict[str, Any], source: str | None = None) -> Architecture:
        """Parse a dict or a JSON string; raises :class:`ArchitectureError` naming each bad field."""
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ArchitectureError([Problem("", f"not valid JSON: {exc}", source)]) from None
        if not isinstance(data, dict):
            raise ArchitectureError([Problem("", f"expected a JSON object, got {type(data).__name__}", source)])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ArchitectureError(problems_from_validation_error(exc, source)) from None
