"""What the scale-up stage may use: how many devices a rung can spread over and how much memory each has.

The planner (:func:`brainsearch.arch.devices.plan_devices`) turns that into a device count and a training recipe
per rung, and refuses, before anything starts, a rung the hardware cannot hold. On GPUs a device is a GPU (of the
Ray cluster, or of this machine without Ray); on the CPU it is a training process of this machine, each planned
against the host's free memory (they share it: the planner's answer is an upper bound there, which is why a CPU rung
only spreads over several processes when the space asks for it with ``devices``).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import Precision
from brainsearch.arch.devices import host_available_bytes

__all__ = ["Hardware", "probe_hardware"]

# The share of a device's memory a plan may fill (allocator fragmentation, the CUDA context, workspaces).
USABLE_FRACTION = 0.9


class Hardware(BaseModel):
    """Devices a run can use: ``available`` of them, ``memory_bytes`` each (total), ``unit`` naming them."""

    model_config = ConfigDict(frozen=True)
    available: int
    memory_bytes: int
    unit: Literal["GPU", "process"]
    precision: Precision
    use_gpu: bool

    @property
    def usable_bytes(self) -> int:
        """What a plan may fill on one device."""
        return int(USABLE_FRACTION * self.memory_bytes)


def probe_hardware(device: str = "auto", executor: str = "local") -> Hardware:
    """The hardware a search's scale-up runs get: the Ray cluster's GPUs (``executor == "ray"``; each GPU's memory
    read by a one-GPU probe task) or this machine's, or CPU processes when there is no GPU or ``device == "cpu"``."""
    if device != "cpu" and executor == "ray":
        import ray

        gpus = int(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
        if gpus:
            return Hardware(available=gpus, memory_bytes=_ray_gpu_memory(), unit="GPU", precision="bf16", use_gpu=True)
    elif device != "cpu":
        import torch

        if torch.cuda.is_available():
            memory = torch.cuda.get_device_properties(0).total_memory
            count = torch.cuda.device_count()
            return Hardware(available=count, memory_bytes=memory, unit="GPU", precision="bf16", use_gpu=True)
    return Hardware(
        available=os.cpu_count() or 1,
        memory_bytes=host_available_bytes(),
        unit="process",
        precision="fp32",
        use_gpu=False,
    )


def _ray_gpu_memory() -> int:
    import ray

    @ray.remote(num_gpus=1, num_cpus=0)
    def total_memory() -> int:
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)

    return int(ray.get(total_memory.remote(), timeout=300))
