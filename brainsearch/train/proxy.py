"""The proxy trainer: train an architecture under a fixed budget and report honest metrics.

A trial (or a scale-up rung) calls :func:`train`: the training loop (:mod:`brainsearch.train.loop`) configured with
the settings' budget and evaluation on the training corpus, plus what only a proxy does - refusing a model whose
estimated memory does not fit before anything is allocated, and assembling the :class:`ProxyResult` (throughput, MFU
against the device's measured peak, bits per byte). Budgets are tokens, training FLOPs (from the cost model: cheaper
architectures get more tokens) or wall-clock seconds (the paper's fixed-time budget: faster architectures get more
steps). Failures are results: a NaN/inf loss is ``diverged``, a memory estimate above the device's free memory or an
allocation failure is ``out_of_memory``, passing ``time_limit_s`` is ``timed_out``, a ``report`` callback returning
False (or a reason string) is ``pruned``; each carries a reason and the caller never sees an exception from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from brainsearch.arch.cost import Cost, cost
from brainsearch.arch.spec import Architecture
from brainsearch.data import BatchSampler, Corpus, load_corpus
from brainsearch.errors import DataError, Problem
from brainsearch.model import LanguageModel, build_model
from brainsearch.train.budget import StepBudget
from brainsearch.train.device import free_memory_bytes, resolve_device
from brainsearch.train.loop import Hooks, LoopResult, Report, train_loop
from brainsearch.train.peak import matmul_peak_flops
from brainsearch.train.result import ProxyResult
from brainsearch.train.settings import TrainSettings

__all__ = ["Report", "train"]


def train(
    arch: Architecture,
    settings: TrainSettings | None = None,
    report: Report | None = None,
    corpus: Corpus | None = None,
    model: LanguageModel | None = None,
    on_completed: Callable[[LanguageModel], None] | None = None,
) -> ProxyResult:
    """Train ``arch`` (or a given ``model`` of it) under ``settings.budget``; never raises for a failed run.

    ``on_completed`` is called with the trained model when the run completed (to keep its weights, say).

    Bad input (missing data, a corpus too short for one batch) raises :class:`~brainsearch.errors.DataError` before
    training starts.
    """
    settings = settings or TrainSettings()
    device = resolve_device(settings)
    c = cost(arch, batch_size=settings.batch_size, precision="bf16" if device.type == "cuda" else "fp32")
    identity = {
        "arch_digest": arch.digest,
        "device": str(device),
        "flops_per_token": c.flops_per_token,
        "params_total": c.params_total,
        "params_activated": c.params_activated,
    }
    # The cheap check first: a model that cannot fit is refused before any data or weights are touched.
    refusal = _memory_refusal(c, settings, device)
    if refusal is not None:
        return ProxyResult(status="out_of_memory", reason=refusal, **identity)
    corpus = corpus or load_corpus(settings.data, arch.vocab_size)
    batches = _training_batches(corpus, arch, settings)

    def build() -> LanguageModel:
        if model is not None:
            return model
        return build_model(arch, load_balance_weight=settings.load_balance_weight, z_loss_weight=settings.z_loss_weight)

    torch.manual_seed(settings.seed)  # the model's initialisation
    budget = StepBudget.of(settings.budget, settings.batch_size * arch.seq_len, c.flops_per_token)
    hooks = Hooks(report=report, on_completed=on_completed)
    run = train_loop(build, batches, settings, budget, device, validation=corpus, hooks=hooks)
    return _proxy_result(run, corpus, c, device, identity)


def _memory_refusal(c: Cost, settings: TrainSettings, device: torch.device) -> str | None:
    """Why the estimated training memory cannot fit (the settings' limit, else 90% of the free memory), or None."""
    limit = settings.memory_limit_bytes or 0.9 * free_memory_bytes(device)
    if c.memory_bytes <= limit:
        return None
    return f"estimated training memory {c.memory_bytes / 2**30:.2f} GiB exceeds the limit {limit / 2**30:.2f} GiB"


def _training_batches(corpus: Corpus, arch: Architecture, settings: TrainSettings) -> BatchSampler:
    """The training batches; a corpus of another vocabulary, or with a split too short for one sequence, is a
    :class:`DataError` now rather than during the run."""
    if corpus.vocab_size != arch.vocab_size:
        raise DataError([Problem("data", f"corpus vocabulary {corpus.vocab_size} != architecture's {arch.vocab_size}")])
    batches = BatchSampler(corpus.train, settings.batch_size, arch.seq_len, settings.seed)
    BatchSampler(corpus.val, settings.batch_size, arch.seq_len, settings.seed, split="validation")
    return batches


def _proxy_result(
    run: LoopResult, corpus: Corpus, c: Cost, device: torch.device, identity: dict[str, Any]
) -> ProxyResult:
    """The run's metrics: losses, throughput, model FLOP/s against the device's measured matmul peak."""
    model_flops = c.flops_per_token * run.tokens_per_s if run.tokens_per_s else None
    peak = matmul_peak_flops(str(device), torch.bfloat16 if device.type == "cuda" else torch.float32)
    bpt = corpus.bytes_per_token
    val = run.evaluation.loss if run.evaluation is not None and math.isfinite(run.evaluation.loss) else None
    return ProxyResult(
        status=run.status,
        reason=run.reason,
        val_loss=val,
        val_loss_stderr=run.evaluation.stderr if run.evaluation is not None and val is not None else None,
        val_ppl=math.exp(val) if val is not None and val < 700 else None,
        val_bits_per_byte=val / math.log(2) / bpt if val is not None and bpt else None,
        train_loss=run.train_loss,
        unigram_entropy=corpus.unigram_entropy(),
        steps=run.steps,
        tokens=run.tokens,
        elapsed_s=run.elapsed_s,
        step_time_s=run.step_time_s,
        steps_seconds=run.steps_s,
        tokens_per_s=run.tokens_per_s,
        model_flops_per_s=model_flops,
        peak_flops_per_s=peak,
        mfu=model_flops / peak if model_flops else None,
        curve=run.curve,
        moe=run.moe,
        **identity,
    )
