"""How many devices a training run needs, and with which recipe: the device side of the memory plan.

A run takes the first of these that fits each device's memory (the cost model's estimate against
``memory_fraction`` of ``device_memory_bytes``, the limit the trainer uses):

1. one device with the single-device recipes in order (:data:`brainsearch.arch.plan.RECIPES`: fp32 AdamW, then
   bf16 weights with Adafactor, then the same stepping in the backward). One device never pays for communication,
   and the leaner recipes change the optimiser, so the proxy's recipe comes first;
2. FSDP2 over ``N`` devices, ``N`` the smallest power of two dividing the batch whose ``TrainingRecipe(shards=N)``
   (fp32 weights and AdamW state, sharded; bf16 compute on CUDA) fits. A power of two keeps the batch split even
   and matches how clusters hand out GPUs.

Every plan is a :class:`~brainsearch.arch.plan.MemoryPlan` (micro-batch, checkpointing) inside the recipe. When the
smallest ``N`` that fits is more than the cluster has, or nothing up to ``max_devices`` fits, the planner says so
with :class:`NotEnoughDevices`, naming the need: a run is refused before anything is allocated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import Precision, TrainingRecipe
from brainsearch.arch.plan import RECIPES, CheckpointingPolicy, MemoryPlan, NoPlanFits, min_memory_bytes, plan_memory
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ResourceError

__all__ = [
    "MEMORY_FRACTION",
    "DevicePlan",
    "NotEnoughDevices",
    "host_available_bytes",
    "plan_devices",
    "plan_devices_shared",
]

# The share of a device's memory a plan may fill, as the trainer limits itself (brainsearch.train.loop: 90% of the
# free memory): the rest is the CUDA context, workspaces and allocator fragmentation the estimate leaves out.
MEMORY_FRACTION = 0.9


def host_available_bytes() -> int:
    """The host memory available now (Linux's ``MemAvailable``): a CPU run's device memory; huge when unknown, so
    that nothing is refused for it."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


class DevicePlan(BaseModel):
    """A run on ``devices`` devices of ``device_memory_bytes`` each, with ``recipe`` and the memory ``plan`` (whose
    ``memory_bytes`` is the estimated peak per device and ``limit_bytes`` the share of the device it had to fit)."""

    model_config = ConfigDict(frozen=True)
    devices: int
    recipe: TrainingRecipe
    plan: MemoryPlan
    device_memory_bytes: int


class NotEnoughDevices(ResourceError):
    """The run needs more devices than the cluster has (``needed``), or does not fit even ``max_devices``
    (``needed`` is None); ``available`` is what the cluster has."""

    def __init__(self, message: str, needed: int | None, available: int) -> None:
        super().__init__(message)
        self.needed, self.available = needed, available


def _device_phrase(count: int, unit: str, device_memory_bytes: int) -> str:
    """``16 GPUs of 141 GB`` (decimal gigabytes, rounded)."""
    plural = unit if count == 1 else (f"{unit}es" if unit.endswith("s") else f"{unit}s")
    return f"{count} {plural} of {round(device_memory_bytes / 1e9)} GB"


def _try(
    arch: Architecture,
    batch_size: int,
    precision: Precision,
    device_memory_bytes: int,
    recipe: TrainingRecipe,
    checkpointing: CheckpointingPolicy,
    micro_batch: int | None,
) -> MemoryPlan | None:
    if batch_size % recipe.shards:
        return None
    share = batch_size // recipe.shards
    if micro_batch is not None and (share % micro_batch or (recipe.optimizer_in_backward and micro_batch != share)):
        return None  # this recipe cannot run the requested micro-batch
    try:
        return plan_memory(
            arch,
            batch_size,
            precision,
            device_memory_bytes,
            checkpointing=checkpointing,
            micro_batch=micro_batch,
            recipe=recipe,
        )
    except NoPlanFits:
        return None


def plan_devices(
    arch: Architecture,
    batch_size: int,
    precision: Precision,
    device_memory_bytes: int,
    available_devices: int,
    *,
    name: str,
    unit: str = "GPU",
    devices: int | None = None,
    checkpointing: CheckpointingPolicy = "auto",
    micro_batch: int | None = None,
    max_devices: int = 4096,
    memory_fraction: float = MEMORY_FRACTION,
) -> DevicePlan:
    """The fewest devices (and the first recipe, see the module docstring) on which ``arch`` trains at
    ``batch_size`` within ``memory_fraction`` of ``device_memory_bytes`` per device. ``devices`` forces exactly
    that many (1: the single-device recipes; more: FSDP2 over them); ``micro_batch`` (per device) and
    ``checkpointing`` constrain the memory plan as in :func:`~brainsearch.arch.plan.plan_memory`.

    Raises :class:`NotEnoughDevices` (``"8b-64e needs at least 16 GPUs of 141 GB; the cluster has 2"``, ``name``
    naming the run, ``unit`` the device) when the need exceeds ``available_devices``, or when nothing up to
    ``max_devices`` (or the forced ``devices``) fits; ``ValueError`` for counts below 1.
    """
    return _plan(
        [arch],
        batch_size,
        precision,
        device_memory_bytes,
        available_devices,
        name=name,
        unit=unit,
        devices=devices,
        checkpointing=checkpointing,
        micro_batch=micro_batch,
        max_devices=max_devices,
        memory_fraction=memory_fraction,
    )


def plan_devices_shared(
    archs: Sequence[Architecture],
    batch_size: int,
    precision: Precision,
    device_memory_bytes: int,
    available_devices: int,
    *,
    name: str,
    unit: str = "GPU",
    devices: int | None = None,
    checkpointing: CheckpointingPolicy = "auto",
    micro_batch: int | None = None,
    max_devices: int = 4096,
    memory_fraction: float = MEMORY_FRACTION,
) -> DevicePlan:
    """One device count and recipe for several architectures that must train alike (the candidates of a scale-up
    rung: the same recipe and devices keep their comparison fair): the first candidate of the module docstring's
    order on which every one of them fits. The returned ``plan`` is the most demanding architecture's (the largest
    :func:`~brainsearch.arch.plan.min_memory_bytes` under that recipe); the others may take larger micro-batches
    with :func:`~brainsearch.arch.plan.plan_memory` and the returned recipe.

    Raises what :func:`plan_devices` raises; ``ValueError`` for no architectures.
    """
    return _plan(
        archs,
        batch_size,
        precision,
        device_memory_bytes,
        available_devices,
        name=name,
        unit=unit,
        devices=devices,
        checkpointing=checkpointing,
        micro_batch=micro_batch,
        max_devices=max_devices,
        memory_fraction=memory_fraction,
    )


def _candidates(batch_size: int, devices: int | None, max_devices: int) -> list[tuple[int, list[TrainingRecipe]]]:
    """Device counts in the order tried, each with its recipes: one device (the single-device recipes), then
    powers of two that divide the batch (FSDP2); or only the forced count."""
    counts = [devices] if devices is not None else [1]
    if devices is None:
        n = 2
        while n <= min(max_devices, batch_size):
            if batch_size % n == 0:
                counts.append(n)
            n *= 2
    return [(n, list(RECIPES.values()) if n == 1 else [TrainingRecipe(shards=n)]) for n in counts]


def _plan(
    archs: Sequence[Architecture],
    batch_size: int,
    precision: Precision,
    device_memory_bytes: int,
    available_devices: int,
    *,
    name: str,
    unit: str,
    devices: int | None,
    checkpointing: CheckpointingPolicy,
    micro_batch: int | None,
    max_devices: int,
    memory_fraction: float,
) -> DevicePlan:
    if not archs:
        raise ValueError("no architecture to plan devices for")
    if available_devices < 1 or max_devices < 1 or (devices is not None and devices < 1):
        raise ValueError("device counts must be >= 1")
    if device_memory_bytes <= 0:
        raise ValueError(f"device_memory_bytes must be > 0, got {device_memory_bytes}")
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    device_memory_bytes = int(device_memory_bytes)
    limit = int(memory_fraction * device_memory_bytes)
    candidates = _candidates(batch_size, devices, max_devices)
    for n, recipes in candidates:
        for recipe in recipes:
            plans = [_try(a, batch_size, precision, limit, recipe, checkpointing, micro_batch) for a in archs]
            if any(p is None for p in plans):
                continue
            if n > available_devices:
                need = ("" if devices is not None else "at least ") + _device_phrase(n, unit, device_memory_bytes)
                raise NotEnoughDevices(
                    f"{name} needs {need}; the cluster has {available_devices}",
                    needed=n,
                    available=available_devices,
                )
            hardest = max(range(len(archs)), key=lambda i: min_memory_bytes(archs[i], batch_size, precision, recipe))
            plan = plans[hardest]
            assert plan is not None
            return DevicePlan(devices=n, recipe=recipe, plan=plan, device_memory_bytes=device_memory_bytes)
    raise NotEnoughDevices(
        f"{name} does not fit {_device_phrase(candidates[-1][0], unit, device_memory_bytes)} (batch {batch_size})",
        needed=None,
        available=available_devices,
    )
