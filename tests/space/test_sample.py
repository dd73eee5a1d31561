"""Sampling: every architecture drawn from every bundled space is valid, canonical and inside the space's bounds;
Optuna's trial drives sampling through the same suggester protocol."""

from __future__ import annotations

import warnings

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainsearch.arch import Architecture, cost
from brainsearch.arch.plan import plan_memory
from brainsearch.space import (
    RandomSuggester,
    bounds,
    bundled_space_names,
    dimensions,
    load_space,
    sample,
    violations,
)

SPACES = {name: load_space(name) for name in bundled_space_names()}
BOUNDS = {name: bounds(space) for name, space in SPACES.items()}


@pytest.mark.parametrize("name", sorted(SPACES))
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_sampled_architectures_are_valid_canonical_and_within_bounds(name: str, seed: int) -> None:
    space, extremes = SPACES[name], BOUNDS[name]
    assert extremes is not None
    suggester = RandomSuggester(seed)
    arch = sample(space, suggester)
    assert Architecture.from_json(arch.to_json()) == arch
    assert Architecture.from_json(arch.to_json()).digest == arch.digest
    assert set(suggester.params) <= set(dimensions(space))
    c = cost(arch)
    lo_total, hi_total, lo_act, hi_act = extremes.cost_range(space.proxy.batch_size)
    if any("min_layers" in r for r in violations(space, arch)):
        return  # the bounds are those of feasible architectures; this one is pruned at search time
    assert lo_total.params_total <= c.params_total <= hi_total.params_total
    assert lo_act.params_activated <= c.params_activated <= hi_act.params_activated
    assert arch.seq_len == space.proxy.seq_len and arch.num_blocks == space.proxy.num_blocks
    assert 1 <= len(arch.block) <= space.block.max_slots


@pytest.mark.parametrize("name", ["tiny", "glam-gating", "flexible-cpu"])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_cpu_spaces_sample_only_architectures_that_fit_their_size_limits(name: str, seed: int) -> None:
    """The CPU spaces are sized so no draw breaks a parameter limit; only min_layers can prune them."""
    space = SPACES[name]
    reasons = violations(space, sample(space, RandomSuggester(seed)))
    assert all("min_layers" in r for r in reasons), reasons


def test_violations_name_the_broken_limit() -> None:
    space = SPACES["brainformer"]
    big = max((sample(space, RandomSuggester(s)) for s in range(30)), key=lambda a: cost(a, 64).params_all)
    tight = space.model_copy(
        update={"constraints": space.constraints.model_copy(update={"max_memory_bytes": 8 * 2**30})}
    )
    reasons = violations(tight, big)
    assert any(
        r.startswith("memory ") and "at the smallest plan" in r and "> max_memory_bytes 8.00 GiB" in r for r in reasons
    )


def test_the_paper_space_prunes_for_memory_only_blocks_no_plan_fits_on_an_80gb_device() -> None:
    """``max_memory_bytes`` is memory per device at the chosen micro-batch: a block is pruned only when even one
    sequence per forward with checkpointing cannot fit, i.e. when its weights, gradients and optimizer state alone
    are about the limit (such blocks need the optimizer state sharded, not a smaller batch)."""
    space = SPACES["brainformer"]
    limit = space.constraints.max_memory_bytes
    assert limit == 80 * 2**30
    pruned = []
    for seed in range(200):
        arch = sample(space, RandomSuggester(seed))
        if any(r.startswith("memory ") for r in violations(space, arch)):
            pruned.append(arch)
            c = cost(arch, space.proxy.batch_size, micro_batch=1, checkpointing=True)
            assert c.memory_state_bytes > 0.85 * limit, (arch.pattern, c.memory_state_bytes / 2**30)
        else:
            # the full batch at once need not fit, but some plan must
            plan_memory(arch, space.proxy.batch_size, "bf16", limit)
    assert len(pruned) <= 10, [a.pattern for a in pruned]  # at most 5% of draws, all of them state-bound


def test_same_seed_same_architectures() -> None:
    space = SPACES["tiny"]
    first = [sample(space, RandomSuggester(7)).digest for _ in range(3)]
    assert first == [sample(space, RandomSuggester(7)).digest for _ in range(3)]
    suggester = RandomSuggester(7)
    assert len({sample(space, suggester).digest for _ in range(20)}) > 10


def test_conditional_parameters_exist_only_for_their_layer_type() -> None:
    space = SPACES["flexible-cpu"]
    for seed in range(40):
        suggester = RandomSuggester(seed)
        arch = sample(space, suggester)
        for i, layer in enumerate(arch.block):
            own = {n for n in suggester.params if n.startswith(f"slot{i}.") and n != f"slot{i}.type"}
            assert all(n.startswith(f"slot{i}.{layer.type}.") for n in own), (layer.type, own)
        types = {layer.type for layer in arch.block}
        assert all(n.split(".")[0] in types for n in suggester.params if not n.startswith(("slot", "d_model")))


@pytest.mark.parametrize("sampler_name", ["random", "tpe"])
@pytest.mark.parametrize("name", sorted(SPACES))
def test_optuna_trials_drive_sampling(name: str, sampler_name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SPACES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = (
            optuna.samplers.RandomSampler(seed=0)
            if sampler_name == "random"
            else optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, n_startup_trials=3)
        )
        study = optuna.create_study(sampler=sampler)
        digests = set()
        for _ in range(8):
            trial = study.ask()
            arch = sample(space, trial)
            digests.add(arch.digest)
            assert set(trial.params) <= set(dimensions(space))
            study.tell(trial, cost(arch).params_activated / 1e6)
    assert len(digests) > 1
