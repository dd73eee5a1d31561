"""Trained weights on disk: a ``.safetensors`` file whose metadata carries the architecture JSON, so a weights file
alone is enough to rebuild the model (``brainsearch.build_model(arch)`` then ``load_state_dict``).

The format is Hugging Face's safetensors (no pickle: loading a file cannot run code). Metadata keys:
``brainsearch.architecture`` (Architecture JSON) and whatever string entries the caller adds (search, trial, rung).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError, DataError, Problem

if TYPE_CHECKING:
    import torch

__all__ = ["ARCH_KEY", "load_weights", "save_weights"]

ARCH_KEY = "brainsearch.architecture"


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
