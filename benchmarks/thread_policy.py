"""Torch threads and OpenMP's wait policy when several training processes share the CPU cores.

A search runs its trials in worker processes (``concurrency`` of them), and a machine may run more than one search
(or a search beside a test suite). OpenMP's default wait policy lets an idle thread spin on its core for a while
before it sleeps: harmless with the cores to itself, ruinous when every core is wanted by another process's threads.
This benchmark starts ``k`` identical cpu-tiny GLaM trainings at once (``k`` = 1, 2, 3 on this machine's cores),
each with a thread count and wait policy, and reports the median step time of their runs and the total throughput
(tokens per second of all ``k`` together), side by side for every policy in one run:

    python benchmarks/thread_policy.py                      # about 3 minutes on 2 cores
    python benchmarks/thread_policy.py --processes 1,2,4 --preset cpu-small

The policy brainsearch's workers use (:func:`brainsearch.search.executor.worker_environment`) is chosen from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["POLICIES", "Policy", "measure"]


@dataclass(frozen=True)
class Policy:
    """Torch threads per process and OpenMP's wait policy (None: the library's default, active spinning)."""

    threads: int
    wait_policy: str | None

    @property
    def label(self) -> str:
        return f"{self.threads} thread{'s' if self.threads > 1 else ''}, " + (
            f"OMP_WAIT_POLICY={self.wait_policy}" if self.wait_policy else "default wait"
        )


POLICIES = (Policy(2, None), Policy(2, "PASSIVE"), Policy(1, None), Policy(1, "PASSIVE"))

_CHILD = """
import json, sys, torch
from brainsearch.arch import preset, scale
from brainsearch.train import TrainSettings, train
torch.set_num_threads(int(sys.argv[1]))
arch = scale(preset("glam"), sys.argv[2])
result = train(arch, TrainSettings(budget={"tokens": float(sys.argv[3])}, batch_size=int(sys.argv[4]), device="cpu"))
print(json.dumps({"step_time_s": result.step_time_s, "tokens_per_s": result.tokens_per_s}))
"""


def measure(policy: Policy, processes: int, scale_name: str, tokens: float, batch: int) -> tuple[float, float]:
    """Start ``processes`` trainings at once under ``policy``: (median of their median step times in seconds,
    their total tokens per second)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy.wait_policy:
        env["OMP_WAIT_POLICY"] = policy.wait_policy
    args = [sys.executable, "-c", _CHILD, str(policy.threads), scale_name, str(tokens), str(batch)]
    running = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    results = []
    for p in running:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a training process failed with status {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    steps = statistics.median(r["step_time_s"] for r in results)
    return steps, sum(r["tokens_per_s"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,3", help="concurrent trainings per scenario")
    parser.add_argument("--preset", default="cpu-tiny", help="scale preset of the GLaM block")
    parser.add_argument("--tokens", type=float, default=96e3, help="token budget of each training")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    counts = [int(x) for x in args.processes.split(",")]
    print(f"cores: {os.cpu_count()}; {args.preset} GLaM, {args.tokens:g} tokens per run, batch {args.batch}")
    print()
    print("| processes at once | policy | median step (ms) | vs 1 process, 2 threads, default | total tokens/s |")
    print("|---:|---|---:|---:|---:|")
    reference: float | None = None
    for k in counts:
        for policy in POLICIES:
            step, throughput = measure(policy, k, args.preset, args.tokens, args.batch)
            reference = reference or step
            print(f"| {k} | {policy.label} | {step * 1e3:.1f} | {step / reference:.2f}x | {throughput:,.0f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
