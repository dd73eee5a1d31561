"""brainsearch: neural architecture search for Brainformer-style Mixture-of-Experts blocks.

The public Python API::

    space = brainsearch.load_space("tiny")           # a bundled space by name, or a YAML path
    arch = brainsearch.Architecture.from_json(text)  # the canonical exchange format
    brainsearch.cost(arch)                           # parameters, FLOPs per token, memory
    model = brainsearch.build_model(arch)            # a torch LM (torch is imported on first use)
    model = brainsearch.load_model(path)             # the same, with a saved weights file's architecture and weights

Importing brainsearch does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainsearch.arch import Architecture, Cost, cost, preset
from brainsearch.errors import ArchitectureError, BrainsearchError, InputError, Problem, SpaceError
from brainsearch.space import SearchSpace, load_space, sample

if TYPE_CHECKING:
    from brainsearch.model import build_model
    from brainsearch.store import load_model

__version__ = "0.1.0"
__all__ = [
    "Architecture",
    "ArchitectureError",
    "BrainsearchError",
    "Cost",
    "InputError",
    "Problem",
    "SearchSpace",
    "SpaceError",
    "build_model",
    "cost",
    "load_model",
    "load_space",
    "preset",
    "sample",
]


def __getattr__(name: str) -> Any:
    # build_model and load_model pull in torch; importing them lazily keeps the spec layers (and the API process)
    # torch-free.
    if name == "build_model":
        from brainsearch.model import build_model

        return build_model
    if name == "load_model":
        from brainsearch.store import load_model

        return load_model
    raise AttributeError(f"module 'brainsearch' has no attribute {name!r}")
