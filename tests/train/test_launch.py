"""The distributed launch layer: an entry run on 2 CPU ranks (gloo) under torchrun and under Ray Train, rank 0's
result brought back, and every failure (a rank raising, a rank killed, the time limit, workers Ray cannot place) a
one-line LaunchError that leaves no rank running.

The Ray tests share one local Ray (3 logical CPUs: two one-CPU workers, plus the actor of the nested launch) and are
marked slow: a TorchTrainer run costs about 25 s on a 2-core machine, most of it starting its worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brainsearch.train import launch as launch_module
from brainsearch.train.launch import LaunchError, available_devices, launch

ENTRIES = "tests.train.dist_entries"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray for this module's Ray tests (one started by another package is used as it is)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(params=["torchrun", pytest.param("ray", marks=pytest.mark.slow)])
def launcher(request: pytest.FixtureRequest) -> str:
    """Every behaviour is checked under both launchers."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return str(request.param)


def run(entry: str, launcher: str, tmp_path: Path, timeout_s: float | None = 120, **payload: Any) -> dict[str, Any]:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(parents=True, exist_ok=True)
    return launch(
        f"{ENTRIES}:{entry}",
        {"pid_dir": str(pid_dir), **payload},
        2,
        launcher=launcher,  # type: ignore[arg-type]
        use_gpu=False,
        run_dir=tmp_path / "run",
        timeout_s=timeout_s,
    )


def assert_no_rank_left(tmp_path: Path, wait_s: float = 20.0) -> None:
    """Every rank that wrote its pid is gone (after ``wait_s`` at most: Ray stops workers asynchronously)."""
    pids = [int(p.read_text()) for p in (tmp_path / "pids").glob("rank*.pid")]
    deadline = time.monotonic() + wait_s
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in pids if _running(pid)]
    assert not alive, f"ranks still running: {alive}"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its parent has not reaped it yet


@pytest.mark.slow
def test_rank_0_result_comes_back(tmp_path: Path) -> None:
    """(Under Ray too: tests/train/test_distributed.py trains through both launchers.)"""
    result = run("all_reduce_ranks", "torchrun", tmp_path, echo="hello")
    assert result == {"sum": 1.0, "world_size": 2, "backend": "gloo", "threads": 1, "echo": "hello"}
    assert sorted(p.name for p in (tmp_path / "pids").iterdir()) == ["rank0.pid", "rank1.pid"]
    assert_no_rank_left(tmp_path)


@pytest.mark.slow
def test_a_raising_rank_is_named_with_its_exception(launcher: str, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"^rank 1 raised ValueError: rank 1 refuses$"):
        run("raise_on_rank_1", launcher, tmp_path)
    assert_no_rank_left(tmp_path)
    if launcher == "torchrun":  # each rank's output in the run folder (under Ray it stays in Ray's logs)
        run_dir = tmp_path / "run"
        assert "ValueError: rank 1 refuses" in (run_dir / "rank1.stderr").read_text()
        names = {p.name for p in run_dir.iterdir()}
        assert {"rank0.stdout", "rank0.stderr", "rank1.stdout", "torchrun.log", "spec.json"} <= names


@pytest.mark.slow
def test_a_killed_rank_fails_the_launch(launcher: str, tmp_path: Path) -> None:
    # Ray does not report the signal that ended a worker; torchrun does
    expected = r"^rank 1 was killed by SIGKILL$" if launcher == "torchrun" else r"^rank 1 died: .*SIGKILL"
    with pytest.raises(LaunchError, match=expected) as failure:
        run("kill_rank_1", launcher, tmp_path)
    assert "\n" not in str(failure.value)
    assert_no_rank_left(tmp_path)


@pytest.mark.slow
def test_the_time_limit_kills_every_rank(tmp_path: Path) -> None:
    """torchrun only, for CI time (40 s under Ray, whose per-worker deadline timers were checked by hand)."""
    # long enough for both ranks to start on a loaded 2-core machine, so that there is something to kill
    timeout_s = 25.0
    started = time.monotonic()
    with pytest.raises(LaunchError, match=rf"^timed out after {timeout_s:g} s"):
        run("sleep_forever", "torchrun", tmp_path, timeout_s=timeout_s)
    assert time.monotonic() - started < timeout_s + 45
    assert len(list((tmp_path / "pids").glob("rank*.pid"))) == 2
    assert_no_rank_left(tmp_path)


@pytest.mark.slow
def test_two_torchrun_launches_run_side_by_side(tmp_path: Path) -> None:
    """``--standalone`` puts each launch's rendezvous on a free port of its own."""
    results: dict[int, Any] = {}

    def one(n: int) -> None:
        try:
            results[n] = run("all_reduce_ranks", "torchrun", tmp_path / str(n), echo=n)
        except Exception as exc:  # reported by the assertion below
            results[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[n]["echo"] for n in range(2)] == [0, 1], results
    assert all(results[n]["sum"] == 1.0 for n in range(2))


@pytest.mark.slow
def test_a_torchrun_launch_dies_with_its_launcher(tmp_path: Path) -> None:
    """A launching process killed with SIGKILL takes torchrun's agent and every rank with it."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from brainsearch.train.launch import launch
        launch("{ENTRIES}:sleep_forever", {{"pid_dir": "{tmp_path / "pids"}"}}, 2, launcher="torchrun",
               use_gpu=False, run_dir=Path("{tmp_path / "run"}"))
        """
    )
    (tmp_path / "pids").mkdir()
    launcher = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 90
        while len(list((tmp_path / "pids").glob("rank*.pid"))) < 2:
            assert time.monotonic() < deadline, "the ranks never started"
            assert launcher.poll() is None, "the launcher ended early"
            time.sleep(0.2)
    finally:
        launcher.kill()
        launcher.wait()
    assert_no_rank_left(tmp_path, wait_s=10)


def test_a_malformed_entry_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"package\.module:function"):
        launch("no_colon", {}, 2, launcher="torchrun", use_gpu=False, run_dir=tmp_path)


@pytest.mark.slow
def test_ray_refuses_workers_the_cluster_cannot_hold(ray_cluster: None, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(LaunchError, match=r"^Ray cannot place 2 workers: they need 128 CPUs, the cluster has \d+$"):
        launch(
            f"{ENTRIES}:all_reduce_ranks",
            {},
            2,
            launcher="ray",
            use_gpu=False,
            run_dir=tmp_path,
            cpus_per_worker=64,
        )
    assert time.monotonic() - started < 30  # not Ray Train's 60 s wait for workers that never come


@pytest.mark.slow
def test_ray_launch_from_inside_an_actor(ray_cluster: None, tmp_path: Path) -> None:
    """The Ray executor runs jobs on actors: a launch from one (holding a CPU of its own) trains on the same Ray."""
    import ray

    @ray.remote(num_cpus=1)
    class Job:
        def run(self, run_dir: str) -> dict[str, Any]:
            return launch(
                f"{ENTRIES}:all_reduce_ranks",
                {"echo": "nested"},
                2,
                launcher="ray",
                use_gpu=False,
                run_dir=Path(run_dir),
                timeout_s=120,
            )

    job = Job.remote()  # type: ignore[attr-defined]
    try:
        result = ray.get(job.run.remote(str(tmp_path)), timeout=180)
    finally:
        ray.kill(job)
    assert result["sum"] == 1.0 and result["echo"] == "nested"


def test_available_devices_counts_what_a_launch_could_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    assert available_devices(use_gpu=False) == len(os.sched_getaffinity(0))
    assert available_devices(use_gpu=True) == 0  # the CPU build of torch sees no GPU


@pytest.mark.slow
def test_available_devices_asks_ray_when_it_is_running(ray_cluster: None) -> None:
    import ray

    assert available_devices(use_gpu=False) == int(ray.cluster_resources()["CPU"])  # type: ignore[no-untyped-call]
    assert available_devices(use_gpu=True) == 0


def test_torchrun_failure_summary_is_read_root_cause_first() -> None:
    log = textwrap.dedent(
        """
        Failures:
        [1]:
          rank      : 0 (local_rank: 0)
          exitcode  : -15 (pid: 11) (SIGTERM)
        ------------------------------------------------------------
        Root Cause (first observed failure):
        [0]:
          rank      : 1 (local_rank: 1)
          exitcode  : -9 (pid: 12) (SIGKILL)
        """
    )
    assert launch_module._torchrun_failures(log) == [(1, -9), (0, -15)]
