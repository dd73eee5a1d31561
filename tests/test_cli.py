"""The brainsearch command: validate / sample / cost, and bad input exits 2 with path-named lines, no traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.cli import main
from brainsearch.space import bundled_space_names, load_space


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("name", bundled_space_names())
def test_validate_bundled(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["validate", name], capsys)
    assert code == 0, err
    assert f"OK {name}" in out and "params (total)" in out and "size" in out


def test_validate_says_whether_a_space_scales_up(capsys: pytest.CaptureFixture[str]) -> None:
    """tiny has no ladder: it must not claim "top-2 scaled up"; brainformer names its ladder and target."""
    _, tiny, _ = run(["validate", "tiny"], capsys)
    tiny = " ".join(tiny.split())
    assert "top-2" not in tiny and "no scale-up stage" in tiny
    _, paper, _ = run(["validate", "brainformer"], capsys)
    assert "scaled up over 100m-32e -> 1b-64e" in " ".join(paper.split()) and "8b-64e" in paper


def test_progress_text_counts_states_apart() -> None:
    """2 of 3 pruned reads "3/3 ... 1 completed, 2 pruned", never "3/3 completed"; the scale-up stage moves the
    bar on its own count."""
    from brainsearch.cli.progress import bar_state

    p = {"completed": 1, "pruned": 2, "failed": 0, "crashed": 0, "running": 0, "requested": 3, "stage": "trials"}
    done, total, text = bar_state({**p, "baselines": {"glam": 2.5}, "best_val_loss": 2.4, "best_number": 3})
    assert (done, total) == (3, 3) and "1 completed, 2 pruned, 0 failed" in text and "glam 2.5000" in text
    done, total, text = bar_state({**p, "stage": "scale-up 2/6", "baselines": {}})
    assert (done, total) == (2, 6) and "scale-up 2/6" in text
    done, total, text = bar_state({**p, "stage": "re-evaluation 1/8", "baselines": {}})
    assert (done, total) == (1, 8)


def test_progress_off_a_terminal_is_a_line_per_change_with_an_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    """Pass: with stderr redirected, the progress of a search is one plain line whenever its stage or count changes
    (nothing when neither does), with the time elapsed and, once a run of the stage is done, the time left; the
    stage clock gives each stage's time up to the next one."""
    from brainsearch.cli import progress

    lines = progress._bar("[bold]search {task.fields[id]}")
    assert isinstance(lines, progress._Lines)  # pytest captures stderr: not a terminal
    task = lines.add_task("trials", id=7)
    lines.update(task, total=6, completed=0, status="[bold]trials[/]  0 completed")
    lines.update(task, total=6, completed=0, status="[bold]trials[/]  0 completed")
    lines.update(task, total=6, completed=2, status="[bold]trials[/]  2 completed")
    lines.update(task, total=4, completed=0, status="[bold]scale-up 0/4[/]  6 completed")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d search 7: ", line) for line in err)
    err = [line[20:] for line in err]  # past the UTC time stamp
    assert err[0].startswith("search 7: 0/6  trials  0 completed  [0 s]") and "ETA" not in err[0]
    assert "2/6  trials  2 completed" in err[1] and ", ETA " in err[1]
    assert "0/4  scale-up 0/4" in err[2] and "ETA" not in err[2]
    clock = progress.StageClock(started=0.0, seen={"baselines": 1.0, "trials": 4.0, "scale-up": 10.0})
    assert clock.durations(end=12.5) == [("baselines", 3.0), ("trials", 6.0), ("scale-up", 2.5)]


def test_leaderboard_notes_are_cut_at_words() -> None:
    from brainsearch.cli.render import note

    reason = "training loss 2.9123 at a quarter of the budget is worse than the glam baseline's " * 3
    shown = note({"is_baseline": False, "reason": reason})
    assert len(shown) <= 100 and shown.endswith(" …")
    assert reason.startswith(shown.removesuffix(" …") + " ")  # the cut falls between words
    assert note({"is_baseline": True, "baseline_name": "dense", "reason": None}) == "dense baseline"


def test_validate_json_reports_range(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["validate", "tiny", "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["name"] == "tiny" and summary["size"] > 1000
    lo, hi = summary["params_total"]
    assert lo < hi
    assert cost(Architecture.from_json(summary["largest"])).params_total == hi


def test_sample_prints_json_lines_reproducibly(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["sample", "tiny", "-n", "5", "--seed", "3"], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 5
    archs = [Architecture.from_json(line) for line in lines]
    assert all(a.to_json() == line for a, line in zip(archs, lines, strict=True))
    assert run(["sample", "tiny", "-n", "5", "--seed", "3"], capsys)[1] == out


def test_cost_of_a_file_and_a_preset_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = preset("brainformer-1")
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json(indent=2))
    _, from_file, _ = run(["cost", str(path), "--json"], capsys)
    _, from_preset, _ = run(["cost", "--preset", "brainformer-1", "--json"], capsys)
    assert json.loads(from_file) == json.loads(from_preset)
    doc = json.loads(from_file)
    for key in ("params_total", "params_activated", "params_embedding", "flops_per_token", "memory_bytes"):
        assert doc[key] == getattr(cost(arch), key)
    assert doc["pattern"] == "afgggfff"


def test_cost_accepts_an_export_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"architecture": preset("glam").to_dict(), "trial_id": 1}))
    code, out, _ = run(["cost", str(path)], capsys)
    assert code == 0 and "params total" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cost"], "ARCH: give an architecture: a JSON file, '-' or one of dense, glam"),
        (["cost", "--preset", "nope"], "ARCH: give an architecture"),
        (["cost", "nope"], "nope: cannot read: No such file or directory"),
        (["cost", "glam", "--preset", "9b"], "preset: unknown scale preset '9b'"),
        (["cost", "missing.json"], "missing.json: cannot read: No such file or directory"),
        (["cost", "--preset", "glam", "--precision", "fp8"], "--precision: expected fp32 or bf16"),
        (["validate", "missing.yaml"], "missing.yaml: cannot read"),
        (["sample", "tiny", "-n", "0"], "Invalid value"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_exits_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(args, capsys)
    assert code == 2 and expected in err and "Traceback" not in err


def test_bad_architecture_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({**preset("glam").to_dict(), "d_model": -1}))
    code, _, err = run(["cost", str(path)], capsys)
    assert code == 2 and f"{path}: d_model: Input should be greater than or equal to 1" in err


JUNK = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    ).map(lambda doc: json.dumps(doc).encode()),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=JUNK)
@example(data=b'{"\\u0085": null}')  # a key holding a line break (NEL) once split an error line in two
def test_any_junk_file_gives_exit_2_and_path_named_lines(
    data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(data)
    code, _, err = run(["validate", str(path)], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    # FILE[:LINE]: [dotted.path: ]message, one line each
    assert lines and all(re.match(re.escape(str(path)) + r"(:\d+)?: .", line) for line in lines), err


MUTATIONS = st.sampled_from(
    [
        ("block", "slots", 0),
        ("block", "d_model", "wide"),
        ("block", "moe", None),
        ("proxy", "budget", {}),
        ("search", "trials", -1),
        ("block", "attention", {"heads": {"choices": [0, 2]}}),
        ("constraints", "x", 1),
        ("block", "moe", {"hidden": 64, "experts": {"low": 4, "high": 2}}),
        ("proxy", "vocab_size", 1.5),
        ("search", "top_k", "three"),
        ("block", "ffn", {"hidden": {"low": 1.0, "high": 2.0}}),
    ]
)


@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=4, unique_by=lambda m: (m[0], m[1])))
def test_mutated_bundled_space_is_rejected_with_paths(mutations: list[tuple[str, str, object]]) -> None:
    import yaml

    from brainsearch.errors import SpaceError
    from brainsearch.space import bundled_spaces_dir, parse_space

    doc = yaml.safe_load((bundled_spaces_dir() / "tiny.yaml").read_text())
    for section, key, value in mutations:
        doc[section][key] = value
    with pytest.raises(SpaceError) as info:
        parse_space(yaml.safe_dump(doc), "m.yaml")
    touched = {f"{section}.{key}" for section, key, _ in mutations}
    assert all(str(p).startswith("m.yaml") for p in info.value.problems)
    assert any(any(p.path.startswith(t) for t in touched) for p in info.value.problems), info.value.problems


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nblock: {slots: 99, d_model: 64}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "brainsearch", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{bad}:2: block.slots: 99 is outside [1, 32]" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert load_space("tiny").name == "tiny"


def test_train_json_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(scale(preset("brainformer-1"), "cpu-tiny").to_json())
    code, out, _ = run(
        [
            "train",
            str(arch_file),
            "--budget-tokens",
            "2K",
            "--batch-size",
            "4",
            "--json",
            "--data",
            str(Path(__file__).parent / "train" / "golden_corpus.txt"),
        ],
        capsys,
    )
    result = json.loads(out)
    assert code == 0 and result["status"] == "completed" and result["steps"] == 8
    for key in ("val_loss", "train_loss", "steps", "tokens", "step_time_s", "tokens_per_s", "moe"):
        assert result[key] is not None, key


def test_train_preset_name_and_scale_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "train",
            "dense",
            "--preset",
            "cpu-tiny",
            "--budget-tokens",
            "1K",
            "--json",
            "--data",
            str(Path(__file__).parent / "train" / "golden_corpus.txt"),
        ],
        capsys,
    )
    result = json.loads(out)
    assert code == 0 and result["params_total"] == cost(scale(preset("dense"), "cpu-tiny")).params_total


def test_train_failure_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "train",
            "glam",
            "--preset",
            "cpu-tiny",
            "--time-limit",
            "0.000001",
            "--json",
            "--data",
            str(Path(__file__).parent / "train" / "golden_corpus.txt"),
        ],
        capsys,
    )
    assert code == 1 and json.loads(out)["status"] == "timed_out"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "glam", "--budget-tokens", "1K", "--budget-seconds", "3"], "give at most one of --budget-tokens"),
        (["train", "glam", "--budget-tokens", "lots"], "train: budget.tokens: 'lots' is not a number"),
        (["train", "glam", "--budget-tokens", "-5"], "train: budget.tokens: Input should be greater than 0"),
        (["train", "glam", "--preset", "cpu-huge"], "unknown scale preset 'cpu-huge'"),
        (["train", "nope.json"], "nope.json: cannot read"),
        (["train", "glam", "--preset", "cpu-tiny", "--data", "/nonexistent/x"], "/nonexistent/x: data: no such file"),
        (["train", "glam", "--device", "tpu"], "train: device: Input should be 'auto', 'cpu' or 'cuda'"),
        (["validate", "tinyy"], "tinyy: cannot read: No such file or directory (bundled spaces: "),
    ],
)
def test_train_bad_input_exits_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(args, capsys)
    assert code == 2 and expected in err and "Traceback" not in err, err


def test_train_on_missing_cuda_is_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    code, _, err = run(["train", "glam", "--preset", "cpu-tiny", "--device", "cuda"], capsys)
    assert code == 2 and "device: cuda was asked for but this machine has no usable CUDA device" in err


# --- cost: recipes, shards and the device plan ----------------------------------------------------------------------


def test_cost_with_a_recipe_and_shards(capsys: pytest.CaptureFixture[str]) -> None:
    from brainsearch.arch.plan import RECIPES

    args = ["cost", "--preset", "glam", "--batch-size", "8", "--recipe", "bf16-adafactor", "--shards", "2"]
    code, text, _ = run([*args, "--json"], capsys)
    doc = json.loads(text)
    recipe = RECIPES["bf16-adafactor"].model_copy(update={"shards": 2})
    expected = cost(preset("glam"), 8, recipe=recipe)
    assert code == 0 and doc["recipe"] == recipe.model_dump() and doc["micro_batch"] == 4
    assert doc["memory_bytes"] == expected.memory_bytes and doc["memory_gather_bytes"] > 0
    code, text, _ = run(args, capsys)
    assert code == 0 and "FSDP2 x 2, bf16 Adafactor" in text and "of which FSDP2 gathers" in text


def test_cost_plans_devices(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["cost", "--preset", "glam-1.7b-64e", "--batch-size", "64", "--precision", "bf16"]
    code, text, err = run([*args, "--device-memory", "141GB"], capsys)
    assert code == 0, err
    assert "glam-1.7b-64e: 1 GPU of 141 GB, bf16 Adafactor, micro-batch 4 of 64 per device" in text
    code, text, _ = run([*args, "--device-memory", "141GB", "--json"], capsys)
    plan = json.loads(text)["device_plan"]
    assert (plan["devices"], plan["recipe_label"], plan["limit_bytes"]) == (1, "bf16 Adafactor", int(0.9 * 141e9))


def test_cost_refuses_a_cluster_too_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "8b-64e.json"
    path.write_text(scale(preset("glam"), "8b-64e").to_json())
    args = ["cost", str(path), "--batch-size", "64", "--precision", "bf16", "--device-memory", "141GB"]
    code, text, err = run([*args, "--gpus", "2"], capsys)
    assert code == 1 and text == "" and err.strip() == "8b-64e needs at least 32 GPUs of 141 GB; the cluster has 2"
    code, _, err = run([*args[:-1], "80GB", "--gpus", "2"], capsys)
    assert code == 1 and err.strip() == "8b-64e does not fit 64 GPUs of 80 GB (batch 64)"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--recipe", "nope"], "cost: --recipe: expected one of fp32-adamw, bf16-adafactor, bf16-adafactor-fused"),
        (["--shards", "0"], "cost: --shards: expected a whole number of devices in 1..4096, got '0'"),
        (["--shards", "two"], "cost: --shards: expected a whole number of devices"),
        (["--shards", "3"], "cost: --shards: 3 does not divide --batch-size 8"),
        (["--shards", "4", "--micro-batch", "4"], "cost: --micro-batch: 4 is larger than each device's share (2)"),
        (["--recipe", "bf16-adafactor-fused", "--micro-batch", "2"], "cost: --micro-batch: bf16-adafactor-fused"),
        (["--device-memory", "12XB"], "cost: --device-memory: '12XB' is not a number"),
        (["--device-memory", "0.5"], "cost: --device-memory: expected a memory size"),
        (["--gpus", "2"], "cost: --gpus: needs --device-memory"),
        (["--device-memory", "80GB", "--gpus", "-1"], "cost: --gpus: expected a whole number of devices"),
        (["--device-memory", "80GB", "--recipe", "fp32-adamw"], "cost: --recipe: not with --device-memory"),
    ],
)
def test_cost_bad_recipe_options_exit_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["cost", "--preset", "glam", *args], capsys)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_a_run_no_host_device_holds_names_the_gpus_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    """Pass: on this host without GPUs, training 8b-64e is refused before anything is allocated (exit 1, an
    out_of_memory result) and the reason names the GPUs the memory planner would train it on."""
    code, out, _ = run(["train", "glam", "--preset", "8b-64e", "--json"], capsys)
    result = json.loads(out)
    assert code == 1 and result["status"] == "out_of_memory" and result["steps"] == 0
    assert "does not fit 1 process" in result["reason"]
    assert "on GPUs it needs" in result["reason"] and "32 H200s of 141 GB in bf16 (FSDP2 x 32" in result["reason"]


def test_cost_and_train_read_arch_and_scale_preset_alike(capsys: pytest.CaptureFixture[str]) -> None:
    """Pass: the README's planning command runs as written: ``cost`` takes ARCH (a preset name here) and
    ``--preset`` (a scale preset, with its batch) as ``train`` does; it equals costing the scaled JSON at that batch."""
    code, out, err = run(["cost", "--preset", "1b-64e", "glam", "--device-memory", "141GB", "--gpus", "1"], capsys)
    assert code == 0, err
    assert "1b-64e: 1 GPU of 141 GB" in out and "per device (limit" in out and "0.0 GiB" not in out
    _, scaled, _ = run(["cost", "glam", "--preset", "1b-64e", "--json"], capsys)
    expected = cost(scale(preset("glam"), "1b-64e"), batch_size=64)
    assert json.loads(scaled)["params_total"] == expected.params_total
    assert json.loads(scaled)["memory_bytes"] == expected.memory_bytes
