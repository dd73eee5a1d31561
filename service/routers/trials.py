"""Trials: one trial in full, and its export (spec, standalone PyTorch file, trained weights)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import FileResponse

from brainsearch.arch.spec import Architecture
from brainsearch.export import export_document, render_spec, standalone_source, trial_weights_path
from brainsearch.storage import Repository, Trial
from service.deps import ReadAccess, Repo, SettingsDep
from service.schemas import TrialDetail

router = APIRouter(prefix="/trials", tags=["trials"])

ExportFormat = Literal["json", "yaml", "pytorch", "safetensors"]


def _trial_or_404(repo: Repository, trial_id: int) -> Trial:
    t = repo.get_trial(trial_id)
    if t is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trial {trial_id}")
    return t


@router.get("/{trial_id}", dependencies=[ReadAccess])
def get_trial(trial_id: int, repo: Repo) -> TrialDetail:
    """Architecture, cost, metrics (with the MoE expert load) and the learning curve."""
    t = _trial_or_404(repo, trial_id)
    curve = [vars(p) for p in repo.trial_curve(trial_id)]
    return TrialDetail.model_validate({**vars(t), "curve": curve})


@router.get(
    "/{trial_id}/export",
    dependencies=[ReadAccess],
    responses={
        200: {
            "content": {
                "application/json": {},
                "application/yaml": {},
                "text/x-python": {},
                "application/octet-stream": {},
            },
            "description": "the export file, as an attachment",
        },
        404: {"description": "no such trial, or its trained weights were not kept (safetensors)"},
    },
)
def export(trial_id: int, repo: Repo, settings: SettingsDep, format: ExportFormat = "json") -> Response:
    """The trial as a file: ``json`` / ``yaml`` (architecture, cost, provenance, metrics), ``pytorch`` (one
    standalone Python file with only torch imports and a ``build()`` function) or ``safetensors`` (the trained proxy's
    weights; the architecture JSON is in the file's metadata)."""
    t = _trial_or_404(repo, trial_id)
    name = f"brainsearch-search{t.search_id}-trial{t.number}"
    if format == "safetensors":
        root = (settings.data_dir / "weights").resolve()
        path = trial_weights_path(root, t.search_id, t.id).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            why = (
                f"trial {t.number} ended {t.state}"
                if t.state != "completed"
                else "its weights were not kept (the search's keep_weights keeps the best top_k and the baselines)"
            )
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trained weights for trial {trial_id}: {why}")
        return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.safetensors")
    doc = export_document(t)
    if format == "pytorch":
        provenance = {k: doc[k] for k in ("search_id", "trial_id", "trial_number", "pattern", "baseline")}
        provenance["val_loss"] = t.val_loss
        body = standalone_source(Architecture.from_json(t.arch), provenance=provenance)
        media, suffix = "text/x-python", "py"
    elif format == "yaml":
        body, media, suffix = render_spec(doc, "yaml"), "application/yaml", "yaml"
    else:
        body, media, suffix = render_spec(doc, "json"), "application/json", "json"
    headers = {"Content-Disposition": f'attachment; filename="{name}.{suffix}"'}
    return Response(body, media_type=media, headers=headers)
