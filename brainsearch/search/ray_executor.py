"""The Ray executor (:class:`~brainsearch.search.executor.Executor`): jobs run on long-lived Ray actors.

Each actor is a worker process on some node of the cluster holding one run's resources (``num_cpus`` = its torch
threads, ``num_gpus``); it imports torch and loads the corpus once, then runs jobs one at a time through
:func:`brainsearch.search.runner.run_job`, which records each outcome in the database itself. The search driver's
loop is the same as with the local executor: Ray only places the workers. An actor that dies (its node lost, the
OOM killer) fails its own job, reported as crashed, and is replaced for the next one. A job asking for more CPUs or
GPUs than the whole cluster has is refused at once instead of waiting forever to be placed.

A run that spans several workers (``Resources.workers`` > 1, a sharded scale-up rung) runs on an actor that holds
no resources of its own: its job launches the gang of training workers through Ray Train's ``TorchTrainer`` (one
worker per GPU, :mod:`brainsearch.train.launch`), which Ray places and starts together.

Ray is started here on demand (a local Ray for this search, shut down on :meth:`RayExecutor.close`) or reached at
``ray_address``. A cluster needs brainsearch installed on its nodes and a database they can all reach (PostgreSQL; a
SQLite file only on one machine).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainsearch.errors import InputError, Problem
from brainsearch.search.executor import Finished, worker_environment
from brainsearch.search.jobs import Job, Resources, TrialOutcome

__all__ = ["RayExecutor"]


class _Worker:
    """The actor: one worker process running jobs one at a time (made a Ray actor class in :func:`_actor_class`)."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self._repos: dict[str, Any] = {}

    def preload(self, data: str, vocab_size: int, data_dir: Path | None) -> None:
        """Load the corpus now, while the search sets up (a bad corpus is reported by the job that needs it)."""
        from brainsearch.search.runner import cached_corpus

        with contextlib.suppress(Exception):
            cached_corpus(data, vocab_size, data_dir)

    def run(self, job: Job) -> TrialOutcome:
        """Train ``job`` and record it (never raises for a failed run)."""
        import torch

        from brainsearch.search.runner import run_job
        from brainsearch.storage import Repository, make_engine

        if torch.get_num_threads() != job.resources.cpus:
            torch.set_num_threads(job.resources.cpus)
        repo = self._repos.get(job.database_url)
        if repo is None:
            repo = self._repos[job.database_url] = Repository(make_engine(job.database_url))
        return run_job(job, repo)


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(max_restarts=0, max_task_retries=0)(_Worker)
    return _ACTOR_CLASS


@dataclass
class _Slot:
    actor: Any
    resources: Resources
    job: Job | None = None
    ref: Any = None


class RayExecutor:
    """Runs up to ``concurrency`` jobs at once on Ray actors; a job's actor holds ``job.resources`` (CPUs as torch
    threads, GPUs). ``resources`` sizes the actors started ahead of the first jobs (default: one CPU each)."""

    def __init__(
        self,
        concurrency: int = 1,
        resources: Resources | None = None,
        address: str | None = None,
    ) -> None:
        import ray

        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise InputError([Problem("ray_address", f"cannot start or reach {where}: {exc}")]) from None
        self.default = resources or Resources()
        self._slots: list[_Slot] = []

    @property
    def running(self) -> int:
        """Jobs in flight."""
        return sum(s.job is not None for s in self._slots)

    @property
    def free(self) -> int:
        """How many more jobs can start now."""
        return self.concurrency - self.running

    def prestart(self, data: str, vocab_size: int, data_dir: Path | None) -> None:
        """Start ``concurrency`` actors with the default resources and have each load the corpus."""
        while len(self._slots) < self.concurrency:
            slot = self._new_slot(self.default)
            slot.actor.preload.remote(data, vocab_size, data_dir)

    def submit(self, job: Job) -> None:
        """Start ``job`` on an idle actor with its resources (a new actor if none fits); raises when all are busy,
        and an :class:`InputError` when the cluster could never place it."""
        if self.free <= 0:
            raise RuntimeError("all workers are busy")
        self._check_fits(job)
        slot = next((s for s in self._slots if s.job is None and s.resources == job.resources), None)
        if slot is None:
            idle = [s for s in self._slots if s.job is None]
            if len(self._slots) >= self.concurrency and idle:  # an idle actor of another size makes room
                self._drop(idle[0])
            slot = self._new_slot(job.resources)
        slot.job, slot.ref = job, slot.actor.run.remote(job)

    def wait(self, timeout: float | None = None) -> list[Finished]:
        """Jobs that finished (or whose actor died) within ``timeout`` seconds; empty if none did."""
        import ray

        busy = {s.ref: s for s in self._slots if s.job is not None}
        if not busy:
            return []
        ready, _ = ray.wait(list(busy), num_returns=1, timeout=timeout)
        if ready:  # and whatever else is done by now
            ready, _ = ray.wait(list(busy), num_returns=len(busy), timeout=0)
        done = []
        for ref in ready:
            slot = busy[ref]
            assert slot.job is not None
            try:
                done.append(Finished(slot.job, ray.get(ref)))
            except ray.exceptions.RayActorError as exc:
                done.append(Finished(slot.job, None, f"Ray worker died: {_first_line(exc)}"))
                self._drop(slot)
                continue
            except ray.exceptions.RayError as exc:
                done.append(Finished(slot.job, None, f"Ray task failed: {_first_line(exc)}"))
            slot.job, slot.ref = None, None
        return done

    def cancel(self, job: Job) -> bool:
        """Kill the actor running ``job`` (reported by :meth:`wait` as crashed); whether one was."""
        import ray

        slot = next((s for s in self._slots if s.job is job), None)
        if slot is None:
            return False
        ray.kill(slot.actor, no_restart=True)
        return True

    def close(self) -> None:
        """Kill every actor (running jobs are killed) and stop the Ray this executor started."""
        import ray

        for slot in self._slots:
            ray.kill(slot.actor, no_restart=True)
        self._slots = []
        if self.started and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _new_slot(self, resources: Resources) -> _Slot:
        if resources.workers > 1:  # a launcher: the TorchTrainer it starts holds the resources
            actor = _actor_class().options(num_cpus=0, num_gpus=0).remote(resources.cpus)
        else:
            env = {"env_vars": worker_environment(resources.cpus)}
            actor = (
                _actor_class()
                .options(num_cpus=resources.cpus, num_gpus=resources.gpus, runtime_env=env)
                .remote(resources.cpus)
            )
        slot = _Slot(actor, resources)
        self._slots.append(slot)
        return slot

    def _drop(self, slot: _Slot) -> None:
        import ray

        ray.kill(slot.actor, no_restart=True)
        self._slots.remove(slot)

    def _check_fits(self, job: Job) -> None:
        import ray

        total = ray.cluster_resources()  # type: ignore[no-untyped-call]
        workers = job.resources.workers
        for name, asked in (("CPU", job.resources.cpus * workers), ("GPU", job.resources.gpus * workers)):
            have = total.get(name, 0.0)
            if asked > have:
                why = f"{job.label} asks for {asked:g} {name}s; the Ray cluster has {have:g}"
                raise InputError([Problem(f"resources.{name.lower()}s", why)])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:300]
