"""The device's peak FLOP/s, the denominator of model FLOP utilisation (MFU).

MFU is against the datasheet: the vendor's dense (no structured sparsity) tensor-core peak for the dtype the model
computes in, as PaLM (arXiv 2204.02311, appendix B) and torchtitan report it. A measured matmul is no denominator -
it is itself a fraction of the peak, so a model at "90% of a matmul" may be at 60% of the hardware - but it is
reported beside MFU (``matmul_flops_per_s``) as what this device, driver and library reach on one large matmul, and
it stands in for the peak on devices the table does not know (the CPU among them), labelled as measured.

Figures are the dense per-GPU numbers of NVIDIA's and AMD's datasheets; fp32 is plain FP32 (torch does not use TF32
for float32 matmuls unless asked).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cache
from typing import Literal

import torch

__all__ = ["DATASHEET_PEAKS", "DevicePeak", "datasheet_peak", "device_peak", "matmul_peak_flops"]

PeakSource = Literal["datasheet", "measured"]
T = 1e12

# A word of torch.cuda.get_device_name() -> (the product, {dtype: dense peak FLOP/s}). Matched longest key first and
# as whole words, so "H100 PCIe" wins over "H100", "L40S" is not "L40" and "RTX A1000" is not "A100". NVIDIA names
# the H100 SXM "NVIDIA H100 80GB HBM3". AWS's A10G is left out: its clocks (so its peak) are not the A10's and no
# datasheet gives them; it falls back to the measured matmul.
DATASHEET_PEAKS: dict[str, tuple[str, dict[str, float]]] = {
    "H100 PCIe": ("H100 PCIe", {"bf16": 756 * T, "fp16": 756 * T, "fp32": 51.2 * T}),
    "H100 NVL": ("H100 NVL", {"bf16": 835 * T, "fp16": 835 * T, "fp32": 60 * T}),
    "H100": ("H100 SXM", {"bf16": 989 * T, "fp16": 989 * T, "fp32": 67 * T}),
    "H200": ("H200", {"bf16": 989 * T, "fp16": 989 * T, "fp32": 67 * T}),
    "B200": ("B200", {"bf16": 2250 * T, "fp16": 2250 * T}),
    "A100": ("A100", {"bf16": 312 * T, "fp16": 312 * T, "fp32": 19.5 * T}),
    "A800": ("A800", {"bf16": 312 * T, "fp16": 312 * T, "fp32": 19.5 * T}),
    "L40S": ("L40S", {"bf16": 362 * T, "fp16": 362 * T, "fp32": 91.6 * T}),
    "L40": ("L40", {"bf16": 181 * T, "fp16": 181 * T, "fp32": 90.5 * T}),
    "L4": ("L4", {"bf16": 121 * T, "fp16": 121 * T, "fp32": 30.3 * T}),
    "A10": ("A10", {"bf16": 125 * T, "fp16": 125 * T, "fp32": 31.2 * T}),
    "V100-SXM2": ("V100 SXM2", {"fp16": 125 * T, "fp32": 15.7 * T}),
    "V100-PCIE": ("V100 PCIe", {"fp16": 112 * T, "fp32": 14 * T}),
    "Tesla T4": ("T4", {"fp16": 65 * T, "fp32": 8.1 * T}),
    "MI300X": ("MI300X", {"bf16": 1307 * T, "fp16": 1307 * T, "fp32": 163.4 * T}),
}
_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


@dataclass(frozen=True)
class DevicePeak:
    """A peak FLOP/s, where it came from (``datasheet`` or ``measured``) and a label saying which."""

    flops_per_s: float
    source: PeakSource
    label: str


def datasheet_peak(device_name: str, dtype: torch.dtype) -> DevicePeak | None:
    """The datasheet's dense peak of the device called ``device_name`` in ``dtype``; None when not in the table."""
    dtype_name = _DTYPE_NAMES.get(dtype)
    for key in sorted(DATASHEET_PEAKS, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name):
            product, peaks = DATASHEET_PEAKS[key]
            if dtype_name not in peaks:
                return None
            return DevicePeak(peaks[dtype_name], "datasheet", f"datasheet: {product} {dtype_name} dense")
    return None


def device_peak(device: torch.device | str, dtype: torch.dtype) -> DevicePeak:
    """The MFU denominator on ``device`` in ``dtype``: the datasheet's when the device is in the table, else a
    measured large matmul (:func:`matmul_peak_flops`: n = 8192 on CUDA, 2048 on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        known = datasheet_peak(torch.cuda.get_device_name(device), dtype)
        if known is not None:
            return known
    n = 8192 if device.type == "cuda" else 2048
    flops = matmul_peak_flops(str(device), dtype, n)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return DevicePeak(flops, "measured", f"measured: {n}x{n} {_DTYPE_NAMES.get(dtype, str(dtype))} matmul on {name}")


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
