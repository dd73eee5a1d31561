"""The device's measured matmul peak: the denominator of model FLOP utilisation (MFU)."""

from __future__ import annotations

import time
from functools import cache

import torch

__all__ = ["matmul_peak_flops"]


@cache
def matmul_peak_flops(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of an ``n x n @ n x n`` matmul on ``device`` over ``reps`` runs (measured once per process)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: kernels chosen, memory faulted in
    best = float("inf")
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
