"""The search driver: from a stored search to a ranked leaderboard, resumable from the database alone.

The driver runs the stages of a search (:mod:`brainsearch.search.stages`: baselines, trials, re-evaluation,
scale-up) one after the other through one loop that drains each stage's jobs through one executor
(:mod:`brainsearch.search.executor`: local worker processes or Ray actors, chosen by the search's run options), whose
workers train each job and record it (:mod:`brainsearch.search.runner`). Before the stages it settles what a dead
process left behind: brainsearch trials still ``running`` become ``crashed`` and their parameters are proposed again
(retried); the search's Optuna study (:mod:`brainsearch.search.study`) is told the result a worker had recorded, and
fails the rest. It fails the search after ``max_consecutive_failures`` failed trials in a row.

The driver is also what the stages share: the search, its space and settings, its study, the jobs that train a
trial or a seed run, the reference baseline, the counters that stop the trials, the notes and the progress.

Trained proxy weights are kept in the run store (:mod:`brainsearch.store`: under the data directory, in a folder
named by the database; ``search.keep_weights``: the best ``top_k`` and the baselines by default, pruned as the
leaderboard changes), for the ``safetensors`` export and Lifelong-MoE expansion.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna

from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture
from brainsearch.errors import InputError, StorageError
from brainsearch.search.executor import Executor, Finished
from brainsearch.search.jobs import BaselineRef, CandidateJob, Job, TrialJob
from brainsearch.search.local import LocalExecutor
from brainsearch.search.noise import other_seeds
from brainsearch.search.pruning import budget_fraction
from brainsearch.search.stages import STAGES, Stage
from brainsearch.search.standings import reference_trial
from brainsearch.search.study import StudyBridge
from brainsearch.search.submission import (
    Progress,
    RunOptions,
    stored_space,
    study_name,
    trial_train_settings,
)
from brainsearch.space.baselines import trial_budget
from brainsearch.storage import Repository, Search, Trial
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
        self.consecutive_failures = 0
        self.fruitless = 0  # proposals in a row that were architectures already trained (or in flight)
        self.max_fruitless_asks = max_fruitless_asks
        self._stage: str | None = None
        self._running: dict[int, Job] = {}  # id(job) -> job, this search's jobs on the executor
        self.resources = self.options.resources(self.settings.concurrency)
        self.data_dir = data_dir  # the run store's root and the corpus cache's
        self.store = RunStore.of(data_dir, repo)
        self.store.describe(repo.engine.url.render_as_string(hide_password=True))
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    # --- what the stages share: jobs ----------------------------------------------------------------------------------
    def train_settings(self) -> TrainSettings:
        """How every trial of this search trains."""
        settings = trial_train_settings(self.space, self.settings.seed, self.options.device)
        limits = [x for x in (settings.memory_limit_bytes, self.options.memory_per_trial) if x is not None]
        update: dict[str, Any] = {"compile": self.options.compile, "data_dir": self.data_dir}
        if limits:
            update["memory_limit_bytes"] = min(limits)
        return settings.model_copy(update=update)

    def add_trial(self, arch: Architecture, params: dict[str, Any], baseline: str | None = None) -> Trial:
        """Record a new trial of ``arch`` (a baseline when ``baseline`` names it), running."""
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

    def trial_job(self, trial: Trial, *, baseline: str | None = None, optuna_number: int | None = None) -> TrialJob:
        """The job that trains ``trial`` (judged by its pruning rules unless it is a baseline)."""
        return TrialJob(
            search_id=self.search.id,
            trial_id=trial.id,
            number=trial.number,
            database_url=self.database_url,
            arch=trial.arch,
            settings=self.train_settings(),
            resources=self.resources,
            baseline_name=baseline,
            study_name=self.study_name,
            optuna_number=optuna_number,
            pruner="none" if baseline else self.settings.pruner,
            reference=None if baseline else self.reference,
            max_step_time_ratio=None if baseline else self.space.constraints.max_step_time_ratio,
            weights_path=None
            if self.settings.keep_weights == "none"
            else str(self.store.trial_weights(self.search.id, trial.id)),
            weights_metadata=weights_metadata(self.store.database_id, self.search.id, trial.id),
        )

    def seed_job(self, trial: Trial, seed: int) -> TrialJob:
        """The job that trains ``trial``'s architecture again with ``seed``, recorded as a seed run: no pruning, no
        sampler, no weights kept."""
        run = self.repo.add_seed_run(search_id=self.search.id, trial_id=trial.id, seed=seed)
        return self.trial_job(trial, baseline=trial.baseline_name).model_copy(
            update={
                "settings": self.train_settings().model_copy(update={"seed": seed}),
                "seed_run_id": run.id,
                "study_name": None,
                "pruner": "none",
                "reference": None,
                "max_step_time_ratio": None,
                "weights_path": None,
            }
        )

    def missing_seeds(self, trial: Trial, seeds: int) -> list[int]:
        """The seeds of ``trial``'s first ``seeds`` (the search's seed, then the next ones) it has no final run of
        (its own run is the first seed)."""
        done = {
            r.seed
            for r in self.repo.list_seed_runs(self.search.id, [trial.id])
            if r.state not in ("running", "crashed")
        }
        return [seed for seed in other_seeds(self.settings.seed, seeds) if seed not in done]

    # --- what the stages share: outcomes ------------------------------------------------------------------------------
    def finished_trial(self, fin: Finished) -> Trial:
        """The trial a finished job recorded (recorded crashed here when its worker died)."""
        if fin.outcome is None:
            return self.repo.finish_trial(fin.job.trial_id, state="crashed", reason=fin.crash)
        trial = self.repo.get_trial(fin.job.trial_id)
        if trial is None:
            raise StorageError(f"trial {fin.job.trial_id} vanished from the database")
        return trial

    def seed_run_finished(self, fin: Finished) -> None:
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
            self.note(f"{fin.job.label} ended {run.state}: {run.reason}")

    def prune_weights(self) -> None:
        """With ``keep_weights: top_k``, delete the weights of completed trials no longer among the best ``top_k``
        (at least the best one is kept, and the baselines'; with re-evaluation, every trial of its pool). A file
        whose trial is not recorded completed yet (its worker writes the weights, then the result) is left alone."""
        if self.settings.keep_weights != "top_k":
            return
        keep_n = self.settings.top_k
        if self.settings.top_k_seeds > 1:
            keep_n = max(keep_n, self.settings.reevaluate or 2 * self.settings.top_k)
        best = self.repo.list_trials(self.search.id, state="completed", is_baseline=False, limit=max(1, keep_n)).items

        def prunable(trial_id: int) -> bool:
            trial = self.repo.get_trial(trial_id)
            return trial is not None and trial.state == "completed" and not trial.is_baseline

        self.store.prune_weights(self.search.id, {t.id for t in best}, prunable)

    # --- what the stages share: the reference baseline ----------------------------------------------------------------
    def reference_trial(self) -> Trial | None:
        """The reference baseline's completed run (:func:`~brainsearch.search.standings.reference_trial`)."""
        return reference_trial(self.repo, self.search.id, self.space.constraints.baseline)

    def baseline_seed_runs(self) -> list[tuple[Trial, int]]:
        """The reference baseline's seeds still to train, after its first run completed."""
        done = self.reference_trial()
        if done is None:
            return []
        return [(done, seed) for seed in self.missing_seeds(done, self.settings.baseline_seeds)]

    def load_reference(self) -> None:
        """The baseline the candidates are compared with (``constraints.baseline``), once it has trained: its newest
        completed run (:func:`~brainsearch.search.standings.reference_trial`; a run that crashed before a resume
        trained it again is not it)."""
        name = self.space.constraints.baseline
        judged = self.settings.pruner == "baseline" or self.space.constraints.max_step_time_ratio is not None
        trial = self.reference_trial()
        if trial is None:
            if judged:
                tried = [t for t in self.repo.baselines(self.search.id) if t.baseline_name == name]
                why = f"it ended {tried[-1].state}: {tried[-1].reason}" if tried else "the space has no MoE layers"
                self.note(f"no {name} baseline to compare with ({why}); its pruning rules are off for this search")
            self.reference = None
            return
        earlier = [t for t in self.repo.baselines(self.search.id) if t.baseline_name == name and t.id < trial.id]
        if earlier and judged:
            self.note(
                f"the {name} baseline's run #{trial.number} judges the trials "
                f"(its earlier run #{earlier[-1].number} ended {earlier[-1].state})"
            )
        flops = int(trial.cost.get("flops_per_token", 0))
        budget = trial_budget(self.space)
        curve = [
            (budget_fraction(budget, CurvePoint(**vars(p)), flops), p.train_loss)
            for p in self.repo.trial_curve(trial.id)
        ]
        self.reference = BaselineRef(name=name, step_time_s=trial.step_time_s, curve=curve, arch=trial.arch)

    # --- what the stages share: the trials' counters ------------------------------------------------------------------
    def remaining(self) -> int:
        """Trials still to finish before the requested number is reached."""
        # Only the counts: this runs before every proposal, the best trial and baselines are not needed here.
        counts = self.repo.count_trials(self.search.id, is_baseline=False)
        return max(0, self.settings.trials - Progress.from_counts(self.settings.trials, counts).done)

    def too_many_failures(self) -> bool:
        """Whether the consecutive-failure limit was reached."""
        return self.consecutive_failures >= self.settings.max_consecutive_failures

    def exhausted(self) -> bool:
        """Whether the sampler keeps proposing architectures already trained."""
        return self.fruitless >= self.max_fruitless_asks

    # --- what the stages share: notes and progress --------------------------------------------------------------------
    def note(self, text: str) -> None:
        """Pass a remark about the search (a baseline that failed, an exhausted space) to the note callback."""
        if self._on_note is not None:
            self._on_note(text)

    def show_stage(self, label: str | None) -> None:
        """Name the stage in the progress (``re-evaluation 2/6``; None: the trials' counts say it) and report it."""
        self._stage = label
        self._emit()

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

    # --- the run ------------------------------------------------------------------------------------------------------
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
        self.study = StudyBridge(self.database_url, self.study_name, self.settings)
        retried = self._reconcile()
        if retried:
            self.note(f"{retried} trial(s) left running by a stopped worker were marked crashed and will be retried")
        try:
            try:
                for make in STAGES:
                    self._drain(executor, make(self))
            finally:  # nothing of this search runs past here: a stopped or failed search's jobs are killed
                if own:
                    executor.close()
                else:
                    self._cancel_running(executor)
        except _Stopped as stop:
            if stop.kind == "lost":
                self.note("another worker took this search over (our lease expired); leaving it to that worker")
                return self.repo.get_search(self.search.id) or self.search
            if stop.kind == "cancel":
                self._reconcile(reason="the search was cancelled while the trial ran")
                return self.repo.set_search_status(self.search.id, "cancelled", error="cancelled by a user")
            self._reconcile(reason="the worker shut down while the trial ran; it will be retried")
            return self.repo.set_search_status(self.search.id, "queued")
        except KeyboardInterrupt:
            self._reconcile(reason="the search was interrupted while the trial ran")
            self.repo.set_search_status(self.search.id, "cancelled", error="interrupted")
            raise
        except BaseException as exc:
            self._reconcile(reason=f"the search stopped: {exc.__class__.__name__}")
            self.repo.set_search_status(self.search.id, "failed", error=f"{exc.__class__.__name__}: {exc}"[:2000])
            raise
        return self._finish()

    def _check_data(self) -> None:
        """Load the corpus once here, so bad data is one clear error and workers find the tokenised cache."""
        from brainsearch.data import load_corpus

        load_corpus(self.space.proxy.data, self.space.proxy.vocab_size, self.data_dir)

    def _reconcile(self, reason: str = "worker stopped while the trial ran") -> int:
        """Settle what a dead (or interrupted) process left running; returns how many trials were retried."""
        orphans = self.repo.mark_orphans_crashed(self.search.id, reason)
        self.repo.mark_orphan_seed_runs_crashed(self.search.id, reason)  # trained again when a stage plans them
        self.study.reconcile(self.repo.get_trial)
        retried = 0
        for t in orphans:
            if not t.is_baseline:  # baselines re-run by themselves: none of them finished
                self.study.retry(t.params, t.number)
                retried += 1
        return retried

    def _finish(self) -> Search:
        """Mark the search completed or failed from how its trials went."""
        if self.too_many_failures():
            error = f"{self.consecutive_failures} trials failed in a row (max_consecutive_failures)"
            return self.repo.set_search_status(self.search.id, "failed", error=error)
        if self.exhausted():
            self.note(
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

    def _drain(self, executor: Executor, stage: Stage) -> None:
        """The one loop: run ``stage``'s jobs on the executor's free slots (a job is taken only when a slot is free,
        so a seed run's row is written as it starts), hand each to the stage as it finishes, report progress, and
        close the stage when all have ended. A stop request raises between events."""
        self._emit()
        pending = stage.jobs()
        more = True
        while True:
            self._check_stop()
            waiting = False
            while more and executor.free > 0:
                job = next(pending, _END)
                if job is _END:
                    more = False
                elif job is None:
                    waiting = True
                    break
                else:
                    assert isinstance(job, TrialJob | CandidateJob)
                    executor.submit(job)
                    self._running[id(job)] = job
            if not executor.running:
                if not more:
                    break
                if waiting:
                    raise RuntimeError(f"{type(stage).__name__} waits for a job while none of its jobs runs")
                continue
            for fin in self._collect(executor):
                stage.finished(fin)
            self._emit()
        stage.close()

    def _collect(self, executor: Executor) -> list[Finished]:
        done = executor.wait(timeout=1.0)
        for fin in done:
            self._running.pop(id(fin.job), None)
        return done


_END = object()  # a stage's generator is exhausted
