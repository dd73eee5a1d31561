"""Fixtures of the search tests: a repository per backend and a fast variant of the tiny space."""

from __future__ import annotations

from typing import Any

from brainsearch.arch import Architecture
from brainsearch.space import SearchSpace, load_space
from brainsearch.storage import Repository, Trial


def fast_space(tokens: int = 4096, **changes: Any) -> SearchSpace:
    """The bundled tiny space with a budget of ``tokens`` (4096 = 8 steps: about a second a trial on the CPU);
    ``changes`` replace top-level sections' fields, e.g. ``constraints={"max_params_total": 1e5}``."""
    doc = load_space("tiny").model_dump(mode="json")
    doc["proxy"]["budget"] = {"tokens": tokens}
    for section, values in changes.items():
        doc[section] = {**doc[section], **values}
    return SearchSpace.model_validate(doc)


def add_running_trial(repo: Repository, search_id: int, number: int, arch: Architecture) -> Trial:
    """A trial row as a driver adds it before training (cost left empty)."""
    return repo.add_trial(
        search_id=search_id,
        number=number,
        arch=arch.to_dict(),
        arch_digest=arch.digest,
        pattern=arch.pattern,
        params={},
        cost={},
        params_activated=1,
    )
