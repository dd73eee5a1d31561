"""Step-time ratios that machine load cannot fake: a short timing probe of two models run back to back in one process.

A step time measured in one run and compared with another run's measures the machine's load as much as the models
(a baseline trained while the machine was busy once made every candidate look 2-4x faster). The probe builds
both models as the trainer does for the given settings (:func:`brainsearch.train.loop.prepare`: device, memory plan
and micro-batches, weights' dtype, compilation; the optimiser of
:func:`brainsearch.train.optim.build_optimizer`) and times full training steps of each with the loop's own
:func:`~brainsearch.train.loop.train_step` (forward, backward, clipping, optimiser step; read back and
CUDA-synchronised), in ``rounds`` rounds of ``steps`` steps per model, back to back, alternating which model goes
first. Load that lasts across a round slows both models alike and cancels in that round's ratio; load that comes and
goes within a round shows up as a spread of the per-round ratios. A probe whose spread exceeds the bound is run once
more; a ratio uncertain both times is :attr:`TimingProbe.uncertain`: readers report it as uncertain, never as a
number (:meth:`TimingProbe.speedup`).

A slowdown present in every step of a model (say a sleep in each of the baseline's steps) is not load: it is what
that model's steps cost here, so the probe reports the ratio it sees and calls it certain.

:class:`TimingProbe` is also the JSON a trial or candidate run stores as ``metrics["timing_probe"]``
(``probe.model_dump(mode="json")``). This module imports torch only inside :func:`timing_probe`, so readers of the
stored probe (the API, the reports) need no torch.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from brainsearch.arch.spec import Architecture
from brainsearch.train.settings import TrainSettings

if TYPE_CHECKING:
    import torch

    from brainsearch.data import Corpus
    from brainsearch.model import LanguageModel
    from brainsearch.train.loop import Prepared

__all__ = ["PROBE_ATTEMPTS", "PROBE_ROUNDS", "PROBE_STEPS", "SPREAD_BOUND", "OnStep", "TimingProbe", "timing_probe"]

# Five rounds: an odd count gives a true median, and five ratios show whether the load changed while the probe ran
# (one pair of measurements could not); more rounds would lengthen every decision (the probe runs before each
# constrained trial: 2 x (3 warm-up + 15) steps, a quarter of the time of a 128-step proxy, less for longer ones) for
# little gain.
PROBE_ROUNDS = 5
# Three steps per model per round: enough to average out one step's jitter, short enough that the two models of a
# round run close together in time (load must change within the pair to move that round's ratio).
PROBE_STEPS = 3
# An uncertain probe is run once more (the models are built already): load that came and went has often passed. The
# attempt with the smaller spread is kept; a ratio uncertain twice is reported as uncertain.
PROBE_ATTEMPTS = 2
# The largest relative spread, (highest - lowest per-round ratio) / median, of a ratio reported as a number. On a
# quiet machine (or one whose other runs are steady) the rounds agree within 5-15%; a spread over 25% means the load
# changed within rounds, and a verdict against a limit like max_step_time_ratio 1.5 could go either way. On a machine
# with more busy threads than cores most probes are uncertain, and rightly: step times measured there say little.
SPREAD_BOUND = 0.25

# Called inside the timed region after each timed step, with the model ("candidate" or "baseline") and the round
# (from 0, counting on through a repeated attempt): the seam through which a test slows one model's steps down.
OnStep = Callable[[str, int], None]


class TimingProbe(BaseModel):
    """What a timing probe measured. ``ratio`` is the median over rounds of the candidate's step time divided by the
    baseline's (> 1: the candidate is slower); ``low`` / ``high`` the smallest and largest per-round ratio, ``ratios``
    all of them in round order; ``spread`` = (high - low) / ratio; ``uncertain`` when the spread exceeds ``bound``.
    ``candidate_step_s`` / ``baseline_step_s`` are the median step times (seconds per step, over the rounds).
    ``rounds`` rounds of ``steps`` timed steps per model were run (a round's step time is their mean);
    ``attempts`` says how many probes were run (an uncertain one is repeated; the one with the smaller spread is
    this); ``baseline`` names the baseline (None when unnamed). These field names are the stored JSON's
    (``metrics["timing_probe"]``)."""

    model_config = ConfigDict(frozen=True)
    ratio: float = Field(gt=0)
    low: float = Field(gt=0)
    high: float = Field(gt=0)
    ratios: list[float]
    spread: float = Field(ge=0)
    bound: float = Field(ge=0)
    uncertain: bool
    candidate_step_s: float = Field(gt=0)
    baseline_step_s: float = Field(gt=0)
    rounds: int = Field(ge=1)
    steps: int = Field(ge=1)
    baseline: str | None = None
    attempts: int = Field(default=1, ge=1)

    @classmethod
    def of(
        cls,
        candidate_s: list[float],
        baseline_s: list[float],
        *,
        steps: int,
        bound: float = SPREAD_BOUND,
        baseline: str | None = None,
    ) -> TimingProbe:
        """The probe from per-round step times (seconds per step) of the candidate and the baseline."""
        if not candidate_s or len(candidate_s) != len(baseline_s):
            raise ValueError("one step time of each model per round, at least one round")
        ratios = [c / b for c, b in zip(candidate_s, baseline_s, strict=True)]
        ratio = statistics.median(ratios)
        low, high = min(ratios), max(ratios)
        spread = (high - low) / ratio
        return cls(
            ratio=ratio,
            low=low,
            high=high,
            ratios=ratios,
            spread=spread,
            bound=bound,
            uncertain=spread > bound,
            candidate_step_s=statistics.median(candidate_s),
            baseline_step_s=statistics.median(baseline_s),
            rounds=len(ratios),
            steps=steps,
            baseline=baseline,
        )

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> TimingProbe | None:
        """The probe a run stored in its metrics (``metrics["timing_probe"]``), None when it has none."""
        doc = metrics.get("timing_probe")
        return cls.model_validate(doc) if isinstance(doc, Mapping) else None

    def speedup(self) -> float | None:
        """The candidate's steps per second over the baseline's (> 1: the candidate is faster); None when the probe
        is uncertain: such a ratio is not a number anyone should report."""
        return None if self.uncertain else 1.0 / self.ratio

    def describe(self) -> str:
        """One line for notes and reasons: the ratio with its per-round range and spread, or why it is uncertain."""
        who = f"the {self.baseline} baseline" if self.baseline else "the baseline"
        measured = (
            f"per-round ratios {self.low:.2f}-{self.high:.2f} over {self.rounds} rounds of {self.steps} steps, "
            f"spread {self.spread:.0%}"
        )
        if self.uncertain:
            return f"step-time ratio to {who} uncertain ({measured} > bound {self.bound:.0%})"
        return f"step time {self.ratio:.2f}x {who}'s ({measured}, bound {self.bound:.0%})"


@dataclass
class _Timed:
    """One model of the probe, ready to step: its batches are already on the device."""

    name: str
    model: LanguageModel
    prepared: Prepared
    optimizer: torch.optim.Optimizer
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    settings: TrainSettings

    def step(self, index: int) -> None:
        import torch

        from brainsearch.train.loop import Hooks, train_step

        x_BS, y_BS = self.batches[index % len(self.batches)]
        out = train_step(
            self.model,
            self.prepared.forward,
            self.optimizer,
            x_BS,
            y_BS,
            self.settings,
            Hooks(),
            self.prepared.plan.micro_batch,
        )
        out.lm_loss.item()  # the host sync the loop's timed step has too
        if x_BS.device.type == "cuda":
            torch.cuda.synchronize()


def timing_probe(
    candidate: Architecture,
    baseline: Architecture,
    settings: TrainSettings,
    *,
    rounds: int = PROBE_ROUNDS,
    steps: int = PROBE_STEPS,
    bound: float = SPREAD_BOUND,
    attempts: int = PROBE_ATTEMPTS,
    warmup_steps: int | None = None,
    corpus: Corpus | None = None,
    baseline_name: str | None = None,
    on_step: OnStep | None = None,
) -> TimingProbe:
    """Time training steps of ``candidate`` and ``baseline`` back to back (see the module docstring).

    Both models are built and trained with ``settings`` as :func:`brainsearch.train.proxy.train` would on one device
    (its memory plan for each; a sharded recipe is not probed: both models would need a process group), warmed up with
    ``warmup_steps`` steps each (default: ``settings.timing_warmup_steps``, at least one: the first step allocates
    and, when compiled, compiles), then timed for ``rounds`` rounds of ``steps`` steps of each, the first model
    alternating. Batches come from ``corpus``'s training split when it has the architecture's vocabulary, else random
    tokens (a step's cost does not depend on the text). ``on_step`` is called inside the timed region after each
    timed step (see :data:`OnStep`).

    Raises :class:`~brainsearch.arch.plan.NoPlanFits` when a model fits no memory plan, and lets an allocation failure
    through: the caller decides what an unprobed run does. Both models are freed before returning.
    """
    import torch

    if rounds < 1 or steps < 1 or attempts < 1:
        raise ValueError(f"a probe needs at least one round of one step (got {attempts} x {rounds} rounds of {steps})")
    warmup = max(1, settings.timing_warmup_steps if warmup_steps is None else warmup_steps)
    models: list[_Timed] = []
    try:
        for name, arch in (("candidate", candidate), ("baseline", baseline)):
            models.append(_build(name, arch, settings, corpus, max(steps, warmup)))
        for timed in models:
            for i in range(warmup):
                timed.step(i)
        best: TimingProbe | None = None
        for attempt in range(attempts):
            gc.collect()  # a collection inside a timed step would land on one model only
            per_step: dict[str, list[float]] = {"candidate": [], "baseline": []}
            for r in range(attempt * rounds, (attempt + 1) * rounds):
                for timed in models if r % 2 == 0 else models[::-1]:
                    per_step[timed.name].append(_round_step_s(timed, r, steps, on_step))
            probe = TimingProbe.of(
                per_step["candidate"], per_step["baseline"], steps=steps, bound=bound, baseline=baseline_name
            )
            if best is None or probe.spread < best.spread:
                best = probe
            if not best.uncertain:
                break
        assert best is not None
        return best.model_copy(update={"attempts": attempt + 1})
    finally:
        device_type = models[0].batches[0][0].device.type if models else None
        models.clear()
        if device_type == "cuda":
            torch.cuda.empty_cache()


def _round_step_s(timed: _Timed, round_index: int, steps: int, on_step: OnStep | None) -> float:
    """One model's step time in one round: its ``steps`` steps' time over their number (one window of time, so that
    the candidate's and the baseline's windows of a round see the same load)."""
    start = time.perf_counter()
    for i in range(steps):
        timed.step(i)
        if on_step is not None:
            on_step(timed.name, round_index)
    return (time.perf_counter() - start) / steps


def _build(name: str, arch: Architecture, settings: TrainSettings, corpus: Corpus | None, num_batches: int) -> _Timed:
    """``arch`` built, placed and compiled as the trainer does, with its optimiser and ``num_batches`` batches on its
    device."""
    import torch

    from brainsearch.data import BatchSampler
    from brainsearch.model import build_model
    from brainsearch.train.device import resolve_device
    from brainsearch.train.loop import memory_plan, prepare
    from brainsearch.train.optim import build_optimizer

    device = resolve_device(settings)
    plan = memory_plan(arch, settings, device)
    if plan.recipe.shards > 1:
        raise ValueError(f"{name}: the plan shards over {plan.recipe.shards} devices; the probe runs on one")
    run_settings = settings.with_recipe(plan.recipe)
    torch.manual_seed(run_settings.seed)
    model = build_model(
        arch, load_balance_weight=run_settings.load_balance_weight, z_loss_weight=run_settings.z_loss_weight
    )
    prepared = prepare(model, run_settings, device, plan)
    optimizer = build_optimizer(model, run_settings, device)
    batch, seq = run_settings.batch_size, arch.seq_len
    batches = []
    if corpus is not None and corpus.vocab_size == arch.vocab_size and corpus.train.size > seq:
        sampler = BatchSampler(corpus.train, batch, seq, run_settings.seed)
        batches = [sampler.next() for _ in range(num_batches)]
    else:
        gen = torch.Generator().manual_seed(run_settings.seed)
        for _ in range(num_batches):
            window = torch.randint(0, arch.vocab_size, (batch, seq + 1), generator=gen)
            batches.append((window[:, :-1], window[:, 1:]))
    on_device = [(x.to(device), y.to(device)) for x, y in batches]
    return _Timed(name, model, prepared, optimizer, on_device, run_settings)
