"""One rank of a distributed launch (:func:`brainsearch.train.launch.launch`): the code that runs inside each worker
process, under torchrun or Ray Train.

Under torchrun the launcher starts ``python -m brainsearch.train.worker agent PARENT_PID TORCHRUN_ARGS...``: the
agent asks the kernel to kill it when the launcher dies and becomes torchrun, which starts each rank as
``python -m brainsearch.train.worker rank SPEC.json``. A rank arms the same death signal against the agent,
sends its stdout and stderr to ``rank{R}.stdout`` / ``rank{R}.stderr`` in the run folder, joins the process group
(nccl on its ``LOCAL_RANK`` GPU, gloo on the CPU), calls the entry, and writes what went wrong to
``rank{R}.error.json`` (exception type, message, time) or, on rank 0, the result to the result file (atomically).
So a launcher killed with SIGKILL takes the agent and every rank with it.

Under Ray Train, :func:`ray_train_loop` is the ``train_loop_per_worker``: Ray Train has already joined the process
group; the loop calls the entry and returns rank 0's result (Ray Train V2) or reports it (V1).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TIMEOUT_EXIT_CODE", "call_entry", "ray_train_loop", "resolve_entry"]

# A Ray worker past the launch's deadline ends itself with this status (Ray Train has no per-run timeout)
TIMEOUT_EXIT_CODE = 124
_PR_SET_PDEATHSIG = 1
# The launcher's key for rank 0's result in a Ray Train V1 report (V1 results carry reported metrics only)
RESULT_KEY = "brainsearch_launch_result"


def resolve_entry(entry: str) -> Callable[[dict[str, Any]], Any]:
    """The function named by ``entry`` ("package.module:function")."""
    module_name, sep, function_name = entry.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"entry {entry!r} is not 'package.module:function'")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise ValueError(f"entry {entry!r}: {module_name} has no function {function_name}")
    return function  # type: ignore[no-any-return]


def call_entry(entry: str, payload: dict[str, Any], rank: int) -> dict[str, Any] | None:
    """Call ``entry(payload)`` in this rank (the process group is up); rank 0's value, which must be a JSON-able dict,
    or None on the other ranks."""
    result = resolve_entry(entry)(payload)
    if rank != 0:
        return None
    if not isinstance(result, dict):
        raise TypeError(f"entry {entry} returned {type(result).__name__} on rank 0, not a dict")
    json.dumps(result)  # not JSON-able: fail in the rank, where the message names it
    return result


def _die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; False if the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: only the launcher's kill on timeout holds
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent_pid


def _agent_main(parent_pid: int, torchrun_args: list[str]) -> int:
    """Become torchrun, tied to the launcher's life (the death signal survives exec)."""
    if not _die_with_parent(parent_pid):
        return 1
    os.environ["BRAINSEARCH_LAUNCH_AGENT_PID"] = str(os.getpid())
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *torchrun_args])


def _redirect_output(run_dir: Path, rank: int) -> None:
    """Send this process's stdout and stderr (file descriptors too, so C++ output follows) to per-rank files."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(run_dir / f"rank{rank}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own streams
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees all of it or nothing)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def _rank_main(spec_path: Path) -> int:
    """One torchrun rank: join the process group, call the entry, record the outcome; the exit status."""
    agent_pid = int(os.environ.get("BRAINSEARCH_LAUNCH_AGENT_PID", os.getppid()))
    if not _die_with_parent(agent_pid):
        return 1
    spec = json.loads(spec_path.read_text())
    run_dir = Path(spec["run_dir"])
    rank = int(os.environ["RANK"])
    _redirect_output(run_dir, rank)
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(int(spec["threads"]))
        if spec["use_gpu"]:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        result = call_entry(spec["entry"], spec["payload"], rank)
    except BaseException as exc:
        traceback.print_exc()
        error = {"rank": rank, "type": type(exc).__name__, "message": str(exc), "time": time.time()}
        _write_json(run_dir / f"rank{rank}.error.json", error)
        sys.stderr.flush()
        # no destroy_process_group: the other ranks may be blocked in a collective; torchrun stops them
        os._exit(1)
    if result is not None:
        _write_json(Path(spec["result_path"]), result)
    # Every rank gets here, then leaves without tearing the process group down: gloo's threads, torn down at exit
    # while a peer is gone, can abort the process ("terminate called without an active exception", seen under load
    # on 2 cores, with and without destroy_process_group) after its work and result were done. The group dies with
    # its processes; the launcher reads the result already written.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def ray_train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train's ``train_loop_per_worker``: call the entry in this worker (Ray Train has joined the process group).
    Rank 0's result is this function's return value (Ray Train V2). Under V1, whose result carries only reported
    metrics, every rank reports once (a report is a barrier) and rank 0's report holds the result as JSON."""
    import ray.train
    import torch
    import torch.distributed as dist

    torch.set_num_threads(int(config["threads"]))
    if config.get("deadline") is not None:
        _arm_deadline(float(config["deadline"]))
    if config["use_gpu"]:
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    rank = dist.get_rank()
    result = call_entry(config["entry"], config["payload"], rank)
    if not config["train_v2"]:
        ray.train.report({RESULT_KEY: json.dumps(result) if rank == 0 else ""})
    return result


def _arm_deadline(deadline: float) -> None:
    """End this process at wall-clock time ``deadline`` (Ray Train then stops the other workers)."""

    def expire() -> None:
        time.sleep(max(0.0, deadline - time.time()))
        os._exit(TIMEOUT_EXIT_CODE)

    threading.Thread(target=expire, name="launch-deadline", daemon=True).start()


def main(argv: list[str]) -> int:
    """``agent PARENT_PID TORCHRUN_ARGS...`` (become torchrun) or ``rank SPEC.json`` (one rank)."""
    if len(argv) >= 2 and argv[0] == "agent":
        return _agent_main(int(argv[1]), argv[2:])
    if len(argv) == 2 and argv[0] == "rank":
        return _rank_main(Path(argv[1]))
    print(
        "usage: python -m brainsearch.train.worker agent PARENT_PID TORCHRUN_ARGS... | rank SPEC.json", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
