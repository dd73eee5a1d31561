"""Sharded training on the CPU (gloo): a 2-process FSDP2 run, launched by torchrun and by Ray Train, trains exactly
as one process does on the same batches (micro-batches of half the batch: routing is per forward in both), and a
2-process run killed with SIGKILL after a checkpoint resumes where it was, its losses those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainsearch.arch import Architecture, preset, scale
from brainsearch.arch.plan import TrainingRecipe, plan_memory
from brainsearch.store import list_checkpoints
from brainsearch.train import ProxyResult, TrainSettings, train
from brainsearch.train.sharded import train_distributed

pytestmark = pytest.mark.slow  # every test launches two gloo processes (torchrun or Ray Train)

STEPS = 10


def _arch() -> Architecture:
    return scale(preset("glam"), "cpu-tiny")  # attention, FFN and a top-2 MoE of 4 experts (2 per rank)


def _settings(steps: int = STEPS, **extra: object) -> TrainSettings:
    return TrainSettings.model_validate(
        {
            "budget": {"tokens": steps * 8 * 64},
            "batch_size": 8,
            "seed": 11,
            "eval_interval": 5,
            "eval_batches": 2,
            "device": "cpu",
            **extra,
        }
    )


@pytest.fixture(scope="module")
def single_process() -> ProxyResult:
    """The reference: one process, micro-batches of 4 (what each of 2 ranks trains on)."""
    result = train(_arch(), _settings(micro_batch=4))
    assert result.status == "completed"
    return result


def _plan():
    return plan_memory(_arch(), 8, "fp32", 1 << 40, recipe=TrainingRecipe(shards=2))


def _assert_same_run(sharded: ProxyResult, single: ProxyResult) -> None:
    assert sharded.status == "completed", sharded.reason
    assert [p.step for p in sharded.curve] == [p.step for p in single.curve]
    for got, want in zip(sharded.curve, single.curve, strict=True):
        assert got.train_loss == pytest.approx(want.train_loss, rel=1e-5, abs=1e-5)
        assert got.lr == pytest.approx(want.lr, rel=1e-9)
    assert sharded.val_loss == pytest.approx(single.val_loss, rel=1e-5)


def _low_rank_untied() -> Architecture:
    """Low-rank experts (their ``v_in_MGHR`` sharded along the experts), a low-rank FFN, an untied head and a
    vocabulary that does not split evenly over 2 ranks."""
    doc = json.loads(_arch().to_json())
    for i, rank in [(1, 4), (3, 8), (5, 4), (7, 8)]:  # the FFNs and the MoE layers
        doc["block"][i] |= {"rank": rank}
    doc |= {"tie_embeddings": False, "vocab_size": 257}
    return Architecture.from_json(json.dumps(doc))


@pytest.mark.parametrize("arch", [_arch(), _low_rank_untied()], ids=["glam", "low-rank-untied"])
def test_a_sharded_model_is_initialised_shard_by_shard_with_the_single_process_weights(
    tmp_path: Path, arch: Architecture
) -> None:
    from brainsearch.train.launch import launch

    plan = plan_memory(arch, 8, "fp32", 1 << 40, recipe=TrainingRecipe(shards=2))
    payload = {"arch": arch.to_dict(), "plan": plan.model_dump(mode="json"), "seed": 11}
    entry = "tests.train.dist_entries:sharded_initialisation"
    result = launch(entry, payload, 2, launcher="torchrun", use_gpu=False, run_dir=tmp_path, timeout_s=300)
    ranks = result["ranks"]
    for rank in ranks:
        # No full-model state: the loop builds on the meta device, then each rank materialises one part at a time.
        assert rank["built_on_meta"] and rank["all_sharded"] and rank["names_match"]
        assert rank["differ"] == []  # bit for bit the single-process build's weights and buffers
        assert rank["same_rng_after"]
        assert rank["parts_alive_at_once"] == 1
        assert rank["parts_built"] == 2 * len(arch.layers) + 2 + (not arch.tie_embeddings)
        assert rank["largest_part_bytes"] <= max(rank["largest_layer_bytes"], arch.vocab_size * arch.d_model * 4)
        # A rank's host memory at its fullest (its shards, the buffers, one part) stays below the whole model's.
        assert rank["local_bytes"] + rank["buffer_bytes"] + rank["largest_part_bytes"] < rank["model_bytes"]
    assert sum(rank["local_bytes"] for rank in ranks) == ranks[0]["model_bytes"]  # every weight held once


@pytest.mark.parametrize("launcher", ["torchrun", "ray"])
def test_two_fsdp2_processes_train_as_one(tmp_path: Path, single_process: ProxyResult, launcher: str) -> None:
    import ray

    ray_before = ray.is_initialized()
    result = train_distributed(_arch(), _settings(), _plan(), launcher=launcher, run_dir=tmp_path / "launch")
    assert ray.is_initialized() == ray_before  # a Ray the launch started for itself is stopped after it
    _assert_same_run(result, single_process)
    assert (result.devices, result.sharding, result.recipe) == (2, "fsdp2", "FSDP2 x 2, fp32 AdamW")
    assert result.micro_batch == 4 and result.memory_estimate_bytes == _plan().memory_bytes


def _cli_train(tmp_path: Path, result_file: Path) -> subprocess.Popen[bytes]:
    """``brainsearch train`` over 2 processes with a checkpoint every 2 steps, in its own process group."""
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(_arch().to_json())
    args = [sys.executable, "-m", "brainsearch", "train", str(arch_file), "--workers", "2", "--batch-size", "8"]
    args += ["--budget-tokens", str(STEPS * 8 * 64), "--seed", "11", "--device", "cpu", "--json"]
    args += ["--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-every", "2"]
    with result_file.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, start_new_session=True)


def test_a_killed_two_process_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    reference = train(_arch(), _settings(micro_batch=4, eval_interval=50))
    first = _cli_train(tmp_path, tmp_path / "first.json")
    deadline = time.monotonic() + 600
    while not list_checkpoints(folder) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the launcher and both ranks, at once
    first.communicate()
    saved = list_checkpoints(folder)
    assert saved and saved[-1].step < STEPS, "the run finished before it could be killed"
    time.sleep(0.5)

    second = _cli_train(tmp_path, tmp_path / "second.json")
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr.decode()[-2000:]
    resumed = ProxyResult.model_validate(json.loads((tmp_path / "second.json").read_text()))
    assert resumed.resumed_from == [saved[-1].step] and resumed.devices == 2
    assert [p.step for p in resumed.curve] == list(range(1, STEPS + 1))
    for got, want in zip(resumed.curve, reference.curve, strict=True):
        assert got.train_loss == pytest.approx(want.train_loss, rel=1e-5, abs=1e-5)
