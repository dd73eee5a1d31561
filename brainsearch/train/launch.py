"""Launch one function in N worker processes joined in a torch.distributed process group, and bring back rank 0's
result: the launch layer under sharded (FSDP2) training of a rung that does not fit one device.

``launch(entry, payload, workers, launcher=...)`` runs ``entry(payload)`` (``entry`` is "package.module:function",
importable on every worker) in each of ``workers`` processes once the process group is up: nccl with one GPU per
worker (the worker's CUDA device set from its ``LOCAL_RANK``), gloo on the CPU. Rank 0's return value, a JSON-able
dict, is the result; the other ranks' values are dropped. Any failure - a rank raising, a rank killed, the time
limit, workers that cannot be placed - is one :class:`LaunchError` whose one-line message names the rank and what
happened to it.

Two launchers:

- ``"torchrun"``: one machine, no Ray. ``torch.distributed.run --standalone`` (its rendezvous on a free port, so
  launches can run side by side) in a session of its own under ``run_dir``; per-rank output goes to
  ``rank{R}.stdout`` / ``rank{R}.stderr`` there, torchrun's own to ``torchrun.log``. The agent and every rank die with
  the launching process, even when it is killed with SIGKILL (:mod:`brainsearch.train.worker`).
- ``"ray"``: Ray Train's ``TorchTrainer`` (one worker per GPU, or ``cpus_per_worker`` CPUs per worker) on the Ray
  this process is connected to, or on a local Ray started for the launch and shut down after. Runs are kept under
  ``run_dir`` (Ray Train's storage path); the workers' output stays in Ray's logs. Ray Train V2 (the default in
  Ray 2.60) and V1 (``RAY_TRAIN_V2_ENABLED=0``) both work. ``fit`` may be called from inside a Ray actor or task
  (the Ray executor's job actors): the trainer's controller takes no CPU, but the caller's actor keeps holding its
  own resources, so the cluster must have ``workers * cpus_per_worker`` CPUs (and ``workers`` GPUs) free besides
  it. A launch asking for more than the whole cluster has fails at once; one that fits the cluster but not what is
  free now waits for Ray Train's worker-group start timeout (``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``, 60 s by
  default) and then fails. Ray does not say which signal ended a dead worker, so a killed rank is reported as
  having died, without the signal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from brainsearch.errors import BrainsearchError

__all__ = ["LaunchError", "available_devices", "launch"]

# How long a stopped torchrun may take to stop its ranks before it is killed
_STOP_GRACE_S = 5.0
# one entry of torchrun's failure summary: "rank : 1 (local_rank: 1)" ... "exitcode : -9 (pid: 123)"
_RANK_EXIT = re.compile(r"\brank\s*:\s*(\d+).*?\bexitcode\s*:\s*(-?\d+)", re.DOTALL)


class LaunchError(BrainsearchError, RuntimeError):
    """A distributed launch failed: a rank raised, was killed or timed out, or the workers could not be placed.
    The message is one line naming the rank and what happened to it."""


def launch(
    entry: str,
    payload: dict[str, Any],
    workers: int,
    *,
    launcher: Literal["torchrun", "ray"],
    use_gpu: bool,
    run_dir: Path,
    cpus_per_worker: int = 1,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run ``entry(payload)`` on ``workers`` ranks of a fresh process group and return rank 0's result.

    ``entry`` is "package.module:function", called once per rank after the process group is initialised; rank 0
    must return a JSON-able dict. ``run_dir`` (created if missing) holds the launch's files: the spec, the result,
    per-rank logs (torchrun), Ray Train's run folder (ray). Each worker runs ``cpus_per_worker`` torch threads.
    ``timeout_s`` bounds the whole launch; past it every rank is killed. Raises :class:`LaunchError` on any failure.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if cpus_per_worker < 1:
        raise ValueError("cpus_per_worker must be at least 1")
    module_name, sep, function_name = entry.partition(":")
    if not (sep and module_name and function_name):
        raise ValueError(f"entry {entry!r} is not 'package.module:function'")
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if launcher == "torchrun":
        return _launch_torchrun(entry, payload, workers, use_gpu, run_dir, cpus_per_worker, timeout_s)
    if launcher == "ray":
        return _launch_ray(entry, payload, workers, use_gpu, run_dir, cpus_per_worker, timeout_s)
    raise ValueError(f"unknown launcher {launcher!r}: 'torchrun' or 'ray'")


def available_devices(use_gpu: bool) -> int:
    """How many workers a launch could run at once, for a planner to refuse a rung the cluster cannot hold.

    With ``use_gpu``: the GPUs of the Ray cluster when Ray is initialised in this process, else this machine's
    (``torch.cuda.device_count()``). On the CPU (each worker holds at least one CPU): the Ray cluster's CPUs, else
    the CPUs this process may run on (its affinity mask). Totals, not what is free now.
    """
    ray = sys.modules.get("ray")  # never imported here: not initialised either (and Ray is an optional extra)
    if ray is not None and ray.is_initialized():
        total = ray.cluster_resources()
        return int(total.get("GPU" if use_gpu else "CPU", 0))
    if use_gpu:
        import torch

        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0))


def _one_line(text: str, limit: int = 300) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 3] + "..."


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- torchrun -----------------------------------------------------------------------------------------------------


def _launch_torchrun(
    entry: str,
    payload: dict[str, Any],
    workers: int,
    use_gpu: bool,
    run_dir: Path,
    cpus_per_worker: int,
    timeout_s: float | None,
) -> dict[str, Any]:
    if use_gpu:
        import torch

        if torch.cuda.device_count() < workers:
            raise LaunchError(
                f"torchrun cannot run {workers} GPU workers: this machine has {torch.cuda.device_count()}"
            )
    spec_path, result_path = run_dir / "spec.json", run_dir / "result.json"
    for stale in [result_path, *run_dir.glob("rank*.error.json")]:
        stale.unlink(missing_ok=True)
    spec = {
        "entry": entry,
        "payload": payload,
        "use_gpu": use_gpu,
        "threads": cpus_per_worker,
        "run_dir": str(run_dir),
        "result_path": str(result_path),
    }
    spec_path.write_text(json.dumps(spec))
    # the ranks import what this process can import (an entry in a module found through sys.path, not installed)
    python_path = [p for p in sys.path if p] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(cpus_per_worker),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(python_path)),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("BRAINSEARCH_LAUNCH_AGENT_PID", None)
    command = [
        sys.executable,
        "-m",
        "brainsearch.train.worker",
        "agent",
        str(os.getpid()),
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(workers),
        "--max-restarts",
        "0",
        "-m",
        "brainsearch.train.worker",
        "rank",
        str(spec_path),
    ]
    with open(run_dir / "torchrun.log", "wb") as log:
        # a session of its own: stopping it reaches the agent's whole process group, not this process's
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            raise LaunchError(f"timed out after {timeout_s:g} s: all {workers} ranks were killed") from None
        except BaseException:  # KeyboardInterrupt, a cancelled job: the ranks go too
            _stop(process)
            raise
    if code != 0:
        raise LaunchError(_torchrun_failure(run_dir, code))
    try:
        result: dict[str, Any] = json.loads(result_path.read_text())
    except (OSError, ValueError) as exc:
        raise LaunchError(f"torchrun ended cleanly but rank 0 left no result: {_one_line(str(exc))}") from None
    return result


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop torchrun: SIGTERM (it stops its ranks), SIGKILL after a grace period (the ranks die with it)."""
    for sig, wait_s in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def _torchrun_failure(run_dir: Path, code: int) -> str:
    """One line on why a torchrun launch failed. A rank killed by a signal comes first (the others' errors are then
    the broken connections it left), torchrun's root cause before the rest, but not SIGTERM: torchrun stops the
    surviving ranks with it once one has failed. Else the first rank that raised; else the rank torchrun names as
    the root cause with its exit code; else torchrun's own last words."""
    log = _read_text(run_dir / "torchrun.log")
    failures = _torchrun_failures(log)
    signalled = [(rank, exit_code) for rank, exit_code in failures if exit_code < 0 and -exit_code != signal.SIGTERM]
    if signalled:
        rank, exit_code = signalled[0]
        return _with_last_line(f"rank {rank} was killed by {_signal_name(-exit_code)}", run_dir, rank)
    errors = []
    for path in run_dir.glob("rank*.error.json"):
        try:
            errors.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    if errors:
        first = min(errors, key=lambda e: float(e.get("time", 0.0)))
        return f"rank {first['rank']} raised {first['type']}: {_one_line(first['message'])}"
    if failures:
        rank, exit_code = failures[0]
        return _with_last_line(f"rank {rank} exited with code {exit_code}", run_dir, rank)
    return f"torchrun exited with code {code}: {_last_line(log) or 'no output'}"


def _torchrun_failures(log: str) -> list[tuple[int, int]]:
    """(rank, exit code) of each failed rank in torchrun's failure summary, its root cause first."""
    summary, _, root = log.rpartition("Root Cause")
    entries = _RANK_EXIT.findall(root) + _RANK_EXIT.findall(summary.rpartition("Failures:")[2])
    return list(dict.fromkeys((int(rank), int(exit_code)) for rank, exit_code in entries))


def _with_last_line(message: str, run_dir: Path, rank: int) -> str:
    last = _last_line(_read_text(run_dir / f"rank{rank}.stderr"))
    return f"{message}; its last stderr line: {last}" if last else message


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return _one_line(lines[-1]) if lines else ""


# --- Ray Train ----------------------------------------------------------------------------------------------------


def _launch_ray(
    entry: str,
    payload: dict[str, Any],
    workers: int,
    use_gpu: bool,
    run_dir: Path,
    cpus_per_worker: int,
    timeout_s: float | None,
) -> dict[str, Any]:
    import ray

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise LaunchError(f"cannot start a local Ray: {_one_line(str(exc))}") from None
    try:
        return _fit(entry, payload, workers, use_gpu, run_dir, cpus_per_worker, timeout_s)
    finally:
        if started:
            ray.shutdown()


def _fit(
    entry: str,
    payload: dict[str, Any],
    workers: int,
    use_gpu: bool,
    run_dir: Path,
    cpus_per_worker: int,
    timeout_s: float | None,
) -> dict[str, Any]:
    import ray

    total = ray.cluster_resources()  # type: ignore[no-untyped-call]
    asked = {"CPU": workers * cpus_per_worker, "GPU": workers if use_gpu else 0}
    for name, amount in asked.items():
        if amount > total.get(name, 0.0):
            raise LaunchError(
                f"Ray cannot place {workers} workers: they need {amount:g} {name}s, the cluster has "
                f"{total.get(name, 0.0):g}"
            )

    import ray.train  # imports torch and pandas: only for a launch that can be placed
    import ray.train.torch

    from brainsearch.train.worker import RESULT_KEY, ray_train_loop

    # Ray Train V1 or V2 classes, chosen at import by RAY_TRAIN_V2_ENABLED: typed as neither
    train: Any = ray.train
    torch_trainer: Any = ray.train.torch.TorchTrainer

    # V2 (the default) returns rank 0's return value; V1 only carries what the workers report
    train_v2 = torch_trainer.__module__.startswith("ray.train.v2")
    # no retries: a failed rank fails the launch; the controller retries nothing either (V2)
    failure = (
        train.FailureConfig(max_failures=0, controller_failure_limit=0)
        if train_v2
        else train.FailureConfig(max_failures=0)
    )
    deadline = None if timeout_s is None else time.time() + timeout_s
    config = {
        "entry": entry,
        "payload": payload,
        "use_gpu": use_gpu,
        "threads": cpus_per_worker,
        "deadline": deadline,
        "train_v2": train_v2,
    }
    trainer = torch_trainer(
        ray_train_loop,
        train_loop_config=config,
        scaling_config=train.ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}
        ),
        run_config=train.RunConfig(
            storage_path=str(run_dir), name=f"launch-{uuid.uuid4().hex[:12]}", failure_config=failure
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        if deadline is not None and time.time() >= deadline:
            raise LaunchError(f"timed out after {timeout_s:g} s: all {workers} ranks were stopped") from None
        raise LaunchError(_ray_failure(exc, workers)) from exc
    if train_v2:
        value = getattr(result, "return_value", None)  # older V2 releases may lack it
    else:
        reported = (result.metrics or {}).get(RESULT_KEY)
        value = json.loads(reported) if reported else None
    if not isinstance(value, dict):
        raise LaunchError(f"Ray Train finished but rank 0 returned no result ({type(value).__name__})")
    return value


def _ray_failure(exc: BaseException, workers: int) -> str:
    """One line on why ``TorchTrainer.fit`` failed: the first rank whose process died (the others' errors are then
    the broken connections it left), else the first rank that raised (one that did not merely lose a peer first),
    else the controller's reason (workers that could not be placed)."""
    from ray.exceptions import RayActorError

    failures: dict[int, BaseException] = getattr(exc, "worker_failures", None) or {}
    if failures:

        def died(error: BaseException) -> bool:
            return isinstance(error, RayActorError) or type(error).__name__.startswith("WorkerHealthCheck")

        dead = sorted(rank for rank, error in failures.items() if died(error))
        if dead:
            return (
                f"rank {dead[0]} died: its worker process ended without raising (killed by a signal such as SIGKILL, "
                "the OOM killer, or a crash; Ray does not report which)"
            )
        rank = min(failures, key=lambda r: (_lost_a_peer(failures[r]), r))
        error = failures[rank]
        return f"rank {rank} raised {type(error).__name__}: {_one_line(str(error))}"
    controller = getattr(exc, "controller_failure", None)
    if controller is not None:
        name = type(controller).__name__
        if "Startup" in name or "InsufficientClusterResources" in name:
            return f"Ray could not place {workers} workers: {_one_line(str(controller))}"
        return f"Ray Train's controller failed: {name}: {_one_line(str(controller))}"
    # Ray Train V1: the rank's exception inside a RayTaskError inside TrainingFailedError, its rank not named
    cause = exc.__cause__ or exc
    while isinstance(getattr(cause, "cause", None), BaseException) and cause.cause is not cause:  # type: ignore[attr-defined]
        cause = cause.cause  # type: ignore[attr-defined]
    return f"a rank failed under Ray Train: {type(cause).__name__}: {_one_line(str(cause))}"


def _lost_a_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another rank went away (gloo's and nccl's words for it)."""
    text = str(error)
    return any(words in text for words in ("Connection reset by peer", "Connection closed by peer", "Broken pipe"))
