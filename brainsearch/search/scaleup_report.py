"""What the scale-up stage reports, computed on read from the stored candidate rows.

- proxy fidelity per rung: Kendall's tau between the candidates' proxy losses and their losses at that rung;
- each rung's validation loss with a 95% interval, ``val_loss +- 1.96 * val_loss_stderr``: the evaluation error
  only (the spread of the mean over the evaluation batches), since each rung is trained with one seed;
- each rung's difference from the baseline at the same rung, with an interval from the seed noise the search
  measured on its proxies (``vs_baseline``: both runs share the rung's seed, so the proxies' paired spread applies;
  simultaneous over the rung's candidates) - the noise at a larger scale is taken to be no larger than at the
  proxy's; and its training compute and FLOPs per token as ratios to the baseline's at the rung
  (``compute_ratio``, ``flops_per_token_ratio``);
- speed-up over the baseline at the same rung, as the paper reports it: the steps/s ratio and the convergence
  speed-up, counted in training compute (the compute the baseline needed for its final loss over the compute the
  candidate needed to reach it; with equal FLOPs per token it is the paper's ratio of steps, and a block that
  costs twice as much per step does not look twice as fast for it). A run evaluated only at its end (a reused proxy
  run) has no curve to read it from. The
  steps/s ratio comes from the run's timing probe when it has one (``metrics["timing_probe"]``: both models timed
  back to back in one process, so machine load hits both alike): ``1 / ratio`` with the interval ``[1 / high,
  1 / low]`` over the probe's rounds, and no number at all when the probe found its own spread too wide
  (``speed_uncertain``). Without a probe (sharded rungs, older rows) it is the ratio of the two separate runs' step
  times, ``speed_source: "separate runs"``, with no interval;
- slowed runs: a run whose MFU is below ``SLOWED_MFU_FRACTION`` (0.6) of its rung's median MFU, where the rung has
  at least ``MIN_RUNS_FOR_SLOWED`` (3) runs with an MFU, was slowed by something other than its model (machine
  load, a throttled device). It is ``slowed``, its step time re-timed by a probe is repeated
  (``retimed_step_time_s``: its own probe's, or for the baseline the median of the probes that timed it at that
  rung), and a ratio of separate runs that involves it is reported as uncertain, never as a speed-up;
- a scaling law fitted to each candidate's rungs (:mod:`brainsearch.search.scaling`) and its predicted loss at the
  target scale with a 95% band; candidates ranked by that as well as by proxy loss. Every candidate is predicted at
  one common target (``target_scale``): the target preset applied to the reference baseline's architecture (without
  a baseline among the candidates, to the best candidate at the proxy), named in activated parameters and training
  compute (its FLOPs per token x the preset's budget tokens), so the predicted ranking compares blocks at equal size
  and budget, as the paper does. Each prediction says how far it extrapolates past the largest rung run and is
  flagged beyond 100x; beyond 10,000x it is refused (the fit's error gives the reason);
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
import statistics
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import cost
from brainsearch.arch.scale import scale, scale_preset
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError, InputError
from brainsearch.search.noise import Interval, SearchNoise, Seeds, compare
from brainsearch.search.scaleup import UPCYCLE_SUFFIX, planned_runs, ranked_trials, recorded_runs
from brainsearch.search.scaling import Law, ScalingFit, TargetScale, convergence_speedup, fit_law, kendall_tau
from brainsearch.search.standings import ranks, reference_trial
from brainsearch.space.schema import ScaleUpSettings, SearchSpace
from brainsearch.storage import Candidate, Repository, Trial
from brainsearch.store import RunStore, candidate_run_key, list_checkpoints

__all__ = [
    "CandidateReport",
    "CheckpointOnDisk",
    "RungResult",
    "ScaleBy",
    "ScaleUpReport",
    "TargetScale",
    "checkpoints_on_disk",
    "is_upcycle_rung",
    "rung_preset",
    "scale_up_report",
    "target_scale",
]

ScaleBy = Literal["params_activated", "compute"]
SpeedSource = Literal["probe", "separate runs"]
MIN_FIDELITY_PAIRS = 3
# A run is slowed when its MFU is below this fraction of its rung's median, among at least this many runs with an
# MFU: the same rung trains blocks of one size on one kind of device, so their MFUs differ by tens of percent (the
# quickstart's: 56-60%), while a loaded machine's run reads several times lower (its GLaM run: 12%).
SLOWED_MFU_FRACTION = 0.6
MIN_RUNS_FOR_SLOWED = 3
_Z95 = 1.959963984540054
VAL_LOSS_INTERVAL = "95%: val_loss +- 1.96 x val_loss_stderr, evaluation error only (one seed per rung)"


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
    """One candidate at one rung, with its speed-up over the baseline at the same rung (see the module's docstring
    for the intervals, the speed's sources and slowed runs)."""

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
    steps_per_s_ratio: float | None  # baseline's step time / this candidate's (above 1: faster); None if uncertain
    # Baseline's training compute to its final loss / this candidate's compute to reach that loss.
    convergence_speedup: float | None
    reached_baseline_loss: bool | None  # None for the baseline itself or without curves
    # This run against the baseline's at the same rung: the loss difference with its interval (the proxies' seed
    # noise), the training compute and FLOPs per token as ratios (None for the baseline itself).
    vs_baseline: Interval | None = None
    compute_ratio: float | None = None
    flops_per_token_ratio: float | None = None
    reused_proxy_run: bool = False  # the trial's own proxy run (the rung is the proxy's scale and training)
    # 95% interval of val_loss from its evaluation error only (VAL_LOSS_INTERVAL); None without a stderr.
    val_loss_low: float | None = None
    val_loss_high: float | None = None
    # The steps/s ratio's range over a timing probe's rounds (None for separate runs: one timing each, no interval).
    steps_per_s_low: float | None = None
    steps_per_s_high: float | None = None
    speed_source: SpeedSource | None = None  # None: no comparison (the baseline itself, or a run missing)
    speed_uncertain: bool = False  # the ratio is not a number to read: speed_note says why
    speed_note: str | None = None
    slowed: bool = False  # MFU well below the rung's median (see SLOWED_MFU_FRACTION)
    slowed_note: str | None = None  # "MFU 12.0% against the rung's median 58.0%"
    retimed_step_time_s: float | None = None  # this run's model's step time measured by a timing probe
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
    """A scale-up candidate across the ladder, with its scaling-law prediction: ``proxy_rank`` orders the candidates
    (the baseline among them) by their proxy run's loss; ``rank`` is the trial's rank in the search
    (:mod:`brainsearch.search.standings`; None for a baseline): the stage's N-th candidate is the trial of rank N
    unless a better one scaled to the same block at the first rung."""

    model_config = ConfigDict(frozen=True)
    trial_id: int
    number: int
    label: str
    is_baseline: bool
    pattern: str
    proxy_val_loss: float | None
    proxy_rank: int
    rank: int | None = None
    rungs: list[RungResult]
    prediction: ScalingFit | None
    prediction_error: str | None
    predicted_rank: int | None


class ScaleUpReport(BaseModel):
    """The scale-up stage of a search: candidates per rung, proxy fidelity, speed-ups and predictions.

    ``target`` is the preset's name; ``target_scale`` the one scale every candidate is predicted at (the preset
    applied to ``target_scale.reference``'s architecture), in activated parameters and training compute."""

    model_config = ConfigDict(frozen=True)
    search_id: int
    configured: bool
    ladder: list[str]
    target: str | None
    target_scale: TargetScale | None = None
    val_loss_interval: str = VAL_LOSS_INTERVAL  # what the rungs' val_loss_low/high are
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


def _compute_curve(c: Candidate) -> list[tuple[float, float]]:
    """A run's validation curve against the training compute spent (steps x its FLOPs per step)."""
    m = c.metrics
    steps, tokens, fpt = m.get("steps"), m.get("tokens"), m.get("flops_per_token")
    if not steps or not tokens or not fpt:
        return []
    per_step = float(tokens) / float(steps) * float(fpt)
    return [(step * per_step, loss) for step, loss in _curve(c)]


def _compute(c: Candidate) -> float | None:
    m = c.metrics
    return float(m["flops_per_token"]) * float(m["tokens"]) if m.get("flops_per_token") and m.get("tokens") else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _rung_interval(
    c: Candidate, base: Candidate, noise: SearchNoise | None, comparisons: int, seed: int
) -> Interval | None:
    """Run ``c``'s loss minus the baseline's run at the same rung, with the interval the search's proxy noise gives
    one seed's difference (both runs share the rung's ``seed``), simultaneous over the rung's ``comparisons``; the
    evaluation error only without measured noise."""
    if c.val_loss is None or base.val_loss is None:
        return None
    mine = Seeds(c.id, (float(c.val_loss),), (c.metrics.get("val_loss_stderr"),), (seed,))
    theirs = Seeds(base.id, (float(base.val_loss),), (base.metrics.get("val_loss_stderr"),), (seed,))
    measured = noise or SearchNoise.unmeasured()
    return compare(mine, theirs, measured.model_copy(update={"comparisons": max(1, comparisons)}))


def _x(c: Candidate, scale_by: ScaleBy) -> float | None:
    m = c.metrics
    if scale_by == "params_activated":
        return m.get("params_activated")
    fpt, tokens = m.get("flops_per_token"), m.get("tokens")
    return float(fpt) * float(tokens) if fpt and tokens else None


def target_scale(trial: Trial, target: str, reference: str) -> TargetScale:
    """``trial``'s architecture at the ``target`` preset: its activated parameters and its training compute (FLOPs
    per token x the preset's budget tokens). Raises :class:`ArchitectureError` when it does not scale."""
    c = cost(scale(Architecture.from_json(trial.arch), target))
    return TargetScale(
        preset=target,
        reference=reference,
        params_activated=float(c.params_activated),
        compute_flops=float(c.flops_per_token) * scale_preset(target).budget_tokens,
    )


def _label(trial: Trial) -> str:
    return f"{trial.baseline_name} baseline" if trial.is_baseline else f"trial #{trial.number}"


def _probe(c: Candidate, baseline_name: str | None) -> dict[str, Any] | None:
    """The run's timing probe against the report's baseline, when it has a usable one."""
    probe = c.metrics.get("timing_probe")
    if not isinstance(probe, dict) or not probe.get("ratio") or probe.get("ratio", 0) <= 0:
        return None
    if probe.get("baseline") not in (None, baseline_name):
        return None  # timed against another baseline than the one this report compares with
    return probe


def _slowed(rows: list[Candidate]) -> dict[int, str]:
    """The runs of one rung that were slowed, by candidate id, each with why: an MFU below SLOWED_MFU_FRACTION of
    the rung's median, among at least MIN_RUNS_FOR_SLOWED completed runs with an MFU."""
    mfus = {c.id: float(c.metrics["mfu"]) for c in rows if c.state == "completed" and c.metrics.get("mfu")}
    if len(mfus) < MIN_RUNS_FOR_SLOWED:
        return {}
    median = statistics.median(mfus.values())
    return {
        cid: f"MFU {mfu * 100:.1f}% against the rung's median {median * 100:.1f}%"
        for cid, mfu in mfus.items()
        if mfu < SLOWED_MFU_FRACTION * median
    }


def _speed(
    c: Candidate, base: Candidate | None, probe: dict[str, Any] | None, slowed: dict[int, str], base_label: str
) -> dict[str, Any]:
    """The steps/s ratio of run ``c`` against the baseline's run ``base`` at the same rung: from ``c``'s probe when
    it has one, else from the two runs' step times (uncertain when either run was slowed)."""
    if probe is not None:
        ratio, low, high = float(probe["ratio"]), probe.get("low"), probe.get("high")
        fields: dict[str, Any] = {
            "speed_source": "probe",
            "steps_per_s_low": 1 / high if high else None,
            "steps_per_s_high": 1 / low if low else None,
        }
        if probe.get("uncertain"):
            spread, bound = probe.get("spread"), probe.get("bound")
            why = f"timing probe's spread {spread:.0%} over {probe.get('rounds')} rounds" if spread is not None else ""
            why += f" exceeds its bound {bound:.0%}" if bound is not None else ""
            return {**fields, "speed_uncertain": True, "speed_note": why or "the timing probe found it uncertain"}
        return {**fields, "steps_per_s_ratio": 1 / ratio}
    if base is None or base.id == c.id or c.state != "completed" or base.state != "completed":
        return {}
    mine, theirs = c.metrics.get("step_time_s"), base.metrics.get("step_time_s")
    if not mine or not theirs:
        return {}
    fields = {"speed_source": "separate runs"}
    which = [(label, slowed[run.id]) for label, run in (("this run", c), (base_label, base)) if run.id in slowed]
    if which:
        why = "; ".join(f"{label} was slowed ({note})" for label, note in which)
        return {**fields, "speed_uncertain": True, "speed_note": f"{why}: separate runs' step times measure the load"}
    return {**fields, "steps_per_s_ratio": theirs / mine}


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
    noise: SearchNoise | None = None,
) -> ScaleUpReport:
    """The stage's report from the stored candidates; ``target``, ``law`` and ``scale_by`` override the search's.
    With the run ``store`` each run lists its checkpoints on disk; with the search's ``noise`` (measured on its
    proxies) each run's difference from the baseline at its rung carries a seed-noise interval, else the
    evaluation error only."""
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
    ref = reference_trial(repo, search_id, baseline_name)
    base_trial = next((t for t in trials if ref is not None and t.id == ref.id), None)
    standing = ranks(ranked_trials(repo, search_id, up.seed if up else 0))
    trials.sort(key=lambda t: (t.is_baseline, t.val_loss if t.val_loss is not None else math.inf))
    proxy_ranks = _rank([t.val_loss for t in trials])

    # One common target for every candidate: the preset applied to the baseline's block (else the proxy's best).
    common: TargetScale | None = None
    target_error = "no target scale to predict at"
    reference = base_trial or (trials[0] if trials else None)
    if target is not None and reference is not None:
        try:
            common = target_scale(reference, target, _label(reference))
        except ArchitectureError as exc:
            problems = "; ".join(p.message for p in exc.problems)
            target_error = f"{_label(reference)}'s block does not scale to {target}: {problems}"
    # A probe is read from a completed run only (a crashed run's is not a comparison anyone finished).
    probes = {key: _probe(c, baseline_name) if c.state == "completed" else None for key, c in rows.items()}
    slowed: dict[int, str] = {}
    for rung in ladder:
        slowed |= _slowed([c for (_, r), c in rows.items() if r == rung])
    base_label = _label(base_trial) if base_trial is not None else "the baseline"
    seed = up.seed if up else 0
    base_id = base_trial.id if base_trial is not None else None
    # The candidates each rung compares with its baseline run: the rung's intervals are simultaneous over them.
    compared = {
        rung: sum(1 for (tid, r), c in rows.items() if r == rung and c.state == "completed" and tid != base_id)
        for rung in ladder
    }

    reports: list[CandidateReport] = []
    for trial, proxy_rank in zip(trials, proxy_ranks, strict=True):
        rung_results = []
        for rung in ladder:
            c = rows.get((trial.id, rung))
            if c is None:
                continue
            base = rows.get((base_trial.id, rung)) if base_trial is not None else None
            m = c.metrics
            conv = reached = None
            versus: dict[str, Any] = {}
            if base is not None and base.id != c.id and c.state == "completed" and base.state == "completed":
                mine, theirs = _compute_curve(c), _compute_curve(base)
                if len(mine) >= 2 and theirs:  # one point (an end-only evaluation) says nothing about the way there
                    conv = convergence_speedup(mine, theirs)
                    reached = conv is not None
                versus = {
                    "vs_baseline": _rung_interval(c, base, noise, compared.get(rung, 1), seed),
                    "compute_ratio": _ratio(_compute(c), _compute(base)),
                    "flops_per_token_ratio": _ratio(m.get("flops_per_token"), base.metrics.get("flops_per_token")),
                }
            probe = probes[(trial.id, rung)] if base is None or base.id != c.id else None
            speed = _speed(c, base, probe, slowed, base_label) if base is None or base.id != c.id else {}
            if probe is not None:
                retimed = probe.get("candidate_step_s")
            elif base is not None and base.id == c.id:  # the baseline: every probe at this rung timed it too
                times = [
                    p["baseline_step_s"] for (_, r), p in probes.items() if r == rung and p and p.get("baseline_step_s")
                ]
                retimed = statistics.median(times) if times else None
            else:
                retimed = None
            loss, stderr = c.val_loss, m.get("val_loss_stderr")
            interval = (loss - _Z95 * stderr, loss + _Z95 * stderr) if loss is not None and stderr is not None else None
            rung_results.append(
                RungResult(
                    candidate_id=c.id,
                    rung=rung,
                    state=c.state,
                    reason=c.reason,
                    val_loss=loss,
                    val_loss_stderr=stderr,
                    val_loss_low=interval[0] if interval else None,
                    val_loss_high=interval[1] if interval else None,
                    params_activated=m.get("params_activated"),
                    flops_per_token=m.get("flops_per_token"),
                    tokens=m.get("tokens"),
                    steps=m.get("steps"),
                    step_time_s=m.get("step_time_s"),
                    steps_per_s_ratio=speed.pop("steps_per_s_ratio", None),
                    convergence_speedup=conv,
                    reached_baseline_loss=reached,
                    slowed=c.id in slowed,
                    slowed_note=slowed.get(c.id),
                    retimed_step_time_s=retimed,
                    checkpoints_on_disk=checkpoints_on_disk(store, search_id, trial.id, rung),
                    reused_proxy_run=bool(m.get("reused_proxy_run")),
                    **versus,
                    **speed,
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
        if common is None:
            error = target_error
        else:
            points = [(_x(rows[(trial.id, r.rung)], scale_by), r.val_loss, r.val_loss_stderr) for r in done]
            usable = [(x, loss, e) for x, loss, e in points if x is not None and loss is not None]
            try:
                prediction = fit_law(
                    [p[0] for p in usable],
                    [p[1] for p in usable],
                    common,
                    law=law,
                    scale_by=scale_by,
                    errors=[p[2] for p in usable],
                )
            except InputError as exc:
                error = "; ".join(p.message for p in exc.problems)
        reports.append(
            CandidateReport(
                trial_id=trial.id,
                number=trial.number,
                label=_label(trial),
                is_baseline=trial.is_baseline,
                pattern=trial.pattern,
                proxy_val_loss=trial.val_loss,
                proxy_rank=proxy_rank or 0,
                rank=standing.get(trial.id),
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
        target_scale=common,
        law=law,
        scale_by=scale_by,
        init=init,
        baseline=baseline_name if base_trial is not None else None,
        fidelity=fidelity,
        fidelity_pairs=fidelity_pairs,
        complete=complete,
        candidates=reports,
    )
