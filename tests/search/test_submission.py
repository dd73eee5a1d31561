"""How a search's trials are set to train, from its space and run options (no Optuna, no torch)."""

from __future__ import annotations

from brainsearch.search.submission import trial_train_settings
from brainsearch.space import load_space


def test_a_trial_trains_within_the_space_memory_per_device() -> None:
    """Pass: the space's ``max_memory_bytes`` becomes the trial's memory limit (the plan picks the micro-batch under
    it); a space without one leaves the trainer's default (90% of the device's free memory)."""
    paper = load_space("brainformer")
    settings = trial_train_settings(paper)
    assert settings.memory_limit_bytes == 80 * 2**30
    assert settings.batch_size == 64 and settings.micro_batch is None and settings.activation_checkpointing == "auto"
    assert trial_train_settings(load_space("tiny")).memory_limit_bytes is None
