"""The training loop. Every run - a proxy trial, a scale-up rung, Lifelong-MoE expansion - is this loop with a
configuration (settings, a step budget, the batches, an optional validation corpus) and :class:`Hooks`; nothing else
steps an optimiser.

What it owns, in the order of a run: building the model (a sharded run's on the meta device); :func:`prepare`,
which takes the memory plan (:func:`memory_plan`, from :mod:`brainsearch.arch.plan`: micro-batch and activation
checkpointing chosen from the cost model's peak-memory estimate and the device's memory, the global batch unchanged),
sets the model's ``activation_checkpointing``, places it on its device (shards it, giving a meta-device model its
weights) and compiles it (by default on CUDA only); the optimiser and the LR schedule (:mod:`brainsearch.train.optim`);
one :func:`train_step` (gradient accumulation over the plan's micro-batches: each forward under bf16 autocast on CUDA,
LM loss + the model's weighted router losses + the hooks' extra terms, scaled so the accumulated gradient is the
global batch's mean; then gradient clipping, one optimiser step, the after-step hooks); budget accounting
(:class:`brainsearch.train.budget.BudgetClock`: only training steps after the first are charged to a seconds budget);
evaluation every ``eval_interval`` steps and at the end (:mod:`brainsearch.train.evaluate`); the learning curve; step
timing (CUDA-synchronised, per global batch, evaluation left out); set-up and compilation time; the measured peak
memory (CUDA); MoE statistics of every micro-batch. Failures end a run with a status and a reason, never an
exception: a non-finite loss is ``diverged``, no memory plan that fits or an allocation failure ``out_of_memory``,
passing ``time_limit_s`` (wall-clock, set-up included) ``timed_out``, the ``report`` hook saying stop ``pruned``. Each
configuration turns the :class:`LoopResult` into its own report (``ProxyResult``, expansion's ``TrainLog``).

Micro-batches are what every gradient-accumulating MoE trainer does: routing, expert capacity and the load-balancing
and z-losses are computed per micro-batch (the plan keeps expert choice's effective capacity factor where it can), so
only a dense model, or an MoE one that drops nothing and has no auxiliary losses, gets exactly the full batch's
gradient.

Shapes: B batch, M micro-batch, S sequence, T = M * S tokens of a forward, V vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from brainsearch.arch.plan import MemoryPlan, NoPlanFits, plan_memory
from brainsearch.arch.spec import Architecture
from brainsearch.data import BatchSampler, Corpus
from brainsearch.model import LanguageModel, LMOutput, MoEStats
from brainsearch.train.budget import BudgetClock, StepBudget
from brainsearch.train.checkpoint import LoopState, latest_checkpoint, load_checkpoint, save_checkpoint
from brainsearch.train.device import free_memory_bytes, is_out_of_memory
from brainsearch.train.distributed import Parallel, shard_model
from brainsearch.train.evaluate import Evaluation, evaluate
from brainsearch.train.moe_stats import MoEAccumulator
from brainsearch.train.optim import LRSchedule, build_optimizer, set_lr, steps_in_backward
from brainsearch.train.result import CheckpointRecord, CurvePoint, MoESummary, Status
from brainsearch.train.settings import TrainSettings

__all__ = [
    "Hooks",
    "LoopResult",
    "LossTerm",
    "Prepared",
    "Report",
    "StepOutput",
    "memory_plan",
    "prepare",
    "train_loop",
    "train_step",
]

# Called after every step with the newest point; returning False, or a string saying why, stops the run ("pruned").
Report = Callable[[CurvePoint], bool | str | None]


@dataclass(frozen=True)
class LossTerm:
    """An extra term of the training loss, ``weight * fn(x_MS, logits_TV)`` (a scalar) for each micro-batch; its
    unweighted value at the last step (the mean over its micro-batches) is reported under ``name``. ``fn`` runs
    inside the step's autocast region."""

    name: str
    weight: float
    fn: Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Hooks:
    """How a configuration changes the loop without copying it.

    ``loss_terms`` are added to every step's loss (expansion's distillation term). ``after_optimizer_step`` runs
    after every optimiser step (expansion copies its frozen slices back: weight decay moves them). ``report`` sees
    every curve point and may stop the run. ``on_completed`` gets the trained model when the run completed.
    """

    loss_terms: Sequence[LossTerm] = ()
    after_optimizer_step: Sequence[Callable[[], None]] = ()
    report: Report | None = None
    on_completed: Callable[[LanguageModel], None] | None = None


@dataclass(frozen=True)
class StepOutput:
    """One step's losses (device scalars, not yet read back, each the mean over the step's micro-batches) and its
    routing statistics, one list (per MoE sub-layer) for each micro-batch."""

    lm_loss: Tensor
    terms: dict[str, Tensor]
    moe: list[list[MoEStats]]


@dataclass(frozen=True)
class LoopResult:
    """How a run went. ``elapsed_s`` is wall-clock, set-up and evaluation included; ``steps_s`` the time charged to
    the budget (training steps after the first); ``step_time_s`` their median after ``timing_warmup_steps`` and
    ``tokens_per_s`` the throughput at that median, per global batch. ``setup_s``: building, preparing (compiling)
    and the first step, None when the run never got through one; ``compile_s``: the first step's time beyond the
    median when the model was compiled (compilation happens there), else None. ``plan``: the memory plan (None when
    none fitted or the build failed). ``memory_peak_bytes``: the device's peak allocation during training (CUDA; None
    on the CPU). ``train_loss`` (the last step's LM loss) is None when it was not finite; ``loss_terms`` holds each
    :class:`LossTerm`'s unweighted value at the last finite step; ``evaluation`` is the last one (None without a
    validation corpus)."""

    status: Status
    reason: str | None
    steps: int
    tokens: int
    elapsed_s: float
    steps_s: float
    step_time_s: float | None
    tokens_per_s: float | None
    train_loss: float | None
    loss_terms: dict[str, float]
    evaluation: Evaluation | None
    curve: list[CurvePoint]
    moe: MoESummary | None
    setup_s: float | None = None
    compile_s: float | None = None
    plan: MemoryPlan | None = None
    memory_peak_bytes: int | None = None
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Prepared:
    """A model ready to train: the callable the steps run (compiled or the model), the memory plan it follows."""

    forward: Callable[[Tensor], LMOutput]
    plan: MemoryPlan
    compiled: bool


class _Stop(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def memory_plan(arch: Architecture, settings: TrainSettings, device: torch.device) -> MemoryPlan:
    """The memory plan of training ``arch`` with ``settings`` on ``device`` (bf16 activations on CUDA, fp32 on the
    CPU), within 90% of the device's free memory and ``settings.memory_limit_bytes`` (a search space's memory per
    device) when set. Pure arithmetic: nothing is allocated. Raises :class:`~brainsearch.arch.plan.NoPlanFits` when
    no plan fits."""
    limit = 0.9 * free_memory_bytes(device)
    if settings.memory_limit_bytes is not None:
        limit = min(limit, settings.memory_limit_bytes)
    return plan_memory(
        arch,
        settings.batch_size,
        "bf16" if device.type == "cuda" else "fp32",
        int(limit),
        checkpointing=settings.activation_checkpointing,
        micro_batch=settings.micro_batch,
        recipe=settings.recipe(),
    )


def prepare(
    model: LanguageModel, settings: TrainSettings, device: torch.device, plan: MemoryPlan | None = None
) -> Prepared:
    """Follow ``plan`` (default: :func:`memory_plan` for the model's architecture; raises
    :class:`~brainsearch.arch.plan.NoPlanFits`): set the model's activation checkpointing, move it to ``device`` in
    train mode (sharded over the process group when the plan says so; a model on the meta device gets its weights
    then, see :func:`~brainsearch.train.distributed.shard_model`), and compile it when ``settings.compile`` says so
    (default: on CUDA only)."""
    plan = plan or memory_plan(model.arch, settings, device)
    model.activation_checkpointing = plan.checkpointing
    # A model on the meta device (a sharded run's) reaches the device when sharded.
    on_meta = any(p.is_meta for p in model.parameters())
    model.to(device=None if on_meta else device, dtype=torch.bfloat16 if plan.recipe.param_dtype == "bf16" else None)
    model.train()
    if plan.recipe.shards > 1:
        parallel = Parallel.current()
        if parallel is None or parallel.world != plan.recipe.shards:
            have = parallel.world if parallel else 1
            raise ValueError(f"the plan shards over {plan.recipe.shards} processes; this run has {have}")
        shard_model(model, device)
    # Not compiled under FSDP2 (its hooks break the graph at every unit; per-block compilation would be the way, not
    # done yet), nor when the optimiser steps in the backward (a compiled backward hands over every gradient at once,
    # so all of them would be alive at its end: the saving gone).
    default = device.type == "cuda" and not plan.recipe.optimizer_in_backward
    compiled = plan.recipe.shards == 1 and (settings.compile if settings.compile is not None else default)
    forward: Callable[[Tensor], LMOutput] = torch.compile(model) if compiled else model
    return Prepared(forward=forward, plan=plan, compiled=compiled)


def train_step(
    model: LanguageModel,
    forward: Callable[[Tensor], LMOutput],
    optimizer: torch.optim.Optimizer,
    x_BS: Tensor,
    y_BS: Tensor,
    settings: TrainSettings,
    hooks: Hooks,
    micro_batch: int | None = None,
) -> StepOutput:
    """One optimiser step on the global batch ``x_BS -> y_BS`` (already on the model's device), as forwards and
    backwards of ``micro_batch`` sequences (default: the whole batch; it must divide B). Each micro-batch's loss is
    divided by their number, so the accumulated gradient is the mean over the global batch."""
    batch = x_BS.shape[0]
    micro = micro_batch or batch
    if batch % micro:
        raise ValueError(f"micro_batch {micro} does not divide the batch of {batch}")
    num_micro = batch // micro
    device_type = x_BS.device.type
    optimizer.zero_grad(set_to_none=True)
    lm_sum = torch.zeros((), device=x_BS.device)
    term_sums: dict[str, Tensor] = {}
    moe: list[list[MoEStats]] = []
    for x_MS, y_MS in zip(torch.split(x_BS, micro), torch.split(y_BS, micro), strict=True):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=device_type == "cuda"):
            out = forward(x_MS)
            logits_TV = out.logits.float().flatten(0, 1)
            lm_loss = F.cross_entropy(logits_TV, y_MS.flatten())
            loss = lm_loss + out.aux_loss
            for term in hooks.loss_terms:
                value = term.fn(x_MS, logits_TV)
                loss = loss + term.weight * value
                term_sums[term.name] = term_sums.get(term.name, 0) + value.detach()
        (loss / num_micro).backward()  # type: ignore[no-untyped-call]
        lm_sum = lm_sum + lm_loss.detach()
        moe.append(out.moe)
    if not steps_in_backward(optimizer):  # else every parameter has stepped already, its gradient freed
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
    for hook in hooks.after_optimizer_step:
        hook()
    terms = {name: value / num_micro for name, value in term_sums.items()}
    return StepOutput(lm_loss=lm_sum / num_micro, terms=terms, moe=moe)


def train_loop(
    build: Callable[[], LanguageModel],
    batches: BatchSampler,
    settings: TrainSettings,
    budget: StepBudget,
    device: torch.device,
    *,
    validation: Corpus | None = None,
    hooks: Hooks | None = None,
    plan: MemoryPlan | None = None,
) -> LoopResult:
    """Build the model (inside the run: an allocation failure there is ``out_of_memory`` too) and train it on
    ``batches`` following ``plan`` (default: :func:`memory_plan` of the built model; none fitting is
    ``out_of_memory``) until ``budget`` is spent or the run fails; with ``validation``, evaluate on that corpus every
    ``settings.eval_interval`` steps and after the last step. The model is trained in place."""
    clock = BudgetClock(budget, settings.timing_warmup_steps)
    loop = _Loop(batches, settings, budget, device, validation, hooks or Hooks(), clock, parallel=Parallel.current())
    return loop.run(build, plan)


@dataclass
class _Loop:
    """One run's state, so that a failure at any point still reports how far the run got."""

    batches: BatchSampler
    settings: TrainSettings
    budget: StepBudget
    device: torch.device
    validation: Corpus | None
    hooks: Hooks
    clock: BudgetClock
    parallel: Parallel | None = None
    start: float = field(default_factory=time.perf_counter)
    step: int = 0
    before_first_step_s: float | None = None
    compiled: bool = False
    plan: MemoryPlan | None = None
    train_loss: float | None = None
    loss_terms: dict[str, float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    moe: MoEAccumulator = field(default_factory=MoEAccumulator)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)
    last_checkpoint: float = field(default_factory=time.perf_counter)

    def run(self, build: Callable[[], LanguageModel], plan: MemoryPlan | None) -> LoopResult:
        try:
            model = self._build(build, plan)
            self._train(model, plan)
            if self.hooks.on_completed is not None:
                self.hooks.on_completed(model)
        except _Stop as stop:
            return self._result(stop.status, stop.reason)
        except NoPlanFits as exc:
            return self._result("out_of_memory", str(exc))
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            first_line = str(exc).splitlines()[0][:200]
            return self._result("out_of_memory", f"allocation failed at step {self.step}: {first_line}")
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return self._result("completed", None)

    def _build(self, build: Callable[[], LanguageModel], plan: MemoryPlan | None) -> LanguageModel:
        """The model; a sharded run's is built on the meta device (no storage: no rank ever holds the whole model),
        and :func:`prepare` gives it its weights when it shards it (:func:`~brainsearch.train.distributed.shard_model`).
        """
        if plan is None or plan.recipe.shards == 1:
            return build()
        with torch.device("meta"):
            return build()

    def _train(self, model: LanguageModel, plan: MemoryPlan | None) -> None:
        prepared = prepare(model, self.settings, self.device, plan)
        self.plan, self.compiled = prepared.plan, prepared.compiled
        optimizer = build_optimizer(model, self.settings, self.device)
        schedule = LRSchedule.of(self.settings, self.budget)
        self._resume(model, optimizer)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.before_first_step_s = self._elapsed()
        self.last_checkpoint = time.perf_counter()
        while not self.clock.spent():
            lr = schedule(self.step, self.clock.progress())
            set_lr(optimizer, lr)
            train_loss = self._timed_step(model, prepared.forward, optimizer)
            val_loss = self._evaluate(model) if self._evaluation_due() else None
            point = CurvePoint(
                step=self.step,
                tokens=self._tokens(),
                elapsed_s=self.clock.charged_s,
                train_loss=train_loss,
                val_loss=val_loss,
                lr=lr,
            )
            self._record(point)
            if self._checkpoint_due():
                self._save(model, optimizer)
        if self.validation is not None and self.curve and (self.curve[-1].val_loss is None or self.evaluation is None):
            # A time budget ended between evaluations (or the run resumed from its last step): it still ends with
            # one.
            self.evaluation = evaluate(model, self.validation, self.settings)
            self.curve[-1] = self.curve[-1].model_copy(update={"val_loss": self.evaluation.loss})
        if self.settings.checkpoint is not None and (not self.checkpoints or self.checkpoints[-1].step != self.step):
            self._save(model, optimizer)

    # --- checkpoints ------------------------------------------------------------------------------------------
    def _resume(self, model: LanguageModel, optimizer: torch.optim.Optimizer) -> None:
        """Continue from the newest complete checkpoint in the settings' folder, if there is one."""
        if self.settings.checkpoint is None:
            return
        saved = latest_checkpoint(Path(self.settings.checkpoint.dir))
        if saved is None:
            return
        state = load_checkpoint(saved, model, optimizer)
        self.step = state.step
        self.clock.step_times = list(state.step_times)
        self.clock.planned_steps = state.planned_steps
        self.clock.reported_progress = state.progress
        self.batches.set_state(state.sampler_state)
        self.curve = [CurvePoint.model_validate(p) for p in state.curve]
        self.train_loss, self.loss_terms = state.train_loss, dict(state.loss_terms)
        self.moe.restore(state.moe)
        self.checkpoints = [CheckpointRecord.model_validate(c) for c in state.checkpoints]
        self.resumed_from = [*state.resumed_from, state.step]

    def _checkpoint_due(self) -> bool:
        """Whether to save now: every ``every_steps`` steps, or ``interval_s`` after the last save (all ranks
        agree: any rank's clock passing the interval is enough)."""
        ckpt = self.settings.checkpoint
        if ckpt is None or self.clock.spent():  # the last step's checkpoint is saved after the final evaluation
            return False
        due = float(ckpt.every_steps is not None and self.step % ckpt.every_steps == 0)
        due = max(due, float(time.perf_counter() - self.last_checkpoint >= ckpt.interval_s))
        if self.parallel is not None:
            (due,) = self.parallel.max([due], self.device)
        return due > 0

    def _save(self, model: LanguageModel, optimizer: torch.optim.Optimizer) -> None:
        assert self.settings.checkpoint is not None
        state = LoopState(
            step=self.step,
            step_times=list(self.clock.step_times),
            planned_steps=self.clock.planned_steps,
            progress=self.clock.reported_progress,
            sampler_state=self.batches.get_state(),
            curve=[p.model_dump() for p in self.curve],
            train_loss=self.train_loss,
            loss_terms=self.loss_terms,
            moe=self.moe.state(),
            checkpoints=[c.model_dump() for c in self.checkpoints],
            resumed_from=self.resumed_from,
        )
        ckpt = self.settings.checkpoint
        record = save_checkpoint(Path(ckpt.dir), model, optimizer, state, ckpt.keep)
        self.checkpoints.append(record)
        self.last_checkpoint = time.perf_counter()

    def _timed_step(
        self, model: LanguageModel, forward: Callable[[Tensor], LMOutput], optimizer: torch.optim.Optimizer
    ) -> float:
        """One step, timed; its LM loss (finite: a non-finite one ends the run)."""
        assert self.plan is not None
        start = time.perf_counter()
        x_BS, y_BS = self.batches.next()
        if self.parallel is not None:  # this rank's rows of the global batch
            x_BS, y_BS = self.parallel.rows(x_BS), self.parallel.rows(y_BS)
        x_BS, y_BS = x_BS.to(self.device, non_blocking=True), y_BS.to(self.device, non_blocking=True)
        out = train_step(model, forward, optimizer, x_BS, y_BS, self.settings, self.hooks, self.plan.micro_batch)
        lm_loss = out.lm_loss if self.parallel is None else self.parallel.mean(out.lm_loss)
        train_loss = lm_loss.item()  # the host sync; also what the curve needs
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        limit = self.settings.time_limit_s
        timed_out = float(limit is not None and self._elapsed() > limit)
        if self.parallel is not None:  # every rank charges the slowest rank's time and stops together
            seconds, timed_out = self.parallel.max([seconds, timed_out], self.device)
        self.clock.record(seconds)
        self.step += 1
        if timed_out:
            raise _Stop("timed_out", f"time limit {limit:g} s passed at step {self.step}")
        if not math.isfinite(train_loss):
            self.train_loss = None
            raise _Stop("diverged", f"training loss became {train_loss} at step {self.step}")
        self.train_loss = train_loss
        self.loss_terms = {name: value.item() for name, value in out.terms.items()}
        for stats in out.moe:
            self.moe.add(stats)
        return train_loss

    def _evaluation_due(self) -> bool:
        if self.validation is None:
            return False
        return self.step % self.settings.eval_interval == 0 or self.clock.is_last()

    def _evaluate(self, model: LanguageModel) -> float:
        assert self.validation is not None
        self.evaluation = evaluate(model, self.validation, self.settings)
        if not math.isfinite(self.evaluation.loss):
            raise _Stop("diverged", f"validation loss became {self.evaluation.loss} at step {self.step}")
        return self.evaluation.loss

    def _record(self, point: CurvePoint) -> None:
        self.curve.append(point)
        verdict = self.hooks.report(point) if self.hooks.report is not None else None
        if verdict is False or isinstance(verdict, str):
            raise _Stop("pruned", verdict or f"stopped by the caller at step {self.step}")

    def _tokens(self) -> int:
        return self.step * self._tokens_per_step()

    def _tokens_per_step(self) -> int:
        return self.batches.batch_size * self.batches.seq_len

    def _elapsed(self) -> float:
        return time.perf_counter() - self.start

    def _result(self, status: Status, reason: str | None) -> LoopResult:
        step_time = self.clock.median_step_s()
        first = self.clock.first_step_s
        setup = None if first is None or self.before_first_step_s is None else self.before_first_step_s + first
        compile_s = max(0.0, first - step_time) if self.compiled and first is not None and step_time else None
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" and self.plan else None
        if peak is not None and self.parallel is not None and status != "out_of_memory":
            peak = int(self.parallel.max([float(peak)], self.device)[0])  # the fullest device's
        return LoopResult(
            status=status,
            reason=reason,
            steps=self.step,
            tokens=self._tokens(),
            elapsed_s=self._elapsed(),
            steps_s=self.clock.charged_s,
            step_time_s=step_time,
            tokens_per_s=self._tokens_per_step() / step_time if step_time else None,
            train_loss=self.train_loss,
            loss_terms=self.loss_terms,
            evaluation=self.evaluation,
            curve=self.curve,
            moe=self.moe.summary(),
            setup_s=setup,
            compile_s=compile_s,
            plan=self.plan,
            memory_peak_bytes=peak,
            checkpoints=self.checkpoints,
            resumed_from=self.resumed_from,
        )
