"""The proxy trainer: train an architecture under a fixed budget and report honest metrics.

A trial calls :func:`train`. Budgets are tokens, training FLOPs (from the cost model: cheaper architectures get
more tokens) or wall-clock seconds (the paper's fixed-time budget: faster architectures get more steps). Failures
are results: a NaN/inf loss is ``diverged``, a memory estimate above the device's free memory or an allocation
failure is ``out_of_memory``, passing ``time_limit_s`` is ``timed_out``, a ``report`` callback returning False (or a
reason string) is ``pruned``; each carries a reason and the caller never sees an exception from them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture
from brainsearch.data import BatchSampler, Corpus, load_corpus
from brainsearch.errors import DataError, InputError, Problem
from brainsearch.model import LanguageModel, MoEStats, build_model
from brainsearch.train.peak import matmul_peak_flops
from brainsearch.train.result import CurvePoint, MoESummary, ProxyResult, Status
from brainsearch.train.settings import TrainSettings

__all__ = ["Report", "train"]

# Called after every step with the newest point; returning False, or a string saying why, stops the run ("pruned").
Report = Callable[[CurvePoint], bool | str | None]


class _Stop(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _device(settings: TrainSettings) -> torch.device:
    if settings.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise InputError([Problem("device", "cuda was asked for but this machine has no usable CUDA device")])
    return torch.device(settings.device)


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not refuse


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class _MoEAccumulator:
    """Sums MoE statistics on the device across steps (no host sync per step)."""

    def __init__(self) -> None:
        self.steps = 0
        self.load: list[Tensor] = []
        self.scalars: Tensor | None = None

    def add(self, stats: list[MoEStats]) -> None:
        if not stats:
            return
        vec = torch.stack(
            [
                torch.stack(
                    [
                        s.dropped_fraction.float(),
                        s.router_entropy.float(),
                        s.load_balance_loss.float(),
                        s.z_loss.float(),
                    ]
                )
                for s in stats
            ]
        ).mean(0)
        self.scalars = vec if self.scalars is None else self.scalars + vec
        if not self.load:
            self.load = [s.tokens_per_expert.float() for s in stats]
        else:
            self.load = [a + s.tokens_per_expert.float() for a, s in zip(self.load, stats, strict=True)]
        self.steps += 1

    def summary(self) -> MoESummary | None:
        if not self.steps or self.scalars is None:
            return None
        dropped, entropy, lb, z = (self.scalars / self.steps).tolist()
        shares = [(x / x.sum().clamp_min(1)).tolist() for x in self.load]
        cvs = [float(x.std(unbiased=False) / x.mean().clamp_min(1e-9)) for x in self.load]
        maxes = [float(x.max() / x.mean().clamp_min(1e-9)) for x in self.load]
        return MoESummary(
            num_layers=len(self.load),
            load_cv=statistics.fmean(cvs),
            max_load_ratio=statistics.fmean(maxes),
            dropped_fraction=dropped,
            router_entropy=entropy,
            load_balance_loss=lb,
            z_loss=z,
            expert_load=shares,
        )


def _lr(settings: TrainSettings, step: int, progress: float, warmup: int) -> float:
    base = settings.lr
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if settings.schedule == "constant":
        return base
    if settings.schedule == "inverse_sqrt":
        return base * math.sqrt(max(warmup, 1) / (step + 1))
    floor = base * settings.min_lr_ratio
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module, corpus: Corpus, settings: TrainSettings, seq_len: int, device: torch.device, autocast: bool
) -> tuple[float, float | None]:
    """Mean validation loss over ``eval_batches`` batches, and its standard error across them (None for one)."""
    model.eval()
    # The same validation batches at every evaluation, so the curve's points are comparable.
    sampler = BatchSampler(corpus.val, settings.batch_size, seq_len, seed=settings.seed + 1, split="validation")
    losses = []
    for _ in range(settings.eval_batches):
        x, y = sampler.next()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x.to(device)).logits
        losses.append(F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten()).item())
    model.train()
    stderr = statistics.stdev(losses) / math.sqrt(len(losses)) if len(losses) > 1 else None
    return statistics.fmean(losses), stderr


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
    device = _device(settings)
    c = cost(arch, batch_size=settings.batch_size, precision="bf16" if device.type == "cuda" else "fp32")
    base = {
        "arch_digest": arch.digest,
        "device": str(device),
        "flops_per_token": c.flops_per_token,
        "params_total": c.params_total,
        "params_activated": c.params_activated,
    }
    # The cheap check first: a model that cannot fit is refused before any data or weights are touched.
    limit = settings.memory_limit_bytes or 0.9 * _free_memory(device)
    if c.memory_bytes > limit:
        return ProxyResult(
            status="out_of_memory",
            reason=f"estimated training memory {c.memory_bytes / 2**30:.2f} "
            f"GiB exceeds the limit {limit / 2**30:.2f} GiB",
            **base,
        )
    corpus = corpus or load_corpus(settings.data, arch.vocab_size)
    if corpus.vocab_size != arch.vocab_size:
        raise DataError([Problem("data", f"corpus vocabulary {corpus.vocab_size} != architecture's {arch.vocab_size}")])
    train_batches = BatchSampler(corpus.train, settings.batch_size, arch.seq_len, settings.seed)
    BatchSampler(corpus.val, settings.batch_size, arch.seq_len, settings.seed, split="validation")

    tokens_per_step = settings.batch_size * arch.seq_len
    budget = settings.budget
    total_steps: int | None = None
    if budget.tokens is not None:
        total_steps = max(1, math.ceil(budget.tokens / tokens_per_step))
    elif budget.flops is not None:
        total_steps = max(1, math.ceil(budget.flops / c.flops_per_token / tokens_per_step))
    warmup = min(settings.warmup_steps, total_steps // 10) if total_steps else settings.warmup_steps
    autocast = device.type == "cuda"

    torch.manual_seed(settings.seed)
    curve: list[CurvePoint] = []
    step_times: list[float] = []
    moe = _MoEAccumulator()
    start = time.perf_counter()
    step = 0
    status: Status = "completed"
    reason: str | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    val_stderr: float | None = None
    try:
        if model is None:
            model = build_model(
                arch, load_balance_weight=settings.load_balance_weight, z_loss_weight=settings.z_loss_weight
            )
        model = model.to(device)
        model.train()
        run_model: Callable[[Tensor], object] = torch.compile(model) if settings.compile else model
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt: torch.optim.Optimizer
        if settings.optimizer == "adafactor":
            opt = cast(torch.optim.Optimizer, torch.optim.Adafactor(groups, lr=settings.lr))
        else:
            opt = torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.95), fused=device.type == "cuda")
        while True:
            elapsed = time.perf_counter() - start
            if total_steps is not None:
                if step >= total_steps:
                    break
                progress = step / total_steps
            else:
                assert budget.seconds is not None
                if elapsed >= budget.seconds and step > 0:
                    break
                progress = elapsed / budget.seconds
            if settings.time_limit_s is not None and elapsed > settings.time_limit_s:
                raise _Stop("timed_out", f"time limit {settings.time_limit_s:g} s passed at step {step}")
            lr = _lr(settings, step, progress, warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            x, y = train_batches.next()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = run_model(x)
                lm_loss = F.cross_entropy(out.logits.float().flatten(0, 1), y.flatten())  # type: ignore[attr-defined]
                loss = lm_loss + out.aux_loss  # type: ignore[attr-defined]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            train_loss = lm_loss.item()  # the host sync; also what the curve needs
            if device.type == "cuda":
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - t0)
            step += 1
            if not math.isfinite(train_loss):
                raise _Stop("diverged", f"training loss became {train_loss} at step {step}")
            moe.add(out.moe)  # type: ignore[attr-defined]
            last = total_steps is not None and step >= total_steps
            evaluate = step % settings.eval_interval == 0 or last
            point_val = None
            if evaluate:
                point_val, val_stderr = _evaluate(model, corpus, settings, arch.seq_len, device, autocast)
                val_loss = point_val
                if not math.isfinite(point_val):
                    raise _Stop("diverged", f"validation loss became {point_val} at step {step}")
            point = CurvePoint(
                step=step,
                tokens=step * tokens_per_step,
                elapsed_s=time.perf_counter() - start,
                train_loss=train_loss,
                val_loss=point_val,
                lr=lr,
            )
            curve.append(point)
            verdict = report(point) if report is not None else None
            if verdict is False or isinstance(verdict, str):
                raise _Stop("pruned", verdict or f"stopped by the caller at step {step}")
        if curve and curve[-1].val_loss is None:  # a time budget ended between evaluations
            val_loss, val_stderr = _evaluate(model, corpus, settings, arch.seq_len, device, autocast)
            curve[-1] = curve[-1].model_copy(update={"val_loss": val_loss})
        if on_completed is not None:
            on_completed(model)
    except _Stop as stop:
        status, reason = stop.status, stop.reason
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc):
            raise
        status, reason = "out_of_memory", f"allocation failed at step {step}: {str(exc).splitlines()[0][:200]}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()

    timed = step_times[settings.timing_warmup_steps :] or step_times
    step_time = statistics.median(timed) if timed else None
    tokens_per_s = tokens_per_step / step_time if step_time else None
    model_flops = c.flops_per_token * tokens_per_s if tokens_per_s else None
    peak = matmul_peak_flops(str(device), torch.bfloat16 if autocast else torch.float32)
    bpt = corpus.bytes_per_token
    finite_val = val_loss if val_loss is not None and math.isfinite(val_loss) else None
    return ProxyResult(
        status=status,
        reason=reason,
        val_loss=finite_val,
        val_loss_stderr=val_stderr if finite_val is not None else None,
        val_ppl=math.exp(finite_val) if finite_val is not None and finite_val < 700 else None,
        val_bits_per_byte=finite_val / math.log(2) / bpt if finite_val is not None and bpt else None,
        train_loss=train_loss if train_loss is not None and math.isfinite(train_loss) else None,
        unigram_entropy=corpus.unigram_entropy(),
        steps=step,
        tokens=step * tokens_per_step,
        elapsed_s=time.perf_counter() - start,
        step_time_s=step_time,
        steps_seconds=sum(step_times),
        tokens_per_s=tokens_per_s,
        model_flops_per_s=model_flops,
        peak_flops_per_s=peak,
        mfu=model_flops / peak if model_flops else None,
        curve=curve,
        moe=moe.summary(),
        **base,
    )
