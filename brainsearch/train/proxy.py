"""The proxy trainer: train an architecture under a fixed budget and report honest metrics.

A trial (or a scale-up rung) calls :func:`train`: the training loop (:mod:`brainsearch.train.loop`) configured with
the settings' budget and evaluation on the training corpus, plus what only a proxy does - choosing the memory plan
(:mod:`brainsearch.arch.plan`: micro-batch and activation checkpointing) before anything is allocated, refusing a
model no plan fits, and assembling the :class:`ProxyResult` (throughput, MFU against the device's datasheet peak,
bits per byte). Budgets are tokens, training FLOPs (from the cost model: cheaper architectures get more tokens) or
seconds of training steps (the paper's fixed-time budget: faster architectures get more steps; set-up, compilation,
the first step and evaluation are not charged, see :mod:`brainsearch.train.budget`). Failures are results: a NaN/inf
loss is ``diverged``, a model whose smallest memory plan exceeds the limit or an allocation failure is
``out_of_memory``, passing ``time_limit_s`` is ``timed_out``, a ``report`` callback returning False (or a reason
string) is ``pruned``; each carries a reason and the caller never sees an exception from them.

FLOPs convention (PaLM, arXiv 2204.02311, appendix B; as torchtitan): model FLOP/s = ``flops_per_token`` x tokens
per second, ``flops_per_token = 6 * N + 12 * L * H * Q * T`` with N the activated non-embedding parameters plus the
output head, L attention layers, H heads, Q head dim, T the sequence length; no causal discount on attention, padded
expert capacity not counted, and the recomputation of activation checkpointing excluded (it is overhead, not model
work). MFU divides that by the device's dense datasheet peak (:mod:`brainsearch.train.peak`); an MFU above 1 is
impossible, so it is withheld with a note rather than reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from brainsearch.arch.cost import Cost, cost
from brainsearch.arch.plan import MemoryPlan, NoPlanFits
from brainsearch.arch.spec import Architecture
from brainsearch.data import BatchSampler, Corpus, load_corpus
from brainsearch.errors import DataError, Problem
from brainsearch.model import LanguageModel, build_model
from brainsearch.train.budget import StepBudget
from brainsearch.train.device import resolve_device
from brainsearch.train.loop import Hooks, LoopResult, Report, memory_plan, train_loop
from brainsearch.train.peak import DevicePeak, device_peak, matmul_peak_flops
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
    plan: MemoryPlan | None = None,
) -> ProxyResult:
    """Train ``arch`` (or a given ``model`` of it) under ``settings.budget``; never raises for a failed run.

    ``on_completed`` is called with the trained model when the run completed (to keep its weights, say). ``plan``
    (default: the one :func:`~brainsearch.train.loop.memory_plan` chooses) fixes the memory plan and its training
    recipe, whose optimiser and weights' dtype then override the settings'; a plan sharded over ``N`` devices runs
    in a data-parallel group of ``N`` processes (:mod:`brainsearch.train.distributed`), every rank calling this.

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
    # The cheap check first: a model no plan fits is refused before any data or weights are touched.
    if plan is None:
        try:
            plan = memory_plan(arch, settings, device)
        except NoPlanFits as refusal:
            return ProxyResult(
                status="out_of_memory", reason=str(refusal), memory_estimate_bytes=refusal.smallest_bytes, **identity
            )
    settings = settings.with_recipe(plan.recipe)
    identity |= {
        "devices": plan.recipe.shards,
        "sharding": "fsdp2" if plan.recipe.shards > 1 else None,
        "recipe": plan.recipe.label,
    }
    corpus = corpus or load_corpus(settings.data, arch.vocab_size, settings.data_dir)
    batches = _training_batches(corpus, arch, settings)

    def build() -> LanguageModel:
        if model is not None:
            return model
        return build_model(arch, load_balance_weight=settings.load_balance_weight, z_loss_weight=settings.z_loss_weight)

    torch.manual_seed(settings.seed)  # the model's initialisation
    budget = StepBudget.of(settings.budget, settings.batch_size * arch.seq_len, c.flops_per_token)
    hooks = Hooks(report=report, on_completed=on_completed)
    run = train_loop(build, batches, settings, budget, device, validation=corpus, hooks=hooks, plan=plan)
    return _proxy_result(run, corpus, c, plan, device, identity)


def _training_batches(corpus: Corpus, arch: Architecture, settings: TrainSettings) -> BatchSampler:
    """The training batches; a corpus of another vocabulary, or with a split too short for one sequence, is a
    :class:`DataError` now rather than during the run."""
    if corpus.vocab_size != arch.vocab_size:
        raise DataError([Problem("data", f"corpus vocabulary {corpus.vocab_size} != architecture's {arch.vocab_size}")])
    batches = BatchSampler(corpus.train, settings.batch_size, arch.seq_len, settings.seed)
    BatchSampler(corpus.val, settings.batch_size, arch.seq_len, settings.seed, split="validation")
    batches.skip(settings.skip_batches)
    return batches


def _proxy_result(
    run: LoopResult, corpus: Corpus, c: Cost, plan: MemoryPlan, device: torch.device, identity: dict[str, Any]
) -> ProxyResult:
    """The run's metrics: losses, throughput, model FLOP/s against the device's datasheet peak (a measured matmul
    where the device is not in the table), the memory plan and set-up times."""
    notes: list[str] = []
    if not plan.capacity_preserved:
        notes.append(
            f"micro-batch {plan.micro_batch} changes expert choice's effective capacity factor: no micro-batch that "
            "keeps it fits in memory"
        )
    setup_s = run.setup_s
    model_flops: float | None = None
    peak: DevicePeak | None = None
    matmul: float | None = None
    if run.tokens_per_s:
        measure_start = time.perf_counter()
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        peak = device_peak(device, dtype)
        matmul = matmul_peak_flops(str(device), dtype, 8192 if device.type == "cuda" else 2048)
        setup_s = (setup_s or 0.0) + time.perf_counter() - measure_start
        model_flops = c.flops_per_token * run.tokens_per_s
    # Every device of a sharded run computes: the peak is the sum of theirs.
    mfu = model_flops / (peak.flops_per_s * plan.recipe.shards) if model_flops and peak else None
    if mfu is not None and mfu > 1 and peak is not None:
        notes.append(
            f"MFU withheld: model FLOP/s {model_flops:.3g} exceed the peak {peak.flops_per_s:.3g} ({peak.label}), "
            "so the FLOP count or the peak is wrong"
        )
        mfu = None
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
        peak_flops_per_s=peak.flops_per_s if peak else None,
        peak_flops_source=peak.source if peak else None,
        peak_flops_label=peak.label if peak else None,
        matmul_flops_per_s=matmul,
        mfu=mfu,
        curve=run.curve,
        moe=run.moe,
        micro_batch=plan.micro_batch,
        activation_checkpointing=plan.checkpointing,
        memory_estimate_bytes=plan.memory_bytes,
        memory_peak_bytes=run.memory_peak_bytes,
        setup_s=setup_s,
        compile_s=run.compile_s,
        checkpoints=run.checkpoints,
        checkpoint_count=len(run.checkpoints),
        resume_count=len(run.resumed_from),
        resumed_from=run.resumed_from,
        notes=notes,
        **identity,
    )
