"""Trials: one trial in full, and its export (spec, standalone PyTorch file, trained weights)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import FileResponse

from brainsearch.export import ExportFormat, WeightsNotKept, export_file
from brainsearch.search.noise import export_comparison, leaderboard_row
from brainsearch.search.submission import search_noise_view
from brainsearch.storage import Repository, Trial
from service.deps import ReadAccess, Repo, Store, TrialId
from service.schemas import TrialDetail

router = APIRouter(prefix="/trials", tags=["trials"])


def _trial_or_404(repo: Repository, trial_id: int) -> Trial:
    t = repo.get_trial(trial_id)
    if t is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trial {trial_id}")
    return t


@router.get("/{trial_id}", dependencies=[ReadAccess])
def get_trial(trial_id: TrialId, repo: Repo) -> TrialDetail:
    """Architecture, cost, metrics (with the MoE expert load) and the learning curve."""
    t = _trial_or_404(repo, trial_id)
    curve = [vars(p) for p in repo.trial_curve(trial_id)]
    search = repo.get_search(t.search_id)
    row = leaderboard_row(t, search_noise_view(repo, search)) if search is not None else vars(t)
    runs = [
        {
            "seed": r.seed,
            "state": r.state,
            "reason": r.reason,
            "val_loss": r.val_loss,
            "val_loss_stderr": r.val_loss_stderr,
        }
        for r in repo.list_seed_runs(t.search_id, [t.id])
    ]
    return TrialDetail.model_validate(
        {
            **row,
            **TrialDetail.memory_plan(t.metrics),
            "seed_runs": runs,
            "curve": curve,
        }
    )


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
def export(trial_id: TrialId, repo: Repo, store: Store, format: ExportFormat = "json") -> Response:
    """The trial as a file: ``json`` / ``yaml`` (architecture, cost, provenance, metrics), ``pytorch`` (one
    standalone Python file with only torch imports and a ``build()`` function) or ``safetensors`` (the trained proxy's
    weights; the architecture JSON is in the file's metadata)."""
    t = _trial_or_404(repo, trial_id)
    search = repo.get_search(t.search_id)
    comparison = export_comparison(t, search_noise_view(repo, search)) if search is not None else None
    try:
        f = export_file(t, format, store, comparison)
    except WeightsNotKept as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    if f.path is not None:
        return FileResponse(f.path, media_type=f.media_type, filename=f.filename)
    headers = {"Content-Disposition": f'attachment; filename="{f.filename}"'}
    return Response(f.read(), media_type=f.media_type, headers=headers)
