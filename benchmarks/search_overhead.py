"""Search overhead: the share of a search's wall time not spent inside training steps, per executor.

    python benchmarks/search_overhead.py               # 20 cpu-tiny trials (+2 baselines) per executor, ~9 min
    python benchmarks/search_overhead.py --trials 6    # a quick look

Each contestant searches the bundled ``tiny`` space (the ``cpu-tiny`` proxy: d_model 32-64, one 8-slot block,
4 experts, 64K tokens per trial) with the random sampler, one trial at a time, pruning off so every trial trains its
whole budget. "In steps" is the sum over trials of the time inside training steps (forward, backward, optimiser)
that each trainer measured; everything else - sampling, storage, process or Ray start, scheduling, model build,
the final validation - is outside the steps. "Outside trainers" leaves the trainer's own model build and validation
out: it is the search machinery alone (sampling, storage, processes, scheduling). Contestants:

- ``inprocess``: the peer floor - a plain in-memory Optuna loop calling the trainer in the same process, no
  database, no worker processes (what a hand-written script would do; it loses crash isolation and resumability);
- ``local``: ``brainsearch search`` with the local executor (worker processes, SQLite, Optuna RDB storage);
- ``ray``: the same with the Ray executor (a local Ray started by the search; its start-up is counted);
- ``ray-running``: the Ray executor on a Ray already running (as with ``--ray-address``): start-up not counted.

Targets: the machinery ("outside trainers") under 6% for local and under 10% for Ray.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import optuna

from brainsearch.data import load_corpus
from brainsearch.search.driver import SearchDriver
from brainsearch.search.submission import RunOptions, create_search, trial_train_settings
from brainsearch.settings import get_settings
from brainsearch.space import load_space, sample
from brainsearch.space.baselines import baseline_architectures
from brainsearch.storage import Repository, make_engine, migrate
from brainsearch.train import train

Times = tuple[float, float, float, int]  # wall, inside the trainers, inside training steps, trainings


def _inprocess(trials: int, threads: int) -> Times:
    import torch

    torch.set_num_threads(threads)
    space = load_space("tiny")
    space = space.model_copy(update={"search": space.search.model_copy(update={"pruner": "none"})})
    settings = trial_train_settings(space, device="cpu")  # the same budget and evaluation as a search's trials
    start = time.perf_counter()
    corpus = load_corpus(space.proxy.data, space.proxy.vocab_size)
    in_steps = in_trainer = 0.0
    for arch in baseline_architectures(space).values():
        result = train(arch, settings, corpus=corpus)
        in_steps, in_trainer = in_steps + result.steps_seconds, in_trainer + result.elapsed_s
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        nonlocal in_steps, in_trainer
        result = train(sample(space, trial), settings, corpus=corpus)
        in_steps, in_trainer = in_steps + result.steps_seconds, in_trainer + result.elapsed_s
        return result.val_loss if result.val_loss is not None else float("nan")

    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start, in_trainer, in_steps, trials + 2


def _brainsearch(executor: str, trials: int, threads: int) -> Times:
    url = f"sqlite:///{tempfile.mkdtemp(prefix='bs-overhead-')}/search.db"
    engine = make_engine(url)
    migrate(engine)
    repo = Repository(engine)
    options = RunOptions(executor=executor, threads_per_trial=threads, device="cpu")  # type: ignore[arg-type]
    overrides: dict[str, Any] = {"trials": trials, "sampler": "random", "pruner": "none", "concurrency": 1}
    search, _ = create_search(repo, load_space("tiny"), overrides=overrides, options=options)
    start = time.perf_counter()
    done = SearchDriver(repo, search.id, url, data_dir=get_settings().data_dir).run()
    wall = time.perf_counter() - start
    assert done.status == "completed", done.error
    rows = repo.list_trials(search.id, limit=1000).items
    in_trainer = sum(t.metrics.get("elapsed_s", 0.0) for t in rows)
    return wall, in_trainer, sum(t.metrics.get("steps_seconds", 0.0) for t in rows), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--executors", default="inprocess,local,ray,ray-running")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    load_corpus("default", 256, get_settings().data_dir)  # the tokenised corpus cache exists before anything is timed
    results: dict[str, Times] = {}
    for name in args.executors.split(","):
        if name == "inprocess":
            results[name] = _inprocess(args.trials, args.threads)
        elif name == "ray-running":
            import ray

            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                results[name] = _brainsearch("ray", args.trials, args.threads)
            finally:
                ray.shutdown()
        else:
            results[name] = _brainsearch(name, args.trials, args.threads)
        wall, trainer, steps, n = results[name]
        print(f"{name}: {n} trainings, wall {wall:.1f} s, in trainers {trainer:.1f} s, in steps {steps:.1f} s")
    floor = results.get("inprocess")
    print()
    print(
        "| executor | trainings | wall s | in trainers s | in steps s | outside steps | outside trainers "
        "| wall / in-process |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (wall, trainer, steps, n) in results.items():
        ratio = f"{wall / floor[0]:.2f}" if floor else "-"
        print(
            f"| {name} | {n} | {wall:.1f} | {trainer:.1f} | {steps:.1f} | {1 - steps / wall:.1%} "
            f"| {1 - trainer / wall:.1%} | {ratio} |"
        )


if __name__ == "__main__":
    main()
