"""The scale-up stage (Brainformer, arXiv 2306.00008, section 4) and what it reports.

After the proxy trials, the ``top_k`` best trials whose blocks stay distinct once scaled, and the reference baseline
(GLaM by default), are trained again at each rung of the search's ``scale_up.ladder`` (scale presets from
:mod:`brainsearch.arch.scale`, each with a token budget), every run recorded as a candidate row. The stage runs on
the search's executor like trials do (local worker processes, or Ray tasks with a trial's resources), and resumes
from the database: a (trial, rung) pair already recorded is not trained again (one whose worker died is).

The report, computed on read from the stored rows (:func:`scale_up_report`):

- proxy fidelity per rung: Kendall's tau between the candidates' proxy losses and their losses at that rung;
- speed-up over the baseline at the same rung, as the paper reports it: the steps/s ratio and the convergence
  speed-up (steps the baseline needed for its final loss over the steps the candidate needed to reach it);
- a scaling law fitted to each candidate's rungs (:mod:`brainsearch.search.scaling`) and its predicted loss at the
  target scale with a 95% band; candidates ranked by that as well as by proxy loss.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import cost
from brainsearch.arch.scale import scale, scale_preset
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError, InputError
from brainsearch.search.scaling import Law, ScalingFit, convergence_speedup, fit_law, kendall_tau
from brainsearch.search.trial import TrialOutcome, cached_corpus, crash_reason
from brainsearch.space.schema import Rung, ScaleUpSettings, SearchSpace
from brainsearch.storage import Candidate, Repository, Trial
from brainsearch.train.settings import TrainSettings

if TYPE_CHECKING:
    from brainsearch.train.result import ProxyResult

__all__ = [
    "CandidateJob",
    "CandidateReport",
    "RungResult",
    "ScaleUpReport",
    "candidate_trials",
    "planned_runs",
    "run_candidate",
    "rung_train_settings",
    "scale_up_jobs",
    "scale_up_report",
]

ScaleBy = Literal["params_activated", "compute"]
MIN_FIDELITY_PAIRS = 3


class CandidateJob(BaseModel):
    """One candidate at one rung, as a worker runs it (picklable, JSON-able)."""

    model_config = ConfigDict(frozen=True)
    search_id: int
    trial_id: int  # the proxy trial (or baseline) this candidate scales up
    rung: str
    database_url: str
    arch: dict[str, object]
    settings: TrainSettings


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


def _recorded(candidates: list[Candidate]) -> set[tuple[int | None, str]]:
    """The (trial, rung) pairs with a run recorded in a final state (a crashed run is not: it is retried)."""
    return {(c.trial_id, c.rung) for c in candidates if c.state != "crashed"}


def scale_up_jobs(
    repo: Repository, search_id: int, space: SearchSpace, database_url: str, device: str = "auto"
) -> tuple[list[CandidateJob], list[str]]:
    """The candidate runs still to do, and notes on what was left out and why."""
    up = space.search.scale_up
    if up is None:
        return [], []
    runs, notes = planned_runs(repo, search_id, space)
    done = _recorded(repo.list_candidates(search_id))
    settings = {rung.preset: rung_train_settings(rung, space, up, device) for rung in up.ladder}
    jobs = [
        CandidateJob(
            search_id=search_id,
            trial_id=trial.id,
            rung=rung,
            database_url=database_url,
            arch=arch.to_dict(),
            settings=settings[rung],
        )
        for trial, rung, arch in runs
        if (trial.id, rung) not in done
    ]
    return jobs, notes


def _metrics(result: ProxyResult) -> dict[str, Any]:
    doc = result.model_dump(mode="json", exclude={"curve"})
    # The validation points only: what the convergence speed-up reads (a long run's every step would be large).
    doc["val_curve"] = [[p.step, p.val_loss] for p in result.curve if p.val_loss is not None]
    return doc


def run_candidate(job: CandidateJob, repo: Repository) -> TrialOutcome:
    """Train one candidate at its rung and record it (a crash is recorded as ``crashed``, never raised)."""
    try:
        arch = Architecture.from_json(job.arch)
        corpus = cached_corpus(job.settings.data, arch.vocab_size)
        from brainsearch.train.proxy import train  # torch: only in the processes that train

        result = train(arch, job.settings, corpus=corpus)
        outcome = TrialOutcome.of(job.trial_id, result)
        repo.add_candidate(
            search_id=job.search_id,
            trial_id=job.trial_id,
            rung=job.rung,
            state=result.status,
            reason=result.reason,
            arch=job.arch,
            arch_digest=arch.digest,
            metrics=_metrics(result),
            val_loss=outcome.val_loss,
        )
        return outcome
    except Exception as exc:  # a bug in one run must not take the worker down
        reason = crash_reason(exc)
        record_crash(repo, job, reason)
        return TrialOutcome(trial_id=job.trial_id, state="crashed", reason=reason)


def record_crash(repo: Repository, job: CandidateJob, reason: str) -> None:
    """Record a candidate run whose worker died (it is retried when the search resumes); nothing when the worker had
    recorded the run before it died."""
    if (job.trial_id, job.rung) in _recorded(repo.list_candidates(job.search_id)):
        return
    arch = Architecture.from_json(job.arch)
    repo.add_candidate(
        search_id=job.search_id,
        trial_id=job.trial_id,
        rung=job.rung,
        state="crashed",
        reason=reason,
        arch=job.arch,
        arch_digest=arch.digest,
        metrics={},
        val_loss=None,
    )


# --- the report ----------------------------------------------------------------------------------------------------
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
    recorded = _recorded(stored)
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
