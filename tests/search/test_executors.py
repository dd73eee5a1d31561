"""The executor protocol on both executors (local worker processes, Ray actors): free slots, jobs finishing in the
order they finish, a cancelled job reported as crashed without taking its neighbours, workers reused afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainsearch.errors import InputError
from brainsearch.search.executor import Executor, Finished
from brainsearch.search.jobs import Resources
from tests.factories import trial_jobs

pytestmark = pytest.mark.slow  # every test starts workers that train


def _next(ex: Executor, timeout: float = 120) -> list[Finished]:
    done: list[Finished] = []
    for _ in range(int(timeout)):
        done = ex.wait(timeout=1.0)
        if done:
            break
    return done


def test_jobs_finish_independently_and_a_cancelled_one_crashes_alone(tmp_path: Path, executor: Executor) -> None:
    repo, (short, long, after) = trial_jobs(tmp_path, [4 * 512, 100_000 * 512, 4 * 512], Resources(cpus=1))
    executor.submit(short)
    executor.submit(long)
    assert executor.free == 0 and executor.running == 2
    with pytest.raises(RuntimeError, match="busy"):
        executor.submit(after)
    done = _next(executor)
    assert [f.job for f in done] == [short] and done[0].outcome is not None
    assert done[0].outcome.state == "completed"
    assert repo.get_trial(short.trial_id).state == "completed"  # type: ignore[union-attr]  # the worker recorded it
    assert executor.cancel(long) and not executor.cancel(short)  # the short one is no longer running
    crashed = _next(executor, timeout=30)
    assert [f.job for f in crashed] == [long] and crashed[0].outcome is None and crashed[0].crash
    assert executor.running == 0 and executor.free == 2
    executor.submit(after)  # on the surviving worker, or a replacement for the killed one
    finished = _next(executor)
    assert finished[0].outcome is not None and finished[0].outcome.state == "completed"


@pytest.mark.slow
def test_ray_refuses_what_the_cluster_could_never_place(tmp_path: Path, ray_session: None) -> None:
    from brainsearch.search.ray_executor import RayExecutor

    _, (too_big,) = trial_jobs(tmp_path, [512], Resources(cpus=1000))
    (tmp_path / "other").mkdir()
    _, (sharded,) = trial_jobs(tmp_path / "other", [512], Resources(cpus=1, workers=8))
    with RayExecutor(concurrency=1) as ex:
        with pytest.raises(InputError) as info:
            ex.submit(too_big)
        assert info.value.problems[0].path == "resources.cpus" and "1000 CPUs" in info.value.problems[0].message
        with pytest.raises(InputError, match="asks for 8 CPUs; the Ray cluster has 4"):  # 8 workers of 1 CPU
            ex.submit(sharded)
        assert ex.running == 0
