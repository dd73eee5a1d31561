"""Resumable checkpoints of a training run (torch.distributed.checkpoint), so a killed or pre-empted run continues
where it was instead of starting over.

A checkpoint is a folder ``step-<N>`` in the run's checkpoint folder (:class:`~brainsearch.train.settings.
CheckpointSettings`; :meth:`brainsearch.store.RunStore.checkpoints_dir` for a search's runs) holding:

- the model's and the optimiser's state, written by :func:`torch.distributed.checkpoint.save`: one file per rank
  under FSDP2 (each rank writes its own shards, nothing is gathered), one file on a single device;
- ``loop.json``: what the loop needs to continue exactly - the step, every step's time (the budget spent and the
  seconds budget's plan), the training batches' generator state (the data position), the learning curve so far,
  the last losses, the MoE statistics summed so far, the checkpoints saved before and the steps resumed from;
- ``COMPLETE`` (:data:`brainsearch.store.COMPLETE`), written last by rank 0 once every rank's files are on disk: a
  folder without it (a save that was killed) is never resumed from.

The learning rate is a function of the step and the clock's progress (:mod:`brainsearch.train.optim`), so restoring
the clock restores it. Saving is collective under FSDP2 (every rank calls :func:`save`); the newest
``CheckpointSettings.keep`` folders are kept, older ones deleted by rank 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from brainsearch.model import LanguageModel
from brainsearch.store import COMPLETE, SavedCheckpoint, list_checkpoints
from brainsearch.train.result import CheckpointRecord

__all__ = ["LoopState", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_LOOP_FILE = "loop.json"
_OPTIM_FILE = "optimizer.pt"


@dataclass
class LoopState:
    """The loop's own state in a checkpoint (JSON-able): see the module docstring."""

    step: int
    step_times: list[float]
    planned_steps: float | None
    progress: float
    sampler_state: list[int]
    curve: list[dict[str, Any]]
    train_loss: float | None
    loss_terms: dict[str, float]
    moe: dict[str, Any] | None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    # One process saving or loading alone is what no_dist says; torch warns about it all the same.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def _uses_dcp_state_dict(optimizer: torch.optim.Optimizer) -> bool:
    # torch's helpers understand optimisers whose state is keyed by parameter; the step-in-backward optimiser keeps
    # one inner optimiser per parameter and saves itself (it never runs under FSDP2).
    return type(optimizer).__module__.startswith("torch.")


def _state_dicts(model: LanguageModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    if _uses_dcp_state_dict(optimizer):
        model_sd, optim_sd = get_state_dict(model, optimizer)
        return {"model": model_sd, "optim": optim_sd}
    return {"model": model.state_dict()}


def save_checkpoint(
    folder: Path, model: LanguageModel, optimizer: torch.optim.Optimizer, state: LoopState, keep: int
) -> CheckpointRecord:
    """Save ``model``, ``optimizer`` and ``state`` as ``folder/step-<state.step>`` (collective under FSDP2), mark it
    complete, delete all but the newest ``keep`` complete checkpoints; the record of the new one."""
    target = folder / f"step-{state.step:08d}"
    if _rank() == 0 and target.exists():  # a save of this step that was interrupted, or one being replaced
        shutil.rmtree(target)
    _barrier()
    with _single_process_quiet():
        dcp_save(_state_dicts(model, optimizer), checkpoint_id=str(target), no_dist=not _distributed())
    if not _uses_dcp_state_dict(optimizer):  # single device: its own state dict, as it is
        torch.save(optimizer.state_dict(), target / _OPTIM_FILE)
    saved_at = time.time()
    record = CheckpointRecord(step=state.step, path=str(target), saved_at=saved_at, bytes=0)
    if _rank() == 0:
        size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
        record = record.model_copy(update={"bytes": size})
        doc = {**state.__dict__, "checkpoints": [*state.checkpoints, record.model_dump()]}
        _write_atomically(target / _LOOP_FILE, json.dumps(doc))
        _write_atomically(target / COMPLETE, json.dumps({"step": state.step, "saved_at": saved_at}))
        for old in list_checkpoints(folder)[:-keep]:
            shutil.rmtree(old.path, ignore_errors=True)
    _barrier()
    return record


def latest_checkpoint(folder: Path) -> SavedCheckpoint | None:
    """The newest complete checkpoint in ``folder`` (None when there is none)."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(saved: SavedCheckpoint, model: LanguageModel, optimizer: torch.optim.Optimizer) -> LoopState:
    """Load ``saved`` into ``model`` and ``optimizer`` (already built, placed and sharded as when it was saved) and
    return the loop's state (collective under FSDP2)."""
    if _uses_dcp_state_dict(optimizer):
        state = _state_dicts(model, optimizer)
        with _single_process_quiet():
            dcp_load(state, checkpoint_id=str(saved.path), no_dist=not _distributed())
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        state = {"model": model.state_dict()}
        with _single_process_quiet():
            dcp_load(state, checkpoint_id=str(saved.path), no_dist=not _distributed())
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(torch.load(saved.path / _OPTIM_FILE, weights_only=True))
    doc = json.loads((saved.path / _LOOP_FILE).read_text())
    return LoopState(**doc)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
