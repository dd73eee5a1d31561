"""Human-readable numbers for summaries and messages."""

from __future__ import annotations

__all__ = ["fmt_bytes", "fmt_count", "fmt_flops", "fmt_memory_plan"]


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
