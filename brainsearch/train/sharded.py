"""A training run sharded over several worker processes (:mod:`brainsearch.train.distributed`): launched by
:func:`train_distributed` (through :mod:`brainsearch.train.launch`: torchrun on one machine, Ray Train's
``TorchTrainer`` on a Ray cluster), each worker running :func:`worker_main` - the proxy trainer with a fixed memory
plan, inside the process group the launcher set up. Rank 0's result is the run's."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist

from brainsearch.arch.plan import MemoryPlan
from brainsearch.arch.spec import Architecture
from brainsearch.train.proxy import train
from brainsearch.train.result import ProxyResult
from brainsearch.train.settings import TrainSettings

__all__ = ["ENTRY", "train_distributed", "worker_main"]

# What every worker process runs.
ENTRY = "brainsearch.train.sharded:worker_main"


def worker_main(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Train one run in this worker of a data-parallel group (the launcher has initialised the process group):
    ``payload`` holds the architecture, the training settings and the memory plan (the same for every rank). Rank
    0 returns the :class:`~brainsearch.train.result.ProxyResult` as JSON, the others None."""
    arch = Architecture.from_json(payload["arch"])
    settings = TrainSettings.model_validate(payload["settings"])
    plan = MemoryPlan.model_validate(payload["plan"])
    if plan.recipe.shards != dist.get_world_size():
        raise ValueError(f"the plan shards over {plan.recipe.shards} processes; this group has {dist.get_world_size()}")
    if settings.device != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    result = train(arch, settings, plan=plan)
    return result.model_dump(mode="json") if dist.get_rank() == 0 else None


def train_distributed(
    arch: Architecture,
    settings: TrainSettings,
    plan: MemoryPlan,
    *,
    launcher: Literal["torchrun", "ray"] = "torchrun",
    use_gpu: bool = False,
    cpus_per_worker: int = 1,
    run_dir: Path | None = None,
    timeout_s: float | None = None,
) -> ProxyResult:
    """Train ``arch`` sharded over ``plan.recipe.shards`` worker processes started by ``launcher`` (one per GPU
    with ``use_gpu``) and return rank 0's result. The launch's files (payload, result, each rank's log) go to
    ``run_dir`` (default: ``launch`` beside the run's checkpoints, else a temporary folder). A worker that dies
    or fails raises :class:`brainsearch.train.launch.LaunchError`; a run with checkpoints resumes from its last
    one when it is started again."""
    from brainsearch.train.launch import launch

    payload = {
        "arch": arch.to_dict(),
        "settings": settings.model_dump(mode="json"),
        "plan": plan.model_dump(mode="json"),
    }
    with contextlib.ExitStack() as stack:
        if run_dir is None and settings.checkpoint is not None:
            run_dir = Path(settings.checkpoint.dir) / "launch"
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="brainsearch-launch-")))
        run_dir.mkdir(parents=True, exist_ok=True)
        doc = launch(
            ENTRY,
            payload,
            plan.recipe.shards,
            launcher=launcher,
            use_gpu=use_gpu,
            run_dir=run_dir,
            cpus_per_worker=cpus_per_worker,
            timeout_s=timeout_s,
        )
    return ProxyResult.model_validate(doc)
