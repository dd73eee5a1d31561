"""Numbers as the dashboard shows them: losses to four decimals, sizes and counts with units, times in ms and
"1 min 52 s", FLOPs with SI prefixes. Every function takes None (a metric not measured) and answers "–".

The Jinja filters of the templates are :data:`FILTERS`; :func:`fmt_metric` picks the format from a metric's name, so
the trial page, the compare view and the leaderboard show one metric the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from brainsearch._format import (
    fmt_bytes,
    fmt_checkpoint,
    fmt_count,
    fmt_devices,
    fmt_flops,
    fmt_memory_plan,
    fmt_unix_time,
)
from brainsearch.search.verdict import fmt_interval as fmt_difference

__all__ = [
    "FILTERS",
    "METRIC_LABELS",
    "MISSING",
    "fmt_delta",
    "fmt_duration",
    "fmt_interval",
    "fmt_loss",
    "fmt_metric",
    "fmt_ms",
    "fmt_rate",
    "fmt_ratio",
    "fmt_versus",
    "fmt_when",
    "metric_label",
]

MISSING = "–"


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fmt_loss(x: float | None) -> str:
    """A loss in nats: ``2.5119068920612335`` -> ``"2.5119"``."""
    return f"{x:.4f}" if _finite(x) else ("NaN" if isinstance(x, float) else MISSING)


def fmt_ms(seconds: float | None) -> str:
    """A step time: ``0.01234`` -> ``"12.3 ms"``; a second or more -> ``"1.23 s"``."""
    if not _finite(seconds):
        return MISSING
    assert seconds is not None
    if seconds >= 1:
        return f"{seconds:.3g} s"
    ms = seconds * 1000
    return f"{ms:.3g} ms" if ms >= 0.01 else "<0.01 ms"


def fmt_rate(tokens_per_s: float | None) -> str:
    """Throughput: ``12345.6`` -> ``"12.3K tok/s"``."""
    return f"{fmt_count(tokens_per_s)} tok/s" if _finite(tokens_per_s) else MISSING  # type: ignore[arg-type]


def fmt_duration(seconds: float | None) -> str:
    """A wall-clock duration, two units at most: ``112`` -> ``"1 min 52 s"``, ``7384`` -> ``"2 h 3 min"``,
    ``4.2`` -> ``"4.2 s"``."""
    if not _finite(seconds):
        return MISSING
    assert seconds is not None
    if seconds < 10:
        return f"{max(seconds, 0):.1f} s"
    s = round(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (s, "s")]
    while parts and parts[0][0] == 0:  # the largest non-zero unit leads
        parts.pop(0)
    return " ".join(f"{n} {unit}" for n, unit in parts[:2] if n or unit == parts[0][1])


def fmt_delta(x: float | None, base: float | None, kind: str = "abs") -> str:
    """``x`` against ``base``: absolute to four decimals (``"+0.0123"``, losses) or relative (``"-12.5%"``,
    costs)."""
    if not (_finite(x) and _finite(base)):
        return ""
    assert x is not None and base is not None
    if kind == "abs":
        return f"{x - base:+.4f}"
    if base == 0:
        return ""
    return f"{(x - base) / abs(base) * 100:+.1f}%"


def fmt_interval(interval: Any) -> str:
    """An interval against the baseline (:class:`brainsearch.search.noise.Interval`) as ``"[-0.3965, -0.0651]"``."""
    if interval is None or not (_finite(interval.low) and _finite(interval.high)):
        return ""
    return f"[{interval.low:+.4f}, {interval.high:+.4f}]"


def fmt_versus(interval: Any) -> str:
    """A difference from the baseline with its interval, as every view prints a headline:
    ``"-0.051 [-0.090, -0.012]"`` (:func:`brainsearch.search.verdict.fmt_interval`)."""
    return fmt_difference(interval) if interval is not None else MISSING


def fmt_ratio(x: float | None) -> str:
    """A ratio to the baseline: ``1.8612`` -> ``"1.86x"``."""
    return f"{x:.2f}x" if _finite(x) else MISSING


def fmt_when(t: datetime | None) -> str:
    """A stored time (UTC) to the minute: ``"2025-12-01 02:32"``."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if t is not None else MISSING


def _number(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return MISSING if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def _fraction(x: float | None) -> str:
    return f"{x * 100:.1f}%" if _finite(x) else MISSING  # type: ignore[operator]


def _ratio(x: float | None) -> str:
    return f"{x:.2f}×" if _finite(x) else MISSING


def _fixed(digits: int) -> Callable[[Any], str]:
    return lambda x: f"{x:.{digits}f}" if _finite(x) else MISSING


def _flops_per_s(x: float | None) -> str:
    return f"{fmt_flops(x)}/s" if _finite(x) else MISSING  # type: ignore[arg-type]


def _unit(fmt: Callable[[float], str]) -> Callable[[Any], str]:
    return lambda x: fmt(x) if _finite(x) else MISSING


# Metric name -> (label, format). The names are those of ProxyResult, Cost and MoESummary.
_METRICS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "val_loss": ("validation loss (nats)", fmt_loss),
    "val_loss_stderr": ("validation loss std. error", fmt_loss),
    "val_ppl": ("validation perplexity", _fixed(2)),
    "val_bits_per_byte": ("validation bits per byte", _fixed(4)),
    "train_loss": ("training loss (nats)", fmt_loss),
    "unigram_entropy": ("unigram entropy of the data (nats)", fmt_loss),
    "steps": ("steps", _number),
    "tokens": ("tokens", _unit(fmt_count)),
    "step_time_s": ("step time (median)", fmt_ms),
    "steps_seconds": ("time in training steps", fmt_duration),
    "tokens_per_s": ("throughput", fmt_rate),
    "mfu": ("MFU", _fraction),
    "elapsed_s": ("wall-clock time", fmt_duration),
    "model_flops_per_s": ("model FLOP/s", _flops_per_s),
    "peak_flops_per_s": ("device peak FLOP/s (the MFU's denominator)", _flops_per_s),
    "peak_flops_source": ("peak FLOP/s from", lambda x: MISSING if x is None else str(x)),
    "peak_flops_label": ("MFU measured against", lambda x: MISSING if x is None else str(x)),
    "matmul_flops_per_s": ("measured matmul FLOP/s", _flops_per_s),
    "micro_batch": ("micro-batch (sequences per forward)", _number),
    "activation_checkpointing": (
        "activation checkpointing",
        lambda x: MISSING if x is None else ("on" if x else "off"),
    ),
    "memory_estimate_bytes": ("training memory (estimated peak)", _unit(fmt_bytes)),
    "memory_peak_bytes": ("training memory (measured peak)", _unit(fmt_bytes)),
    "memory_state_bytes": ("weights, gradients, optimizer state", _unit(fmt_bytes)),
    "memory_activation_bytes": ("activations and logits (estimate)", _unit(fmt_bytes)),
    "setup_s": ("set-up (not charged to the budget)", fmt_duration),
    "compile_s": ("compilation (not charged)", fmt_duration),
    "params_total": ("parameters (total)", _unit(fmt_count)),
    "params_activated": ("parameters (activated per token)", _unit(fmt_count)),
    "params_embedding": ("embedding parameters", _unit(fmt_count)),
    "params_with_embedding": ("parameters incl. embeddings", _unit(fmt_count)),
    "flops_per_token": ("training FLOPs per token", _unit(fmt_flops)),
    "flops_per_token_padded": ("training FLOPs per token (capacity slots)", _unit(fmt_flops)),
    "memory_bytes": ("training memory (estimated peak per device)", _unit(fmt_bytes)),
    "checkpointing": (
        "activation checkpointing of the estimate",
        lambda x: MISSING if x is None else ("on" if x else "off"),
    ),
    "num_layers": ("MoE layers", _number),
    "load_cv": ("expert load CV (0: balanced)", _fixed(3)),
    "max_load_ratio": ("busiest expert / mean load", _ratio),
    "dropped_fraction": ("tokens dropped", _fraction),
    "router_entropy": ("router entropy (nats)", _fixed(3)),
    "load_balance_loss": ("load-balance loss", fmt_loss),
    "z_loss": ("router z-loss", fmt_loss),
    "device": ("device", lambda x: MISSING if x is None else str(x)),
    "batch_size": ("batch size of the estimate", _number),
    "precision": ("precision of the estimate", lambda x: MISSING if x is None else str(x)),
    "num_attention": ("attention layers", _number),
    "num_ffn": ("dense FFN layers", _number),
    "num_moe": ("MoE layers", _number),
    "devices": ("devices (one process each)", _number),
    "sharding": ("sharding", lambda x: "none" if x is None else str(x)),
    "recipe": ("training recipe", lambda x: MISSING if x is None else str(x)),
    "checkpoint_count": ("checkpoints saved", _number),
    "resume_count": ("resumes from a checkpoint", _number),
    "init": ("started from", lambda x: MISSING if x is None else str(x)),
    "upcycle_step": ("upcycled at step", _number),
}
METRIC_LABELS = {name: label for name, (label, _) in _METRICS.items()}


def metric_label(name: str) -> str:
    """A person's name for a metric: ``"step_time_s"`` -> ``"step time (median)"``."""
    return METRIC_LABELS.get(name, name.replace("_", " "))


def fmt_metric(name: str, value: Any) -> str:
    """``value`` of the metric ``name`` with its unit (``memory_bytes`` 35749632 -> ``"34.09 MiB"``); unknown
    metrics: integers with separators, floats to four significant digits."""
    fmt = _METRICS.get(name, ("", _number))[1]
    return fmt(value)


FILTERS: dict[str, Callable[..., str]] = {
    "loss": fmt_loss,
    "ms": fmt_ms,
    "rate": fmt_rate,
    "duration": fmt_duration,
    "delta": fmt_delta,
    "interval": fmt_interval,
    "versus": fmt_versus,
    "ratio": fmt_ratio,
    "when": fmt_when,
    "count": _unit(fmt_count),
    "bytes": _unit(fmt_bytes),
    "flops": _unit(fmt_flops),
    "metric": lambda value, name: fmt_metric(name, value),
    "label": metric_label,
    "number": _number,
    "memory_plan": lambda metrics: fmt_memory_plan(metrics.get("micro_batch"), metrics.get("activation_checkpointing")),
    "percent": _fraction,
    "devices": lambda run: fmt_devices(run.devices, run.sharding),
    "unix_time": lambda t: fmt_unix_time(t) or MISSING,
    "checkpoint": lambda c: fmt_checkpoint(c.step, c.saved_at, c.bytes),
}
