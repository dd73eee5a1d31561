"""What a proxy training run reports: a :class:`ProxyResult` (JSON-able) with its learning curve."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["HEADLINE_METRICS", "CheckpointRecord", "CurvePoint", "MoESummary", "ProxyResult", "Status"]

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
    "peak_flops_label",
    "matmul_flops_per_s",
    "devices",
    "sharding",
    "recipe",
    "micro_batch",
    "activation_checkpointing",
    "memory_estimate_bytes",
    "memory_peak_bytes",
    "elapsed_s",
    "setup_s",
    "compile_s",
    "checkpoint_count",
    "resume_count",
)


class CurvePoint(BaseModel):
    """One point of the learning curve (``val_loss`` only at evaluation steps), nats per token. ``elapsed_s`` is
    the training time charged to the budget up to this point (steps after the first; set-up, compilation and
    evaluation excluded), so curves of runs with different set-up times line up, and a seconds budget's fraction
    is ``elapsed_s / seconds``."""

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


class CheckpointRecord(BaseModel):
    """One checkpoint a run saved: the step it holds (steps done), its folder, when (Unix time) and its size."""

    model_config = ConfigDict(frozen=True)
    step: int
    path: str
    saved_at: float
    bytes: int


class ProxyResult(BaseModel):
    """Outcome of one proxy run. A failure is a status with a reason, never an exception to the caller.

    Throughput is per global batch (all micro-batches of a step). ``mfu`` is model FLOP/s (``flops_per_token`` x
    ``tokens_per_s``, see :mod:`brainsearch.train.proxy` for the convention) over ``peak_flops_per_s``, the
    datasheet's dense peak when ``peak_flops_source`` is ``datasheet`` (``peak_flops_label`` says which); it is never
    above 1 - a model faster than the peak means a wrong FLOP count or peak, so the MFU is withheld and ``notes``
    says why. ``matmul_flops_per_s`` is what one large matmul reaches on the device. The memory plan: ``micro_batch``
    sequences per forward, ``activation_checkpointing``, ``memory_estimate_bytes`` the cost model's peak estimate,
    ``memory_peak_bytes`` the measured peak (CUDA only). ``setup_s`` (model build, compilation, the first step, the
    peak measurement) and ``compile_s`` (its compilation part, estimated) are not charged to a seconds budget.
    ``devices`` processes trained the model (one per GPU), ``sharding`` says how (``fsdp2``: parameters, gradients
    and optimiser state fully sharded; None on one device), ``recipe`` the training state's dtype and optimiser
    (:class:`brainsearch.arch.plan.TrainingRecipe`); memory figures are per device. ``checkpoints`` lists what the
    run saved (pruned ones included, marked by their absence on disk), ``checkpoint_count`` how many it saved and
    ``resume_count`` how many times it resumed from one (``resumed_from`` the steps). ``init`` is how a scale-up
    run started (``upcycle``: its dense twin trained first, its FFNs copied into every expert at ``upcycle_step``).
    Fields added after the first version are optional, so stored results still read.
    """

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
    mfu: float | None = Field(default=None, ge=0, le=1)
    peak_flops_source: Literal["datasheet", "measured"] | None = None
    peak_flops_label: str | None = None
    matmul_flops_per_s: float | None = None
    params_total: int
    params_activated: int
    curve: list[CurvePoint] = []
    moe: MoESummary | None = None
    micro_batch: int | None = None
    activation_checkpointing: bool | None = None
    memory_estimate_bytes: int | None = None
    memory_peak_bytes: int | None = None
    setup_s: float | None = None
    compile_s: float | None = None
    devices: int = 1
    sharding: Literal["fsdp2"] | None = None
    recipe: str | None = None
    checkpoints: list[CheckpointRecord] = []
    checkpoint_count: int = 0
    resume_count: int = 0
    resumed_from: list[int] = []
    init: Literal["scratch", "upcycle"] | None = None
    upcycle_step: int | None = None  # the step at which the dense twin became the MoE model (upcycled runs)
    notes: list[str] = []
