"""The Ray executor: trials as Ray Tune trials, proposed by ``OptunaSearch`` on the search's own Optuna study.

Ray Tune runs the loop (``Tuner`` with ``OptunaSearch`` on the same RDB storage and sampler, a resource request per
trial, ``max_concurrent_trials``, actor reuse); the search driver still decides what each proposal means: the
define-by-run function hands the Optuna trial to :meth:`SearchDriver.plan` (sampling, constraints, deduplication)
and the trial itself records its result in the database, like a local worker. Tune's experiment directory is a
temporary folder, deleted afterwards: the database is the only state a resume needs. Intermediate results reach
Optuna from the trial itself (its pruner runs there), so Tune's own per-result forwarding is switched off, and the
final state is told by the driver (COMPLETE / PRUNED / FAIL from the recorded trial).

Baselines run first as plain Ray tasks with the same resources. A Ray cluster (``--ray-address``) needs brainsearch
installed on its nodes and a database they can all reach (PostgreSQL; a SQLite file only on one machine).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any

import optuna

from brainsearch.errors import InputError, Problem
from brainsearch.search.trial import TrialJob, TrialOutcome, optuna_storage

if TYPE_CHECKING:
    from brainsearch.search.driver import SearchDriver

__all__ = ["run_with_ray"]

_REPOS: dict[str, Any] = {}


def _repository(url: str) -> Any:
    from brainsearch.storage import Repository, make_engine

    repo = _REPOS.get(url)
    if repo is None:
        repo = _REPOS[url] = Repository(make_engine(url))
    return repo


def _run_job(job_json: dict[str, Any], threads: int) -> dict[str, Any]:
    """Train one job inside a Ray worker and record it (the worker writes the database itself)."""
    import torch

    from brainsearch.search.trial import run_trial

    torch.set_num_threads(threads)
    job = TrialJob.model_validate(job_json)
    return run_trial(job, _repository(job.database_url)).model_dump(mode="json")


def _run_candidate(job_json: dict[str, Any], threads: int) -> dict[str, Any]:
    """Train one scale-up candidate run inside a Ray worker and record it."""
    import torch

    from brainsearch.search.scaleup import CandidateJob, run_candidate

    torch.set_num_threads(threads)
    job = CandidateJob.model_validate(job_json)
    return run_candidate(job, _repository(job.database_url)).model_dump(mode="json")


def _run_scale_up(driver: SearchDriver, threads: int, gpus: float) -> None:
    """The scale-up stage as Ray tasks with a trial's resources (Ray schedules them by what the cluster has); a
    stop request cancels the runs in flight (they are retried on resume)."""
    import ray

    pending = driver.scale_up_plan()
    remote = ray.remote(num_cpus=threads, num_gpus=gpus)(_run_candidate)
    refs = {remote.remote(job.model_dump(mode="json"), threads): job for job in pending}
    finished = 0
    while refs:
        if driver.stop_requested() is not None:
            for ref in refs:
                ray.cancel(ref, force=True)
            return
        done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
        for ref in done:
            job = refs.pop(ref)
            finished += 1
            try:
                outcome, crash = TrialOutcome.model_validate(ray.get(ref)), None
            except ray.exceptions.RayError as exc:
                outcome, crash = None, f"Ray task failed: {exc}"[:500]
            driver.candidate_done(job, outcome, crash, f"{finished}/{len(pending)}")


def _trainable(config: dict[str, Any]) -> None:
    """A Tune trial: train a planned job, or wait for the trial it duplicates, then report once."""
    from ray import tune

    plan, metrics = config["plan"], config["metrics"]
    result: dict[str, Any] = {name: math.nan for name in metrics}
    if plan["kind"] == "job":
        outcome = TrialOutcome.model_validate(_run_job(plan["job"], config["threads"]))
        result.update(state=outcome.state, trial_id=outcome.trial_id, train_seconds=outcome.train_seconds)
        if outcome.val_loss is not None:
            result["val_loss"] = outcome.val_loss
    elif plan["kind"] == "wait":  # a duplicate of a trial in flight: done when that trial is
        repo = _repository(plan["database_url"])
        while repo.find_trial(plan["search_id"], plan["digest"]) is None and repo.count_trials(plan["search_id"]).get(
            "running", 0
        ):
            time.sleep(0.5)
        result["state"] = "duplicate"
    else:
        result["state"] = "settled"
    tune.report(result)


def _resources(driver: SearchDriver) -> tuple[int, float]:
    threads = driver.options.threads_per_trial or max(1, (os.cpu_count() or 1) // driver.settings.concurrency)
    return threads, driver.options.gpus_per_trial


def _run_baselines(driver: SearchDriver, threads: int, gpus: float) -> None:
    import ray

    jobs = driver.baseline_jobs()
    remote = ray.remote(num_cpus=threads, num_gpus=gpus)(_run_job)
    refs = {job.trial_id: remote.remote(job.model_dump(mode="json"), threads) for job in jobs}
    driver.emit()
    for trial_id, ref in refs.items():
        try:
            ray.get(ref)
            trial = driver.repo.get_trial(trial_id)
        except ray.exceptions.RayError as exc:
            trial = driver.repo.finish_trial(trial_id, state="crashed", reason=f"Ray task failed: {exc}"[:500])
        if trial is not None and trial.state != "completed":
            driver.note(f"baseline {trial.baseline_name} ended {trial.state}: {trial.reason}")
        driver.emit()
    driver.load_reference()


def _searcher_class() -> type:
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class DriverSearch(OptunaSearch):
        """OptunaSearch whose proposals are planned, and whose outcomes are told, by the search driver."""

        def __init__(self, driver: SearchDriver, study: optuna.Study, threads: int, **kwargs: Any) -> None:
            self.driver, self.study, self.threads = driver, study, threads
            self.plans: dict[str, dict[str, Any]] = {}
            super().__init__(space=self._define, **kwargs)

        def _define(self, trial: optuna.Trial) -> dict[str, Any]:
            planned = self.driver.plan(self.study, trial)
            d = self.driver
            plan: dict[str, Any]
            if planned.job is not None:
                plan = {"kind": "job", "job": planned.job.model_dump(mode="json"), "number": planned.number}
            elif planned.waits_for is not None:
                plan = {
                    "kind": "wait",
                    "digest": planned.waits_for,
                    "search_id": d.search.id,
                    "database_url": d.database_url,
                }
            else:
                plan = {"kind": "settled"}
            return {"plan": plan, "metrics": list(d.settings.objectives), "threads": self.threads}

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # FINISHED
            d = self.driver
            stopping = d.stop_requested() is not None  # running Ray trials finish; no new ones start
            if stopping or d.too_many_failures() or d.exhausted() or d.remaining() - self._jobs_in_flight() <= 0:
                # Wait for the trials in flight (a crashed one is replaced); finish when none is left.
                return None if self.plans else Searcher.FINISHED
            config = super().suggest(trial_id)
            if config is not None:
                self.plans[trial_id] = config["plan"]
            d.emit()
            return config

        def _jobs_in_flight(self) -> int:
            return sum(p["kind"] == "job" for p in self.plans.values())

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its configuration (to restore an experiment); the driver, its database connections and
            # the study are not picklable, and not needed: a search resumes from the database, not from Tune.
            return {}

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

        def save(self, checkpoint_path: str) -> None:
            """No searcher checkpoint: the database is the search's state."""

        def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
            """No searcher checkpoint: the database is the search's state."""

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            """The trial reports its intermediate values to Optuna itself."""

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
            plan = self.plans.pop(trial_id, None)
            self._completed_trials.add(trial_id)
            if plan is None or plan["kind"] != "job":
                return
            job = TrialJob.model_validate(plan["job"])
            trial = self.driver.repo.get_trial(job.trial_id)
            if trial is not None and trial.state == "running":  # the Ray worker died before recording it
                trial = self.driver.repo.finish_trial(
                    job.trial_id, state="crashed", reason="the Ray trial failed before recording a result"
                )
            if trial is not None:
                self.driver.settle(self.study, plan["number"], trial)
            self.driver.emit()

    return DriverSearch


def run_with_ray(driver: SearchDriver, study: optuna.Study) -> None:
    """Run the search's baselines, trials and scale-up stage on Ray (a local Ray started here, or
    ``ray_address``)."""
    import ray
    from ray import tune

    threads, gpus = _resources(driver)
    started = not ray.is_initialized()
    if started:
        address = driver.options.ray_address
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise InputError([Problem("ray_address", f"cannot start or reach {where}: {exc}")]) from None
    # Tune's console reporter would interleave with brainsearch's progress bar: keep Tune quiet.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    workdir = tempfile.mkdtemp(prefix="brainsearch-tune-")
    try:
        _run_baselines(driver, threads, gpus)
        searcher_class = _searcher_class()
        objectives = list(driver.settings.objectives)
        # One Tuner run normally finishes the search; another starts only if Tune stopped early (a lost worker node).
        for rounds in range(1, 4):
            if driver.remaining() <= 0 or driver.too_many_failures() or driver.exhausted():
                break
            searcher = searcher_class(
                driver,
                study,
                threads,
                metric=objectives if len(objectives) > 1 else objectives[0],
                mode=["min"] * len(objectives) if len(objectives) > 1 else "min",
                sampler=study.sampler,
                study_name=driver.study_name,
                storage=optuna_storage(driver.database_url),
            )
            tuner = tune.Tuner(
                tune.with_resources(_trainable, {"cpu": threads, "gpu": gpus}),
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    num_samples=-1,
                    max_concurrent_trials=driver.settings.concurrency,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=f"{driver.study_name}-round{rounds}", storage_path=workdir, verbose=0, log_to_file=False
                ),
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` argument")
                tuner.fit()
        if driver.settings.scale_up is not None and not driver.too_many_failures() and not driver.stop_requested():
            _run_scale_up(driver, threads, gpus)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if started:
            ray.shutdown()
