"""Architecture specs as exported: one document (architecture, cost, provenance, metrics) in JSON or YAML.

``{"architecture": {Architecture JSON}, "cost": {...}, "search_id": ..., "trial_id": ..., "metrics": {...}}``, plus
the trial's number and block pattern, and, given by the caller that read the search, ``comparison``: how the trial
compares with its search's reference baseline (the difference with its interval, what it says, its training compute
and FLOPs per token as ratios to the baseline's). ``Architecture.from_json(doc["architecture"])`` rebuilds the
identical architecture (same digest).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import yaml

if TYPE_CHECKING:  # the storage layer (SQLAlchemy, Alembic) stays unloaded: the document only reads a Trial's fields
    from brainsearch.storage import Trial

__all__ = ["SpecFormat", "export_document", "render_spec"]

SpecFormat = Literal["json", "yaml"]


def export_document(trial: Trial, comparison: dict[str, Any] | None = None) -> dict[str, Any]:
    """The exported document of ``trial`` (with its ``comparison`` with the baseline when one is given)."""
    doc = {
        "architecture": trial.arch,
        "cost": trial.cost,
        "search_id": trial.search_id,
        "trial_id": trial.id,
        "trial_number": trial.number,
        "pattern": trial.pattern,
        "baseline": trial.baseline_name,
        "metrics": {k: v for k, v in trial.metrics.items() if k != "curve"},
    }
    if comparison is not None:
        doc["comparison"] = comparison
    return doc


def render_spec(doc: dict[str, Any], fmt: SpecFormat) -> str:
    """``doc`` as JSON (indented) or YAML (keys in document order)."""
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=False)
    return json.dumps(doc, indent=2) + "\n"
