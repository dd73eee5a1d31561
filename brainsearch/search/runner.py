"""What a worker runs: one job (a proxy trial or a scale-up candidate run), trained and recorded by the worker
itself.

:func:`run_job` is the single entry point every executor's workers call (a local worker process, a Ray actor). The
worker records the outcome in the database before returning it, so a driver that dies mid-run loses nothing already
finished; the driver only tells the sampler. A run never raises: a failed run is a result (diverged, out of memory,
timed out, pruned) and an unexpected error is recorded as ``crashed`` with the exception as the reason, so one bad
run cannot take a worker down. Torch is imported here only when a job trains (the driver imports this module for
:func:`record_crash`).

Speed against a baseline is measured here, in one process, never across runs (:mod:`brainsearch.train.timing`): a
trial under ``max_step_time_ratio`` is timed back to back with the reference baseline's architecture before it
trains and is pruned, untrained, when it is certainly too slow; a single-device scale-up run is timed against the
baseline scaled to its rung after it trains. Either stores the probe as ``metrics["timing_probe"]``.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture
from brainsearch.search.jobs import CandidateJob, Job, TrialJob, TrialOutcome
from brainsearch.search.scaleup import recorded_runs
from brainsearch.storage import MetricPoint, Repository

if TYPE_CHECKING:
    from brainsearch.data import Corpus
    from brainsearch.model import LanguageModel
    from brainsearch.train.result import ProxyResult
    from brainsearch.train.settings import TrainSettings
    from brainsearch.train.timing import TimingProbe

__all__ = ["cached_corpus", "crash_reason", "record_crash", "run_job"]


@functools.cache
def cached_corpus(data: str, vocab_size: int, data_dir: Path | None) -> Corpus:
    """The corpus (its tokenised cache under ``data_dir``), loaded once per worker process."""
    from brainsearch.data import load_corpus

    return load_corpus(data, vocab_size, data_dir)


def _corpus(job: Job, arch: Architecture) -> Corpus:
    """The corpus ``job`` trains on, from this process's cache."""
    return cached_corpus(job.settings.data, arch.vocab_size, job.settings.data_dir)


def crash_reason(exc: BaseException) -> str:
    """An unexpected exception as a one-line reason: its type, message and where it was raised."""
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}" if last else ""
    return f"{exc.__class__.__name__}: {str(exc)[:300]}{where}"


def run_job(job: Job, repo: Repository) -> TrialOutcome:
    """Train ``job`` and record its outcome in ``repo``; never raises for a failed run."""
    try:
        if isinstance(job, CandidateJob):
            return _run_candidate(job, repo)
        return _run_seed(job, repo) if job.seed_run_id is not None else _run_trial(job, repo)
    except Exception as exc:  # a bug in one run must not take the worker down
        reason = crash_reason(exc)
        if isinstance(job, CandidateJob):
            record_crash(repo, job, reason)
        elif job.seed_run_id is not None:
            repo.finish_seed_run(job.seed_run_id, state="crashed", reason=reason)
        else:
            repo.finish_trial(job.trial_id, state="crashed", reason=reason)
        return TrialOutcome(trial_id=job.trial_id, state="crashed", reason=reason)


def record_crash(repo: Repository, job: CandidateJob, reason: str) -> None:
    """Record a candidate run whose worker died (it is retried when the search resumes); nothing when the worker had
    recorded the run before it died."""
    if (job.trial_id, job.rung) in recorded_runs(repo.list_candidates(job.search_id)):
        return
    _add_candidate(repo, job, state="crashed", reason=reason, metrics={}, val_loss=None)


# --- a proxy trial -------------------------------------------------------------------------------------------------
def _run_trial(job: TrialJob, repo: Repository) -> TrialOutcome:
    from brainsearch.search.pruning import PruningJudge  # Optuna: only in the processes that train
    from brainsearch.train.proxy import train  # torch: likewise

    arch = Architecture.from_json(job.arch)
    corpus = _corpus(job, arch)
    speed, pruned = _step_time_constraint(job, arch, corpus)
    if pruned is not None:  # judged before training: nothing trains
        repo.finish_trial(job.trial_id, state="pruned", reason=pruned, metrics=speed)
        return TrialOutcome(trial_id=job.trial_id, state="pruned", reason=pruned)
    judge = PruningJudge(job, flops_per_token=cost(arch, batch_size=job.settings.batch_size).flops_per_token)
    saved: dict[str, str] = {}
    result = train(arch, job.settings, report=judge, corpus=corpus, on_completed=_keeper(job, arch, saved))
    metrics = _with_probe({**result.model_dump(exclude={"curve"}, mode="json"), **saved}, speed)
    curve = [MetricPoint(p.step, p.tokens, p.elapsed_s, p.train_loss, p.val_loss, p.lr) for p in result.curve]
    outcome = TrialOutcome.of(job.trial_id, result)
    repo.finish_trial(
        job.trial_id,
        state=result.status,
        reason=result.reason,
        metrics=metrics,
        val_loss=outcome.val_loss,
        step_time_s=result.step_time_s,
        curve=curve,
    )
    return outcome


def _step_time_constraint(job: TrialJob, arch: Architecture, corpus: Corpus) -> tuple[dict[str, Any], str | None]:
    """The step-time constraint, judged before training (:func:`brainsearch.search.pruning.speed_verdict`): the
    metrics it leaves (``timing_probe``, or a note saying why it was not applied) and the reason to prune the trial,
    None to train it."""
    limit, ref = job.max_step_time_ratio, job.reference
    if limit is None or ref is None:
        return {}, None
    if ref.arch is None:
        return {"notes": [f"max_step_time_ratio not checked: no architecture of the {ref.name} baseline to time"]}, None
    from brainsearch.search.pruning import speed_verdict

    probe = _probe(arch, Architecture.from_json(ref.arch), job.settings, corpus, ref.name)
    if isinstance(probe, str):  # out of memory: the run itself will say so
        return {"notes": [f"max_step_time_ratio not checked: {probe}"]}, None
    metrics: dict[str, Any] = {"timing_probe": probe.model_dump(mode="json")}
    if probe.uncertain:
        metrics["notes"] = [f"max_step_time_ratio {limit:g} not applied: {probe.describe()}"]
    return metrics, speed_verdict(probe, limit)


def _with_probe(metrics: dict[str, Any], speed: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics with the step-time constraint's (its notes added to the run's own)."""
    notes = [*metrics.get("notes", []), *speed.get("notes", [])]
    return {**metrics, **speed, **({"notes": notes} if notes else {})}


def _run_seed(job: TrialJob, repo: Repository) -> TrialOutcome:
    """Train a trial's architecture again with another seed and record it in its seed-run row (the trial's own
    record, the sampler and its weights are left alone)."""
    from brainsearch.train.proxy import train  # torch: only in the processes that train

    assert job.seed_run_id is not None
    arch = Architecture.from_json(job.arch)
    result = train(arch, job.settings, corpus=_corpus(job, arch))
    outcome = TrialOutcome.of(job.trial_id, result)
    repo.finish_seed_run(
        job.seed_run_id,
        state=result.status,
        reason=result.reason,
        metrics=result.model_dump(exclude={"curve"}, mode="json"),
        val_loss=outcome.val_loss,
        val_loss_stderr=result.val_loss_stderr if result.status == "completed" else None,
        step_time_s=result.step_time_s,
    )
    return outcome


def _keeper(job: TrialJob, arch: Architecture, saved: dict[str, str]) -> Callable[[LanguageModel], None] | None:
    """The trainer's ``on_completed``: write the trained weights where the job says. A failed write (a full disk, a
    folder this node cannot reach) does not fail the trial: the error is kept in its metrics instead."""
    if job.weights_path is None:
        return None
    path = Path(job.weights_path)

    def keep(model: LanguageModel) -> None:
        from brainsearch.store import save_weights

        meta = {"search_id": str(job.search_id), "trial_id": str(job.trial_id), **job.weights_metadata}
        meta["data"] = job.settings.data
        try:
            save_weights(model.state_dict(), arch, path, meta)
        except OSError as exc:
            saved["weights_error"] = f"{path}: {exc.strerror or exc}"

    return keep


# --- a scale-up candidate run --------------------------------------------------------------------------------------
def _run_candidate(job: CandidateJob, repo: Repository) -> TrialOutcome:
    """Train a candidate run: sharded over ``job.resources.workers`` processes (launched, each loading its corpus
    and resuming from the run's last checkpoint), upcycled from its dense twin, or on this worker alone; a run that
    is the trial's own proxy run (``reuse_proxy``) is recorded from it, with a timing probe."""
    arch = Architecture.from_json(job.arch)
    if job.reuse_proxy:
        return _reuse_proxy(job, arch, repo)
    if job.plan is not None and job.plan.recipe.shards > 1:
        from brainsearch.train.sharded import train_distributed

        result = train_distributed(
            arch,
            job.settings,
            job.plan,
            launcher=job.launcher,
            use_gpu=job.resources.gpus > 0,
            cpus_per_worker=job.resources.cpus,
        )
    elif job.init == "upcycle":
        from brainsearch.train.upcycle import train_upcycled

        corpus = _corpus(job, arch)
        result = train_upcycled(arch, job.settings, dense_fraction=job.dense_fraction, corpus=corpus)
    else:
        from brainsearch.train.proxy import train  # torch: only in the processes that train

        result = train(arch, job.settings, corpus=_corpus(job, arch))
    outcome = TrialOutcome.of(job.trial_id, result)
    metrics = _metrics(result)
    # A sharded run gets no probe: timing both models back to back would need the whole process group again; its
    # steps/s ratio stays the one of the two runs' own step times.
    if (
        result.status == "completed"
        and job.baseline_arch is not None
        and (job.plan is None or job.plan.recipe.shards == 1)
    ):
        metrics = _with_probe(metrics, _rung_probe(job, arch, result.steps))
    _add_candidate(repo, job, state=result.status, reason=result.reason, metrics=metrics, val_loss=outcome.val_loss)
    return outcome


def _reuse_proxy(job: CandidateJob, arch: Architecture, repo: Repository) -> TrialOutcome:
    """Record the trial's proxy run as its run at this rung (same model, batches and budget: training again would
    reproduce its losses exactly). The rung's validation curve is the proxy's own evaluations, its steps/s ratio a
    fresh timing probe against the baseline."""
    trial = repo.get_trial(job.trial_id)
    if trial is None or trial.state != "completed":
        raise RuntimeError(f"trial {job.trial_id} has no completed proxy run to reuse")
    curve = [[p.step, p.val_loss] for p in repo.trial_curve(trial.id) if p.val_loss is not None]
    kept = {k: v for k, v in trial.metrics.items() if k not in ("timing_probe", "notes", "weights_error")}
    metrics = {**kept, "val_curve": curve, "reused_proxy_run": True}
    if job.baseline_arch is not None:
        metrics = _with_probe(metrics, _rung_probe(job, arch, int(trial.metrics.get("steps") or 0)))
    _add_candidate(repo, job, state=trial.state, reason=trial.reason, metrics=metrics, val_loss=trial.val_loss)
    return TrialOutcome(trial_id=job.trial_id, state=trial.state, val_loss=trial.val_loss)


def _rung_probe(job: CandidateJob, arch: Architecture, run_steps: int) -> dict[str, Any]:
    """The candidate timed against the baseline scaled to the same rung, back to back, right after its run: the
    ``timing_probe`` the scale-up report's steps/s ratio reads (or a note saying why there is none). Its timed steps
    are never more than the run's own (``run_steps``): a short rung is timed on one step per model per round, not
    at twice the cost of training it."""
    from brainsearch.train.timing import PROBE_ROUNDS, PROBE_STEPS

    assert job.baseline_arch is not None
    settings = job.settings.model_copy(update={"checkpoint": None})
    corpus = _corpus(job, arch)
    steps = max(1, min(PROBE_STEPS, run_steps // (2 * PROBE_ROUNDS)))
    try:
        baseline = Architecture.from_json(job.baseline_arch)
        probe = _probe(arch, baseline, settings, corpus, job.baseline_name, steps=steps)
    except Exception as exc:  # the run is done and must be recorded: a failed probe is a note, not a crash
        probe = crash_reason(exc)
    if isinstance(probe, str):
        return {"notes": [f"no timing probe against the baseline: {probe}"]}
    return {"timing_probe": probe.model_dump(mode="json")}


def _probe(
    candidate: Architecture,
    baseline: Architecture,
    settings: TrainSettings,
    corpus: Corpus,
    name: str | None,
    **options: Any,
) -> TimingProbe | str:
    """The timing probe of ``candidate`` against ``baseline`` (:mod:`brainsearch.train.timing`; ``options``: its
    ``rounds``, ``steps``...), or why it could not run: both models at once (or one of them) did not fit in
    memory."""
    from brainsearch.arch.plan import NoPlanFits
    from brainsearch.train.device import is_out_of_memory
    from brainsearch.train.timing import timing_probe

    try:
        return timing_probe(candidate, baseline, settings, corpus=corpus, baseline_name=name, **options)
    except NoPlanFits as exc:
        return f"the timing probe found no memory plan: {exc}"
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        return f"the timing probe ran out of memory: {str(exc).splitlines()[0][:200]}"


def _metrics(result: ProxyResult) -> dict[str, Any]:
    doc = result.model_dump(mode="json", exclude={"curve"})
    # The validation points only: what the convergence speed-up reads (a long run's every step would be large).
    doc["val_curve"] = [[p.step, p.val_loss] for p in result.curve if p.val_loss is not None]
    return doc


def _add_candidate(
    repo: Repository,
    job: CandidateJob,
    *,
    state: str,
    reason: str | None,
    metrics: dict[str, Any],
    val_loss: float | None,
) -> None:
    repo.add_candidate(
        search_id=job.search_id,
        trial_id=job.trial_id,
        rung=job.rung,
        state=state,
        reason=reason,
        arch=job.arch,
        arch_digest=Architecture.from_json(job.arch).digest,
        metrics=metrics,
        val_loss=val_loss,
    )
