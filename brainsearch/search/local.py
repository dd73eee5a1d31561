"""The local executor (:class:`~brainsearch.search.executor.Executor`): jobs run in long-lived worker processes on
this machine, one job per process at a time.

A worker is a spawned process that imports torch once and then takes trials over a pipe, so process start-up is
paid once per worker, not per trial. A worker that dies (a segfault, the kernel's OOM killer, ``kill -9``) fails
only its own trial, reported as crashed with the exit status, and is replaced for the next trial; the search goes on.
Workers ask the kernel to kill them when the search process dies (``PR_SET_PDEATHSIG``), so a killed search never
leaves a trial running that could write a result after the search was resumed elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from brainsearch.search.executor import Finished, worker_environment
from brainsearch.search.jobs import Job, Resources, TrialJob

__all__ = ["LocalExecutor"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's pipe closing still ends the worker between trials
        pass


def _cap_memory(extra_bytes: int | None) -> None:
    """Cap this process's data segment (heap and private anonymous mappings, Linux's RLIMIT_DATA; file mappings such
    as the memory-mapped corpus do not count) at what it holds now plus ``extra_bytes``, or lift the cap (None).
    Only the soft limit is set, so the next job can lift it. A trial allocating past it fails inside the trainer
    (recorded ``out_of_memory``) instead of the kernel's OOM killer taking a process, or the machine, down."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if extra_bytes is None:
        resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
        return
    held = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                held = int(line.split()[1]) * 1024
    limit = held + extra_bytes if hard == resource.RLIM_INFINITY else min(held + extra_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _worker_main(conn: Connection, threads: int, parent_pid: int, memory_bytes: int | None = None) -> None:
    """A worker process: run jobs from ``conn`` until told to stop or the parent goes away."""
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the search's to handle
    os.environ.update(worker_environment(threads))  # read by OpenMP when torch loads it, just below
    import torch

    from brainsearch.search.runner import cached_corpus, run_job
    from brainsearch.storage import Repository, make_engine

    torch.set_num_threads(threads)
    torch.ones(64, 64) @ torch.ones(64, 64)  # start the thread pool now, outside any trial's memory cap
    repos: dict[str, Repository] = {}
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        if isinstance(job, tuple):  # ("preload", data, vocab, data_dir): load the corpus while the search sets up
            with contextlib.suppress(Exception):  # a bad corpus is reported by the trial that needs it
                cached_corpus(*job[1:])
            continue
        repo = repos.get(job.database_url)
        if repo is None:
            repo = repos[job.database_url] = Repository(make_engine(job.database_url))
        if memory_bytes is not None:  # trials only (scale-up runs are larger by design), and not on a GPU
            on_gpu = job.settings.device == "cuda" or (job.settings.device == "auto" and torch.cuda.is_available())
            _cap_memory(memory_bytes if isinstance(job, TrialJob) and not on_gpu else None)
        if torch.get_num_threads() != job.resources.cpus:
            torch.set_num_threads(job.resources.cpus)
        conn.send(run_job(job, repo))


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"worker process was killed by {name}{hint}"
    return f"worker process exited with status {code}"


class _Worker:
    def __init__(self, ctx: multiprocessing.context.SpawnContext, threads: int, memory_bytes: int | None) -> None:
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(
            target=_worker_main,
            args=(child, threads, os.getpid(), memory_bytes),
            name="brainsearch-trial",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.job: Job | None = None

    def stop(self) -> None:
        # An idle worker has nothing unsaved (its trials are in the database): it may stop abruptly, sparing the
        # second its interpreter takes to tear torch down; a busy one is killed, its trial then counts as crashed.
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(0.2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class LocalExecutor:
    """Runs up to ``concurrency`` jobs at once in worker processes (``threads_per_trial`` torch threads each until a
    job asks for another number), each trial allocating at most ``memory_per_trial`` bytes beyond what its process
    holds (None: no cap)."""

    def __init__(
        self, concurrency: int = 1, threads_per_trial: int | None = None, memory_per_trial: int | None = None
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency, self.memory_per_trial = concurrency, memory_per_trial
        self.threads_per_trial = Resources.sharing(concurrency, threads_per_trial).cpus
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    @property
    def running(self) -> int:
        """Jobs in flight."""
        return sum(w.job is not None for w in self._workers)

    @property
    def free(self) -> int:
        """How many more jobs can start now."""
        return self.concurrency - self.running

    def prestart(self, data: str, vocab_size: int, data_dir: Path | None) -> None:
        """Start every worker now and have it load the corpus, while the search does its own set-up."""
        while len(self._workers) < self.concurrency:
            worker = _Worker(self._ctx, self.threads_per_trial, self.memory_per_trial)
            worker.conn.send(("preload", data, vocab_size, data_dir))
            self._workers.append(worker)

    def busy_workers(self) -> dict[int, int]:
        """The process id of the worker training each trial in flight, by trial id."""
        return {w.job.trial_id: w.process.pid for w in self._workers if w.job is not None and w.process.pid}

    def submit(self, job: Job) -> None:
        """Start ``job`` (a trial or a scale-up candidate run) on an idle worker (a new one if none is idle); raises
        when all are busy. A run over several processes (``job.resources.workers``) is launched by its worker with
        torchrun (:mod:`brainsearch.train.launch`): the worker waits for it."""
        if self.free <= 0:
            raise RuntimeError("all workers are busy")
        worker = next((w for w in self._workers if w.job is None and w.process.is_alive()), None)
        if worker is None:
            self._workers = [w for w in self._workers if w.job is not None or w.process.is_alive()]
            worker = _Worker(self._ctx, self.threads_per_trial, self.memory_per_trial)
            self._workers.append(worker)
        worker.job = job
        worker.conn.send(job)

    def wait(self, timeout: float | None = None) -> list[Finished]:
        """Trials that finished (or whose worker died) within ``timeout`` seconds; empty if none did."""
        busy = [w for w in self._workers if w.job is not None]
        if not busy:
            return []
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        done: list[Finished] = []
        for w in busy:
            assert w.job is not None
            if w.conn in ready:
                try:
                    outcome = w.conn.recv()
                except (EOFError, OSError):
                    outcome = None
                if outcome is not None:
                    done.append(Finished(w.job, outcome))
                    w.job = None
                    continue
            if w.conn in ready or w.process.sentinel in ready:
                w.process.join(5)
                done.append(Finished(w.job, None, _exit_reason(w.process.exitcode)))
                w.job = None
                w.conn.close()
        self._workers = [w for w in self._workers if not w.conn.closed]
        return done

    def cancel(self, job: Job) -> bool:
        """Kill the worker running ``job`` (reported by :meth:`wait` as crashed); whether one was."""
        for w in self._workers:
            if w.job is job and w.process.is_alive():
                w.process.kill()
                return True
        return False

    def close(self) -> None:
        """Stop every worker (running jobs are killed)."""
        for w in self._workers:
            w.stop()
        self._workers = []

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
