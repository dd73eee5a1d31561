"""Human-readable numbers for summaries and messages."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["fmt_bytes", "fmt_checkpoint", "fmt_count", "fmt_devices", "fmt_flops", "fmt_memory_plan", "fmt_unix_time"]


def fmt_count(n: float) -> str:
    """``1_883_000_000`` -> ``"1.88B"`` (K, M, B, T)."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return str(round(n)) if float(n).is_integer() else f"{n:.3g}"


def fmt_bytes(n: float) -> str:
    """``3 * 2**30`` -> ``"3.00 GiB"``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{round(n)} B"


def fmt_flops(n: float) -> str:
    """``6.04e10`` -> ``"60.4 GFLOP"``."""
    for unit, size in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("KFLOP", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{round(n)} FLOP"


def fmt_memory_plan(micro_batch: int | None, checkpointing: bool | None) -> str:
    """How a run fitted its batch in memory: ``(16, True)`` -> ``"16 ckpt"`` (sequences per forward, activations
    recomputed per block); empty when the run recorded no plan (it did not train, or predates plans)."""
    if micro_batch is None:
        return ""
    return f"{micro_batch} ckpt" if checkpointing else str(micro_batch)


def fmt_devices(devices: int | None, sharding: str | None) -> str:
    """How many devices trained a run and how it was split: ``(2, "fsdp2")`` -> ``"2 x fsdp2"``, ``(1, None)`` ->
    ``"1"`` (a missing count is one device: results from before it was recorded ran on one)."""
    n = devices or 1
    return f"{n} x {sharding}" if sharding else str(n)


def fmt_unix_time(t: float | None) -> str:
    """A Unix time in UTC to the second: ``1795000000`` -> ``"2026-11-18 11:06:40"``; empty when unknown (0 or
    None)."""
    if not t:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_checkpoint(step: int, saved_at: float | None, size: int) -> str:
    """A checkpoint on disk: ``"step 200 (2026-12-01 15:02:10, 1.20 GiB)"``."""
    when = fmt_unix_time(saved_at)
    return f"step {step} ({when + ', ' if when else ''}{fmt_bytes(size)})"
