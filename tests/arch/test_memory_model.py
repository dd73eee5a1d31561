"""The training-memory estimate (``cost(...).memory_bytes``) against an exact count on CPU
(:func:`brainsearch.train.memory.count_training_memory`), for every preset and samples of every bundled space."""

from __future__ import annotations

import pytest
import torch

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.arch.presets import PRESETS
from brainsearch.arch.scale import ScalePreset
from brainsearch.model.lm import build_model
from brainsearch.space import RandomSuggester, bundled_space_names, bundled_spaces_dir, load_space, sample
from brainsearch.train.memory import count_training_memory

TOLERANCE = 0.15
# The paper's space is GPU-sized: its samples keep their layer sequence, experts, gating, capacity factor and
# activations, with widths / 8 (the estimate is linear in every width, so the same per-layer terms are checked), one
# block and short sequences.
GPU_SPACE_SHRINK = ScalePreset(
    "test-shrink", num_blocks=1, experts=32, seq_len=16, vocab_size=1024, batch_size=4, budget_tokens=0, factor=1 / 8
)
GPU_SPACES = {"brainformer"}


def ratio(arch: Architecture, micro_batch: int, *, bf16: bool = False, checkpointing: bool = False) -> float:
    """Estimate / exact count at ``micro_batch`` sequences per forward."""
    torch.manual_seed(0)
    model = build_model(arch).train()
    model.activation_checkpointing = checkpointing
    x_BS = torch.randint(0, arch.vocab_size, (micro_batch, arch.seq_len))
    y_BS = torch.randint(0, arch.vocab_size, (micro_batch, arch.seq_len))
    counted = count_training_memory(model, x_BS, y_BS, bf16_autocast=bf16)
    estimate = cost(arch, micro_batch, "bf16" if bf16 else "fp32", micro_batch=micro_batch, checkpointing=checkpointing)
    return estimate.memory_bytes / counted.total_bytes


def space_samples(name: str, n: int = 20) -> list[Architecture]:
    space = load_space(bundled_spaces_dir() / f"{name}.yaml")
    archs = [sample(space, RandomSuggester(seed)) for seed in range(n)]
    return [scale(a, GPU_SPACE_SHRINK) for a in archs] if name in GPU_SPACES else archs


def preset_archs() -> list[tuple[str, Architecture]]:
    return [(f"{name}@cpu-tiny", scale(preset(name), "cpu-tiny")) for name in PRESETS]


def _has_token_choice(arch: Architecture) -> bool:
    return any(layer.type == "moe" and layer.top_k is not None for layer in arch.block)


def _check(arch: Architecture, micro_batch: int, *, bf16: bool = False, checkpointing: bool = False) -> None:
    r = ratio(arch, micro_batch, bf16=bf16, checkpointing=checkpointing)
    # Under CPU autocast, token-choice experts run grouped_mm in float32 (brainsearch.model.moe casts to bf16 on
    # CUDA only) and RMSNorm is unfused; the estimate models CUDA's bf16 training, so allow more there.
    tolerance = 0.25 if bf16 and _has_token_choice(arch) else TOLERANCE
    assert abs(r - 1) <= tolerance, f"estimate/count {r:.3f} for {arch.to_json()} at micro-batch {micro_batch}"


@pytest.mark.parametrize("name", [name for name, _ in preset_archs()])
def test_presets_fp32(name: str) -> None:
    arch = dict(preset_archs())[name]
    _check(arch, 2)
    _check(arch, 3, checkpointing=True)


@pytest.mark.slow
@pytest.mark.parametrize("space", bundled_space_names())
def test_space_samples_fp32(space: str) -> None:
    """20 samples, alternating micro-batches 1 / 2 and checkpointing."""
    for i, arch in enumerate(space_samples(space)):
        _check(arch, 1 + i % 2, checkpointing=i % 4 >= 2)


@pytest.mark.slow
@pytest.mark.parametrize("space", bundled_space_names())
def test_space_samples_bf16_autocast(space: str) -> None:
    for i, arch in enumerate(space_samples(space, 4)):
        _check(arch, 2, bf16=True, checkpointing=i % 2 == 1)


def test_presets_bf16_autocast() -> None:
    for i, (_, arch) in enumerate(preset_archs()[::2]):
        _check(arch, 2, bf16=True, checkpointing=i % 2 == 1)


def test_full_cpu_small_preset_at_micro_batch_2() -> None:
    arch = scale(preset("brainformer-1"), "cpu-small")
    _check(arch, 2)


def test_large_vocabulary_logits() -> None:
    """At a 32k vocabulary the logits (held, log-softmax, gradient) dominate: the estimate still matches."""
    arch = scale(preset("glam"), ScalePreset("v", 1, 4, 32, 32_000, 2, 0, d_model=32))
    _check(arch, 2)
    _check(arch, 2, checkpointing=True)


def test_memory_is_monotone_in_micro_batch() -> None:
    for arch in [a for _, a in preset_archs()] + space_samples("tiny", 5):
        sizes = [cost(arch, 16, micro_batch=m).memory_bytes for m in (1, 2, 4, 8, 16)]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_checkpointing_lowers_activation_memory() -> None:
    for arch in [a for _, a in preset_archs()] + space_samples("brainformer", 5):
        for precision in ("fp32", "bf16"):
            plain = cost(arch, 8, precision, micro_batch=4)
            ckpt = cost(arch, 8, precision, micro_batch=4, checkpointing=True)
            assert ckpt.memory_activation_bytes <= plain.memory_activation_bytes
            if arch.num_blocks > 1:  # one block: the recomputation holds as much as the plain forward kept
                assert ckpt.memory_activation_bytes < plain.memory_activation_bytes
            assert ckpt.memory_state_bytes == plain.memory_state_bytes
            assert ckpt.memory_bytes == ckpt.memory_state_bytes + ckpt.memory_activation_bytes


@pytest.mark.parametrize("micro_batch", [0, -1, 9])
def test_micro_batch_outside_the_batch_is_an_error(micro_batch: int) -> None:
    with pytest.raises(ValueError, match="micro_batch"):
        cost(preset("glam"), 8, micro_batch=micro_batch)


def test_fields_default_to_one_forward_per_step() -> None:
    c = cost(preset("glam"), 8)
    assert (c.micro_batch, c.checkpointing) == (8, False)
