"""Settings of one training run (pydantic: strict, bounded, path-named errors): a proxy's, and the base that every
other configuration of the training loop extends (expansion's ``ExpansionSettings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from brainsearch.arch.plan import CheckpointingPolicy, TrainingRecipe
from brainsearch.space.schema import Budget, Quantity

__all__ = ["CheckpointSettings", "Schedule", "TrainSettings"]

Schedule = Literal["cosine", "inverse_sqrt", "constant"]


class CheckpointSettings(BaseModel):
    """When and where a run saves resumable checkpoints (:mod:`brainsearch.train.checkpoint`): every
    ``interval_s`` seconds of wall-clock time (and every ``every_steps`` steps when set), and at the end, into
    ``dir`` (a folder per run, under the data directory; shared storage for a cluster); the newest ``keep`` are
    kept. A run that finds a complete checkpoint in ``dir`` resumes from it: same step, data position, learning
    rate, optimiser state and budget spent."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    dir: str = Field(min_length=1)
    interval_s: float = Field(default=600.0, gt=0, description="seconds between checkpoints")
    every_steps: int | None = Field(default=None, ge=1, le=10_000_000, description="also every N steps")
    keep: int = Field(default=2, ge=1, le=1000, description="the newest checkpoints kept; older ones are pruned")


class TrainSettings(BaseModel):
    """How a proxy trains: budget, data, optimiser and schedule, evaluation, memory plan, limits.

    ``micro_batch`` and ``activation_checkpointing`` constrain the memory plan (:mod:`brainsearch.arch.plan`); the
    global batch is always ``batch_size``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    budget: Budget = Field(default_factory=lambda: Budget(tokens=65_536))
    batch_size: int = Field(default=8, ge=1, le=4096)
    data: str = Field(default="default", min_length=1)
    data_dir: Path | None = Field(
        default=None,
        description="the data directory whose corpora/ folder caches the tokenised corpus (default: ~/.brainsearch)",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    param_dtype: Literal["fp32", "bf16"] = Field(
        default="fp32", description="dtype of the weights and their gradients (bf16: no fp32 master copy)"
    )
    optimizer_in_backward: bool = Field(
        default=False,
        description="step each parameter as soon as its gradient is ready and free the gradient (one micro-batch "
        "per step; no global gradient clipping)",
    )
    lr: float = Field(default=3e-3, gt=0, le=10)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    schedule: Schedule = "cosine"
    warmup_steps: int = Field(default=20, ge=0, le=1_000_000, description="capped at 10% of a step budget")
    weight_decay: float = Field(default=0.1, ge=0, le=10)
    grad_clip: float = Field(default=1.0, gt=0)
    load_balance_weight: float = Field(default=0.01, ge=0)
    z_loss_weight: float = Field(default=0.001, ge=0)
    eval_interval: int = Field(default=50, ge=1, description="steps between validation evaluations")
    eval_batches: int = Field(default=8, ge=1, le=10_000)
    timing_warmup_steps: int = Field(default=3, ge=0, description="steps left out of the median step time")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool | None = Field(default=None, description="torch.compile the model; default: on CUDA only")
    micro_batch: int | None = Field(
        default=None, ge=1, le=4096, description="sequences per forward (divides batch_size); default: the plan's"
    )
    activation_checkpointing: CheckpointingPolicy = Field(
        default="auto", description="recompute blocks in the backward: off, on, or auto (only when nothing else fits)"
    )
    time_limit_s: float | None = Field(default=None, gt=0, description="hard limit: past it the run is timed_out")
    memory_limit_bytes: Quantity | None = Field(
        default=None,
        description="training memory per device the plan must fit (it also fits 90% of the free memory); when no "
        "micro-batch fits, the run is out_of_memory before anything is allocated",
    )
    checkpoint: CheckpointSettings | None = Field(default=None, description="resumable checkpoints (None: none)")
    skip_batches: int = Field(
        default=0,
        ge=0,
        le=100_000_000,
        description="training batches of the seed's stream to pass over first (an earlier phase of the same run "
        "trained on them)",
    )

    def recipe(self, shards: int = 1) -> TrainingRecipe:
        """The training recipe these settings ask for, over ``shards`` data-parallel devices."""
        return TrainingRecipe(
            param_dtype=self.param_dtype,
            optimizer=self.optimizer,
            optimizer_in_backward=self.optimizer_in_backward,
            shards=shards,
        )

    def with_recipe(self, recipe: TrainingRecipe) -> TrainSettings:
        """These settings with the optimiser and weights' dtype of ``recipe`` (a plan decides them for a rung)."""
        return self.model_copy(
            update={
                "param_dtype": recipe.param_dtype,
                "optimizer": recipe.optimizer,
                "optimizer_in_backward": recipe.optimizer_in_backward,
            }
        )

    @model_validator(mode="after")
    def _optimizer_in_backward_takes_one_micro_batch(self) -> Self:
        if self.optimizer_in_backward and self.micro_batch not in (None, self.batch_size):
            raise ValueError(
                f"optimizer_in_backward steps once per backward: micro_batch {self.micro_batch} would step "
                f"{self.batch_size // self.micro_batch} times per batch; leave micro_batch unset"
            )
        return self

    @field_validator("micro_batch")
    @classmethod
    def _micro_batch_divides_the_batch(cls, value: int | None, info: ValidationInfo) -> int | None:
        batch_size = info.data.get("batch_size")
        if value is not None and batch_size is not None and batch_size % value:
            raise ValueError(f"micro_batch {value} must divide batch_size {batch_size}")
        return value
