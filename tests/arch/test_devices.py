"""The device planner (brainsearch.arch.devices): one device with the leanest recipe that fits, else the fewest
FSDP2 devices; refusals name the need. The acceptance numbers of the scale-up issue are GLaM at 1b-64e and 8b-64e,
batch 64, bf16, on 141 GB and 80 GB GPUs."""

from __future__ import annotations

import pytest

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.arch.cost import TrainingRecipe
from brainsearch.arch.devices import MEMORY_FRACTION, NotEnoughDevices, plan_devices, plan_devices_shared
from brainsearch.arch.plan import RECIPES, min_memory_bytes

H200 = 141e9
A100 = 80e9
LIMIT = int(MEMORY_FRACTION * H200)


def _glam(size: str) -> Architecture:
    return scale(preset("glam"), size)


def test_glam_1b_64e_fits_one_141_gb_gpu_with_a_lean_recipe() -> None:
    arch = _glam("1b-64e")
    c = cost(arch, 64, "bf16")
    assert round(c.params_total / 1e9, 1) == 15.1 and round(c.params_activated / 1e9, 2) == 1.02
    # The proxy's recipe (16 bytes per parameter: 225 GiB of state) cannot fit at any micro-batch.
    assert min_memory_bytes(arch, 64, "bf16") > LIMIT
    p = plan_devices(arch, 64, "bf16", H200, 1, name="1b-64e")
    assert p.devices == 1 and p.recipe == RECIPES["bf16-adafactor"]
    assert p.plan.recipe == p.recipe and p.plan.limit_bytes == LIMIT and p.device_memory_bytes == H200
    estimate = cost(
        arch, 64, "bf16", micro_batch=p.plan.micro_batch, checkpointing=p.plan.checkpointing, recipe=p.recipe
    )
    assert p.plan.memory_bytes == estimate.memory_bytes <= LIMIT


def test_glam_8b_64e_needs_many_141_gb_gpus() -> None:
    arch = _glam("8b-64e")
    assert round(cost(arch).params_total / 1e9, 1) == 80.3
    assert all(min_memory_bytes(arch, 64, "bf16", r) > LIMIT for r in RECIPES.values())
    with pytest.raises(NotEnoughDevices) as info:
        plan_devices(arch, 64, "bf16", H200, 2, name="8b-64e")
    assert str(info.value) == "8b-64e needs at least 32 GPUs of 141 GB; the cluster has 2"
    assert (info.value.needed, info.value.available) == (32, 2)
    p = plan_devices(arch, 64, "bf16", H200, 64, name="8b-64e")
    assert p.devices == 32 and p.recipe == TrainingRecipe(shards=32)
    assert p.plan.memory_bytes <= LIMIT
    # One fewer power of two does not fit.
    assert min_memory_bytes(arch, 64, "bf16", TrainingRecipe(shards=16)) > LIMIT


def test_an_80_gb_cluster_of_2_refuses_glam_8b_64e() -> None:
    """Dim-0 sharding leaves each device at least one of the 64 experts of every bank, and two sub-layers'
    gathered weights: no power of two up to the batch (one sequence per device) fits 72 GB."""
    with pytest.raises(NotEnoughDevices) as info:
        plan_devices(_glam("8b-64e"), 64, "bf16", A100, 2, name="8b-64e")
    assert str(info.value) == "8b-64e does not fit 64 GPUs of 80 GB (batch 64)"
    assert (info.value.needed, info.value.available) == (None, 2)


def test_one_device_prefers_the_proxys_recipe_then_leaner_ones() -> None:
    """The fused recipe steps once per backward (no gradient accumulation): it is the leanest only at small
    batches, here 2 sequences."""
    arch = _glam("100m-32e")
    p = plan_devices(arch, 2, "bf16", 10**12, 1, name="100m")
    assert (p.devices, p.recipe) == (1, RECIPES["fp32-adamw"])
    for name in ("bf16-adafactor", "bf16-adafactor-fused"):
        recipe = RECIPES[name]
        need = min_memory_bytes(arch, 2, "bf16", recipe)
        p = plan_devices(arch, 2, "bf16", need, 1, name="100m", memory_fraction=1.0)
        assert (p.devices, p.recipe, p.plan.memory_bytes) == (1, recipe, need)


def test_a_forced_device_count_is_the_only_candidate() -> None:
    arch = _glam("1b-64e")
    p = plan_devices(arch, 64, "bf16", H200, 8, name="1b-64e", devices=4)
    assert p.devices == 4 and p.recipe == TrainingRecipe(shards=4)
    assert p.plan.micro_batch <= 16
    with pytest.raises(NotEnoughDevices, match=r"^1b-64e needs 4 TPUs of 141 GB; the cluster has 2$"):
        plan_devices(arch, 64, "bf16", H200, 2, name="1b-64e", devices=4, unit="TPU")
    with pytest.raises(NotEnoughDevices, match="does not fit 1 GPU of 80 GB"):
        plan_devices(_glam("8b-64e"), 64, "bf16", A100, 8, name="8b-64e", devices=1)


def test_micro_batch_and_checkpointing_constrain_the_plan() -> None:
    arch = _glam("1b-64e")
    p = plan_devices(arch, 64, "bf16", H200, 8, name="x", micro_batch=2, checkpointing="on")
    assert (p.plan.micro_batch, p.plan.checkpointing) == (2, True)
    # The fused recipe runs one backward per step: a micro-batch of 2 of 64 rules it out.
    assert p.recipe != RECIPES["bf16-adafactor-fused"]


def test_shared_plans_fit_every_architecture() -> None:
    small, large = _glam("cpu-small"), _glam("100m-32e")
    limit = min_memory_bytes(large, 32, "bf16")
    p = plan_devices_shared([small, large], 32, "bf16", limit, 1, name="rung", memory_fraction=1.0)
    assert p == plan_devices(large, 32, "bf16", limit, 1, name="rung", memory_fraction=1.0)
    with pytest.raises(ValueError, match="no architecture"):
        plan_devices_shared([], 32, "bf16", limit, 1, name="rung")


@pytest.mark.parametrize(
    "kwargs",
    [{"available_devices": 0}, {"devices": 0}, {"device_memory_bytes": 0}, {"memory_fraction": 1.5}],
)
def test_bad_arguments_are_value_errors(kwargs: dict[str, float]) -> None:
    args = {"device_memory_bytes": H200, "available_devices": 1} | kwargs
    with pytest.raises(ValueError):
        plan_devices(_glam("cpu-tiny"), 8, "fp32", name="x", **args)  # type: ignore[arg-type]
