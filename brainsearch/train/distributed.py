"""Data-parallel training with fully sharded state (PyTorch FSDP2), for runs too large for one device.

Every worker process (one per GPU; on the CPU, gloo processes) runs the same training loop
(:mod:`brainsearch.train.loop`) on its share of each global batch: all ranks draw the same batch from the same
seeded sampler and rank ``r`` of ``W`` trains on rows ``[r * B / W, (r + 1) * B / W)``; FSDP2's reduce-scatter
averages the gradients, so a step's gradient is the global batch's mean, as on one device with micro-batches of
``B / W`` (routing, capacity and the router losses are per forward in both). The losses the loop reports are
averaged over ranks; step times are the slowest rank's, and every decision that ends or checkpoints a run is
taken by all ranks together, so no rank waits in a collective the others never reach.

Sharding (:func:`shard_model`): ``fully_shard`` on each sub-layer with its norm (one all-gather each: a whole
block of a large rung is billions of parameters, too large to gather at once) and on the root (embeddings, final
norm, head). Parameters shard along dimension 0, which for the experts' stacked weights (``[E, ...]``) is the expert
dimension; the low-rank experts' ``v_in_MGHR`` along its expert dimension (1) when the experts divide evenly. On
CUDA the policy computes in bf16 with float32 gradient reduction and float32 sharded master weights and
optimiser state (the ``FSDP2 x N, fp32 AdamW`` recipe of :mod:`brainsearch.arch.plan`).

Every rank builds the full model on the host from the same seed before sharding it, so the sharded run starts from
exactly the single-device run's weights; that costs 4 bytes per parameter of host memory per rank while it builds
(a meta-device initialisation would avoid it, and is not done yet).

:mod:`brainsearch.train.sharded` launches such a run (torchrun or Ray Train) and is what each worker runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from brainsearch.model import LanguageModel

__all__ = ["Parallel", "shard_model"]


@dataclass(frozen=True)
class Parallel:
    """This process's place in a data-parallel run: ``rank`` of ``world`` processes."""

    rank: int
    world: int

    @classmethod
    def current(cls) -> Parallel | None:
        """The running process group's, or None outside one (or in a group of one)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return None
        return cls(dist.get_rank(), dist.get_world_size())

    def rows(self, x_B: Tensor) -> Tensor:
        """This rank's share of a global batch (the leading dimension must divide by ``world``)."""
        if x_B.shape[0] % self.world:
            raise ValueError(f"a batch of {x_B.shape[0]} does not split over {self.world} processes")
        share = x_B.shape[0] // self.world
        return x_B[self.rank * share : (self.rank + 1) * share]

    def mean(self, x: Tensor) -> Tensor:
        """``x`` averaged over ranks (a new tensor)."""
        out = x.detach().clone()
        dist.all_reduce(out)
        return out / self.world

    def max(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise maximum of ``values`` over ranks (flags, times)."""
        out = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return [float(v) for v in out.tolist()]


def shard_model(model: LanguageModel, device: torch.device) -> None:
    """Apply FSDP2 to ``model`` in place over every rank of the process group (see the module docstring)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import Shard

    # FSDP2 warns that a wrapped module returned a view, in case the caller adds to it in place; the blocks add
    # their sub-layers' outputs out of place (LanguageModel._block), so the warning is noise here.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if device.type == "cuda"
        else MixedPrecisionPolicy()
    )
    world = dist.get_world_size()
    # The low-rank experts' input factor [M, G, H, R] shards along its experts when they divide evenly (FSDP2
    # shards only dim 0 unevenly).
    expert_dim_1 = {
        id(p) for name, p in model.named_parameters() if name.endswith("v_in_MGHR") and p.shape[1] % world == 0
    }

    def placement(param: torch.nn.Parameter) -> Shard | None:
        return Shard(1) if id(param) in expert_dim_1 else None

    for norm, layer in zip(model.norms, model.layers, strict=True):
        fully_shard([norm, layer], mesh=mesh, mp_policy=policy, shard_placement_fn=placement)
    fully_shard(model, mesh=mesh, mp_policy=policy, shard_placement_fn=placement)
