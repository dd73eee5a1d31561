"""Trials: one trial in full, and its export (spec, standalone PyTorch file, trained weights)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import FileResponse

from brainsearch.export import EXPORT_FORMATS, ExportFormat, WeightsNotKept, export_file
from brainsearch.search.documents import TrialDetail, trial_detail
from brainsearch.search.noise import export_comparison
from brainsearch.search.submission import search_noise_view
from service.deps import FoundTrial, ReadAccess, Repo, Store, TrialId, trials_or_404
from service.schemas import ErrorOut

router = APIRouter(prefix="/trials", tags=["trials"])


@router.get("/{trial_id}", dependencies=[ReadAccess], operation_id="get_trial")
def get_trial(trial: FoundTrial, repo: Repo) -> TrialDetail:
    """Architecture, cost, metrics (with the MoE expert load) and the learning curve."""
    return trial_detail(repo, trial)


@router.get(
    "/{trial_id}/export",
    operation_id="export_trial",
    response_class=Response,
    dependencies=[ReadAccess],
    responses={
        200: {
            # One media type per format, each a file; octet-stream first, as the one a generated client reads the
            # answer by (its bytes, whatever the format: JSON first would make it parse a YAML or weights file).
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in sorted(
                    {m for _, m in EXPORT_FORMATS.values()}, key=lambda m: m != "application/octet-stream"
                )
            },
            "description": "the export file, as an attachment: json, yaml, pytorch (text/x-python) or safetensors "
            "(application/octet-stream)",
        },
        404: {"model": ErrorOut, "description": "no such trial, or its trained weights were not kept (safetensors)"},
    },
)
def export(trial_id: TrialId, repo: Repo, store: Store, format: ExportFormat = "json") -> Response:
    """The trial as a file: ``json`` / ``yaml`` (architecture, cost, provenance, metrics), ``pytorch`` (one
    standalone Python file with only torch imports and a ``build()`` function) or ``safetensors`` (the trained proxy's
    weights; the architecture JSON is in the file's metadata)."""
    (trial,) = trials_or_404(repo, [trial_id])  # after the query's checks: bad input is a 422 first
    search = repo.get_search(trial.search_id)
    comparison = export_comparison(trial, search_noise_view(repo, search)) if search is not None else None
    try:
        f = export_file(trial, format, store, comparison)
    except WeightsNotKept as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    if f.path is not None:
        return FileResponse(f.path, media_type=f.media_type, filename=f.filename)
    headers = {"Content-Disposition": f'attachment; filename="{f.filename}"'}
    return Response(f.read(), media_type=f.media_type, headers=headers)
