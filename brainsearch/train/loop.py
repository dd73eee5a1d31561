"""The training loop. Every run - a proxy trial, a scale-up rung, Lifelong-MoE expansion - is this loop with a
configuration (settings, a step budget, the batches, an optional validation corpus) and :class:`Hooks`; nothing else
steps an optimiser.

What it owns, in the order of a run: building the model and placing it on its device (:func:`prepare`); the
optimiser and the LR schedule (:mod:`brainsearch.train.optim`); one :func:`train_step` (forward under bf16 autocast
on CUDA, LM loss + the model's weighted router losses + the hooks' extra terms, backward, gradient clipping,
optimiser step, the after-step hooks); budget accounting (:mod:`brainsearch.train.budget`); evaluation every
``eval_interval`` steps and at the end (:mod:`brainsearch.train.evaluate`); the learning curve; step timing
(CUDA-synchronised, evaluation left out); MoE statistics. Failures end a run with a status and a reason, never an
exception: a non-finite loss is ``diverged``, an allocation failure ``out_of_memory``, passing ``time_limit_s``
``timed_out``, the ``report`` hook saying stop ``pruned``. Each configuration turns the :class:`LoopResult` into its
own report (``ProxyResult``, expansion's ``TrainLog``).

So that every configuration gets them, these go here and nowhere else: micro-batches (gradient accumulation) inside
:func:`train_step`; activation checkpointing, compile options, the memory plan and FSDP2 sharding in :func:`prepare`.

Shapes: B batch, S sequence, T = B * S tokens, V vocabulary.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from brainsearch.data import BatchSampler, Corpus
from brainsearch.model import LanguageModel, LMOutput, MoEStats
from brainsearch.train.budget import StepBudget
from brainsearch.train.device import is_out_of_memory
from brainsearch.train.evaluate import Evaluation, evaluate
from brainsearch.train.moe_stats import MoEAccumulator
from brainsearch.train.optim import LRSchedule, build_optimizer, set_lr
from brainsearch.train.result import CurvePoint, MoESummary, Status
from brainsearch.train.settings import TrainSettings

__all__ = ["Hooks", "LoopResult", "LossTerm", "Report", "StepOutput", "prepare", "train_loop", "train_step"]

# Called after every step with the newest point; returning False, or a string saying why, stops the run ("pruned").
Report = Callable[[CurvePoint], bool | str | None]


@dataclass(frozen=True)
class LossTerm:
    """An extra term of the training loss, ``weight * fn(x_BS, logits_TV)`` (a scalar); its unweighted value at the
    last step is reported under ``name``. ``fn`` runs inside the step's autocast region."""

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
    """One step's losses (device scalars, not yet read back) and its routing statistics."""

    lm_loss: Tensor
    terms: dict[str, Tensor]
    moe: list[MoEStats]


@dataclass(frozen=True)
class LoopResult:
    """How a run went. ``elapsed_s`` includes set-up and evaluation; ``steps_s`` is the time inside training steps,
    ``step_time_s`` their median after ``timing_warmup_steps`` and ``tokens_per_s`` the throughput at that median.
    ``train_loss`` (the last step's LM loss) is None when it was not finite; ``loss_terms`` holds each
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


class _Stop(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def prepare(model: LanguageModel, settings: TrainSettings, device: torch.device) -> Callable[[Tensor], LMOutput]:
    """Move ``model`` to ``device`` in train mode; return the callable the steps run (compiled when asked)."""
    model.to(device).train()
    if settings.compile:
        return torch.compile(model)
    return model


def train_step(
    model: LanguageModel,
    forward: Callable[[Tensor], LMOutput],
    optimizer: torch.optim.Optimizer,
    x_BS: Tensor,
    y_BS: Tensor,
    settings: TrainSettings,
    hooks: Hooks,
) -> StepOutput:
    """One optimiser step on the batch ``x_BS -> y_BS`` (already on the model's device)."""
    device_type = x_BS.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=device_type == "cuda"):
        out = forward(x_BS)
        logits_TV = out.logits.float().flatten(0, 1)
        lm_loss = F.cross_entropy(logits_TV, y_BS.flatten())
        loss = lm_loss + out.aux_loss
        terms: dict[str, Tensor] = {}
        for term in hooks.loss_terms:
            terms[term.name] = value = term.fn(x_BS, logits_TV)
            loss = loss + term.weight * value
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    for hook in hooks.after_optimizer_step:
        hook()
    return StepOutput(lm_loss=lm_loss, terms=terms, moe=out.moe)


def train_loop(
    build: Callable[[], LanguageModel],
    batches: BatchSampler,
    settings: TrainSettings,
    budget: StepBudget,
    device: torch.device,
    *,
    validation: Corpus | None = None,
    hooks: Hooks | None = None,
) -> LoopResult:
    """Build the model (inside the run: an allocation failure there is ``out_of_memory`` too) and train it on
    ``batches`` until ``budget`` is spent or the run fails; with ``validation``, evaluate on that corpus every
    ``settings.eval_interval`` steps and after the last step. The model is trained in place."""
    return _Loop(batches, settings, budget, device, validation, hooks or Hooks()).run(build)


@dataclass
class _Loop:
    """One run's state, so that a failure at any point still reports how far the run got."""

    batches: BatchSampler
    settings: TrainSettings
    budget: StepBudget
    device: torch.device
    validation: Corpus | None
    hooks: Hooks
    start: float = field(default_factory=time.perf_counter)
    step: int = 0
    step_times: list[float] = field(default_factory=list)
    train_loss: float | None = None
    loss_terms: dict[str, float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    moe: MoEAccumulator = field(default_factory=MoEAccumulator)

    def run(self, build: Callable[[], LanguageModel]) -> LoopResult:
        try:
            model = build()
            self._train(model)
            if self.hooks.on_completed is not None:
                self.hooks.on_completed(model)
        except _Stop as stop:
            return self._result(stop.status, stop.reason)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            first_line = str(exc).splitlines()[0][:200]
            return self._result("out_of_memory", f"allocation failed at step {self.step}: {first_line}")
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return self._result("completed", None)

    def _train(self, model: LanguageModel) -> None:
        forward = prepare(model, self.settings, self.device)
        optimizer = build_optimizer(model, self.settings, self.device)
        schedule = LRSchedule.of(self.settings, self.budget)
        limit = self.settings.time_limit_s
        while not self.budget.spent(self.step, elapsed := time.perf_counter() - self.start):
            if limit is not None and elapsed > limit:
                raise _Stop("timed_out", f"time limit {limit:g} s passed at step {self.step}")
            lr = schedule(self.step, self.budget.progress(self.step, elapsed))
            set_lr(optimizer, lr)
            train_loss = self._timed_step(model, forward, optimizer)
            val_loss = self._evaluate(model) if self._evaluation_due() else None
            point = CurvePoint(
                step=self.step,
                tokens=self._tokens(),
                elapsed_s=self._elapsed(),
                train_loss=train_loss,
                val_loss=val_loss,
                lr=lr,
            )
            self._record(point)
        if self.validation is not None and self.curve and self.curve[-1].val_loss is None:
            # A time budget ended between evaluations: the run still ends with one.
            self.evaluation = evaluate(model, self.validation, self.settings)
            self.curve[-1] = self.curve[-1].model_copy(update={"val_loss": self.evaluation.loss})

    def _timed_step(
        self, model: LanguageModel, forward: Callable[[Tensor], LMOutput], optimizer: torch.optim.Optimizer
    ) -> float:
        """One step, timed; its LM loss (finite: a non-finite one ends the run)."""
        start = time.perf_counter()
        x_BS, y_BS = self.batches.next()
        x_BS, y_BS = x_BS.to(self.device, non_blocking=True), y_BS.to(self.device, non_blocking=True)
        out = train_step(model, forward, optimizer, x_BS, y_BS, self.settings, self.hooks)
        train_loss = out.lm_loss.item()  # the host sync; also what the curve needs
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.step_times.append(time.perf_counter() - start)
        self.step += 1
        if not math.isfinite(train_loss):
            self.train_loss = None
            raise _Stop("diverged", f"training loss became {train_loss} at step {self.step}")
        self.train_loss = train_loss
        self.loss_terms = {name: value.item() for name, value in out.terms.items()}
        self.moe.add(out.moe)
        return train_loss

    def _evaluation_due(self) -> bool:
        if self.validation is None:
            return False
        return self.step % self.settings.eval_interval == 0 or self.budget.is_last(self.step)

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
        timed = self.step_times[self.settings.timing_warmup_steps :] or self.step_times
        step_time = statistics.median(timed) if timed else None
        return LoopResult(
            status=status,
            reason=reason,
            steps=self.step,
            tokens=self._tokens(),
            elapsed_s=self._elapsed(),
            steps_s=sum(self.step_times),
            step_time_s=step_time,
            tokens_per_s=self._tokens_per_step() / step_time if step_time else None,
            train_loss=self.train_loss,
            loss_terms=self.loss_terms,
            evaluation=self.evaluation,
            curve=self.curve,
            moe=self.moe.summary(),
        )
