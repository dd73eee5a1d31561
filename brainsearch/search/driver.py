"""The search driver: from a stored search to a ranked leaderboard, resumable from the database alone.

One Optuna study per search lives in the same database (``brainsearch-{id}``, Optuna's RDB storage), so the sampler
sees every finished trial after a restart and optuna-dashboard can open the study. The driver:

1. reconciles what a dead process left behind: brainsearch trials still ``running`` become ``crashed`` and their
   parameters are enqueued again (retried); Optuna trials still running are told the recorded result when the
   worker had written one, and failed otherwise;
2. trains the baselines (GLaM and dense blocks at the proxy scale, :mod:`brainsearch.space.baselines`) once;
3. asks the sampler for trials until ``trials`` of them have finished (crashed ones do not count and are retried),
   keeping ``concurrency`` in flight, with the reference baseline's other ``baseline_seeds`` seeds interleaved with
   the first trials (seed runs, :mod:`brainsearch.search.noise`: the search's measured seed noise). A sampled
   architecture that breaks a static constraint is pruned with the reason before any training; one already trained
   (same digest) is not trained again - the sampler is told the recorded result; everything else is trained by
   the executor, whose worker records the outcome;
4. fails the search after ``max_consecutive_failures`` failed trials in a row;
5. re-evaluates the best trials: the ``reevaluate`` best by their first value train again with the other
   ``top_k_seeds`` seeds, so the top-k is chosen on means (the sampler saw, and keeps, the first values only);
6. runs the scale-up stage when the search has one (:mod:`brainsearch.search.scaleup`): the top-k trials and the
   reference baseline trained again at each rung of the ladder, on the same executor slots; then completes it.

Baselines, trials and scale-up runs all go through one loop and one executor (:mod:`brainsearch.search.executor`:
local worker processes or Ray actors, chosen by the search's run options), whose workers train each job and record
it (:mod:`brainsearch.search.runner`). A proposal that duplicates a trial in flight holds no worker: the driver keeps
its Optuna number and tells it the original's result when that finishes.

Trained proxy weights are kept in the run store (:mod:`brainsearch.store`: under the data directory, in a folder
named by the database; ``search.keep_weights``: the best ``top_k`` and the baselines by default, pruned as the
leaderboard changes), for the ``safetensors`` export and Lifelong-MoE expansion.

Optuna states: completed -> COMPLETE with one value per objective; pruned -> PRUNED; diverged, out of memory, timed
out and crashed -> FAIL.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState as OptunaState

from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError, InputError, StorageError
from brainsearch.search.executor import Executor, Finished
from brainsearch.search.jobs import BaselineRef, CandidateJob, Job, TrialJob
from brainsearch.search.local import LocalExecutor
from brainsearch.search.noise import other_seeds, reevaluation_pool
from brainsearch.search.pruning import budget_fraction
from brainsearch.search.runner import record_crash
from brainsearch.search.samplers import make_sampler
from brainsearch.search.scaleup import scale_up_jobs
from brainsearch.search.standings import reference_trial
from brainsearch.search.submission import (
    FAILED_STATES,
    Progress,
    RunOptions,
    stored_space,
    study_name,
    trial_train_settings,
)
from brainsearch.space.baselines import baseline_architectures, trial_budget
from brainsearch.space.constraints import violations
from brainsearch.space.sample import sample
from brainsearch.storage import Repository, Search, Trial
from brainsearch.storage.optuna_storage import optuna_storage
from brainsearch.store import RunStore, weights_metadata
from brainsearch.train.result import CurvePoint
from brainsearch.train.settings import TrainSettings

__all__ = ["MAX_FRUITLESS_ASKS", "SearchDriver", "StopKind"]

# Why a driver stops before the end: its search was cancelled, its worker shuts down (the search goes back to the
# queue), or its worker lost the lease to another worker (which now owns the search: nothing is touched).
StopKind = Literal["cancel", "requeue", "lost"]


class _Stopped(Exception):
    def __init__(self, kind: StopKind) -> None:
        super().__init__(kind)
        self.kind = kind


# Proposals in a row that were all architectures already trained: past this the space is taken as exhausted.
MAX_FRUITLESS_ASKS = 200


@dataclass(frozen=True)
class Planned:
    """What asking the sampler produced: a job to train, or nothing to run (the trial was settled without training:
    pruned by a constraint or a duplicate of a trained one; or it waits for the trial in flight it duplicates)."""

    number: int  # the Optuna trial number
    job: TrialJob | None = None
    counted: bool = False  # a new brainsearch trial that counts towards the requested number


class SearchDriver:
    """Runs one stored search to completion (or resumes it) with an executor."""

    def __init__(
        self,
        repo: Repository,
        search_id: int,
        database_url: str,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        should_stop: Callable[[], StopKind | None] | None = None,
        options: dict[str, Any] | None = None,
        max_fruitless_asks: int = MAX_FRUITLESS_ASKS,
        data_dir: Path,
    ) -> None:
        search = repo.get_search(search_id)
        if search is None:
            raise StorageError(f"no search {search_id}")
        self.repo, self.search, self.database_url = repo, search, database_url
        self.space = stored_space(search)  # with the settings the search was submitted with
        self.settings = self.space.search
        # ``options`` (a worker's own executor, say) override what the search was submitted with.
        self.options = RunOptions.model_validate({**search.settings.get("run", {}), **(options or {})})
        self.study_name = study_name(search_id)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._on_progress, self._on_note, self._should_stop = on_progress, on_note, should_stop
        self.reference: BaselineRef | None = None
        self._inflight: dict[str, int] = {}  # digest -> brainsearch trial id, trials being trained
        self._waiting: dict[str, list[int]] = {}  # digest -> Optuna numbers of duplicates of an in-flight trial
        self._consecutive_failures = 0
        self._fruitless = 0
        self.max_fruitless_asks = max_fruitless_asks
        self._stage: str | None = None
        self._running: dict[int, Job] = {}  # id(job) -> job, this search's jobs on the executor
        self.resources = self.options.resources(self.settings.concurrency)
        self.data_dir = data_dir  # the run store's root and the corpus cache's
        self.store = RunStore.of(data_dir, repo)
        self.store.describe(repo.engine.url.render_as_string(hide_password=True))
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    # --- set-up ------------------------------------------------------------------------------------------------------
    def _open_study(self) -> optuna.Study:
        """The search's Optuna study (created on first use); the sampler is re-seeded past the trials it has, so a
        resumed random or evolutionary search does not replay the proposals it already made."""
        storage = optuna_storage(self.database_url)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),
            directions=["minimize"] * len(self.settings.objectives),
            load_if_exists=True,
        )
        with warnings.catch_warnings():  # metric names are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(self.settings.objectives))
        seen = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(self.settings.model_copy(update={"seed": self.settings.seed + seen}))
        return study

    def _train_settings(self) -> TrainSettings:
        """How every trial of this search trains."""
        settings = trial_train_settings(self.space, self.settings.seed, self.options.device)
        limits = [x for x in (settings.memory_limit_bytes, self.options.memory_per_trial) if x is not None]
        update: dict[str, Any] = {"compile": self.options.compile, "data_dir": self.data_dir}
        if limits:
            update["memory_limit_bytes"] = min(limits)
        return settings.model_copy(update=update)

    def _check_data(self) -> None:
        """Load the corpus once here, so bad data is one clear error and workers find the tokenised cache."""
        from brainsearch.data import load_corpus

        load_corpus(self.space.proxy.data, self.space.proxy.vocab_size, self.data_dir)

    def _reconcile(self, study: optuna.Study, reason: str = "worker stopped while the trial ran") -> int:
        """Settle what a dead (or interrupted) process left running; returns how many trials were retried."""
        orphans = self.repo.mark_orphans_crashed(self.search.id, reason)
        self.repo.mark_orphan_seed_runs_crashed(self.search.id, reason)  # trained again when the driver plans them
        for ot in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
            ref = ot.user_attrs.get("bs_trial_id", ot.user_attrs.get("duplicate_of"))
            trial = self.repo.get_trial(int(ref)) if ref is not None else None
            if trial is not None and trial.state not in ("running", "crashed"):
                self._tell(study, ot.number, trial)
            else:
                study.tell(ot.number, state=OptunaState.FAIL)
        retried = 0
        for t in orphans:
            if not t.is_baseline:  # baselines re-run by themselves: none of them finished
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
                retried += 1
        self._inflight.clear()
        self._waiting.clear()
        return retried

    # --- sampler <-> storage -----------------------------------------------------------------------------------------
    def _values(self, trial: Trial) -> list[float] | None:
        """The trial's objective values, in the order of ``objectives`` (None when one is missing)."""
        found = {
            "val_loss": trial.val_loss,
            "step_time": trial.step_time_s,
            "params_activated": trial.params_activated,
            "flops_per_token": trial.cost.get("flops_per_token"),
        }
        values = [found[name] for name in self.settings.objectives]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            return None
        return [float(v) for v in values if v is not None]

    def _tell(self, study: optuna.Study, number: int, trial: Trial) -> None:
        """Tell the sampler how the trial (or the trial it duplicates) went."""
        values = self._values(trial) if trial.state == "completed" else None
        if values is not None:
            study.tell(number, values, skip_if_finished=True)
        elif trial.state == "pruned":
            study.tell(number, state=OptunaState.PRUNED, skip_if_finished=True)
        else:
            study.tell(number, state=OptunaState.FAIL, skip_if_finished=True)

    def _job(self, trial: Trial, *, baseline: str | None = None, optuna_trial_id: int | None = None) -> TrialJob:
        """The job that trains ``trial``."""
        return TrialJob(
            search_id=self.search.id,
            trial_id=trial.id,
            number=trial.number,
            database_url=self.database_url,
            arch=trial.arch,
            settings=self._train_settings(),
            resources=self.resources,
            baseline_name=baseline,
            study_name=self.study_name,
            optuna_trial_id=optuna_trial_id,
            pruner="none" if baseline else self.settings.pruner,
            reference=None if baseline else self.reference,
            max_step_time_ratio=None if baseline else self.space.constraints.max_step_time_ratio,
            weights_path=None
            if self.settings.keep_weights == "none"
            else str(self.store.trial_weights(self.search.id, trial.id)),
            weights_metadata=weights_metadata(self.store.database_id, self.search.id, trial.id),
        )

    def _seed_job(self, trial: Trial, seed: int) -> TrialJob:
        """The job that trains ``trial``'s architecture again with ``seed``, recorded as a seed run: no pruning, no
        sampler, no weights kept."""
        run = self.repo.add_seed_run(search_id=self.search.id, trial_id=trial.id, seed=seed)
        return self._job(trial, baseline=trial.baseline_name).model_copy(
            update={
                "settings": self._train_settings().model_copy(update={"seed": seed}),
                "seed_run_id": run.id,
                "study_name": None,
                "pruner": "none",
                "reference": None,
                "max_step_time_ratio": None,
                "weights_path": None,
            }
        )

    def _missing_seeds(self, trial: Trial, seeds: int) -> list[int]:
        """The seeds of ``trial``'s first ``seeds`` (the search's seed, then the next ones) it has no final run of
        (its own run is the first seed)."""
        done = {
            r.seed
            for r in self.repo.list_seed_runs(self.search.id, [trial.id])
            if r.state not in ("running", "crashed")
        }
        return [seed for seed in other_seeds(self.settings.seed, seeds) if seed not in done]

    def _prune_weights(self) -> None:
        """With ``keep_weights: top_k``, delete the weights of completed trials no longer among the best ``top_k``
        (at least the best one is kept, and the baselines'). A file whose trial is not recorded completed yet (its
        worker writes the weights, then the result) is left alone."""
        if self.settings.keep_weights != "top_k":
            return
        folder = self.store.weights_dir(self.search.id)
        files = {}
        for path in folder.glob("trial-*.safetensors") if folder.is_dir() else ():
            match = re.fullmatch(r"trial-(\d+)\.safetensors", path.name)
            if match:
                files[int(match.group(1))] = path
        if not files:
            return
        # With re-evaluation the top-k is chosen on means from the pool: every trial of the pool keeps its weights.
        keep_n = self.settings.top_k
        if self.settings.top_k_seeds > 1:
            keep_n = max(keep_n, self.settings.reevaluate or 2 * self.settings.top_k)
        best = self.repo.list_trials(self.search.id, state="completed", is_baseline=False, limit=max(1, keep_n)).items
        keep = {t.id for t in best}
        for trial_id, path in files.items():
            if trial_id in keep:
                continue
            trial = self.repo.get_trial(trial_id)
            if trial is not None and trial.state == "completed" and not trial.is_baseline:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _add_trial(self, arch: Architecture, params: dict[str, Any], baseline: str | None = None) -> Trial:
        c = cost(arch, batch_size=self.space.proxy.batch_size)
        return self.repo.add_trial(
            search_id=self.search.id,
            number=self.repo.next_trial_number(self.search.id),
            arch=arch.to_dict(),
            arch_digest=arch.digest,
            pattern=arch.pattern,
            params=params,
            cost=c.model_dump(mode="json"),
            params_activated=c.params_activated,
            is_baseline=baseline is not None,
            baseline_name=baseline,
            worker=self.worker,
        )

    def _plan(self, study: optuna.Study, trial: optuna.Trial) -> Planned:
        """Turn an asked Optuna trial into work: sample its architecture, settle it without training when a
        constraint rules it out or it was trained before, else make the job that trains it."""
        try:
            arch = sample(self.space, trial)
        except ArchitectureError as exc:
            trial.set_user_attr("invalid", str(exc)[:500])
            study.tell(trial.number, state=OptunaState.FAIL)
            self._fruitless += 1
            self._note(f"the sampler proposed an invalid architecture: {exc}")
            return Planned(trial.number)
        digest = arch.digest
        earlier = self.repo.find_trial(self.search.id, digest)
        if earlier is not None:
            trial.set_user_attr("duplicate_of", earlier.id)
            self._tell(study, trial.number, earlier)
            self._fruitless += 1
            return Planned(trial.number)
        if digest in self._inflight:
            trial.set_user_attr("duplicate_of", self._inflight[digest])
            self._waiting.setdefault(digest, []).append(trial.number)
            self._fruitless += 1
            return Planned(trial.number)
        self._fruitless = 0
        record = self._add_trial(arch, dict(trial.params))
        trial.set_user_attr("bs_trial_id", record.id)
        reasons = violations(self.space, arch)
        if reasons:
            record = self.repo.finish_trial(
                record.id, state="pruned", reason="breaks the space's constraints: " + "; ".join(reasons)
            )
            self._tell(study, trial.number, record)
            return Planned(trial.number, counted=True)
        self._inflight[digest] = record.id
        return Planned(trial.number, job=self._job(record, optuna_trial_id=trial._trial_id), counted=True)

    def _settle(self, study: optuna.Study, number: int | None, trial: Trial) -> None:
        """A trained trial finished (its worker recorded it): tell the sampler, and its waiting duplicates."""
        if number is not None:
            self._tell(study, number, trial)
        self._inflight.pop(trial.arch_digest, None)
        for dup in self._waiting.pop(trial.arch_digest, []):
            self._tell(study, dup, trial)
        if trial.state in FAILED_STATES:
            self._consecutive_failures += 1
        else:
            self._consecutive_failures = 0
        if trial.state == "completed":
            self._prune_weights()

    # --- progress ----------------------------------------------------------------------------------------------------
    def _progress(self) -> Progress:
        """Counts of the search's trials (baselines apart) and the best validation loss so far."""
        counts = self.repo.count_trials(self.search.id, is_baseline=False)
        best = self.repo.list_trials(self.search.id, state="completed", is_baseline=False, limit=1).items
        baselines = {t.baseline_name or "?": t.val_loss for t in self.repo.baselines(self.search.id)}
        return Progress.from_counts(
            self.settings.trials,
            counts,
            baselines=baselines,
            best_val_loss=best[0].val_loss if best else None,
            best_number=best[0].number if best else None,
            stage=self._stage,
        )

    def _emit(self) -> None:
        """Tell the progress callback where the search stands."""
        if self._on_progress is not None:
            self._on_progress(self._progress())

    def _note(self, text: str) -> None:
        """Pass a remark about the search (a baseline that failed, an exhausted space) to the note callback."""
        if self._on_note is not None:
            self._on_note(text)

    def _remaining(self) -> int:
        """Trials still to finish before the requested number is reached."""
        # Only the counts: this runs before every proposal, the best trial and baselines are not needed here.
        counts = self.repo.count_trials(self.search.id, is_baseline=False)
        return max(0, self.settings.trials - Progress.from_counts(self.settings.trials, counts).done)

    def _too_many_failures(self) -> bool:
        """Whether the consecutive-failure limit was reached."""
        return self._consecutive_failures >= self.settings.max_consecutive_failures

    def _exhausted(self) -> bool:
        """Whether the sampler keeps proposing architectures already trained."""
        return self._fruitless >= self.max_fruitless_asks

    # --- baselines ---------------------------------------------------------------------------------------------------
    def _baseline_jobs(self) -> list[TrialJob]:
        """Jobs for the baselines not yet trained (a crashed one is trained again)."""
        done = {t.baseline_name for t in self.repo.baselines(self.search.id) if t.state not in ("running", "crashed")}
        jobs = []
        for name, arch in baseline_architectures(self.space).items():
            if name not in done:
                jobs.append(self._job(self._add_trial(arch, {}, baseline=name), baseline=name))
        return jobs

    def _load_reference(self) -> None:
        """The baseline the candidates are compared with (``constraints.baseline``), once it has trained: its newest
        completed run (:func:`~brainsearch.search.standings.reference_trial`; a run that crashed before a resume
        trained it again is not it)."""
        name = self.space.constraints.baseline
        trial = self._reference_trial()
        if trial is None:
            if self.settings.pruner == "baseline" or self.space.constraints.max_step_time_ratio is not None:
                tried = [t for t in self.repo.baselines(self.search.id) if t.baseline_name == name]
                why = f"it ended {tried[-1].state}: {tried[-1].reason}" if tried else "the space has no MoE layers"
                self._note(f"no {name} baseline to compare with ({why}); its pruning rules are off for this search")
            self.reference = None
            return
        earlier = [t for t in self.repo.baselines(self.search.id) if t.baseline_name == name and t.id < trial.id]
        if earlier and (self.settings.pruner == "baseline" or self.space.constraints.max_step_time_ratio is not None):
            self._note(
                f"the {name} baseline's run #{trial.number} judges the trials "
                f"(its earlier run #{earlier[-1].number} ended {earlier[-1].state})"
            )
        flops = int(trial.cost.get("flops_per_token", 0))
        budget = trial_budget(self.space)
        curve = [
            (
                budget_fraction(budget, CurvePoint(**vars(p)), flops),
                p.train_loss,
            )
            for p in self.repo.trial_curve(trial.id)
        ]
        self.reference = BaselineRef(name=name, step_time_s=trial.step_time_s, curve=curve, arch=trial.arch)

    # --- the loop ----------------------------------------------------------------------------------------------------
    def run(self, executor: Executor | None = None) -> Search:
        """Run (or resume) the search to the end with ``executor`` (default: the one the search's run options name,
        local processes or Ray actors, closed at the end). Ctrl-C marks the search cancelled after settling its
        running trials; ``should_stop`` (polled between events) cancels it, requeues it, or drops it (lease lost)."""
        own = executor is None
        if executor is None:  # workers start (torch import, corpus load) while the driver sets up
            try:
                executor = self._make_executor()
            except InputError as exc:  # Ray cannot be started or reached: the search cannot run as submitted
                self.repo.set_search_status(self.search.id, "failed", error=str(exc)[:2000])
                raise
            executor.prestart(self.space.proxy.data, self.space.proxy.vocab_size, self.data_dir)
        try:
            self._check_data()
        except BaseException:
            if own:
                executor.close()
            raise
        self.repo.set_search_status(self.search.id, "running")
        study = self._open_study()
        retried = self._reconcile(study)
        if retried:
            self._note(f"{retried} trial(s) left running by a stopped worker were marked crashed and will be retried")
        try:
            try:
                self._run_baselines(executor)
                self._loop(study, executor)
                if not self._too_many_failures():
                    self._reevaluate(executor)
                    self._scale_up(executor)
            finally:  # nothing of this search runs past here: a stopped or failed search's jobs are killed
                if own:
                    executor.close()
                else:
                    self._cancel_running(executor)
        except _Stopped as stop:
            if stop.kind == "lost":
                self._note("another worker took this search over (our lease expired); leaving it to that worker")
                return self.repo.get_search(self.search.id) or self.search
            if stop.kind == "cancel":
                self._reconcile(study, reason="the search was cancelled while the trial ran")
                return self.repo.set_search_status(self.search.id, "cancelled", error="cancelled by a user")
            self._reconcile(study, reason="the worker shut down while the trial ran; it will be retried")
            return self.repo.set_search_status(self.search.id, "queued")
        except KeyboardInterrupt:
            self._reconcile(study, reason="the search was interrupted while the trial ran")
            self.repo.set_search_status(self.search.id, "cancelled", error="interrupted")
            raise
        except BaseException as exc:
            self._reconcile(study, reason=f"the search stopped: {exc.__class__.__name__}")
            self.repo.set_search_status(self.search.id, "failed", error=f"{exc.__class__.__name__}: {exc}"[:2000])
            raise
        return self._finish()

    def _finish(self) -> Search:
        """Mark the search completed or failed from how its trials went."""
        if self._too_many_failures():
            error = f"{self._consecutive_failures} trials failed in a row (max_consecutive_failures)"
            return self.repo.set_search_status(self.search.id, "failed", error=error)
        if self._exhausted():
            self._note(
                f"stopped early: the last {self.max_fruitless_asks} proposals were all architectures already tried"
            )
        return self.repo.set_search_status(self.search.id, "completed")

    def _make_executor(self) -> Executor:
        """The executor the search's run options ask for, with ``concurrency`` workers of ``self.resources``."""
        if self.options.executor == "ray":
            from brainsearch.search.ray_executor import RayExecutor  # Ray: only when asked for

            return RayExecutor(self.settings.concurrency, self.resources, self.options.ray_address)
        memory = int(self.options.memory_per_trial) if self.options.memory_per_trial is not None else None
        return LocalExecutor(self.settings.concurrency, self.resources.cpus, memory)

    def _check_stop(self) -> None:
        kind = self._should_stop() if self._should_stop is not None else None
        if kind is not None:
            raise _Stopped(kind)

    def _cancel_running(self, executor: Executor, timeout: float = 30.0) -> None:
        """Kill this search's jobs still running on an executor it does not own, and collect them, so none writes a
        result after the search was settled."""
        for job in list(self._running.values()):
            executor.cancel(job)
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            self._collect(executor)

    def _drain(self, executor: Executor, jobs: Iterable[Job]) -> Iterator[Finished]:
        """Run ``jobs`` on the executor's free slots and yield each as it finishes (a stop request raises between
        events). Jobs are taken from ``jobs`` only when a slot is free (a seed run's row is written as it starts)."""
        pending = iter(jobs)
        more = True
        while more or executor.running:
            self._check_stop()
            while more and executor.free > 0:
                job = next(pending, None)
                if job is None:
                    more = False
                else:
                    self._submit(executor, job)
            yield from self._collect(executor)

    def _submit(self, executor: Executor, job: Job) -> None:
        executor.submit(job)
        self._running[id(job)] = job

    def _collect(self, executor: Executor) -> list[Finished]:
        done = executor.wait(timeout=1.0)
        for fin in done:
            self._running.pop(id(fin.job), None)
        return done

    def _run_baselines(self, executor: Executor) -> None:
        self._emit()
        for fin in self._drain(executor, self._baseline_jobs()):
            trial = self._finished(fin)
            if trial.state != "completed":
                self._note(f"baseline {trial.baseline_name} ended {trial.state}: {trial.reason}")
            self._emit()
        self._load_reference()

    def _reevaluate(self, executor: Executor) -> None:
        """Train the best trials again with their other ``top_k_seeds`` seeds (the pool of
        :func:`~brainsearch.search.noise.reevaluation_pool`), so the top-k is chosen on means; the reference baseline
        trains every seed they do (their held-out seeds are compared with its runs of the same seeds)."""
        pending = [
            (trial, seed)
            for trial in reevaluation_pool(self.repo, self.search.id, self.space)
            for seed in self._missing_seeds(trial, self.settings.top_k_seeds)
        ]
        if not pending:
            return
        reference = self._reference_trial()
        if reference is not None and self.settings.top_k_seeds > self.settings.baseline_seeds:
            pending = [
                (reference, seed) for seed in self._missing_seeds(reference, self.settings.top_k_seeds)
            ] + pending
        self._note(f"re-evaluating the best trials: {len(pending)} run(s) with other seeds")
        self._stage = f"re-evaluation 0/{len(pending)}"
        self._emit()
        jobs = (self._seed_job(trial, seed) for trial, seed in pending)
        for finished, fin in enumerate(self._drain(executor, jobs), start=1):
            self._seed_finished(fin)
            self._stage = f"re-evaluation {finished}/{len(pending)}"
            self._emit()
        self._stage = None
        self._prune_weights()

    def _scale_up(self, executor: Executor) -> None:
        """The scale-up stage on the executor's slots."""
        from brainsearch.search.hardware import probe_hardware

        pending, notes = scale_up_jobs(
            self.repo,
            self.search.id,
            self.space,
            self.database_url,
            self.options.device,
            self.resources,
            hardware=probe_hardware(self.options.device, self.options.executor),
            store=self.store,
            launcher="ray" if self.options.executor == "ray" else "torchrun",
            proxy_settings=self._train_settings(),
        )
        for text in notes:
            self._note(f"scale-up: {text}")
        if not pending:
            return
        rungs = ", ".join(dict.fromkeys(j.rung for j in pending))
        self._note(f"scale-up: {len(pending)} candidate run(s) on {rungs}")
        self._stage = f"scale-up 0/{len(pending)}"
        self._emit()
        for finished, fin in enumerate(self._drain(executor, pending), start=1):
            assert isinstance(fin.job, CandidateJob)
            count = f"{finished}/{len(pending)}"
            self._stage = f"scale-up {count}"
            self._emit()
            if fin.outcome is None:
                record_crash(self.repo, fin.job, fin.crash or "worker died")
                what = f"crashed ({fin.crash})"
            elif fin.outcome.val_loss is not None:
                what = f"val_loss {fin.outcome.val_loss:.4f}" + (" (its proxy run)" if fin.job.reuse_proxy else "")
            else:
                what = f"{fin.outcome.state}: {fin.outcome.reason}"
            self._note(f"scale-up {count}: {fin.job.label}: {what}")

    def _finished(self, fin: Finished) -> Trial:
        if fin.outcome is None:
            return self.repo.finish_trial(fin.job.trial_id, state="crashed", reason=fin.crash)
        trial = self.repo.get_trial(fin.job.trial_id)
        if trial is None:
            raise StorageError(f"trial {fin.job.trial_id} vanished from the database")
        return trial

    def _is_seed_run(self, job: Job) -> bool:
        return isinstance(job, TrialJob) and job.seed_run_id is not None

    def _seed_finished(self, fin: Finished) -> None:
        """A seed run ended: a dead worker's is recorded crashed (it trains again when the search resumes)."""
        assert isinstance(fin.job, TrialJob) and fin.job.seed_run_id is not None
        if fin.outcome is None:
            run = self.repo.finish_seed_run(fin.job.seed_run_id, state="crashed", reason=fin.crash)
        else:
            run = next(
                r
                for r in self.repo.list_seed_runs(self.search.id, [fin.job.trial_id])
                if r.seed == fin.job.settings.seed
            )
        if run.state != "completed":
            self._note(f"{fin.job.label} ended {run.state}: {run.reason}")

    def _reference_trial(self) -> Trial | None:
        """The reference baseline's completed run (:func:`~brainsearch.search.standings.reference_trial`)."""
        return reference_trial(self.repo, self.search.id, self.space.constraints.baseline)

    def _baseline_seeds(self) -> list[tuple[Trial, int]]:
        """The reference baseline's seeds still to train, after its first run completed."""
        done = self._reference_trial()
        if done is None:
            return []
        return [(done, seed) for seed in self._missing_seeds(done, self.settings.baseline_seeds)]

    def _loop(self, study: optuna.Study, executor: Executor) -> None:
        numbers: dict[int, int] = {}  # brainsearch trial id -> Optuna number, for trials in flight
        # The baseline's other seeds, one after each trial submitted (and the rest once no trial is needed).
        seeds = self._baseline_seeds()
        seeds_running = 0
        last_was_trial = True
        while True:
            self._check_stop()
            stop = self._too_many_failures() or self._exhausted()
            needed = self._remaining() - (executor.running - seeds_running)
            while executor.free > 0:
                if seeds and (last_was_trial or stop or needed <= 0):
                    trial, seed = seeds.pop(0)
                    self._submit(executor, self._seed_job(trial, seed))
                    seeds_running += 1
                    last_was_trial = False
                    continue
                if stop or needed <= 0:
                    break
                planned = self._plan(study, study.ask())
                if planned.job is not None:
                    self._submit(executor, planned.job)
                    numbers[planned.job.trial_id] = planned.number
                    last_was_trial = True
                if planned.counted:
                    needed -= 1
                stop = self._too_many_failures() or self._exhausted()
            if not executor.running:
                break
            for fin in self._collect(executor):
                if self._is_seed_run(fin.job):
                    seeds_running -= 1
                    self._seed_finished(fin)
                else:
                    self._settle(study, numbers.pop(fin.job.trial_id, None), self._finished(fin))
            self._emit()
        for digest, dups in self._waiting.items():  # duplicates of trials that never finished
            for number in dups:
                study.tell(number, state=OptunaState.FAIL, skip_if_finished=True)
            self._note(f"{len(dups)} duplicate proposal(s) of {digest} were failed: the original did not finish")
        self._waiting.clear()
        self._emit()
