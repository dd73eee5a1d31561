"""What the scale-up stage reports, computed on read from the stored candidate rows.

- proxy fidelity per rung: Kendall's tau between the candidates' proxy losses and their losses at that rung;
- speed-up over the baseline at the same rung, as the paper reports it: the steps/s ratio and the convergence
  speed-up (steps the baseline needed for its final loss over the steps the candidate needed to reach it);
- a scaling law fitted to each candidate's rungs (:mod:`brainsearch.search.scaling`) and its predicted loss at the
  target scale with a 95% band; candidates ranked by that as well as by proxy loss.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import cost
from brainsearch.arch.scale import scale, scale_preset
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError, InputError
from brainsearch.search.scaleup import planned_runs, recorded_runs
from brainsearch.search.scaling import Law, ScalingFit, convergence_speedup, fit_law, kendall_tau
from brainsearch.space.schema import SearchSpace
from brainsearch.storage import Candidate, Repository, Trial

__all__ = ["CandidateReport", "RungResult", "ScaleBy", "ScaleUpReport", "scale_up_report"]

ScaleBy = Literal["params_activated", "compute"]
MIN_FIDELITY_PAIRS = 3


class RungResult(BaseModel):
    """One candidate at one rung, with its speed-up over the baseline at the same rung."""

    model_config = ConfigDict(frozen=True)
    candidate_id: int
    rung: str
    state: str
    reason: str | None
    val_loss: float | None
    val_loss_stderr: float | None
    params_activated: int | None
    flops_per_token: int | None
    tokens: int | None
    steps: int | None
    step_time_s: float | None
    steps_per_s_ratio: float | None  # baseline's step time / this candidate's (above 1: faster than the baseline)
    convergence_speedup: float | None  # baseline's steps to its final loss / this candidate's steps to that loss
    reached_baseline_loss: bool | None  # None for the baseline itself or without curves


class CandidateReport(BaseModel):
    """A scale-up candidate across the ladder, with its scaling-law prediction."""

    model_config = ConfigDict(frozen=True)
    trial_id: int
    number: int
    label: str
    is_baseline: bool
    pattern: str
    proxy_val_loss: float | None
    proxy_rank: int
    rungs: list[RungResult]
    prediction: ScalingFit | None
    prediction_error: str | None
    predicted_rank: int | None


class ScaleUpReport(BaseModel):
    """The scale-up stage of a search: candidates per rung, proxy fidelity, speed-ups and predictions."""

    model_config = ConfigDict(frozen=True)
    search_id: int
    configured: bool
    ladder: list[str]
    target: str | None
    law: Law
    scale_by: ScaleBy
    baseline: str | None
    fidelity: dict[str, float | None]  # Kendall tau between proxy and rung losses, per rung (None below 3 pairs)
    fidelity_pairs: dict[str, int]  # how many candidates (the baseline included) each tau ranks
    complete: bool
    candidates: list[CandidateReport]


def _latest(candidates: list[Candidate]) -> dict[tuple[int, str], Candidate]:
    """One row per (trial, rung): the newest run in a final state, else the newest crashed one."""
    rows: dict[tuple[int, str], Candidate] = {}
    for c in sorted(candidates, key=lambda c: (c.state != "crashed", c.id)):
        if c.trial_id is not None:
            rows[(c.trial_id, c.rung)] = c
    return rows


def _curve(c: Candidate | None) -> list[tuple[int, float]]:
    if c is None:
        return []
    return [(int(s), float(v)) for s, v in c.metrics.get("val_curve", []) if v is not None and math.isfinite(v)]


def _x(c: Candidate, scale_by: ScaleBy) -> float | None:
    m = c.metrics
    if scale_by == "params_activated":
        return m.get("params_activated")
    fpt, tokens = m.get("flops_per_token"), m.get("tokens")
    return float(fpt) * float(tokens) if fpt and tokens else None


def _target_x(trial: Trial, target: str, scale_by: ScaleBy) -> float:
    arch = scale(Architecture.from_json(trial.arch), target)
    c = cost(arch)
    if scale_by == "params_activated":
        return float(c.params_activated)
    return float(c.flops_per_token) * scale_preset(target).budget_tokens


def _rank(values: list[float | None]) -> list[int | None]:
    order = sorted((v, i) for i, v in enumerate(values) if v is not None)
    ranks: list[int | None] = [None] * len(values)
    for r, (_, i) in enumerate(order, start=1):
        ranks[i] = r
    return ranks


def scale_up_report(
    repo: Repository,
    search_id: int,
    space: SearchSpace,
    *,
    target: str | None = None,
    law: Law | None = None,
    scale_by: ScaleBy | None = None,
) -> ScaleUpReport:
    """The stage's report from the stored candidates; ``target``, ``law`` and ``scale_by`` override the search's."""
    up = space.search.scale_up
    target = target or (up.target if up else None)
    if target is not None:
        scale_preset(target)  # an unknown name is an error that lists the known ones
    law = law or (up.law if up else "kaplan")
    scale_by = scale_by or (up.scale_by if up else "params_activated")
    stored = repo.list_candidates(search_id)
    rows = _latest(stored)
    ladder = [r.preset for r in up.ladder] if up else sorted({rung for _, rung in rows})
    trial_ids = sorted({tid for tid, _ in rows})
    trials = [t for t in (repo.get_trial(i) for i in trial_ids) if t is not None]
    baseline_name = space.constraints.baseline
    base_trial = next((t for t in trials if t.is_baseline and t.baseline_name == baseline_name), None)
    trials.sort(key=lambda t: (t.is_baseline, t.val_loss if t.val_loss is not None else math.inf))
    proxy_ranks = _rank([t.val_loss for t in trials])

    reports: list[CandidateReport] = []
    for trial, proxy_rank in zip(trials, proxy_ranks, strict=True):
        rung_results = []
        for rung in ladder:
            c = rows.get((trial.id, rung))
            if c is None:
                continue
            base = rows.get((base_trial.id, rung)) if base_trial is not None else None
            m = c.metrics
            ratio = conv = reached = None
            if base is not None and base.id != c.id and c.state == "completed" and base.state == "completed":
                if m.get("step_time_s") and base.metrics.get("step_time_s"):
                    ratio = base.metrics["step_time_s"] / m["step_time_s"]
                mine, theirs = _curve(c), _curve(base)
                if mine and theirs:
                    conv = convergence_speedup(mine, theirs)
                    reached = conv is not None
            rung_results.append(
                RungResult(
                    candidate_id=c.id,
                    rung=rung,
                    state=c.state,
                    reason=c.reason,
                    val_loss=c.val_loss,
                    val_loss_stderr=m.get("val_loss_stderr"),
                    params_activated=m.get("params_activated"),
                    flops_per_token=m.get("flops_per_token"),
                    tokens=m.get("tokens"),
                    steps=m.get("steps"),
                    step_time_s=m.get("step_time_s"),
                    steps_per_s_ratio=ratio,
                    convergence_speedup=conv,
                    reached_baseline_loss=reached,
                )
            )
        prediction, error = None, None
        done = [r for r in rung_results if r.state == "completed" and r.val_loss is not None]
        if target is None:
            error = "no target scale to predict at"
        else:
            points = [(_x(rows[(trial.id, r.rung)], scale_by), r.val_loss, r.val_loss_stderr) for r in done]
            usable = [(x, loss, e) for x, loss, e in points if x is not None and loss is not None]
            try:
                prediction = fit_law(
                    [p[0] for p in usable],
                    [p[1] for p in usable],
                    _target_x(trial, target, scale_by),
                    law=law,
                    scale_by=scale_by,
                    errors=[p[2] for p in usable],
                )
            except (InputError, ArchitectureError) as exc:
                error = "; ".join(p.message for p in exc.problems)
        label = f"{trial.baseline_name} baseline" if trial.is_baseline else f"trial #{trial.number}"
        reports.append(
            CandidateReport(
                trial_id=trial.id,
                number=trial.number,
                label=label,
                is_baseline=trial.is_baseline,
                pattern=trial.pattern,
                proxy_val_loss=trial.val_loss,
                proxy_rank=proxy_rank or 0,
                rungs=rung_results,
                prediction=prediction,
                prediction_error=error,
                predicted_rank=None,
            )
        )
    predicted = _rank([r.prediction.predicted_loss if r.prediction else None for r in reports])
    reports = [r.model_copy(update={"predicted_rank": p}) for r, p in zip(reports, predicted, strict=True)]

    fidelity: dict[str, float | None] = {}
    fidelity_pairs: dict[str, int] = {}
    for rung in ladder:
        pairs = [
            (t.val_loss, rows[(t.id, rung)].val_loss)
            for t in trials
            if (t.id, rung) in rows and t.val_loss is not None and rows[(t.id, rung)].val_loss is not None
        ]
        fidelity_pairs[rung] = len(pairs)
        # With two items tau is always +1 or -1: it says nothing about fidelity.
        tau = kendall_tau([float(a) for a, _ in pairs], [float(b) for _, b in pairs])  # type: ignore[arg-type]
        fidelity[rung] = tau if len(pairs) >= MIN_FIDELITY_PAIRS else None
    planned, _ = planned_runs(repo, search_id, space)
    recorded = recorded_runs(stored)
    complete = bool(planned) and all((trial.id, rung) in recorded for trial, rung, _ in planned)
    return ScaleUpReport(
        search_id=search_id,
        configured=up is not None,
        ladder=ladder,
        target=target,
        law=law,
        scale_by=scale_by,
        baseline=baseline_name if base_trial is not None else None,
        fidelity=fidelity,
        fidelity_pairs=fidelity_pairs,
        complete=complete,
        candidates=reports,
    )
