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
from tests.conftest import TrainedSearch
from tests.factories import completed_trials, fast_space


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.mark.slow
def test_search_tiny_eight_trials_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pass: the bundled tiny space with its defaults trains every completed trial at GLaM's compute (within 1.05x,
    FLOPs per token x tokens; a costlier block on fewer tokens), every row carries its compute ratio, and the run ends
    with the verdict line."""
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
    # and a candidate pruned by the quarter-budget rule was behind the baseline at that point. GLaM trains its 64K
    # tokens (125 steps); every other block trains GLaM's compute: its FLOPs per token times its tokens.
    assert glam.metrics["steps"] == 125 and glam.metrics["tokens"] == 64_000
    glam_compute = glam.cost["flops_per_token"] * glam.metrics["tokens"]
    completed = [t for t in trials if t.state == "completed"]
    assert [t.val_loss for t in completed] == sorted(t.val_loss for t in completed)  # type: ignore[type-var]
    for t in completed:
        assert t.step_time_s and t.metrics["val_loss"] == t.val_loss
        compute = t.cost["flops_per_token"] * t.metrics["tokens"]
        assert 1.0 <= compute / glam_compute <= 1.05, (t.number, compute / glam_compute)
    costlier = [t for t in completed if t.cost["flops_per_token"] > 1.1 * glam.cost["flops_per_token"]]
    assert all(t.metrics["tokens"] < glam.metrics["tokens"] for t in costlier)
    for t in candidates:
        if t.state == "pruned":
            assert "worse than the glam baseline's" in (t.reason or "")
            assert t.cost["flops_per_token"] * t.metrics["tokens"] < 0.5 * glam_compute
    # Every row carries its compute ratio; the leaderboard command prints the same ranking; the verdict comes last.
    code, out, _ = run(["leaderboard", "1", "--db", db, "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["id"] for r in rows] == [t.id for t in trials[:20]]
    assert all(r["compute_ratio"] is not None and r["flops_per_token_ratio"] is not None for r in rows)
    for r in rows:
        if r["state"] == "completed":
            assert 1.0 <= r["compute_ratio"] <= 1.05
    code, out, _ = run(["leaderboard", "1", "--db", db], capsys)
    assert code == 0 and out.rstrip().splitlines()[-1].startswith("verdict: winner: ")


def test_leaderboard_table_and_missing_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    code, _, err = run(["leaderboard", "7", "--db", db], capsys)
    assert code == 2 and "SEARCH_ID: no search 7" in err
    code, _, err = run(["resume", "7", "--db", db], capsys)
    assert code == 2 and "no search 7" in err


def test_leaderboard_compares_with_the_space_reference_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: a search whose space names dense as its reference (GLaM trained too, and better) heads the comparison
    column "vs dense" and measures every delta against dense's loss, from the database and from a service alike."""
    from brainsearch.search.submission import create_search
    from brainsearch.settings import Settings
    from brainsearch.space.baselines import baseline_architectures
    from brainsearch.storage import migrate
    from tests.service.conftest import LiveServer

    db = f"sqlite:///{tmp_path / 'reference.db'}"
    engine = make_engine(db)
    migrate(engine)
    repo = Repository(engine)
    space = fast_space(constraints={"baseline": "dense"})
    search, _ = create_search(repo, space, overrides={"trials": 1})
    archs = baseline_architectures(space)
    specs = [(archs["glam"], 3.2, "glam"), (archs["dense"], 3.4, "dense"), (archs["glam"], 3.3, None)]
    completed_trials(repo, search.id, specs)
    repo.set_search_status(search.id, "completed")
    live = LiveServer(Settings(database_url=db, data_dir=tmp_path / "data"))
    try:
        for where in (["--db", db], ["--server", live.url]):
            code, out, err = run(["leaderboard", str(search.id), *where], capsys)
            assert code == 0, err
            assert "vs dense" in out and "vs glam" not in out, out
            deltas = {
                loss: line for line in out.splitlines() for loss in ("3.2000", "3.3000", "3.4000") if loss in line
            }
            # Each compared with dense's loss (its interval is the evaluation error only: one seed, none recorded
            # here); dense itself is the reference, not compared.
            assert "-0.200 [" in deltas["3.2000"] and "-0.100 [" in deltas["3.3000"] and "[" not in deltas["3.4000"]
    finally:
        live.stop()
        engine.dispose()


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
@pytest.mark.ray
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


def test_version_and_help_show_no_value_for_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from brainsearch import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"brainsearch {__version__}"
    code, out, _ = run(["leaderboard", "--help"], capsys)
    assert code == 0 and "--json" in out and "<bool>" not in out and "SEARCH_ID" in out


@pytest.mark.slow
def test_leaderboard_ranks_export_scale_up_later_and_delete(
    trained_copy: TrainedSearch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass (on a copy of the session's trained search): the leaderboard ranks trials, not baselines, and compares
    them with the reference baseline in the database and the server modes alike, each row's interval the API's;
    `export --rank N` exports the row ranked N; `scale-up --ladder` runs another stage for the finished search
    (trials kept, nothing trained twice); `delete` needs --yes off a terminal, then removes the search and its
    files."""
    from brainsearch.search.noise import Interval
    from brainsearch.search.submission import search_noise_view
    from brainsearch.search.verdict import fmt_interval
    from brainsearch.settings import Settings
    from brainsearch.store import RunStore
    from tests.service.conftest import LiveServer

    db, sid = trained_copy.database_url, str(trained_copy.search_id)
    repo = trained_copy.repo

    def table(args: list[str]) -> list[list[str]]:
        code, out, err = run(["leaderboard", sid, *args], capsys)
        assert code == 0, err
        lines = [line.replace("┃", "│") for line in out.splitlines()]  # the header row's rule is heavier
        return [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.count("│") > 5]

    local = table(["--db", db])
    header, rows = local[0], local[1:]
    assert header[:9] == [
        "rank",
        "#",
        "block",
        "state",
        "val loss",
        "seeds",
        "vs glam (95%)",
        "comparison",
        "compute",
    ]
    assert header[-1] == "note"
    ranked = [r for r in rows if r[0]]
    assert len(ranked) == 4 and [r[0] for r in ranked] == [str(i) for i in range(1, len(ranked) + 1)]
    assert all(not r[0] for r in rows if r[-1].endswith("baseline"))
    # Each compared row shows its paired interval against GLaM and what it says, as the noise view computes them.
    search = repo.get_search(trained_copy.search_id)
    assert search is not None
    view = search_noise_view(repo, search)
    trials = {str(t.number): t for t in repo.list_trials(trained_copy.search_id, limit=100).items}
    compared = [r for r in rows if r[7]]  # every completed row but the reference's own
    assert len(compared) == 5  # four trials and the dense baseline
    for r in compared:
        n = view.of(trials[r[1]])
        assert n.vs_baseline is not None and r[6] == fmt_interval(Interval.model_validate(n.vs_baseline))
        assert r[7] == n.comparison and r[8] == f"{n.compute_ratio:.2f}x"
    live = LiveServer(Settings(database_url=db, data_dir=trained_copy.data_dir))
    try:
        assert table(["--server", live.url]) == local
    finally:
        live.stop()
    out_file = trained_copy.data_dir.parent / "r1.json"
    code, _, err = run(["export", sid, "--rank", "1", "--db", db, "-o", str(out_file)], capsys)
    assert code == 0, err
    assert json.loads(out_file.read_text())["trial_number"] == int(ranked[0][1])

    before = {(c.trial_id, c.rung) for c in repo.list_candidates(trained_copy.search_id)}
    code, out, err = run(["scale-up", sid, "--ladder", "cpu-small:4K", "--top-k", "1", "--db", db], capsys)
    assert code == 0, err
    after = {(c.trial_id, c.rung): c.state for c in repo.list_candidates(trained_copy.search_id)}
    added = {key: state for key, state in after.items() if key not in before}
    # The best trial and GLaM at cpu-small; the earlier cpu-tiny runs are kept, not trained again.
    assert {rung for _, rung in added} == {"cpu-small"} and set(added.values()) == {"completed"} and len(added) == 2
    assert before <= set(after) and "scale-up over cpu-small" in out
    assert repo.get_search(trained_copy.search_id).status == "completed"  # type: ignore[union-attr]
    code, _, err = run(["scale-up", sid, "--ladder", "cpu-huge", "--db", db], capsys)
    assert code == 2 and "--ladder.scale_up.ladder[0].preset: unknown scale preset 'cpu-huge'" in err

    store = RunStore(trained_copy.data_dir, repo.database_id())
    assert store.search_dir(trained_copy.search_id).is_dir()
    code, _, err = run(["delete", sid, "--db", db], capsys)
    assert code == 2 and "--yes" in err
    code, _, err = run(["delete", sid, "--yes", "--db", db], capsys)
    assert code == 0 and repo.get_search(trained_copy.search_id) is None
    assert not store.search_dir(trained_copy.search_id).exists()
    repo.engine.dispose()


def test_scale_up_report_shows_how_each_run_went(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pass: `scale-up` prints a runs table (init, devices and sharding, recipe, memory per device estimated and
    measured, throughput, MFU with its peak's label, checkpoints saved / resumes, checkpoints on disk), old rows with
    their defaults, then the checkpoints on disk; --json carries the same fields; a server answers the same table."""
    from brainsearch.settings import Settings
    from brainsearch.storage import migrate
    from tests.factories import seed_scaled_search
    from tests.service.conftest import LiveServer, add_sharded_runs

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    engine = make_engine(db)
    migrate(engine)
    repo = Repository(engine)
    data_dir = Path(os.environ["BRAINSEARCH_DATA_DIR"])
    sid, ids = seed_scaled_search(repo, data_dir)
    add_sharded_runs(repo, sid, ids[1], data_dir)

    def runs_table(out: str) -> list[list[str]]:
        lines = [line.replace("┃", "│") for line in out.split(" runs ", 1)[1].splitlines()]
        return [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.count("│") > 5]

    code, out, err = run(["scale-up", str(sid), "--db", db], capsys)
    assert code == 0, err
    rows = runs_table(out)
    header = ["candidate", "rung", "init", "devices", "recipe", "mem est.", "mem peak", "tok/s", "MFU", "ckpt/resume"]
    assert rows[0] == [*header, "on disk"]
    sharded = next(r for r in rows if r[1] == "cpu-small" and r[3] == "2 x fsdp2")
    assert sharded[2:] == [
        "scratch",
        "2 x fsdp2",
        "FSDP2 x 2, fp32 AdamW",
        "3.00 GiB",
        "2.00 GiB",
        "12.5K",
        "41.2%",
        "3/1",
        "2",
    ]
    upcycled = next(r for r in rows if r[1] == "cpu-small+upcycle")
    assert upcycled[2] == "upcycle @16" and upcycled[-1] == "0"
    old = next(r for r in rows if r[0] == "glam baseline")
    assert old[1:] == ["cpu-tiny", "scratch", "1", "", "", "", "", "", "0/0", "0"]
    assert "MFU against the peak of NVIDIA H200 bf16 dense" in out and "checkpoints on disk:" in out
    assert "trial #1 at cpu-small: step 8 (2027-01-15 08:00:00, " in out and "step 16 (2027-01-15 08:10:00, " in out

    code, out, err = run(["scale-up", str(sid), "--json", "--db", db], capsys)
    assert code == 0, err
    report = json.loads(out)
    rungs = {(c["trial_id"], r["rung"]): r for c in report["candidates"] for r in c["rungs"]}
    small = rungs[(ids[1], "cpu-small")]
    assert (small["devices"], small["sharding"], small["checkpoint_count"], small["resume_count"]) == (2, "fsdp2", 3, 1)
    assert [c["step"] for c in small["checkpoints_on_disk"]] == [8, 16]
    assert rungs[(ids[0], "cpu-tiny")]["devices"] == 1 and rungs[(ids[0], "cpu-tiny")]["checkpoints_on_disk"] == []

    live = LiveServer(Settings(database_url=db, data_dir=data_dir))
    try:
        code, remote, err = run(["scale-up", str(sid), "--server", live.url], capsys)
    finally:
        live.stop()
    assert code == 0, err
    assert runs_table(remote) == rows
