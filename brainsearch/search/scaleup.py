"""The scale-up stage's planner (Brainformer, arXiv 2306.00008, section 4): which runs the stage trains.

After the proxy trials, the ``top_k`` best trials whose blocks stay distinct once scaled, and the reference baseline
(GLaM by default), are trained again at each rung of the search's ``scale_up.ladder`` (scale presets from
:mod:`brainsearch.arch.scale`, each with a token budget), every run recorded as a candidate row. The driver runs the
planned jobs on the search's executor like trials (:mod:`brainsearch.search.runner` trains and records them), and
the stage resumes from the database: a (trial, rung) pair already recorded is not trained again (one whose worker
died is). What the stage reports is computed on read, in :mod:`brainsearch.search.scaleup_report`.
"""

from __future__ import annotations

import math

from brainsearch.arch.scale import scale, scale_preset
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError
from brainsearch.search.jobs import CandidateJob, Resources
from brainsearch.space.schema import Rung, ScaleUpSettings, SearchSpace
from brainsearch.storage import Candidate, Repository, Trial
from brainsearch.train.settings import TrainSettings

__all__ = ["candidate_trials", "planned_runs", "recorded_runs", "rung_train_settings", "scale_up_jobs"]


def rung_train_settings(rung: Rung, space: SearchSpace, up: ScaleUpSettings, device: str = "auto") -> TrainSettings:
    """How a candidate trains at ``rung``: the preset's batch and token budget (or the rung's own), the search's data,
    validation at ``up.evaluations`` points along the run (the convergence speed-up reads them)."""
    preset = scale_preset(rung.preset)
    batch = rung.batch_size or preset.batch_size
    tokens = rung.budget_tokens or preset.budget_tokens
    steps = max(1, math.ceil(tokens / (batch * preset.seq_len)))
    return TrainSettings.model_validate(
        {
            "budget": {"tokens": tokens},
            "batch_size": batch,
            "data": space.proxy.data,
            "seed": up.seed,
            "eval_interval": max(1, steps // up.evaluations),
            "device": device,
        }
    )


def candidate_trials(repo: Repository, search_id: int, top_k: int, first_rung: str, baseline: str) -> list[Trial]:
    """The ``top_k`` best completed trials whose blocks stay distinct when scaled to ``first_rung`` (two proxies
    that differ only in widths become one architecture at a fixed-width preset), then the completed reference
    ``baseline``, if any."""
    chosen: list[Trial] = []
    seen: set[str] = set()
    offset = 0
    while len(chosen) < top_k:
        page = repo.list_trials(search_id, state="completed", is_baseline=False, limit=50, offset=offset).items
        if not page:
            break
        for trial in page:
            try:
                digest = scale(Architecture.from_json(trial.arch), first_rung).digest
            except ArchitectureError:
                continue
            if digest not in seen:
                seen.add(digest)
                chosen.append(trial)
                if len(chosen) == top_k:
                    break
        offset += len(page)
    base = next((t for t in repo.baselines(search_id) if t.baseline_name == baseline and t.state == "completed"), None)
    return chosen + ([base] if base is not None else [])


def planned_runs(
    repo: Repository, search_id: int, space: SearchSpace
) -> tuple[list[tuple[Trial, str, Architecture]], list[str]]:
    """Every (trial, rung, scaled architecture) the stage trains for ``space.search.scale_up``, and notes on what was
    left out and why."""
    up = space.search.scale_up
    if up is None:
        return [], []
    notes: list[str] = []
    trials = candidate_trials(repo, search_id, space.search.top_k, up.ladder[0].preset, space.constraints.baseline)
    if not any(not t.is_baseline for t in trials):
        notes.append("no completed trial to scale up")
    runs = []
    for rung in up.ladder:
        for trial in trials:
            try:
                runs.append((trial, rung.preset, scale(Architecture.from_json(trial.arch), rung.preset)))
            except ArchitectureError as exc:
                notes.append(f"trial {trial.number} cannot be scaled to {rung.preset}: {exc}")
    return runs, notes


def recorded_runs(candidates: list[Candidate]) -> set[tuple[int | None, str]]:
    """The (trial, rung) pairs with a run recorded in a final state (a crashed run is not: it is retried)."""
    return {(c.trial_id, c.rung) for c in candidates if c.state != "crashed"}


def scale_up_jobs(
    repo: Repository,
    search_id: int,
    space: SearchSpace,
    database_url: str,
    device: str = "auto",
    resources: Resources | None = None,
) -> tuple[list[CandidateJob], list[str]]:
    """The candidate runs still to do, and notes on what was left out and why."""
    up = space.search.scale_up
    if up is None:
        return [], []
    runs, notes = planned_runs(repo, search_id, space)
    done = recorded_runs(repo.list_candidates(search_id))
    settings = {rung.preset: rung_train_settings(rung, space, up, device) for rung in up.ladder}
    jobs = [
        CandidateJob(
            search_id=search_id,
            trial_id=trial.id,
            rung=rung,
            database_url=database_url,
            arch=arch.to_dict(),
            settings=settings[rung],
            resources=resources or Resources(),
        )
        for trial, rung, arch in runs
        if (trial.id, rung) not in done
    ]
    return jobs, notes
