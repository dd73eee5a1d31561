"""Architecture specs as exported: the DESIGN.md document (architecture, cost, provenance, metrics) in JSON or YAML.

``{"architecture": {Architecture JSON}, "cost": {...}, "search_id": ..., "trial_id": ..., "metrics": {...}}``, plus
the trial's number and block pattern. ``Architecture.from_json(doc["architecture"])`` rebuilds the identical
architecture (same digest).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import yaml

if TYPE_CHECKING:  # the storage layer (SQLAlchemy, Alembic) stays unloaded: the document only reads a Trial's fields
    from brainsearch.storage import Trial

__all__ = ["SpecFormat", "export_document", "render_spec"]

SpecFormat = Literal["json", "yaml"]


def export_document(trial: Trial) -> dict[str, Any]:
    """The exported document of ``trial``."""
    return {
        "architecture": trial.arch,
        "cost": trial.cost,
        "search_id": trial.search_id,
        "trial_id": trial.id,
        "trial_number": trial.number,
        "pattern": trial.pattern,
        "baseline": trial.baseline_name,
        "metrics": {k: v for k, v in trial.metrics.items() if k != "curve"},
    }


def render_spec(doc: dict[str, Any], fmt: SpecFormat) -> str:
    """``doc`` as JSON (indented) or YAML (keys in document order)."""
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=False)
    return json.dumps(doc, indent=2) + "\n"
