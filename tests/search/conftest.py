"""Fixtures of the search tests: a repository per backend, an executor per kind (local worker processes and Ray
actors, on one Ray started for the session) and a fast variant of the tiny space."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brainsearch.arch import Architecture, preset
from brainsearch.arch.scale import scale
from brainsearch.search.executor import Executor
from brainsearch.search.jobs import Resources, TrialJob
from brainsearch.search.local import LocalExecutor
from brainsearch.space import SearchSpace, load_space
from brainsearch.space.schema import Budget
from brainsearch.storage import Repository, Trial, make_engine, migrate
from brainsearch.train import TrainSettings


@pytest.fixture(scope="package")
def ray_session() -> Iterator[None]:
    """One local Ray for the search tests (executors find it running and leave it up), shut down after them so that
    no later test meets it (a test that runs ``ray stop`` would end this process with it); 4 logical CPUs so two
    one-thread workers and a replacement fit on a 2-core machine."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.slow)])
def executor_kind(request: pytest.FixtureRequest) -> str:
    """Which executor a driver test runs on: every end-to-end driver test runs on both."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


@pytest.fixture
def executor(executor_kind: str) -> Iterator[Executor]:
    """A live executor of ``executor_kind`` with two one-thread workers, closed after the test."""
    live: Executor
    if executor_kind == "ray":
        from brainsearch.search.ray_executor import RayExecutor

        live = RayExecutor(concurrency=2, resources=Resources(cpus=1))
    else:
        live = LocalExecutor(concurrency=2, threads_per_trial=1)
    yield live
    live.close()


def fast_space(tokens: int = 4096, **changes: Any) -> SearchSpace:
    """The bundled tiny space with a budget of ``tokens`` (4096 = 8 steps: about a second a trial on the CPU);
    ``changes`` replace top-level sections' fields, e.g. ``constraints={"max_params_total": 1e5}``. One seed for
    the baseline and no re-evaluation, unless ``search`` changes say otherwise: the tests of seed noise
    (tests/search/test_noise.py, tests/service/test_noise_end_to_end.py) ask for them; the rest count runs."""
    doc = load_space("tiny").model_dump(mode="json")
    doc["proxy"]["budget"] = {"tokens": tokens}
    doc["search"] |= {"baseline_seeds": 1, "top_k_seeds": 1}
    for section, values in changes.items():
        doc[section] = {**doc[section], **values}
    return SearchSpace.model_validate(doc)


def add_running_trial(repo: Repository, search_id: int, number: int, arch: Architecture) -> Trial:
    """A trial row as a driver adds it before training (cost left empty)."""
    return repo.add_trial(
        search_id=search_id,
        number=number,
        arch=arch.to_dict(),
        arch_digest=arch.digest,
        pattern=arch.pattern,
        params={},
        cost={},
        params_activated=1,
    )


def seed_scaled_search(repo: Repository, data_dir: Path) -> tuple[int, list[int]]:
    """A stored search whose stage has run, without training: trials #0 (the GLaM baseline, loss 3.1), #1 (2.9,
    its random-init weights kept under ``data_dir``) and #2 (3.0), and candidates of all three at cpu-tiny and
    cpu-small, ranked as at the proxy. Returns the search id and the trial ids."""
    import torch

    from brainsearch import build_model
    from brainsearch.arch import preset, scale
    from brainsearch.search.submission import create_search
    from brainsearch.store import RunStore, save_weights, weights_metadata

    space = fast_space(search={"top_k": 2, "scale_up": {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e"}})
    search, _ = create_search(repo, space)
    arch = scale(preset("glam"), "cpu-tiny")
    ids = []
    for number, loss in enumerate([3.1, 2.9, 3.0]):
        t = repo.add_trial(
            search_id=search.id,
            number=number,
            arch=arch.to_dict(),
            arch_digest=f"{number:016x}",
            pattern=arch.pattern,
            params={},
            cost={"params_total": 1},
            params_activated=1,
            is_baseline=number == 0,
            baseline_name="glam" if number == 0 else None,
        )
        repo.finish_trial(t.id, state="completed", val_loss=loss, metrics={"val_loss": loss})
        ids.append(t.id)
    torch.manual_seed(0)
    path = RunStore(data_dir, repo.database_id()).trial_weights(search.id, ids[1])
    save_weights(build_model(arch).state_dict(), arch, path, weights_metadata(repo.database_id(), search.id, ids[1]))
    for trial_id, losses in [(ids[1], (2.8, 2.5)), (ids[2], (2.85, 2.6)), (ids[0], (2.9, 2.7))]:
        for rung, loss, n in [("cpu-tiny", losses[0], 1e5), ("cpu-small", losses[1], 1e6)]:
            repo.add_candidate(
                search_id=search.id,
                trial_id=trial_id,
                rung=rung,
                state="completed",
                arch=arch.to_dict(),
                arch_digest=arch.digest,
                metrics={"params_activated": n, "val_curve": [[4, loss + 0.3], [8, loss]], "step_time_s": 0.1},
                val_loss=loss,
            )
    repo.set_search_status(search.id, "completed")
    return search.id, ids


def trial_jobs(tmp_path: Path, budgets: list[int], resources: Resources) -> tuple[Repository, list[TrialJob]]:
    """A SQLite database under ``tmp_path`` with one running trial (cpu-tiny GLaM) per budget, and their jobs."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    engine = make_engine(url)
    migrate(engine)
    repo = Repository(engine)
    s, _ = repo.create_search(name="t", space_name="tiny", space={}, settings={}, trials_requested=len(budgets))
    arch = scale(preset("glam"), "cpu-tiny")
    jobs = []
    for n, tokens in enumerate(budgets):
        t = add_running_trial(repo, s.id, n, arch)
        settings = TrainSettings(budget=Budget(tokens=tokens), batch_size=8, device="cpu")
        job = TrialJob(
            search_id=s.id,
            trial_id=t.id,
            number=n,
            database_url=url,
            arch=arch.to_dict(),
            settings=settings,
            resources=resources,
        )
        jobs.append(job)
    return repo, jobs
