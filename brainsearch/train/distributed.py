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

Initialisation: the training loop builds a sharded run's model on the meta device (no storage), :func:`shard_model`
shards it there, allocates each rank's shards (``to_empty``) and fills them part by part
(:meth:`~brainsearch.model.LanguageModel.build_part`: the embedding, each norm, each sub-layer, the head): every rank
builds the part on the host from the global RNG, as one process building the whole model draws it, keeps its own
shard and drops the rest. The run starts from exactly the single-device run's weights for the same seed, and a rank's
host memory holds its shards plus one part at a time (the largest: an MoE sub-layer's expert bank), never the whole
model (4 bytes per parameter: about 320 GB for the 8b-64e rung). A model handed over already built (an upcycled
one) is sharded as it is.

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
    """Apply FSDP2 to ``model`` in place over every rank of the process group (see the module docstring). A model
    on the meta device gets its weights here, on ``device``: those a model built from the global RNG's current state
    would have (the meta build drew nothing from it, so they are the weights of the seed the build started from)."""
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
    on_meta = any(p.is_meta for p in model.parameters())
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
    if on_meta:
        model.to_empty(device=device)
        _initialise(model)


def _initialise(model: LanguageModel) -> None:
    """Fill the sharded model's local shards (and buffers) part by part: each part built on the host from the global
    RNG, in the model's build order (see :meth:`~brainsearch.model.LanguageModel.build_part`)."""
    with torch.no_grad():
        for name in model.part_names():
            with torch.device("cpu"):  # where a model is built, whatever device context the caller set
                built = model.build_part(name)
            part = model.get_submodule(name)
            targets = dict(part.named_parameters()) | dict(part.named_buffers())
            for key, value in [*built.named_parameters(), *built.named_buffers()]:
                _fill(targets[key], value)
            del built  # before the next part is built: one part on the host at a time


def _fill(target: Tensor, full: Tensor) -> None:
    """Copy this rank's shard of ``full`` into ``target`` (a sharded parameter, or a tensor every rank holds)."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(target, DTensor):
        target.copy_(full)
        return
    (placement,) = target.placements
    if not isinstance(placement, Shard):
        raise NotImplementedError(f"initialising a parameter placed {placement} is not done")
    # FSDP2 shards as torch.chunk does (the last ranks' shards may be short, or empty).
    chunks = torch.chunk(full, target.device_mesh.size(), dim=placement.dim)
    rank = target.device_mesh.get_local_rank()
    local = target.to_local()
    shard = chunks[rank] if rank < len(chunks) else full.narrow(placement.dim, 0, 0)
    if local.shape != shard.shape:
        raise RuntimeError(f"a local shard of {tuple(local.shape)} for a chunk of {tuple(shard.shape)}")
    local.copy_(shard)
