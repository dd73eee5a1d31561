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
