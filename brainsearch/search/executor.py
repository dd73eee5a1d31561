"""The executor protocol: how the search driver runs jobs, whatever runs them.

The driver (:mod:`brainsearch.search.driver`) has one loop for baselines, trials and the scale-up stage; it hands
jobs (:mod:`brainsearch.search.jobs`) to an executor and collects what finished. Two executors implement it:

- :class:`~brainsearch.search.local.LocalExecutor`: long-lived worker processes on this machine;
- :class:`~brainsearch.search.ray_executor.RayExecutor`: long-lived Ray actors on a Ray cluster (or a local Ray),
  each holding its run's CPUs and GPUs.

Both keep their workers between jobs (torch is imported once per worker, in the environment of
:func:`worker_environment`) and have each worker run
:func:`brainsearch.search.runner.run_job`, which trains the job and records it in the database itself. A worker that
dies fails only its own job, reported as a :class:`Finished` without an outcome. Duplicate proposals never reach an
executor: the driver holds them until the original finishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from brainsearch.search.jobs import Job, TrialOutcome

__all__ = ["Executor", "Finished", "worker_environment"]


def worker_environment(threads: int) -> dict[str, str]:
    """The environment a training worker starts with (before torch loads OpenMP, which reads it once).

    OpenMP's default wait policy keeps an idle thread spinning on its core; a worker with several torch threads then
    fights every other process that wants those cores, its own search's other workers included. Measured on a
    2-core machine (``benchmarks/thread_policy.py``, cpu-tiny GLaM): alone, 2 threads step in 15.8 ms; three such
    processes at once, 175 ms each (11x), against 32 ms each waiting passively and 34 ms each with one thread. So a
    worker with more than one thread waits passively (``OMP_WAIT_POLICY=PASSIVE``): up to 2x slower alone on tiny
    models (1.2x at cpu-small), never the collapse. A one-thread worker has no team to wait for: nothing is set.
    The thread count itself is the run's (``Resources.cpus``: the cores split over the runs at once)."""
    return {"OMP_WAIT_POLICY": "PASSIVE"} if threads > 1 else {}


@dataclass(frozen=True)
class Finished:
    """A job the executor is done with: its outcome (recorded by the worker), or why its worker died."""

    job: Job
    outcome: TrialOutcome | None
    crash: str | None = None


class Executor(Protocol):
    """Runs jobs on workers; at most :attr:`free` more can start now."""

    @property
    def free(self) -> int:
        """How many more jobs can start now."""
        ...

    @property
    def running(self) -> int:
        """Jobs in flight."""
        ...

    def prestart(self, data: str, vocab_size: int, data_dir: Path | None) -> None:
        """Start the workers now and have them load the corpus (cached under ``data_dir``), while the driver does its
        own set-up."""
        ...

    def submit(self, job: Job) -> None:
        """Start ``job`` on an idle worker; raises when none is free."""
        ...

    def wait(self, timeout: float | None = None) -> list[Finished]:
        """Jobs that finished (or whose worker died) within ``timeout`` seconds; empty if none did."""
        ...

    def cancel(self, job: Job) -> bool:
        """Stop ``job`` now (its worker is killed, and replaced for the next job); whether it was running. It is
        reported by :meth:`wait` as crashed."""
        ...

    def close(self) -> None:
        """Stop every worker; running jobs are killed."""
        ...
