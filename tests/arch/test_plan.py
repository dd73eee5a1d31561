"""The memory plan (brainsearch.arch.plan): micro-batch and activation checkpointing chosen from the cost model's
peak-memory estimate, the global batch kept, expert choice's capacity kept where it can be."""

from __future__ import annotations

from fractions import Fraction

import pytest

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.arch.plan import MemoryPlan, NoPlanFits, effective_capacity_factors, min_memory_bytes, plan_memory


def _deep() -> Architecture:
    """cpu-small dense: several blocks, so checkpointing saves memory."""
    return scale(preset("dense"), "cpu-small")


def _expert_choice(experts: int = 8, capacity_factor: float = 2.0) -> Architecture:
    return Architecture.model_validate(
        {
            "d_model": 32,
            "vocab_size": 64,
            "seq_len": 16,
            "num_blocks": 2,
            "block": [
                {"type": "attention", "heads": 2},
                {
                    "type": "moe",
                    "hidden": 64,
                    "experts": experts,
                    "gating": "expert_choice",
                    "capacity_factor": capacity_factor,
                },
            ],
        }
    )


def _memory(arch: Architecture, micro_batch: int, checkpointing: bool, batch: int = 8) -> int:
    return cost(arch, batch, "fp32", micro_batch=micro_batch, checkpointing=checkpointing).memory_bytes


def test_auto_takes_the_largest_micro_batch_without_checkpointing_that_fits() -> None:
    arch = _deep()
    assert _memory(arch, 8, False) > _memory(arch, 4, False) > _memory(arch, 4, True)
    roomy = plan_memory(arch, 8, "fp32", 10**12)
    assert (roomy.micro_batch, roomy.checkpointing, roomy.num_micro_batches) == (8, False, 1)
    assert roomy.memory_bytes == _memory(arch, 8, False) and roomy.limit_bytes == 10**12
    tight = plan_memory(arch, 8, "fp32", _memory(arch, 4, False))
    assert (tight.micro_batch, tight.checkpointing, tight.num_micro_batches) == (4, False, 2)
    assert tight.capacity_preserved and tight.batch_size == 8 and tight.precision == "fp32"


def test_auto_checkpoints_only_when_no_micro_batch_fits_without() -> None:
    arch = _deep()
    below_all = _memory(arch, 1, False) - 1
    assert _memory(arch, 1, True) <= below_all, "the test needs checkpointing to save memory"
    plan = plan_memory(arch, 8, "fp32", below_all)
    assert plan.checkpointing and plan.memory_bytes <= below_all
    # the largest micro-batch that fits with checkpointing
    fitting = [m for m in (8, 4, 2, 1) if _memory(arch, m, True) <= below_all]
    assert plan.micro_batch == fitting[0]


def test_off_never_checkpoints_on_always_does() -> None:
    arch = _deep()
    assert plan_memory(arch, 8, "fp32", 10**12, checkpointing="on").checkpointing
    with pytest.raises(NoPlanFits):
        plan_memory(arch, 8, "fp32", _memory(arch, 1, False) - 1, checkpointing="off")


def test_a_fixed_micro_batch_is_the_only_candidate_and_must_divide_the_batch() -> None:
    arch = _deep()
    assert plan_memory(arch, 8, "fp32", 10**12, micro_batch=2).micro_batch == 2
    with pytest.raises(NoPlanFits):
        plan_memory(arch, 8, "fp32", _memory(arch, 2, True) - 1, micro_batch=2)
    with pytest.raises(ValueError, match="micro_batch 3 does not divide batch_size 8"):
        plan_memory(arch, 8, "fp32", 10**12, micro_batch=3)


def test_nothing_fits_names_the_smallest_estimate_and_the_limit() -> None:
    arch = _deep()
    smallest = min_memory_bytes(arch, 8, "fp32")
    assert smallest == _memory(arch, 1, True) < _memory(arch, 8, False)
    with pytest.raises(NoPlanFits) as info:
        plan_memory(arch, 8, "fp32", 2**20)
    message = str(info.value)
    assert f"{smallest / 2**30:.2f} GiB" in message and "micro-batch 1, activation checkpointing" in message
    assert message.endswith("exceeds the limit 0.00 GiB") and isinstance(info.value, ValueError)
    assert info.value.smallest_bytes == smallest and info.value.limit_bytes == 2**20
    assert plan_memory(arch, 8, "fp32", smallest).memory_bytes == smallest


def test_expert_choice_prefers_micro_batches_that_keep_the_effective_capacity_factor() -> None:
    # E = 8, cf = 2: k = ceil(m * 2 / 8) per position; at B = 8, k = 2 and E * k / B = 2. m = 4 keeps it (k = 1,
    # 8 / 4 = 2); m = 2 and m = 1 do not (k = 1: 4 and 8).
    arch = _expert_choice()
    assert [effective_capacity_factors(arch, m) for m in (8, 4, 2, 1)] == [
        (Fraction(2),),
        (Fraction(2),),
        (Fraction(4),),
        (Fraction(8),),
    ]
    assert effective_capacity_factors(_deep(), 3) == ()
    # Room for micro-batch 2 without checkpointing, but not for 4: checkpointing at 4 wins over changing capacity.
    limit = _memory(arch, 2, False)
    assert _memory(arch, 4, False) > limit >= _memory(arch, 4, True)
    plan = plan_memory(arch, 8, "fp32", limit)
    assert (plan.micro_batch, plan.checkpointing, plan.capacity_preserved) == (4, True, True)
    # With neither micro-batch 8 nor 4 fitting even checkpointed, a capacity-changing one is taken, and said so.
    tight = _memory(arch, 2, True)
    assert tight < min(_memory(arch, 4, True), _memory(arch, 1, False))
    plan = plan_memory(arch, 8, "fp32", tight)
    assert (plan.micro_batch, plan.checkpointing, plan.capacity_preserved) == (2, True, False)


def test_plans_are_frozen_data() -> None:
    plan = plan_memory(_deep(), 8, "fp32", 10**12)
    assert MemoryPlan.model_validate(plan.model_dump()) == plan
    with pytest.raises(ValueError):
        plan.micro_batch = 1  # type: ignore[misc]
