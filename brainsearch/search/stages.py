"""The stages of a search, each a generator of jobs that the driver's one loop drains through the executor.

A stage (:class:`Stage`) says which jobs it wants trained, in order, and what to do when each finishes; the driver
(:mod:`brainsearch.search.driver`) runs the stages of :data:`STAGES` one after the other on the same executor slots,
pulling a stage's next job only when a slot is free. A stage's generator may yield ``None``: nothing to start now,
ask again once one of its jobs has finished (the trials stage does, while the trials in flight decide whether more
are needed). Adding a stage is a new class here and one entry in :data:`STAGES`; no other stage changes.

1. :class:`Baselines`: the GLaM and dense blocks at the proxy scale (:mod:`brainsearch.space.baselines`) once; then
   the reference baseline the trials are judged against is loaded.
2. :class:`Trials`: proposals from the sampler until ``trials`` of them have finished (crashed ones do not count and
   are retried), with the reference baseline's other ``baseline_seeds`` seeds interleaved (the search's measured
   seed noise, :mod:`brainsearch.search.noise`). A sampled architecture that breaks a static constraint is pruned
   with the reason before any training; one already trained (same digest) is not trained again (the sampler is told
   the recorded result); a duplicate of a trial in flight holds no worker and is told that trial's result.
3. :class:`Reevaluation`: the ``reevaluate`` best trials by their first value train again with the other
   ``top_k_seeds`` seeds, so the top-k is chosen on means (the sampler saw, and keeps, the first values only).
4. :class:`ScaleUp`: the top-k trials and the reference baseline trained again at each rung of the ladder
   (:mod:`brainsearch.search.scaleup`).

Stages after the trials do not run once ``max_consecutive_failures`` trials failed in a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from brainsearch.errors import ArchitectureError
from brainsearch.search.executor import Finished
from brainsearch.search.jobs import CandidateJob, Job, TrialJob
from brainsearch.search.noise import reevaluation_pool
from brainsearch.search.runner import record_crash
from brainsearch.search.scaleup import scale_up_jobs
from brainsearch.search.submission import FAILED_STATES
from brainsearch.space.baselines import baseline_architectures
from brainsearch.space.constraints import violations
from brainsearch.space.sample import sample
from brainsearch.storage import Trial

if TYPE_CHECKING:
    from brainsearch.search.driver import SearchDriver

__all__ = ["STAGES", "Baselines", "Reevaluation", "ScaleUp", "Stage", "Trials"]


class Stage(Protocol):
    """One stage of a search (see the module docstring)."""

    def jobs(self) -> Iterator[Job | None]:
        """The stage's jobs, pulled one at a time as slots free up; ``None``: wait for one of them to finish."""
        ...

    def finished(self, fin: Finished) -> None:
        """One of the stage's jobs ended (its worker recorded it, or died: ``fin.outcome`` is None)."""
        ...

    def close(self) -> None:
        """Every job of the stage has ended."""
        ...


class Baselines:
    """The baselines not yet trained (a crashed one is trained again); then the reference baseline is loaded."""

    def __init__(self, run: SearchDriver) -> None:
        self.run = run

    def jobs(self) -> Iterator[Job | None]:
        run = self.run
        done = {t.baseline_name for t in run.repo.baselines(run.search.id) if t.state not in ("running", "crashed")}
        for name, arch in baseline_architectures(run.space).items():
            if name not in done:
                yield run.trial_job(run.add_trial(arch, {}, baseline=name), baseline=name)

    def finished(self, fin: Finished) -> None:
        trial = self.run.finished_trial(fin)
        if trial.state != "completed":
            self.run.note(f"baseline {trial.baseline_name} ended {trial.state}: {trial.reason}")

    def close(self) -> None:
        self.run.load_reference()


class Trials:
    """Proposals from the sampler until the requested number finished, the reference baseline's seed runs
    interleaved: one after each trial started, the rest once no trial is needed."""

    def __init__(self, run: SearchDriver) -> None:
        self.run = run
        self._numbers: dict[int, int] = {}  # brainsearch trial id -> Optuna number, for trials in flight
        self._inflight: dict[str, int] = {}  # digest -> brainsearch trial id, trials being trained
        self._seeds_running = 0

    def jobs(self) -> Iterator[Job | None]:
        run = self.run
        seeds = run.baseline_seed_runs()
        last_was_trial = True
        while True:
            stop = run.too_many_failures() or run.exhausted()
            needed = run.remaining() - len(self._numbers)
            if seeds and (last_was_trial or stop or needed <= 0):
                trial, seed = seeds.pop(0)
                self._seeds_running += 1
                last_was_trial = False
                yield run.seed_job(trial, seed)
            elif not (stop or needed <= 0):
                job = self._propose()
                if job is not None:
                    last_was_trial = True
                    yield job
            elif self._numbers or self._seeds_running:
                yield None  # a trial in flight may fail and need another
            else:
                return

    def _propose(self) -> TrialJob | None:
        """Ask the sampler for a proposal and turn it into work: sample its architecture, settle it without training
        when a constraint rules it out or it was trained before (or waits for a duplicate in flight), else the job
        that trains it."""
        run, study = self.run, self.run.study
        trial = study.ask()
        try:
            arch = sample(run.space, trial)
        except ArchitectureError as exc:
            trial.set_user_attr("invalid", str(exc)[:500])
            study.fail(trial.number)
            run.fruitless += 1
            run.note(f"the sampler proposed an invalid architecture: {exc}")
            return None
        study.record_lineage(trial)
        earlier = run.repo.find_trial(run.search.id, arch.digest)
        if earlier is not None:
            trial.set_user_attr("duplicate_of", earlier.id)
            study.tell(trial.number, earlier)
            run.fruitless += 1
            return None
        if arch.digest in self._inflight:
            trial.set_user_attr("duplicate_of", self._inflight[arch.digest])
            study.wait_for(arch.digest, trial.number)
            run.fruitless += 1
            return None
        run.fruitless = 0
        record = run.add_trial(arch, dict(trial.params))
        trial.set_user_attr("bs_trial_id", record.id)
        reasons = violations(run.space, arch)
        if reasons:
            record = run.repo.finish_trial(
                record.id, state="pruned", reason="breaks the space's constraints: " + "; ".join(reasons)
            )
            study.tell(trial.number, record)
            return None
        self._inflight[arch.digest] = record.id
        self._numbers[record.id] = trial.number
        return run.trial_job(record, optuna_number=trial.number)

    def finished(self, fin: Finished) -> None:
        run = self.run
        if isinstance(fin.job, TrialJob) and fin.job.seed_run_id is not None:
            self._seeds_running -= 1
            run.seed_run_finished(fin)
            return
        trial = run.finished_trial(fin)
        run.study.settle(self._numbers.pop(trial.id, None), trial)
        self._inflight.pop(trial.arch_digest, None)
        run.consecutive_failures = run.consecutive_failures + 1 if trial.state in FAILED_STATES else 0
        if trial.state == "completed":
            run.prune_weights()

    def close(self) -> None:
        self.run.study.fail_waiting(self.run.note)


class Reevaluation:
    """The best trials trained again with their other ``top_k_seeds`` seeds (the pool of
    :func:`~brainsearch.search.noise.reevaluation_pool`), so the top-k is chosen on means; the reference baseline
    trains every seed they do (their held-out seeds are compared with its runs of the same seeds)."""

    def __init__(self, run: SearchDriver) -> None:
        self.run = run
        self._done = 0
        self._total = 0

    def _pending(self) -> list[tuple[Trial, int]]:
        run = self.run
        settings = run.settings
        pending = [
            (trial, seed)
            for trial in reevaluation_pool(run.repo, run.search.id, run.space)
            for seed in run.missing_seeds(trial, settings.top_k_seeds)
        ]
        reference = run.reference_trial()
        if pending and reference is not None and settings.top_k_seeds > settings.baseline_seeds:
            pending = [(reference, seed) for seed in run.missing_seeds(reference, settings.top_k_seeds)] + pending
        return pending

    def jobs(self) -> Iterator[Job | None]:
        run = self.run
        if run.too_many_failures():
            return
        pending = self._pending()
        if not pending:
            return
        self._total = len(pending)
        run.note(f"re-evaluating the best trials: {len(pending)} run(s) with other seeds")
        run.show_stage(f"re-evaluation 0/{self._total}")
        for trial, seed in pending:
            yield run.seed_job(trial, seed)

    def finished(self, fin: Finished) -> None:
        self._done += 1
        self.run.seed_run_finished(fin)
        self.run.show_stage(f"re-evaluation {self._done}/{self._total}")

    def close(self) -> None:
        if self._total:
            self.run.show_stage(None)
            self.run.prune_weights()


class ScaleUp:
    """The scale-up stage: its candidate runs on the executor's slots."""

    def __init__(self, run: SearchDriver) -> None:
        self.run = run
        self._done = 0
        self._total = 0

    def jobs(self) -> Iterator[Job | None]:
        run = self.run
        if run.too_many_failures():
            return
        from brainsearch.search.hardware import probe_hardware

        options = run.options
        pending, notes = scale_up_jobs(
            run.repo,
            run.search.id,
            run.space,
            run.database_url,
            options.device,
            run.resources,
            hardware=probe_hardware(options.device, options.executor),
            store=run.store,
            launcher="ray" if options.executor == "ray" else "torchrun",
            proxy_settings=run.train_settings(),
            data_dir=run.data_dir,
        )
        for text in notes:
            run.note(f"scale-up: {text}")
        if not pending:
            return
        self._total = len(pending)
        run.note(f"scale-up: {len(pending)} candidate run(s) on {', '.join(dict.fromkeys(j.rung for j in pending))}")
        run.show_stage(f"scale-up 0/{self._total}")
        yield from pending

    def finished(self, fin: Finished) -> None:
        assert isinstance(fin.job, CandidateJob)
        run = self.run
        self._done += 1
        count = f"{self._done}/{self._total}"
        run.show_stage(f"scale-up {count}")
        if fin.outcome is None:
            record_crash(run.repo, fin.job, fin.crash or "worker died")
            what = f"crashed ({fin.crash})"
        elif fin.outcome.val_loss is not None:
            what = f"val_loss {fin.outcome.val_loss:.4f}" + (" (its proxy run)" if fin.job.reuse_proxy else "")
        else:
            what = f"{fin.outcome.state}: {fin.outcome.reason}"
        run.note(f"scale-up {count}: {fin.job.label}: {what}")

    def close(self) -> None:
        pass


# The stages of every search, in order: each is made with the run it belongs to.
STAGES: tuple[Callable[[SearchDriver], Stage], ...] = (Baselines, Trials, Reevaluation, ScaleUp)
