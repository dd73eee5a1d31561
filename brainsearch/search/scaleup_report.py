"""What the scale-up stage reports, computed on read from the stored candidate rows.

- proxy fidelity per rung: Kendall's tau between the candidates' proxy losses and their losses at that rung;
- speed-up over the baseline at the same rung, as the paper reports it: the steps/s ratio and the convergence
  speed-up (steps the baseline needed for its final loss over the steps the candidate needed to reach it);
- a scaling law fitted to each candidate's rungs (:mod:`brainsearch.search.scaling`) and its predicted loss at the
  target scale with a 95% band; candidates ranked by that as well as by proxy loss;
- how each run went: devices and sharding, training recipe, memory per device (estimated, and measured on CUDA),
  throughput and MFU against the datasheet peak, checkpoints saved and resumes, how it started (scratch or
  upcycled), and, given the run store, the checkpoints still on disk.

With ``scale_up.init: both`` each candidate trains twice per rung: from scratch under the preset's name and upcycled
under ``"<preset>+upcycle"`` (:func:`rung_preset` maps either to the preset). Each is a rung of the report, side by
side, with its own fidelity and speed-ups (the baseline's run of the same kind is the reference). The scaling laws
are fitted to one kind of run only, so a size never counts twice: the runs under the presets' own names (the scratch
runs), or all runs when the stage only upcycles. Rows stored before these fields existed read with their defaults:
one device, no sharding, no checkpoints, scratch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import cost
from brainsearch.arch.scale import scale, scale_preset
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError, InputError
from brainsearch.search.scaleup import UPCYCLE_SUFFIX, planned_runs, recorded_runs
from brainsearch.search.scaling import Law, ScalingFit, convergence_speedup, fit_law, kendall_tau
from brainsearch.space.schema import ScaleUpSettings, SearchSpace
from brainsearch.storage import Candidate, Repository, Trial
from brainsearch.store import RunStore, candidate_run_key, list_checkpoints

__all__ = [
    "CandidateReport",
    "CheckpointOnDisk",
    "RungResult",
    "ScaleBy",
    "ScaleUpReport",
    "checkpoints_on_disk",
    "is_upcycle_rung",
    "rung_preset",
    "scale_up_report",
]

ScaleBy = Literal["params_activated", "compute"]
MIN_FIDELITY_PAIRS = 3


def rung_preset(rung: str) -> str:
    """The scale preset a rung trains at: ``"cpu-small+upcycle"`` -> ``"cpu-small"``; a preset name is itself."""
    return rung.removesuffix(UPCYCLE_SUFFIX)


def is_upcycle_rung(rung: str) -> bool:
    """Whether ``rung`` names the upcycled twin run of a preset (``"<preset>+upcycle"``)."""
    return rung.endswith(UPCYCLE_SUFFIX) and rung != UPCYCLE_SUFFIX


class CheckpointOnDisk(BaseModel):
    """A complete checkpoint of a run still on disk: the steps it holds, when it was saved (Unix time), its bytes."""

    model_config = ConfigDict(frozen=True)
    step: int
    saved_at: float
    bytes: int


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
    # How the run went (defaults for rows stored before these were recorded). Memory figures are per device.
    preset: str  # the scale preset of the rung ("cpu-small" for "cpu-small+upcycle")
    init: Literal["scratch", "upcycle"] | None = None  # None: not known (a run that crashed before reporting)
    upcycle_step: int | None = None
    device: str | None = None
    devices: int = 1
    sharding: str | None = None
    recipe: str | None = None
    micro_batch: int | None = None
    activation_checkpointing: bool | None = None
    memory_estimate_bytes: int | None = None
    memory_peak_bytes: int | None = None  # measured, CUDA only
    tokens_per_s: float | None = None
    mfu: float | None = None  # model FLOP/s over peak_flops_label's peak
    peak_flops_label: str | None = None
    checkpoint_count: int = 0
    resume_count: int = 0
    resumed_from: list[int] = []
    checkpoints_on_disk: list[CheckpointOnDisk] = []  # filled when the report is given the run store


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
    init: Literal["scratch", "upcycle", "both"] = "scratch"  # how the stage starts each rung's model
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


def checkpoints_on_disk(
    store: RunStore | None, search_id: int, trial_id: int | None, rung: str
) -> list[CheckpointOnDisk]:
    """The complete checkpoints of a candidate's run at ``rung`` on disk now, oldest first (none without a store)."""
    if store is None or trial_id is None:
        return []
    folder = store.checkpoints_dir(search_id, candidate_run_key(trial_id, rung))
    return [CheckpointOnDisk(step=c.step, saved_at=c.saved_at, bytes=c.bytes) for c in list_checkpoints(folder)]


def _run_fields(c: Candidate) -> dict[str, Any]:
    """How a candidate's run went, from its stored metrics; missing fields (older rows, crashes) read as defaults.
    A row without ``init`` predates upcycling, so it trained from scratch, unless its rung names the upcycled twin
    or it recorded nothing at all."""
    m = c.metrics
    init = m.get("init") or ("upcycle" if is_upcycle_rung(c.rung) else ("scratch" if m else None))
    return {
        "preset": rung_preset(c.rung),
        "init": init,
        "upcycle_step": m.get("upcycle_step"),
        "device": m.get("device"),
        "devices": m.get("devices") or 1,
        "sharding": m.get("sharding"),
        "recipe": m.get("recipe"),
        "micro_batch": m.get("micro_batch"),
        "activation_checkpointing": m.get("activation_checkpointing"),
        "memory_estimate_bytes": m.get("memory_estimate_bytes"),
        "memory_peak_bytes": m.get("memory_peak_bytes"),
        "tokens_per_s": m.get("tokens_per_s"),
        "mfu": m.get("mfu"),
        "peak_flops_label": m.get("peak_flops_label"),
        "checkpoint_count": m.get("checkpoint_count") or 0,
        "resume_count": m.get("resume_count") or 0,
        "resumed_from": m.get("resumed_from") or [],
    }


def _ladder(up: ScaleUpSettings, stored: set[str]) -> list[str]:
    """The report's rungs in ladder order: each preset's scratch run, then its upcycled twin where the stage trains
    one (or one was recorded)."""
    rungs: list[str] = []
    for r in up.ladder:
        twin = r.preset + UPCYCLE_SUFFIX
        names = [
            name
            for name, wanted in ((r.preset, up.init != "upcycle"), (twin, up.init == "both"))
            if wanted or name in stored
        ]
        rungs += names or [r.preset]
    return rungs


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
    store: RunStore | None = None,
) -> ScaleUpReport:
    """The stage's report from the stored candidates; ``target``, ``law`` and ``scale_by`` override the search's.
    With the run ``store`` each run lists its checkpoints on disk."""
    up = space.search.scale_up
    target = target or (up.target if up else None)
    if target is not None:
        scale_preset(target)  # an unknown name is an error that lists the known ones
    law = law or (up.law if up else "kaplan")
    scale_by = scale_by or (up.scale_by if up else "params_activated")
    stored = repo.list_candidates(search_id)
    rows = _latest(stored)
    ladder = _ladder(up, {rung for _, rung in rows}) if up else sorted({rung for _, rung in rows})
    init = up.init if up else "scratch"
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
                    checkpoints_on_disk=checkpoints_on_disk(store, search_id, trial.id, rung),
                    **_run_fields(c),
                )
            )
        prediction, error = None, None
        # One kind of run per size (see the module's docstring): the scratch runs, unless the stage only upcycles.
        done = [
            r
            for r in rung_results
            if r.state == "completed" and r.val_loss is not None and (init == "upcycle" or not is_upcycle_rung(r.rung))
        ]
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
        init=init,
        baseline=baseline_name if base_trial is not None else None,
        fidelity=fidelity,
        fidelity_pairs=fidelity_pairs,
        complete=complete,
        candidates=reports,
    )
