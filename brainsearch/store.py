"""Run artifacts on disk (trained weights, exports, checkpoints), keyed by database, search and trial.

Everything a run writes lives under one folder per database::

    DATA_DIR/runs/db-<database id>/search-<S>/weights/trial-<T>.safetensors
                                             /exports/...
                                             /checkpoints/<run>/step-<N>/   (torch.distributed.checkpoint shards
                                                                            and COMPLETE, written last)
                 /db-<database id>/DATABASE      (the URL it was first opened with, for people)

The database id is the database's own (a random id written once into it, migration 0003), not its URL: two
databases sharing a data directory never share a file, one database reached by two URLs keeps one folder, and a
database created again at a deleted one's path does not inherit its files. Weights files also carry their database,
search and trial ids in their metadata; :meth:`RunStore.kept_weights` serves a file only when all three match.

Weights files are Hugging Face's safetensors (no pickle: loading a file cannot run code) whose metadata carries the
architecture JSON (``brainsearch.architecture``), so a weights file alone is enough to rebuild the model
(:func:`load_model`, or :func:`load_weights` for the parts), plus whatever string entries the caller adds (database,
search, trial, data).

This module imports neither torch (until weights are saved or loaded) nor the storage layer: the API process uses it
to find and check files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError, DataError, Problem

if TYPE_CHECKING:
    import torch

    from brainsearch.model import LanguageModel

__all__ = [
    "ARCH_KEY",
    "COMPLETE",
    "RunStore",
    "SavedCheckpoint",
    "candidate_run_key",
    "list_checkpoints",
    "load_weights",
    "read_metadata",
    "save_weights",
    "weights_metadata",
]

ARCH_KEY = "brainsearch.architecture"
# The marker a checkpoint folder gets once every shard is on disk (JSON: step, saved_at): a folder without it is an
# interrupted save, never resumed from.
COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d{1,12})$")

_DATABASE_ID = re.compile(r"^[0-9a-f-]{8,36}$")
# A safetensors header is a few KiB; anything near this is not one of ours.
_MAX_HEADER_BYTES = 64 << 20


class _HasDatabaseId(Protocol):
    def database_id(self) -> str: ...


@dataclass(frozen=True)
class RunStore:
    """The files of one database's runs, under ``data_dir/runs/db-<database_id>``."""

    data_dir: Path
    database_id: str

    @classmethod
    def of(cls, data_dir: Path, database: _HasDatabaseId) -> RunStore:
        """The run store of ``database`` (a repository, or anything that knows its database's id) under
        ``data_dir``: the one way a caller gets it."""
        return cls(data_dir, database.database_id())

    def __post_init__(self) -> None:
        if not _DATABASE_ID.match(self.database_id):  # it names a folder: never a path of its own
            raise ValueError(f"not a database id: {self.database_id!r}")

    @property
    def root(self) -> Path:
        """This database's folder."""
        return self.data_dir / "runs" / f"db-{self.database_id}"

    def search_dir(self, search_id: int) -> Path:
        """Everything of one search."""
        return self.root / f"search-{int(search_id)}"

    def weights_dir(self, search_id: int) -> Path:
        """A search's kept trained weights, one file per trial."""
        return self.search_dir(search_id) / "weights"

    def trial_weights(self, search_id: int, trial_id: int) -> Path:
        """Where a trial's trained proxy weights go."""
        return self.weights_dir(search_id) / f"trial-{int(trial_id)}.safetensors"

    def exports_dir(self, search_id: int) -> Path:
        """Where the CLI writes a search's exports by default."""
        return self.search_dir(search_id) / "exports"

    def checkpoints_dir(self, search_id: int, run_key: str) -> Path:
        """One run's checkpoints (``run_key`` from :func:`candidate_run_key`, or ``trial-<T>``)."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,120}", run_key) or run_key.startswith("."):
            raise ValueError(f"not a run key: {run_key!r}")
        return self.search_dir(search_id) / "checkpoints" / run_key

    def describe(self, database_url: str) -> None:
        """Write ``DATABASE`` (the URL, password hidden) into the folder once, so a person can tell folders apart."""
        note = self.root / "DATABASE"
        if not note.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            note.write_text(database_url + "\n")

    def remove_search(self, search_id: int) -> None:
        """Delete a search's folder (a deleted search leaves nothing on disk)."""
        shutil.rmtree(self.search_dir(search_id), ignore_errors=True)

    def weights_files(self, search_id: int) -> dict[int, Path]:
        """The search's kept weights files, by trial id."""
        folder = self.weights_dir(search_id)
        files = {}
        for path in folder.glob("trial-*.safetensors") if folder.is_dir() else ():
            match = re.fullmatch(r"trial-(\d+)\.safetensors", path.name)
            if match:
                files[int(match.group(1))] = path
        return files

    def prune_weights(self, search_id: int, keep: Collection[int], prunable: Callable[[int], bool]) -> list[int]:
        """Delete the search's weights files but ``keep``'s, each only where ``prunable(trial_id)`` says its trial
        may lose it (a caller keeps a file whose trial is not recorded finished yet: its worker writes the weights,
        then the result); the trial ids whose files went."""
        removed = []
        for trial_id, path in sorted(self.weights_files(search_id).items()):
            if trial_id in keep or not prunable(trial_id):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(trial_id)
        return removed

    def kept_weights(self, search_id: int, trial_id: int) -> Path | None:
        """The trial's weights file when it exists inside this store and its metadata names this database, search
        and trial; None otherwise (a file copied or linked from elsewhere is never served as this trial's)."""
        root = self.root.resolve()
        path = self.trial_weights(search_id, trial_id).resolve()
        if not (path.is_relative_to(root) and path.is_file()):
            return None
        meta = read_metadata(path)
        expected = weights_metadata(self.database_id, search_id, trial_id)
        if meta is None or any(meta.get(k) != v for k, v in expected.items()):
            return None
        return path


def candidate_run_key(trial_id: int, rung: str) -> str:
    """The folder name of a scale-up candidate run's checkpoints: the trial it scales and its rung."""
    return f"candidate-{int(trial_id)}-{re.sub(r'[^A-Za-z0-9._-]', '_', rung)}"


@dataclass(frozen=True)
class SavedCheckpoint:
    """A complete checkpoint on disk: the steps it holds, its folder, when it was saved, its size in bytes."""

    step: int
    path: Path
    saved_at: float
    bytes: int


def list_checkpoints(folder: Path) -> list[SavedCheckpoint]:
    """The complete checkpoints in a run's folder, oldest step first (an interrupted save, without its
    :data:`COMPLETE` marker, is left out). Reads no tensor."""
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _STEP_DIR.match(entry.name)
        marker = entry / COMPLETE
        if match is None or not marker.is_file():
            continue
        try:
            info = json.loads(marker.read_text())
            size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
        except (OSError, ValueError):
            continue
        saved_at = info.get("saved_at") if isinstance(info, dict) else None
        found.append(
            SavedCheckpoint(int(match.group(1)), entry, float(saved_at) if saved_at is not None else 0.0, size)
        )
    return sorted(found, key=lambda c: c.step)


def weights_metadata(database_id: str, search_id: int, trial_id: int) -> dict[str, str]:
    """The provenance entries a trial's weights file carries (checked before the file is served)."""
    return {"database_id": database_id, "search_id": str(int(search_id)), "trial_id": str(int(trial_id))}


def read_metadata(path: Path) -> dict[str, str] | None:
    """A safetensors file's ``__metadata__`` (read from its JSON header, without torch); None if it is not one."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            (size,) = struct.unpack("<Q", head)
            if size > _MAX_HEADER_BYTES:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def save_weights(
    state_dict: dict[str, torch.Tensor], arch: Architecture, path: Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``state_dict`` (made contiguous, on the CPU) and ``arch`` to ``path`` atomically (write, then rename)."""
    from safetensors.torch import save_file

    meta = {ARCH_KEY: arch.to_json(), **(metadata or {})}
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_weights(path: Path) -> tuple[Architecture, dict[str, torch.Tensor], dict[str, str]]:
    """``(architecture, state_dict, metadata)`` from a file :func:`save_weights` wrote; a missing or foreign file
    raises :class:`~brainsearch.errors.DataError` naming it."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise DataError([Problem("weights", "no such file", str(path))])
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError([Problem("weights", f"not a readable safetensors file: {exc}", str(path))]) from None
    if ARCH_KEY not in meta:
        raise DataError([Problem("weights", f"no {ARCH_KEY!r} entry in the file's metadata", str(path))])
    try:
        arch = Architecture.from_json(meta[ARCH_KEY], source=str(path))
    except ArchitectureError as exc:
        raise DataError([Problem("weights", f"the stored architecture is invalid: {exc}", str(path))]) from None
    return arch, tensors, meta


def load_model(path: Path) -> LanguageModel:
    """The model a :func:`save_weights` file holds (on the CPU, float32): the file's architecture built by
    :func:`~brainsearch.model.build_model`, then its weights loaded. A missing, foreign or mismatched file raises
    :class:`~brainsearch.errors.DataError` naming it."""
    from brainsearch.model import build_model

    arch, state, _ = load_weights(path)
    model = build_model(arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:300]
        raise DataError(
            [Problem("weights", f"the weights do not fit the stored architecture: {first}", str(path))]
        ) from None
    return model
