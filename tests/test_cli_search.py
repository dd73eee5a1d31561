"""The search commands: `search` end to end on the tiny space (baselines on the leaderboard, trials beating or
losing to them honestly), `leaderboard`, and bad input exiting 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brainsearch.cli import main
from brainsearch.storage import Repository, make_engine
from tests.search.conftest import fast_space


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.mark.slow
def test_search_tiny_eight_trials_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'e2e.db'}"
    code, out, err = run(["search", "search_spaces/tiny.yaml", "--trials", "8", "--db", db], capsys)
    assert code == 0, err
    assert "glam baseline" in out and "dense baseline" in out and "search 1: 10 trials" in out
    repo = Repository(make_engine(db))
    trials = repo.list_trials(1, limit=100).items
    baselines = {t.baseline_name: t for t in trials if t.is_baseline}
    assert {b.state for b in baselines.values()} == {"completed"}
    candidates = [t for t in trials if not t.is_baseline]
    assert len(candidates) == 8 and {t.state for t in candidates} <= {"completed", "pruned"}
    glam = baselines["glam"]
    assert glam.val_loss is not None
    # Honest comparisons: every completed candidate's loss and step time were measured, ranks follow the losses,
    # and a candidate pruned by the quarter-budget rule was behind the baseline at that point (64K tokens: 125 steps).
    completed = [t for t in trials if t.state == "completed"]
    assert [t.val_loss for t in completed] == sorted(t.val_loss for t in completed)  # type: ignore[type-var]
    for t in completed:
        assert t.step_time_s and t.metrics["steps"] == 125 and t.metrics["val_loss"] == t.val_loss
    for t in candidates:
        if t.state == "pruned":
            assert "worse than the glam baseline's" in (t.reason or "")
            assert t.metrics["steps"] < 125
    # The leaderboard command prints the same ranking.
    code, out, _ = run(["leaderboard", "1", "--db", db, "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["id"] for r in rows] == [t.id for t in trials[:20]]


def test_leaderboard_table_and_missing_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    code, _, err = run(["leaderboard", "7", "--db", db], capsys)
    assert code == 2 and "SEARCH_ID: no search 7" in err
    code, _, err = run(["resume", "7", "--db", db], capsys)
    assert code == 2 and "no search 7" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["search", "tiny", "--sampler", "anneal"], "search.sampler"),
        (["search", "tiny", "--trials", "0"], "search.trials"),
        (["search", "tiny", "--executor", "slurm"], "options: executor"),
        (["search", "tiny", "--db", "nosuchdb://x"], "--db: cannot use database"),
        (["search", "tiny", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/x"], "--db: cannot use database"),
        (["search", "no-such-space"], "bundled spaces"),
        (["leaderboard", "1", "--sort", "colour"], "--sort: must be one of"),
    ],
)
def test_search_bad_input_exits_2(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--db" not in args:
        args = [*args, "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    code, out, err = run(args, capsys)
    assert code == 2, out + err
    assert expected in err and "Traceback" not in err


@pytest.mark.slow
def test_search_on_an_existing_ray_cluster(tmp_path: Path) -> None:
    import socket

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # both ends of this throw-away cluster, on loopback only
    ray = str(Path(sys.executable).parent / "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = [ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    subprocess.run([*start, "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
    try:
        space = tmp_path / "space.yaml"
        space.write_text(yaml.safe_dump(fast_space().model_dump(mode="json")))
        db = f"sqlite:///{tmp_path / 'ray.db'}"
        args = ["search", str(space), "--trials", "2", "--executor", "ray", "--threads", "1", "--db", db]
        done = subprocess.run(
            [sys.executable, "-m", "brainsearch", *args, "--ray-address", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "glam baseline" in done.stdout
        repo = Repository(make_engine(db))
        trials = repo.list_trials(1, limit=100).items
        assert len(trials) == 4 and {t.state for t in trials} <= {"completed", "pruned"}
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
