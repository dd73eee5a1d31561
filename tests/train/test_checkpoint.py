"""Resumable checkpoints on one device: a run stopped after a checkpoint and started again continues exactly (same
losses, learning rates, data and budget as an uninterrupted run), interrupted saves are never resumed from, old
checkpoints are pruned, and the result says what was saved and resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from brainsearch.arch import Architecture, preset, scale
from brainsearch.data import load_corpus
from brainsearch.store import COMPLETE, list_checkpoints
from brainsearch.train import TrainSettings, train

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return load_corpus(str(HERE / "golden_corpus.txt"), 256, tmp_path_factory.mktemp("cache"))


def _settings(folder: Path | None, steps: int = 12, **extra: object) -> TrainSettings:
    doc: dict[str, object] = {
        "budget": {"tokens": steps * 8 * 64},
        "batch_size": 8,
        "seed": 3,
        "eval_interval": 4,
        "eval_batches": 2,
        "warmup_steps": 4,
        "device": "cpu",
        **extra,
    }
    if folder is not None:
        doc["checkpoint"] = {"dir": str(folder), "every_steps": 4, "keep": 2}
    return TrainSettings.model_validate(doc)


def _tiny(name: str = "glam") -> Architecture:
    return scale(preset(name), "cpu-tiny")


@pytest.mark.parametrize("name", ["glam", "brainformer-1"])
def test_a_run_resumed_from_a_checkpoint_continues_exactly(tmp_path: Path, corpus, name: str) -> None:
    reference = train(_tiny(name), _settings(None), corpus=corpus)
    folder = tmp_path / "ckpt"
    first = train(_tiny(name), _settings(folder), corpus=corpus)
    assert first.status == reference.status == "completed"
    assert [p.train_loss for p in first.curve] == [p.train_loss for p in reference.curve]
    assert first.checkpoint_count == 3 and [c.step for c in first.checkpoints] == [4, 8, 12]
    assert first.resume_count == 0
    # Kept: the newest two; pretend the run died before its last save.
    assert [c.step for c in list_checkpoints(folder)] == [8, 12]
    shutil.rmtree(folder / "step-00000012")

    resumed = train(_tiny(name), _settings(folder), corpus=corpus)
    assert resumed.status == "completed" and resumed.resumed_from == [8] and resumed.resume_count == 1
    assert [p.step for p in resumed.curve] == [p.step for p in reference.curve]
    for got, want in zip(resumed.curve, reference.curve, strict=True):
        assert got.train_loss == pytest.approx(want.train_loss, rel=1e-6, abs=1e-6)
        assert got.lr == pytest.approx(want.lr, rel=1e-9)
    assert resumed.val_loss == pytest.approx(reference.val_loss, rel=1e-6)
    assert resumed.tokens == reference.tokens and resumed.steps == reference.steps
    # The records carry the first attempt's checkpoints and the new one at the end.
    assert [c.step for c in resumed.checkpoints] == [4, 8, 12]


def test_an_interrupted_save_is_not_resumed_from(tmp_path: Path, corpus) -> None:
    folder = tmp_path / "ckpt"
    train(_tiny(), _settings(folder, steps=8), corpus=corpus)
    (folder / "step-00000008" / COMPLETE).unlink()  # the save of step 8 never finished
    resumed = train(_tiny(), _settings(folder, steps=8), corpus=corpus)
    assert resumed.resumed_from == [4]
    marker = json.loads((folder / "step-00000008" / COMPLETE).read_text())
    assert marker["step"] == 8


def test_a_finished_run_started_again_trains_nothing_more(tmp_path: Path, corpus) -> None:
    folder = tmp_path / "ckpt"
    done = train(_tiny(), _settings(folder, steps=8), corpus=corpus)
    again = train(_tiny(), _settings(folder, steps=8), corpus=corpus)
    assert again.status == "completed" and again.resumed_from == [8]
    assert again.steps == done.steps and again.val_loss == pytest.approx(done.val_loss, rel=1e-6)
    assert [p.train_loss for p in again.curve] == [p.train_loss for p in done.curve]


def test_lean_recipe_resumes_with_its_optimizer_state(tmp_path: Path, corpus) -> None:
    """bf16 weights with Adafactor stepping inside the backward: its per-parameter optimiser state round-trips."""
    extra = {"param_dtype": "bf16", "optimizer": "adafactor", "optimizer_in_backward": True}
    reference = train(_tiny(), _settings(None, **extra), corpus=corpus)
    folder = tmp_path / "ckpt"
    train(_tiny(), _settings(folder, **extra), corpus=corpus)
    shutil.rmtree(folder / "step-00000012")
    resumed = train(_tiny(), _settings(folder, **extra), corpus=corpus)
    assert reference.status == resumed.status == "completed" and resumed.resumed_from == [8]
    assert reference.recipe == "bf16 Adafactor, step in backward"
    for got, want in zip(resumed.curve, reference.curve, strict=True):
        assert got.train_loss == pytest.approx(want.train_loss, rel=1e-6)
