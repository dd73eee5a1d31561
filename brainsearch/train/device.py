"""Where a run trains: the device its settings ask for, the memory free on it, and what running out of it looks like.

The memory plan (micro-batch and activation checkpointing chosen from the cost model and the free memory) is
:mod:`brainsearch.arch.plan`, taken by :func:`brainsearch.train.loop.memory_plan` from these.
"""

from __future__ import annotations

import torch

from brainsearch.arch.devices import host_available_bytes
from brainsearch.errors import InputError, Problem
from brainsearch.train.settings import TrainSettings

__all__ = ["free_memory_bytes", "is_out_of_memory", "resolve_device"]


def resolve_device(settings: TrainSettings) -> torch.device:
    """CUDA when ``auto`` finds it, else the CPU; asking for CUDA without one is an :class:`InputError`."""
    if settings.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise InputError([Problem("device", "cuda was asked for but this machine has no usable CUDA device")])
    return torch.device(settings.device)


def free_memory_bytes(device: torch.device) -> int:
    """Memory free on ``device`` now (host memory for the CPU); huge when unknown, so nothing is refused for it."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return host_available_bytes()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (torch's, Python's, or a CPU allocator's RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
