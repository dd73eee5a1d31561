"""Trials: one trial in full, and its export."""

from __future__ import annotations

from typing import Literal

import yaml
from fastapi import APIRouter, HTTPException, Response, status

from brainsearch.storage import Repository, Trial
from service.deps import ReadAccess, Repo
from service.schemas import TrialDetail

router = APIRouter(prefix="/trials", tags=["trials"])


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


@router.get("/{trial_id}/export", dependencies=[ReadAccess])
def export(trial_id: int, repo: Repo, format: Literal["json", "yaml"] = "json") -> Response:
    """The trial's architecture with its cost and metrics, as JSON or YAML (weights are not kept by proxy trials)."""
    t = _trial_or_404(repo, trial_id)
    doc = {
        "architecture": t.arch,
        "cost": t.cost,
        "search_id": t.search_id,
        "trial_id": t.id,
        "metrics": {k: v for k, v in t.metrics.items() if k != "curve"},
    }
    name = f"brainsearch-search{t.search_id}-trial{t.number}"
    if format == "yaml":
        body = yaml.safe_dump(doc, sort_keys=False)
        media, suffix = "application/yaml", "yaml"
    else:
        import json

        body = json.dumps(doc, indent=2)
        media, suffix = "application/json", "json"
    headers = {"Content-Disposition": f'attachment; filename="{name}.{suffix}"'}
    return Response(body, media_type=media, headers=headers)
