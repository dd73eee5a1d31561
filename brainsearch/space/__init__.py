"""The search-space DSL: pydantic models, YAML loading with path-named errors, sampling through a suggester.

Imports only pydantic, PyYAML and the standard library (no torch): the API process loads spaces without torch.
"""

from brainsearch.space.bundled import bundled_space_names, bundled_spaces_dir
from brainsearch.space.constraints import violations
from brainsearch.space.loader import load_space, parse_space, validate_document
from brainsearch.space.sample import (
    RandomSuggester,
    SpaceBounds,
    Suggester,
    bounds,
    dimensions,
    sample,
    space_size,
)
from brainsearch.space.schema import SearchSpace

__all__ = [
    "RandomSuggester",
    "SearchSpace",
    "SpaceBounds",
    "Suggester",
    "bounds",
    "bundled_space_names",
    "bundled_spaces_dir",
    "dimensions",
    "load_space",
    "parse_space",
    "sample",
    "space_size",
    "validate_document",
    "violations",
]
