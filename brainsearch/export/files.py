"""One trial exported as a file, in any format: what ``brainsearch export`` writes and the API serves.

``json`` / ``yaml``: the spec document (:mod:`brainsearch.export.spec`); ``pytorch``: the standalone file
(:mod:`brainsearch.export.standalone`) with the trial's provenance; ``safetensors``: the trained proxy weights the
search kept in its database's run store (:mod:`brainsearch.store`), read from there and nowhere else, and only when
the file's own metadata names the same database, search and trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from brainsearch.arch.spec import Architecture
from brainsearch.errors import BrainsearchError
from brainsearch.export.spec import export_document, render_spec
from brainsearch.export.standalone import standalone_source

if TYPE_CHECKING:  # the storage layer (SQLAlchemy, Alembic) stays unloaded: exporters only read a Trial's fields
    from brainsearch.storage import Trial
    from brainsearch.store import RunStore

__all__ = ["EXPORT_FORMATS", "ExportFile", "ExportFormat", "WeightsNotKept", "export_file", "kept_weights"]

ExportFormat = Literal["json", "yaml", "pytorch", "safetensors"]
# format -> (file suffix, media type)
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "json": ("json", "application/json"),
    "yaml": ("yaml", "application/yaml"),
    "pytorch": ("py", "text/x-python"),
    "safetensors": ("safetensors", "application/octet-stream"),
}


class WeightsNotKept(BrainsearchError):
    """The trial has no trained weights on this machine; the message says why."""


@dataclass(frozen=True)
class ExportFile:
    """An export: ``body`` (text formats) or ``path`` (the weights file, served as it is), its name and type."""

    filename: str
    media_type: str
    body: bytes | None = None
    path: Path | None = None

    def read(self) -> bytes:
        """The file's bytes."""
        if self.body is not None:
            return self.body
        assert self.path is not None
        return self.path.read_bytes()


def kept_weights(trial: Trial, store: RunStore) -> Path:
    """The trial's kept weights file in ``store``; :class:`WeightsNotKept` says why there is none."""
    path = store.kept_weights(trial.search_id, trial.id)
    if path is not None:
        return path
    if trial.state != "completed":
        why = f"it ended {trial.state}"
    else:
        why = (
            "its weights were not kept here (the search's keep_weights keeps the best top_k and the baselines; "
            "a worker on another machine keeps them in its own data directory)"
        )
    raise WeightsNotKept(f"no trained weights for trial #{trial.number} (id {trial.id}): {why}")


def export_file(
    trial: Trial, fmt: ExportFormat, store: RunStore, comparison: dict[str, Any] | None = None
) -> ExportFile:
    """``trial`` exported as ``fmt`` (weights from ``store``, the run store of the trial's database); a spec carries
    ``comparison``, the trial against its search's reference baseline, when the caller gives it."""
    suffix, media = EXPORT_FORMATS[fmt]
    name = f"brainsearch-search{trial.search_id}-trial{trial.number}.{suffix}"
    if fmt == "safetensors":
        return ExportFile(name, media, path=kept_weights(trial, store))
    doc = export_document(trial, comparison)
    if fmt == "pytorch":
        provenance = {k: doc[k] for k in ("search_id", "trial_id", "trial_number", "pattern", "baseline")}
        provenance["val_loss"] = trial.val_loss
        text = standalone_source(Architecture.from_json(trial.arch), provenance=provenance)
    else:
        text = render_spec(doc, fmt)
    return ExportFile(name, media, body=text.encode())
