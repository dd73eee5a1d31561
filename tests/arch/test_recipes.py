"""Training recipes in the cost model (brainsearch.arch.cost): the state per device (weights, gradients, optimiser
state, FSDP2 shards and gathers) held EXACTLY to a count on real models and real torch optimisers
(:func:`brainsearch.train.memory.count_training_memory`), bf16-weight activations to the estimate's tolerance, and
the plans that carry a recipe."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from brainsearch.arch import Architecture, cost, preset, scale
from brainsearch.arch.cost import TrainingRecipe, parameter_shapes
from brainsearch.arch.plan import RECIPES, min_memory_bytes, plan_memory
from brainsearch.model.lm import build_model
from brainsearch.train.memory import count_training_memory

TOLERANCE = 0.15  # the activation estimate's, as tests/arch/test_memory_model.py


def _low_rank() -> Architecture:
    """Low-rank dense and expert FFNs (4-D input factors), an untied head, two blocks."""
    return Architecture.model_validate(
        {
            "d_model": 32,
            "vocab_size": 64,
            "seq_len": 16,
            "num_blocks": 2,
            "tie_embeddings": False,
            "block": [
                {"type": "attention", "heads": 2},
                {"type": "ffn", "hidden": 64, "activation": "swiglu", "rank": 4},
                {"type": "moe", "hidden": 48, "experts": 4, "gating": "top2", "activation": "relu", "rank": 8},
            ],
        }
    )


ARCHS = {
    "dense": scale(preset("dense"), "cpu-tiny"),
    "moe-top2": scale(preset("glam"), "cpu-tiny"),
    "expert-choice": scale(preset("brainformer-1"), "cpu-tiny"),
    "low-rank": _low_rank(),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_parameter_shapes_are_the_models(name: str) -> None:
    arch = ARCHS[name]
    block, root = parameter_shapes(arch)
    expected = Counter(block * arch.num_blocks + root)
    assert Counter(tuple(p.shape) for p in build_model(arch).parameters()) == expected
    c = cost(arch)
    assert sum(math.prod(s) for s in expected.elements()) == c.params_all


def _count(arch: Architecture, recipe: TrainingRecipe, checkpointing: bool = False):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    # bf16 weights on the CPU: the padded MoE dispatch (CPU grouped_mm has no bf16 backward in every torch).
    bf16 = recipe.param_dtype == "bf16"
    model = build_model(arch, dispatch="padded" if bf16 else "auto").train()
    if bf16:
        model = model.to(torch.bfloat16)
    model.activation_checkpointing = checkpointing
    x_BS = torch.randint(0, arch.vocab_size, (2, arch.seq_len))
    y_BS = torch.randint(0, arch.vocab_size, (2, arch.seq_len))
    return count_training_memory(
        model, x_BS, y_BS, optimizer=recipe.optimizer, optimizer_in_backward=recipe.optimizer_in_backward
    )


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("name", list(ARCHS))
def test_state_bytes_equal_the_counted_ones(name: str, recipe: str) -> None:
    arch, r = ARCHS[name], RECIPES[recipe]
    counted = _count(arch, r)
    estimate = cost(arch, 2, "fp32", recipe=r)
    assert (estimate.memory_params_bytes, estimate.memory_grads_bytes, estimate.memory_optimizer_bytes) == (
        counted.params_bytes,
        counted.grads_bytes,
        counted.optimizer_bytes,
    )
    assert estimate.memory_state_bytes == counted.state_bytes
    assert estimate.memory_gather_bytes == 0 and estimate.recipe == r


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("name", list(ARCHS))
def test_bf16_weight_activations_match_the_count(name: str, checkpointing: bool) -> None:
    """bf16 weights on the CPU (no autocast): the whole forward in bf16, norms in float32 inside."""
    arch = ARCHS[name]
    counted = _count(arch, RECIPES["bf16-adafactor"], checkpointing)
    estimate = cost(arch, 2, "fp32", checkpointing=checkpointing, recipe=RECIPES["bf16-adafactor"])
    r = estimate.memory_activation_bytes / (counted.saved_bytes + counted.logits_bytes)
    assert abs(r - 1) <= TOLERANCE, r


def test_the_default_recipe_is_sixteen_bytes_per_parameter() -> None:
    for arch in ARCHS.values():
        for precision in ("fp32", "bf16"):
            c = cost(arch, 4, precision)
            assert c.memory_state_bytes == 16 * c.params_all
            assert (c.memory_params_bytes, c.memory_grads_bytes, c.memory_optimizer_bytes) == (
                4 * c.params_all,
                4 * c.params_all,
                8 * c.params_all,
            )
            assert c.recipe == TrainingRecipe() and c.memory_gather_bytes == 0


def test_adafactor_factors_the_last_two_dims_of_every_tensor() -> None:
    """An expert bank [E, out, in] keeps E * (out + in) variances; a 1-D norm its full length."""
    arch = ARCHS["moe-top2"]
    block, root = parameter_shapes(arch)
    shapes = block * arch.num_blocks + root
    factored = sum(math.prod(s[:-1]) + math.prod(s[:-2]) * s[-1] if len(s) > 1 else s[0] for s in shapes)
    c = cost(arch, 2, recipe=TrainingRecipe(optimizer="adafactor"))
    assert c.memory_optimizer_bytes == 4 * factored


def test_step_in_backward_keeps_only_the_largest_gradient() -> None:
    arch = ARCHS["low-rank"]
    block, root = parameter_shapes(arch)
    largest = max(math.prod(s) for s in block + root)
    c = cost(arch, 2, recipe=RECIPES["bf16-adafactor-fused"])
    assert c.memory_grads_bytes == 2 * largest


# --- FSDP2 shards --------------------------------------------------------------------------------------------------


def test_shards_divide_every_tensor_on_dim_0_rounding_up() -> None:
    arch = ARCHS["moe-top2"]  # 4 experts; norms of 48; vocab 256
    block, root = parameter_shapes(arch)
    shapes = block * arch.num_blocks + root
    for n in (2, 3, 16):
        c = cost(arch, 48, recipe=TrainingRecipe(shards=n))
        local = sum(-(-s[0] // n) * math.prod(s[1:]) for s in shapes)  # no 4-D low-rank factors here
        assert c.memory_params_bytes == c.memory_grads_bytes == 4 * local
        assert c.memory_optimizer_bytes == 8 * local
    # More shards than experts: each device still holds one expert of every bank.
    banks = [s for s in block if len(s) == 3 and s[0] == 4]
    assert banks
    at_64 = cost(arch, 64, recipe=TrainingRecipe(shards=64)).memory_params_bytes
    assert at_64 >= 4 * arch.num_blocks * sum(math.prod(s[1:]) for s in banks)


def test_shards_gather_two_sub_layers_and_the_root_in_the_compute_dtype() -> None:
    """One FSDP2 unit per sub-layer: the two largest are gathered at once (the one computing, the prefetched
    next), with the root; the largest one's and the root's gradients before their reduce-scatter."""
    arch = scale(preset("glam"), "cpu-small")
    assert arch.num_blocks >= 2
    _, root = parameter_shapes(arch)
    model = build_model(arch)
    units = sorted(
        (
            sum(p.numel() for p in (*norm.parameters(), *layer.parameters()))
            for norm, layer in zip(model.norms, model.layers, strict=True)
        ),
        reverse=True,
    )
    r = sum(math.prod(s) for s in root)
    params, grads = units[0] + units[1] + r, units[0] + r
    # CUDA: bf16 gathers; CPU: the parameters' dtype.
    assert cost(arch, 8, "bf16", recipe=TrainingRecipe(shards=4)).memory_gather_bytes == 2 * (params + grads)
    assert cost(arch, 8, "fp32", recipe=TrainingRecipe(shards=4)).memory_gather_bytes == 4 * (params + grads)
    bf16_weights = TrainingRecipe(param_dtype="bf16", shards=4)
    assert cost(arch, 8, "fp32", recipe=bf16_weights).memory_gather_bytes == 2 * (params + grads)
    # The number of blocks does not change what is gathered at once.
    one_block = arch.model_copy(update={"num_blocks": 1})
    assert cost(one_block, 8, "fp32", recipe=TrainingRecipe(shards=4)).memory_gather_bytes == 4 * (params + grads)


def test_shards_take_their_share_of_the_batch() -> None:
    arch = ARCHS["moe-top2"]
    sharded = cost(arch, 8, "bf16", recipe=TrainingRecipe(shards=4))
    assert sharded.micro_batch == 2
    # No bf16 weight copies under FSDP2's bf16 gathers; otherwise the activations of a 2-sequence forward.
    single = cost(arch, 2, "bf16")
    assert sharded.memory_activation_bytes < single.memory_activation_bytes
    assert sharded.memory_bytes == sharded.memory_state_bytes + sharded.memory_activation_bytes
    state = sharded.memory_params_bytes + sharded.memory_grads_bytes + sharded.memory_optimizer_bytes
    assert sharded.memory_state_bytes == state + sharded.memory_gather_bytes


@pytest.mark.parametrize(("batch", "micro_batch"), [(8, 3), (8, 0), (6, None)])
def test_shards_validate_the_batch(batch: int, micro_batch: int | None) -> None:
    with pytest.raises(ValueError, match=r"micro_batch|shards"):
        cost(ARCHS["dense"], batch, micro_batch=micro_batch, recipe=TrainingRecipe(shards=4))


def test_recipes_are_strict_data() -> None:
    with pytest.raises(ValueError, match="shards"):
        TrainingRecipe(shards=0)
    with pytest.raises(ValueError, match="extra"):
        TrainingRecipe.model_validate({"optimiser": "adamw"})
    assert TrainingRecipe(shards=4).label == "FSDP2 x 4, fp32 AdamW"
    assert RECIPES["bf16-adafactor-fused"].label == "bf16 Adafactor, step in backward"


# --- plans with a recipe -------------------------------------------------------------------------------------------


def test_plans_carry_the_recipe_and_cut_each_devices_share() -> None:
    arch = scale(preset("glam"), "cpu-small")
    recipe = TrainingRecipe(shards=2)
    plan = plan_memory(arch, 8, "fp32", 10**12, recipe=recipe)
    assert plan.recipe == recipe and plan.micro_batch == 4 and plan.num_micro_batches == 1
    tight = cost(arch, 8, micro_batch=1, recipe=recipe).memory_bytes
    plan = plan_memory(arch, 8, "fp32", tight, checkpointing="off", recipe=recipe)
    assert (plan.micro_batch, plan.num_micro_batches, plan.memory_bytes) == (1, 4, tight)
    with pytest.raises(ValueError, match="micro_batch 8 does not divide"):
        plan_memory(arch, 8, "fp32", 10**12, micro_batch=8, recipe=recipe)


def test_step_in_backward_runs_one_backward_per_step() -> None:
    arch = scale(preset("glam"), "cpu-small")
    fused = RECIPES["bf16-adafactor-fused"]
    plan = plan_memory(arch, 8, "fp32", 10**12, recipe=fused)
    assert plan.micro_batch == 8 and plan.recipe == fused
    with pytest.raises(ValueError, match="one backward per step"):
        plan_memory(arch, 8, "fp32", 10**12, micro_batch=4, recipe=fused)
    assert (
        min_memory_bytes(arch, 8, "fp32", fused)
        == cost(arch, 8, micro_batch=8, checkpointing=True, recipe=fused).memory_bytes
    )


def test_leaner_recipes_need_less_memory() -> None:
    arch = scale(preset("glam"), "100m-32e")
    sizes = [min_memory_bytes(arch, 32, "bf16", r) for r in RECIPES.values()]
    assert sizes[0] > sizes[1]
    assert min_memory_bytes(arch, 32, "bf16") == sizes[0]
