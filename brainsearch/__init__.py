"""brainsearch: neural architecture search for Brainformer-style Mixture-of-Experts blocks.

The public Python API (DESIGN.md, "Contracts")::

    space = brainsearch.load_space("tiny")           # a bundled space by name, or a YAML path
    arch = brainsearch.Architecture.from_json(text)  # the canonical exchange format
    brainsearch.cost(arch)                           # parameters, FLOPs per token, memory

Importing brainsearch does not import torch.
"""

from __future__ import annotations

from brainsearch.arch import Architecture, Cost, cost, preset
from brainsearch.errors import ArchitectureError, BrainsearchError, InputError, Problem, SpaceError
from brainsearch.space import SearchSpace, load_space, sample

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
    "cost",
    "load_space",
    "preset",
    "sample",
]
