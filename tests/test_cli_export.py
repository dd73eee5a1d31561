"""The winner's commands: `export` (json / yaml / pytorch / safetensors with the spec beside), `scale-up` (the
report), `expand` (Lifelong-MoE from a trial's kept weights); bad input exits 2 naming the option."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from brainsearch.arch import Architecture, preset, scale
from brainsearch.cli import main
from brainsearch.data import write_prose_corpus
from brainsearch.storage import Repository
from brainsearch.store import RunStore, load_weights
from tests.factories import candidate_run, seed_scaled_search, sqlite_repository


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[str, Repository, int, list[int]]:
    """A stored search with a scale-up stage (tests/factories.py), on a SQLite file."""
    repo, db = sqlite_repository(tmp_path, "cli.db")
    sid, ids = seed_scaled_search(repo, Path(os.environ["BRAINSEARCH_DATA_DIR"]))
    return db, repo, sid, ids


def test_export_every_format(
    seeded: tuple[str, Repository, int, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: the best trial (rank 1 = #1) exports as JSON / YAML rebuilding the same architecture, as a Python file,
    and as its kept weights with the JSON spec beside them."""
    db, _, sid, ids = seeded
    code, out, err = run(["export", str(sid), "--db", db, "-o", str(tmp_path / "w.json")], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["trial_id"] == ids[1] and doc["search_id"] == sid and "trial #1" in out
    assert Architecture.from_json(doc["architecture"]) == scale(preset("glam"), "cpu-tiny")
    code, _, err = run(
        ["export", str(sid), "--db", db, "-f", "yaml", "--number", "2", "-o", str(tmp_path / "w.yaml")], capsys
    )
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "w.yaml").read_text())["trial_id"] == ids[2]
    code, _, err = run(["export", str(sid), "--db", db, "-f", "pytorch", "-o", str(tmp_path / "w.py")], capsys)
    assert code == 0, err
    assert "def build(" in (tmp_path / "w.py").read_text()
    code, out, err = run(
        ["export", str(sid), "--db", db, "-f", "safetensors", "-o", str(tmp_path / "m.safetensors")], capsys
    )
    assert code == 0, err
    assert "spec beside it" in out
    arch, _, _ = load_weights(tmp_path / "m.safetensors")
    assert json.loads((tmp_path / "m.json").read_text())["architecture"] == arch.to_dict()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--trial", "777"], "--trial: search {sid} has no trial with id 777"),
        (["--number", "7"], "--number: search {sid} has no trial #7"),
        (["--rank", "3"], "--rank: search {sid} has 2 completed trial(s), not 3"),
        (["--number", "1", "--rank", "1"], "--trial: give one of --trial, --number and --rank"),
        (["-f", "onnx"], "--format: must be one of json, yaml, pytorch, safetensors, got 'onnx'"),
        (["-f", "safetensors", "--rank", "2"], "--format: no trained weights for trial #2"),
        (["-f", "safetensors", "-o", "w.json"], "--output: expected a .safetensors path, got w.json"),
    ],
)
def test_export_bad_input_exits_2(
    seeded: tuple[str, Repository, int, list[int]], args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _, sid, _ = seeded
    code, _, err = run(["export", str(sid), "--db", db, *args], capsys)
    assert code == 2 and expected.format(sid=sid) in err and "Traceback" not in err


def test_export_into_a_folder_exits_2(
    seeded: tuple[str, Repository, int, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _, sid, _ = seeded
    (tmp_path / "folder.json").mkdir()
    code, _, err = run(["export", str(sid), "--db", db, "-o", str(tmp_path / "folder.json")], capsys)
    assert code == 2 and f"--output: cannot write {tmp_path / 'folder.json'}: Is a directory" in err


def test_scale_up_report_and_its_errors(
    seeded: tuple[str, Repository, int, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: the table names both candidates, fidelity per rung and predictions; --json is the API's report."""
    db, _, sid, ids = seeded
    code, out, err = run(["scale-up", str(sid), "--db", db], capsys)
    assert code == 0, err
    assert (
        "trial #1" in out
        and "glam baseline" in out
        and "proxy fidelity" in out
        and "cpu-small +1.00 (3 candidates)" in out
    )
    code, out, _ = run(
        ["scale-up", str(sid), "--db", db, "--json", "--law", "chinchilla", "--target", "8b-64e"], capsys
    )
    report = json.loads(out)
    assert code == 0 and report["law"] == "chinchilla" and report["target"] == "8b-64e"
    assert [c["trial_id"] for c in report["candidates"]] == [ids[1], ids[2], ids[0]]
    assert report["fidelity_pairs"] == {"cpu-tiny": 3, "cpu-small": 3}
    assert report["candidates"][0]["rungs"][1]["steps_per_s_ratio"] == pytest.approx(1.0)
    for args, expected in [
        (["--target", "9t"], "unknown scale preset '9t'"),
        (["--law", "cubic"], "--law: must be kaplan or chinchilla"),
    ]:
        code, _, err = run(["scale-up", str(sid), "--db", db, *args], capsys)
        assert code == 2 and expected in err
    code, _, err = run(["scale-up", "99", "--db", db], capsys)
    assert code == 2 and "no search 99" in err


def test_scale_up_report_shows_intervals_timing_and_the_target(
    seeded: tuple[str, Repository, int, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: the table shows val loss ± its interval, steps/s vs base with a probe's range or "uncertain" (and why),
    slowed runs marked with their MFU and re-timed step time, the one target in activated parameters and compute,
    and each prediction's extrapolation flagged "far" past 100x; --json carries the same fields."""
    db, repo, sid, ids = seeded
    probe = {"ratio": 0.8, "low": 0.75, "high": 0.9, "spread": 0.19, "bound": 0.2, "uncertain": False}
    doubtful = {"ratio": 0.5, "low": 0.3, "high": 1.2, "spread": 1.8, "bound": 0.2, "uncertain": True, "rounds": 3}
    runs = [  # trial, rung, loss, activated params, metrics: newer rows than the seeded ones, so they are read
        (ids[0], "cpu-tiny", 2.9, 1e3, {"step_time_s": 0.1}),
        (ids[1], "cpu-tiny", 2.8, 1e3, {"step_time_s": 0.1}),
        (ids[2], "cpu-tiny", 2.85, 1e3, {"step_time_s": 0.1, "timing_probe": doubtful}),
        (ids[0], "cpu-small", 2.7, 1e4, {"step_time_s": 0.45, "mfu": 0.12}),
        (
            ids[1],
            "cpu-small",
            2.5,
            1e4,
            {
                "step_time_s": 0.1,
                "mfu": 0.56,
                "timing_probe": {**probe, "baseline_step_s": 0.1, "candidate_step_s": 0.08},
            },
        ),
        (ids[2], "cpu-small", 2.6, 1e4, {"step_time_s": 0.1, "mfu": 0.6}),
    ]
    for trial_id, rung, loss, n, metrics in runs:
        candidate_run(repo, sid, trial_id, rung, loss, params_activated=n, val_curve=[[8, loss]], **metrics)
    code, out, err = run(["scale-up", str(sid), "--db", db, "--target", "8b-64e"], capsys)
    assert code == 0, err
    cells = [[c.strip() for c in line.split("│")] for line in out.splitlines() if line.count("│") == 11]
    rows = {(c[4], c[5], c[8]) for c in cells}  # rung, val loss, steps/s vs base
    assert ("cpu-small", "2.5000 ± 0.0196", "1.25x (1.11-1.33)") in rows  # 1 / 0.8, range [1 / 0.9, 1 / 0.75]
    assert ("cpu-tiny", "2.8500 ± 0.0196", "uncertain") in rows and ("cpu-tiny", "2.8000 ± 0.0196", "1.00x") in rows
    assert "trial #2 at cpu-tiny: timing probe's spread 180% over 3 rounds exceeds its bound 20%" in out
    assert "trial #2 at cpu-small: glam baseline was slowed (MFU 12.0% against the rung's median 56.0%)" in out
    assert "12.0% slowed" in out and "glam baseline at cpu-small: MFU 12.0% against the rung's median 56.0%; " in out
    assert "step 450.0 ms in its run, 100.0 ms re-timed by a probe" in out
    assert "target: 8b-64e (glam baseline's block at 8b-64e): 21.4M activated parameters, 2.41e+17 FLOPs" in out
    assert out.count("2,144x far") == 3 and "far: the target is more than 100x past the largest rung run" in out

    code, out, err = run(["scale-up", str(sid), "--db", db, "--target", "8b-64e", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    target = report["target_scale"]
    assert (target["preset"], target["reference"], target["params_activated"]) == ("8b-64e", "glam baseline", 21442752)
    assert all(
        c["prediction"]["target"] == target and c["prediction"]["far_extrapolation"] for c in report["candidates"]
    )
    small = {c["label"]: c["rungs"][1] for c in report["candidates"]}
    assert small["glam baseline"]["slowed"] and small["glam baseline"]["retimed_step_time_s"] == 0.1
    assert small["trial #1"]["speed_source"] == "probe" and small["trial #2"]["speed_uncertain"]


def test_expand_a_kept_trial_and_bad_input(
    seeded: tuple[str, Repository, int, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: `expand SEARCH:NUMBER` adds 2 experts per MoE layer, reports both methods on both corpora and saves the
    expanded weights; a trial without weights, a missing data file and --add-experts 0 exit 2."""
    db, _, sid, _ = seeded
    prose = write_prose_corpus(tmp_path / "prose")
    code_file = tmp_path / "code.txt"
    code_file.write_text(Path(json.__file__).read_text() * 4)
    out_path = tmp_path / "expanded.safetensors"
    args = ["--add-experts", "2", "--data", str(prose), "--old-data", str(code_file), "--steps", "3", "--db", db]
    code, out, err = run(["expand", f"{sid}:1", *args, "-o", str(out_path), "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["experts_before"] == [4, 4] and report["experts_after"] == [6, 6] and report["steps"] == 3
    assert report["plain"]["log"]["steps"] == 3 and report["lifelong"]["losses"]["old"] > 0
    arch, _, _ = load_weights(out_path)
    assert {layer.experts for layer in arch.block if layer.type == "moe"} == {6}
    code, out, err = run(["expand", str(out_path), *args, "--no-baseline"], capsys)
    assert code == 0, err
    assert "lifelong (lambda 1)" in out and "plain fine-tuning" not in out
    for bad, expected in [
        ([f"{sid}:2", *args], "TRIAL_OR_WEIGHTS: no trained weights for trial #2"),
        ([f"{sid}:1", *args, "-o", str(tmp_path)], "--output: expected a .safetensors path"),
        ([f"{sid}:9", *args], f"TRIAL_OR_WEIGHTS: no trial {sid}:9"),
        (["nonsense", *args], "expected a .safetensors file, SEARCH_ID:NUMBER or a trial id"),
        ([f"{sid}:1", *args[:2], "--data", str(tmp_path / "none.txt"), *args[4:]], "no such file or directory"),
    ]:
        code, _, err = run(["expand", *bad], capsys)
        assert code == 2 and expected in err and "Traceback" not in err, err
    code, _, err = run(["expand", f"{sid}:1", "--add-experts", "0", "--data", str(prose), "--db", db], capsys)
    assert code == 2 and "add-experts" in err


def test_export_from_a_server(
    seeded: tuple[str, Repository, int, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: with --server the same picks (id, number, rank) give the same files as from the database."""
    from brainsearch.settings import Settings
    from tests.service.conftest import LiveServer

    db, repo, sid, ids = seeded
    data_dir = Path(os.environ["BRAINSEARCH_DATA_DIR"])
    live = LiveServer(Settings(database_url=db, data_dir=data_dir))
    try:
        remote = ["export", str(sid), "--server", live.url]
        weights = tmp_path / "r.safetensors"
        code, _, err = run([*remote, "--trial", str(ids[1]), "-f", "safetensors", "-o", str(weights)], capsys)
        assert code == 0, err
        kept = RunStore(data_dir, repo.database_id()).trial_weights(sid, ids[1])
        assert weights.read_bytes() == kept.read_bytes()
        assert json.loads((tmp_path / "r.json").read_text())["trial_id"] == ids[1]
        code, _, err = run([*remote, "--number", "2", "-f", "yaml", "-o", str(tmp_path / "n.yaml")], capsys)
        assert code == 0, err
        assert yaml.safe_load((tmp_path / "n.yaml").read_text())["trial_id"] == ids[2]
        code, _, err = run([*remote, "--rank", "2", "-o", str(tmp_path / "r2.json")], capsys)
        assert code == 0, err
        assert json.loads((tmp_path / "r2.json").read_text())["trial_id"] == ids[2]
        for args, expected in [
            (["--rank", "5"], "--rank: search {sid} has 2 completed trial(s), not 5"),
            (["--number", "9"], "--number: search {sid} has no trial #9"),
            (["--trial", "999"], "404 from the server: no trial 999"),
            (["--rank", "2", "-f", "safetensors"], "no trained weights for trial #2"),
        ]:
            code, _, err = run([*remote, *args], capsys)
            assert code == 2 and expected.format(sid=sid) in err and "Traceback" not in err, err
    finally:
        live.stop()
