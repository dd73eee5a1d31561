"""Entry functions for the launch tests (:mod:`brainsearch.train.launch`), run in each rank of a 2-rank gloo group.
Each writes its process id to ``payload["pid_dir"]`` (when given) so that a test can check no rank outlives it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def _started(payload: dict[str, Any]) -> int:
    import torch.distributed as dist

    rank = dist.get_rank()
    if payload.get("pid_dir"):
        Path(payload["pid_dir"], f"rank{rank}.pid").write_text(str(os.getpid()))
    return rank


def all_reduce_ranks(payload: dict[str, Any]) -> dict[str, Any]:
    """The sum of the ranks (an all-reduce), the world size, the backend and this rank's torch threads."""
    import torch
    import torch.distributed as dist

    rank = _started(payload)
    total = torch.tensor([float(rank)])
    dist.all_reduce(total)
    return {
        "sum": total.item(),
        "world_size": dist.get_world_size(),
        "backend": dist.get_backend(),
        "threads": torch.get_num_threads(),
        "echo": payload.get("echo"),
    }


def raise_on_rank_1(payload: dict[str, Any]) -> dict[str, Any]:
    """Rank 1 raises ValueError (after one all-reduce, so both ranks have joined)."""
    import torch
    import torch.distributed as dist

    rank = _started(payload)
    dist.all_reduce(torch.zeros(1))
    if rank == 1:
        raise ValueError("rank 1 refuses")
    return {"rank": rank}


def kill_rank_1(payload: dict[str, Any]) -> dict[str, Any]:
    """Rank 1 sends itself SIGKILL; rank 0 waits in an all-reduce that rank 1 never joins."""
    import torch
    import torch.distributed as dist

    rank = _started(payload)
    dist.all_reduce(torch.zeros(1))
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(torch.zeros(1))
    return {"rank": rank}


def sleep_forever(payload: dict[str, Any]) -> dict[str, Any]:
    """Every rank sleeps (a launch that only its time limit ends)."""
    _started(payload)
    while True:
        time.sleep(1)


def sharded_initialisation(payload: dict[str, Any]) -> dict[str, Any]:
    """Build ``payload["arch"]`` as a sharded run does (the training loop with ``payload["plan"]``, no step taken)
    from ``payload["seed"]``, then build it in one piece from the same seed, as a single-process run does, and
    compare. Rank 0 returns every rank's findings: whether the loop built the model on the meta device, the
    parameters and buffers (gathered) that differ from the one-piece build's, whether the RNG stands where the
    one-piece build leaves it, and the host bytes materialised (the model's parameters and its buffers, a rank's
    shards, the largest part built at once, and the most parts alive at once)."""
    import weakref

    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from brainsearch.arch import Architecture
    from brainsearch.arch.plan import MemoryPlan
    from brainsearch.data import BatchSampler
    from brainsearch.model import LanguageModel, build_model
    from brainsearch.train import TrainSettings
    from brainsearch.train.budget import StepBudget
    from brainsearch.train.loop import Hooks, train_loop

    def nbytes(tensors: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    rank = _started(payload)
    arch = Architecture.from_json(payload["arch"])
    plan = MemoryPlan.model_validate(payload["plan"])
    settings = TrainSettings(batch_size=8, device="cpu").with_recipe(plan.recipe)
    built_parts: list[weakref.ref[torch.nn.Module]] = []
    part_bytes: list[int] = []
    alive_at_once = 0
    build_part = LanguageModel.build_part

    def counted_build_part(self: LanguageModel, name: str) -> torch.nn.Module:
        nonlocal alive_at_once
        part = build_part(self, name)
        built_parts.append(weakref.ref(part))
        part_bytes.append(nbytes([*part.parameters(), *part.buffers()]))
        alive_at_once = max(alive_at_once, sum(ref() is not None for ref in built_parts))
        return part

    LanguageModel.build_part = counted_build_part  # type: ignore[method-assign]
    seen: dict[str, bool] = {}

    def build() -> LanguageModel:
        model = build_model(arch)
        seen["meta"] = all(t.is_meta for t in [*model.parameters(), *model.buffers()])
        return model

    kept: list[LanguageModel] = []
    tokens = np.arange(4096, dtype=np.int64) % arch.vocab_size
    batches = BatchSampler(tokens, 8, arch.seq_len, seed=0)
    torch.manual_seed(payload["seed"])
    run = train_loop(
        build,
        batches,
        settings,
        StepBudget(steps=0),
        torch.device("cpu"),
        hooks=Hooks(on_completed=kept.append),
        plan=plan,
    )
    LanguageModel.build_part = build_part  # type: ignore[method-assign]
    assert run.status == "completed", run.reason
    (sharded,) = kept
    rng_after = torch.random.get_rng_state()
    local_bytes = nbytes(p.to_local() if isinstance(p, DTensor) else p for p in sharded.parameters())

    torch.manual_seed(payload["seed"])
    single = build_model(arch)
    want = dict(single.named_parameters()) | dict(single.named_buffers())
    got = dict(sharded.named_parameters()) | dict(sharded.named_buffers())
    differ = [
        name
        for name, value in got.items()  # the same order on every rank: full_tensor is a collective
        if not torch.equal(value.full_tensor() if isinstance(value, DTensor) else value, want[name])
    ]
    finding = {
        "built_on_meta": seen.get("meta", False),
        "all_sharded": all(isinstance(p, DTensor) for p in sharded.parameters()),
        "names_match": sorted(got) == sorted(want),
        "differ": differ,
        "same_rng_after": torch.equal(rng_after, torch.random.get_rng_state()),
        "model_bytes": nbytes(single.parameters()),
        "buffer_bytes": nbytes(single.buffers()),
        "largest_layer_bytes": max(nbytes(layer.parameters()) + nbytes(layer.buffers()) for layer in single.layers),
        "local_bytes": local_bytes,
        "largest_part_bytes": max(part_bytes, default=0),
        "parts_built": len(part_bytes),
        "parts_alive_at_once": alive_at_once,
    }
    findings: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(findings, finding)
    return {"rank": rank, "ranks": findings}
