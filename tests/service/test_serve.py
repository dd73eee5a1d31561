"""`brainsearch serve` and `brainsearch worker` as processes: a search submitted over HTTP is run to completion by
the embedded worker; a standalone worker drains the queue of a shared database; SIGTERM stops them cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from brainsearch.search.submission import create_search
from brainsearch.storage import Repository, make_engine
from tests.factories import fast_space

pytestmark = pytest.mark.slow  # every test starts brainsearch processes or trains a search


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(database_url: str, log: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    """`brainsearch serve` as a process on a free port (output to ``log``), once it answers its health check."""
    port = _free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "brainsearch", "serve", "--port", str(port), "--db", database_url],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            if api.get("/healthz").status_code == 200:
                return proc, api
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(log.read_text())
        time.sleep(0.2)


# The embedded default is SQLite; standalone workers share PostgreSQL (lease semantics run on both in storage tests).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_runs_a_submitted_search(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc, api = _serve(database_url, log)
    try:
        doc = fast_space().model_dump(mode="json")
        r = api.post("/searches", json={"space": doc, "trials": 2, "sampler": "random"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        deadline = time.monotonic() + 180
        while (s := api.get(f"/searches/{sid}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert s["status"] == "completed", s
        board = api.get(f"/searches/{sid}/trials").json()
        assert board["total"] == 4 and sum(t["is_baseline"] for t in board["items"]) == 2
        api.close()
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (lifespan: the worker stops), then re-raises the signal it caught.
        assert proc.wait(60) in (0, -signal.SIGTERM)
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_stops_serve_within_seconds_while_a_trial_trains(database_url: str, tmp_path: Path) -> None:
    """Pass: SIGTERM to `brainsearch serve` while its embedded worker trains a long trial ends the process within
    seconds (the bound is a hang guard: the issue saw a process burn CPU until kill -9), with no traceback, and the
    search goes back to the queue for the next worker."""
    log = tmp_path / "serve.log"
    proc, api = _serve(database_url, log)
    try:
        doc = fast_space(tokens=50_000_000).model_dump(mode="json")  # hours of training: it is stopped mid-run
        sid = api.post("/searches", json={"space": doc, "trials": 2}).json()["id"]
        deadline = time.monotonic() + 120
        while api.get(f"/searches/{sid}/trials").json()["total"] == 0:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        api.close()
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM), log.read_text()
        took = time.monotonic() - stopped_at
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    engine_repo = Repository(make_engine(database_url))
    assert engine_repo.get_search(sid).status == "queued", f"requeued (the process took {took:.1f} s)"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_standalone_worker_drains_the_queue(repo: Repository, database_url: str, tmp_path: Path) -> None:
    ids = [create_search(repo, fast_space(), overrides={"trials": 1, "sampler": "random"})[0].id for _ in range(2)]
    done = subprocess.run(
        [sys.executable, "-m", "brainsearch", "worker", "--once", "--db", database_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for sid in ids:
        s = repo.get_search(sid)
        assert s is not None and s.status == "completed" and s.lease_owner is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--host", "0.0.0.0"], "--host: binding 0.0.0.0 needs a token"),
        (["serve", "--db", "nosuchdb://x"], "--db: cannot use database"),
        (["worker", "--executor", "slurm"], "--executor: must be local or ray"),
    ],
)
def test_serve_and_worker_bad_input(args: list[str], expected: str, tmp_path: Path) -> None:
    env_db = ["--db", f"sqlite:///{tmp_path / 'x.db'}"] if "--db" not in args else []
    r = subprocess.run(
        [sys.executable, "-m", "brainsearch", *args, *env_db], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr


def test_quickstart_runs_the_tiny_space_and_exports_the_winner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from brainsearch.cli import main

    db = f"sqlite:///{tmp_path / 'quick.db'}"
    with pytest.raises(SystemExit) as info:
        main(["quickstart", "--trials", "1", "--port", "0", "--db", db, "--no-scale-up"])
    captured = capsys.readouterr()
    assert info.value.code == 0, captured.err
    assert "dashboard (live while this runs): http://127.0.0.1:" in captured.err and "/searches/1" in captured.err
    # The last word on the dashboard comes after the service stopped, and says how to see the search again.
    assert captured.err.rstrip().splitlines()[-1].startswith("the quickstart's service has stopped")
    # The run ends with its verdict and the time each stage took; the exported winner is the verdict's (with one
    # trial nothing can beat GLaM beyond noise: the baseline is exported).
    lines = captured.out.rstrip().splitlines()
    assert lines[-1].startswith("stages: ") and "baselines " in lines[-1] and "; total " in lines[-1]
    assert lines[-2].startswith("verdict: winner: the glam baseline - no block beats it beyond noise at equal compute")
    assert any(line.startswith("winner: the glam baseline (afagafag), exported to ") for line in lines)
    (exports,) = (tmp_path / "data" / "runs").glob("db-*/search-1/exports")  # under the database's own folder
    exported = json.loads((exports / "glam-baseline.json").read_text())
    assert exported["trial_id"] and len(exported["architecture"]["block"]) == 8
    assert {p.name for p in exports.iterdir()} == {f"glam-baseline.{s}" for s in ("json", "py", "safetensors")}
    run = subprocess.run(
        [sys.executable, str(exports / "glam-baseline.py"), str(exports / "glam-baseline.safetensors")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
