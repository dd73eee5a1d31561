"""Dense-to-sparse training: train an MoE architecture's dense twin first, upcycle it, train the MoE model on.

Sparse upcycling (Komatsuzaki et al. 2022, arXiv 2212.05055) starts an MoE model from a trained dense one: each FFN
is copied into every expert of the MoE layer in its place, the router is new (:mod:`brainsearch.model.upcycle`).
:func:`train_upcycled` runs it as one run of the given token budget, so it compares side by side with a run of the
same architecture from scratch (``init`` says which a result is):

1. the dense twin (:func:`brainsearch.arch.scale.dense_twin`) trains ``dense_fraction`` of the budget's steps with
   :func:`brainsearch.train.proxy.train`;
2. its weights start the MoE model (:func:`~brainsearch.model.upcycle.upcycle`, new routers drawn under
   ``settings.seed``);
3. the MoE model trains the remaining steps with :func:`~brainsearch.train.proxy.train`.

Choices, and where they differ from the paper:

- Budget. The budget's steps (``ceil(tokens / tokens per step)``, as a run from scratch gets) are split, at least one
  step each, so the two phases together train exactly the steps and tokens of the scratch run. A FLOP budget is
  first turned into tokens with the *MoE* architecture's FLOPs per token (the tokens its scratch run would get): both
  runs see the same tokens, and the upcycled one spends fewer FLOPs where the dense twin is cheaper per token (it
  has no router, and runs one FFN per token where top-2 or expert choice run more). A seconds budget is refused
  (``ValueError``): a share of the time is not a share of the tokens, the two models running at different speeds.
- Schedule and optimiser. Each phase is a run of its own: the MoE phase starts a fresh optimiser (no Adam moments)
  and its own learning-rate schedule, warm-up included (``warmup_steps``, capped at a tenth of the phase's steps),
  then the cosine decays over the phase's steps. The paper instead continues the dense run's schedule (and may copy
  the optimiser state). Restarting keeps each phase an ordinary proxy run with no state handed between them; what
  it costs or gains against continuing is not measured here.
- Data and seeds. Both phases run with ``settings.seed``: the validation batches (drawn with ``seed + 1``) are those
  of the scratch run, so the losses compare. The MoE phase passes over the training batches the dense phase drew
  (``skip_batches``), so the whole run sees the batches a scratch run of the same seed sees, in the same order.
- The time limit (``time_limit_s``) covers both phases: the MoE phase gets what the dense phase left.
- Checkpoints (``settings.checkpoint``) go to a ``dense`` and a ``sparse`` folder under the given one, so a resumed
  run finds each phase's own.

The result is one :class:`~brainsearch.train.result.ProxyResult` for the whole run: steps, tokens and times summed,
the learning curve of both phases with the MoE phase's points after the dense phase's (steps, tokens and charged
seconds offset), losses, throughput, MFU, memory plan and routing statistics of the MoE phase (the model being
evaluated), ``init="upcycle"`` and ``upcycle_step`` the dense phase's steps. A failed phase fails the run with its
status and a reason naming the phase; a failed dense phase reports the dense model's metrics so far and no
``upcycle_step``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from brainsearch.arch.cost import cost
from brainsearch.arch.scale import dense_twin
from brainsearch.arch.spec import Architecture
from brainsearch.data import Corpus, load_corpus
from brainsearch.model import LanguageModel
from brainsearch.model.upcycle import upcycle
from brainsearch.space.schema import Budget
from brainsearch.train import proxy
from brainsearch.train.loop import Report
from brainsearch.train.result import CurvePoint, ProxyResult
from brainsearch.train.settings import TrainSettings

__all__ = ["phase_steps", "train_upcycled"]


def phase_steps(arch: Architecture, settings: TrainSettings, dense_fraction: float) -> tuple[int, int]:
    """``(dense steps, MoE steps)``: the steps a scratch run of ``arch`` gets from ``settings.budget``, split by
    ``dense_fraction`` (rounded, at least one each). Raises ``ValueError`` for a seconds budget, a fraction outside
    ``(0, 1)`` or a budget of a single step."""
    if not 0 < dense_fraction < 1:
        raise ValueError(f"dense_fraction must be between 0 and 1 (exclusive), got {dense_fraction}")
    budget = settings.budget
    tokens_per_step = settings.batch_size * arch.seq_len
    if budget.tokens is not None:
        tokens = budget.tokens
    elif budget.flops is not None:
        tokens = budget.flops / cost(arch, batch_size=settings.batch_size).flops_per_token
    else:
        raise ValueError(
            "an upcycled run splits a token (or FLOP) budget between its dense and MoE phases; "
            f"a budget of {budget.seconds:g} seconds has no token share"
        )
    total = max(1, math.ceil(tokens / tokens_per_step))
    if total < 2:
        raise ValueError(f"the budget buys {total} step; an upcycled run needs at least 2 (one per phase)")
    dense = min(total - 1, max(1, round(dense_fraction * total)))
    return dense, total - dense


def train_upcycled(
    arch: Architecture,
    settings: TrainSettings,
    *,
    dense_fraction: float,
    corpus: Corpus | None = None,
    report: Report | None = None,
    on_completed: Callable[[LanguageModel], None] | None = None,
) -> ProxyResult:
    """Train ``dense_twin(arch)`` for ``dense_fraction`` of ``settings.budget``, upcycle it to ``arch`` and train that
    for the rest (see the module docstring); never raises for a failed run.

    ``report`` sees every curve point of both phases, the MoE phase's offset to follow the dense phase's (returning
    False or a reason stops the run, as in :func:`~brainsearch.train.proxy.train`); ``on_completed`` gets the trained
    MoE model when the whole run completed. Raises ``ValueError`` for a budget that cannot be split
    (:func:`phase_steps`) and :class:`~brainsearch.errors.DataError` for unusable data, before training.
    """
    dense_steps, sparse_steps = phase_steps(arch, settings, dense_fraction)
    tokens_per_step = settings.batch_size * arch.seq_len
    corpus = corpus or load_corpus(settings.data, arch.vocab_size, settings.data_dir)
    twin = dense_twin(arch)
    kept: list[LanguageModel] = []
    dense_settings = _phase_settings(settings, dense_steps * tokens_per_step, "dense")
    dense = proxy.train(twin, dense_settings, report=report, corpus=corpus, on_completed=kept.append)
    if dense.status != "completed" or not kept:
        return _dense_failure(dense, arch, settings)

    surgery_start = time.perf_counter()
    model = upcycle(
        kept.pop(),
        arch,
        seed=settings.seed,
        load_balance_weight=settings.load_balance_weight,
        z_loss_weight=settings.z_loss_weight,
    )
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the dense model is gone: the MoE phase's memory plan sees the device free
    surgery_s = time.perf_counter() - surgery_start

    sparse_settings = _phase_settings(settings, sparse_steps * tokens_per_step, "sparse")
    sparse_settings = sparse_settings.model_copy(update={"skip_batches": settings.skip_batches + dense_steps})
    if settings.time_limit_s is not None:
        # Past the limit already: a tiny limit makes the MoE phase time out before its first step.
        left = max(settings.time_limit_s - dense.elapsed_s - surgery_s, 1e-6)
        sparse_settings = sparse_settings.model_copy(update={"time_limit_s": left})
    sparse_report = None if report is None else _offset_report(report, dense)
    sparse = proxy.train(
        arch, sparse_settings, report=sparse_report, corpus=corpus, model=model, on_completed=on_completed
    )
    return _combined(dense, sparse, surgery_s)


def _phase_settings(settings: TrainSettings, tokens: int, phase: str) -> TrainSettings:
    """``settings`` with a budget of ``tokens`` (a whole number of steps) and the phase's own checkpoint folder."""
    update: dict[str, Any] = {"budget": Budget(tokens=float(tokens))}
    if settings.checkpoint is not None:
        update["checkpoint"] = settings.checkpoint.model_copy(
            update={"dir": str(Path(settings.checkpoint.dir) / phase)}
        )
    return settings.model_copy(update=update)


def _offset(point: CurvePoint, dense: ProxyResult) -> CurvePoint:
    """A point of the MoE phase placed after the dense phase: steps, tokens and charged seconds offset."""
    return point.model_copy(
        update={
            "step": point.step + dense.steps,
            "tokens": point.tokens + dense.tokens,
            "elapsed_s": point.elapsed_s + dense.steps_seconds,
        }
    )


def _offset_report(report: Report, dense: ProxyResult) -> Report:
    def offset_report(point: CurvePoint) -> bool | str | None:
        return report(_offset(point, dense))

    return offset_report


def _dense_failure(dense: ProxyResult, arch: Architecture, settings: TrainSettings) -> ProxyResult:
    """The run's result when the dense phase failed: its status and metrics, the MoE architecture's identity."""
    c = cost(arch, batch_size=settings.batch_size)
    return dense.model_copy(
        update={
            "reason": f"dense phase: {dense.reason or dense.status}",
            "arch_digest": arch.digest,
            "flops_per_token": c.flops_per_token,
            "params_total": c.params_total,
            "params_activated": c.params_activated,
            "init": "upcycle",
            "upcycle_step": None,
            "notes": [
                f"failed in the dense phase (dense twin {dense_twin(arch).pattern}, {dense.arch_digest}): losses, "
                "throughput and memory are the dense model's",
                *dense.notes,
            ],
        }
    )


def _sum_optional(a: float | None, b: float | None) -> float | None:
    return None if a is None and b is None else (a or 0.0) + (b or 0.0)


def _combined(dense: ProxyResult, sparse: ProxyResult, surgery_s: float) -> ProxyResult:
    """One result for both phases: the MoE phase's metrics, counts and times summed, the curves joined."""
    reason = sparse.reason
    if sparse.status != "completed":
        reason = f"sparse phase (upcycled at step {dense.steps}): {sparse.reason or sparse.status}"
    peaks = [b for b in (dense.memory_peak_bytes, sparse.memory_peak_bytes) if b is not None]
    dense_val = f"{dense.val_loss:.4f}" if dense.val_loss is not None else "none"
    return sparse.model_copy(
        update={
            "reason": reason,
            "steps": dense.steps + sparse.steps,
            "tokens": dense.tokens + sparse.tokens,
            "elapsed_s": dense.elapsed_s + surgery_s + sparse.elapsed_s,
            "steps_seconds": dense.steps_seconds + sparse.steps_seconds,
            "curve": [*dense.curve, *(_offset(p, dense) for p in sparse.curve)],
            "memory_peak_bytes": max(peaks) if peaks else None,
            "setup_s": _sum_optional(_sum_optional(dense.setup_s, sparse.setup_s), surgery_s),
            "compile_s": _sum_optional(dense.compile_s, sparse.compile_s),
            "checkpoints": [*dense.checkpoints, *sparse.checkpoints],
            "checkpoint_count": dense.checkpoint_count + sparse.checkpoint_count,
            "resume_count": dense.resume_count + sparse.resume_count,
            "resumed_from": [*dense.resumed_from, *(s + dense.steps for s in sparse.resumed_from)],
            "init": "upcycle",
            "upcycle_step": dense.steps,
            "notes": [
                f"dense twin {dense.arch_digest} trained {dense.steps} steps ({dense.tokens} tokens) to validation "
                f"loss {dense_val}, then upcycled; the MoE phase restarted the learning-rate schedule (warm-up "
                "included) with a fresh optimiser",
                *(f"dense phase: {note}" for note in dense.notes),
                *sparse.notes,
            ],
        }
    )
