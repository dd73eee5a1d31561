"""What a proxy training run reports: a :class:`ProxyResult` (JSON-able) with its learning curve."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["HEADLINE_METRICS", "CurvePoint", "MoESummary", "ProxyResult", "Status"]

Status = Literal["completed", "diverged", "out_of_memory", "timed_out", "pruned"]
# The fields of a ProxyResult worth showing a person, in reading order (the CLI's table, the dashboard's trial page).
HEADLINE_METRICS = (
    "val_loss",
    "val_bits_per_byte",
    "train_loss",
    "unigram_entropy",
    "steps",
    "tokens",
    "step_time_s",
    "tokens_per_s",
    "mfu",
    "elapsed_s",
)


class CurvePoint(BaseModel):
    """One point of the learning curve (``val_loss`` only at evaluation steps), nats per token."""

    model_config = ConfigDict(frozen=True)
    step: int
    tokens: int
    elapsed_s: float
    train_loss: float
    val_loss: float | None = None
    lr: float


class MoESummary(BaseModel):
    """Routing over the whole run, averaged over MoE layers.

    ``load_cv``: coefficient of variation of tokens per expert (0 = perfectly balanced); ``max_load_ratio``: the
    busiest expert's load over the mean; ``expert_load``: per layer, each expert's share of routed tokens.
    """

    model_config = ConfigDict(frozen=True)
    num_layers: int
    load_cv: float
    max_load_ratio: float
    dropped_fraction: float
    router_entropy: float
    load_balance_loss: float
    z_loss: float
    expert_load: list[list[float]]


class ProxyResult(BaseModel):
    """Outcome of one proxy run. A failure is a status with a reason, never an exception to the caller."""

    model_config = ConfigDict(frozen=True)
    status: Status
    reason: str | None = None
    arch_digest: str
    device: str
    val_loss: float | None = None
    val_loss_stderr: float | None = None  # standard error of val_loss across its evaluation batches
    val_ppl: float | None = None
    val_bits_per_byte: float | None = None
    train_loss: float | None = None
    unigram_entropy: float | None = None
    steps: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    step_time_s: float | None = None
    steps_seconds: float = 0.0  # total time inside training steps (no evaluation, no set-up)
    tokens_per_s: float | None = None
    flops_per_token: int
    model_flops_per_s: float | None = None
    peak_flops_per_s: float | None = None
    mfu: float | None = None
    params_total: int
    params_activated: int
    curve: list[CurvePoint] = []
    moe: MoESummary | None = None
