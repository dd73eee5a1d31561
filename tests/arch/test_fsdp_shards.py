"""The cost model's FSDP2 state per device against the real shards: two gloo processes on the CPU shard a model as
training does (brainsearch.train.distributed.shard_model), run a step of AdamW, and report the bytes of their local
shards (DTensor ``to_local()``) of parameters, gradients and optimiser state; the largest rank's equal the estimate
for ``TrainingRecipe(shards=2)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.arch.cost import TrainingRecipe

WORLD = 2


def _low_rank() -> Architecture:
    return Architecture.model_validate(
        {
            "d_model": 32,
            "vocab_size": 64,
            "seq_len": 8,
            "num_blocks": 2,
            "tie_embeddings": False,
            "block": [
                {"type": "attention", "heads": 2},
                # FSDP2 shards v_in_MGHR along its expert dim 1, which must divide evenly over the ranks.
                {"type": "moe", "hidden": 24, "experts": 4, "gating": "top2", "activation": "swiglu", "rank": 4},
            ],
        }
    )


def _local_bytes(t: torch.Tensor) -> int:
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def _worker(rank: int, store: str, archs: dict[str, str], out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        for name, arch_json in archs.items():
            report = _shard_and_step(Architecture.from_json(arch_json))
            Path(out_dir, f"{name}-{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def _shard_and_step(arch: Architecture) -> dict[str, int]:
    from brainsearch.model.lm import build_model
    from brainsearch.train.distributed import shard_model

    torch.manual_seed(0)
    model = build_model(arch).train()
    shard_model(model, torch.device("cpu"))
    ids_BS = torch.randint(0, arch.vocab_size, (2, arch.seq_len))
    out = model(ids_BS[:, :-1])
    loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), ids_BS[:, 1:].flatten()) + out.aux_loss
    loss.backward()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params)
    grads = sum(_local_bytes(p.grad) for p in params if p.grad is not None)
    optimizer.step()
    state = sum(
        _local_bytes(t)
        for s in optimizer.state.values()
        for key, t in s.items()
        if isinstance(t, torch.Tensor) and key != "step"
    )
    return {"params": sum(_local_bytes(p) for p in params), "grads": grads, "optimizer": state}


@pytest.mark.slow
def test_sharded_state_equals_the_largest_local_shard(tmp_path: Path) -> None:
    """MoE top-2 (norms of 48, 4 experts, tied head) and low-rank experts (sharded on dim 1), untied head."""
    archs = {"moe-top2": scale(preset("glam"), "cpu-tiny"), "low-rank": _low_rank()}
    docs = {name: arch.to_json() for name, arch in archs.items()}
    mp.spawn(_worker, args=(str(tmp_path / "store"), docs, str(tmp_path)), nprocs=WORLD, join=True)
    for name, arch in archs.items():
        reports = [json.loads((tmp_path / f"{name}-{rank}.json").read_text()) for rank in range(WORLD)]
        counted = tuple(max(r[key] for r in reports) for key in ("params", "grads", "optimizer"))
        c = cost(arch, 4, "fp32", recipe=TrainingRecipe(shards=WORLD))
        assert (c.memory_params_bytes, c.memory_grads_bytes, c.memory_optimizer_bytes) == counted, name
