"""The optimiser: stepping inside the backward (:class:`InBackwardOptimizer`) equals the normal step, never holds
more than one parameter's gradient, checkpoints like any optimiser and decays matrices only; bf16-parameter models
train on the CPU with either optimiser."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from brainsearch.arch import Architecture, preset, scale
from brainsearch.model import LanguageModel, build_model
from brainsearch.train import TrainSettings
from brainsearch.train.optim import (
    InBackwardOptimizer,
    build_optimizer,
    optimizer_state_bytes,
    set_lr,
    steps_in_backward,
)

CPU = torch.device("cpu")
# Dense, top-2 token choice (grouped_mm dispatch in fp32), expert choice.
ARCHS = ["dense", "glam", "brainformer-1"]
OPTIMIZERS = ["adamw", "adafactor"]


def _arch(name: str) -> Architecture:
    return scale(preset(name), "cpu-tiny")


def _model(name: str, dtype: torch.dtype = torch.float32) -> LanguageModel:
    torch.manual_seed(0)
    return build_model(_arch(name)).to(dtype).train()


def _settings(optimizer: str, in_backward: bool = False, **update: object) -> TrainSettings:
    base = TrainSettings(device="cpu", optimizer=optimizer, optimizer_in_backward=in_backward)  # type: ignore[arg-type]
    return base.model_copy(update=update)


def _batch(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 32), generator=torch.Generator().manual_seed(seed))


def _loss(model: LanguageModel, ids_BS: torch.Tensor) -> torch.Tensor:
    out = model(ids_BS)
    return F.cross_entropy(out.logits.float().flatten(0, 1), ids_BS.roll(-1, 1).flatten()) + out.aux_loss


def _step(model: LanguageModel, optimizer: torch.optim.Optimizer, ids_BS: torch.Tensor) -> float:
    """The loop's step without clipping: the in-backward optimiser steps inside ``backward``."""
    optimizer.zero_grad(set_to_none=True)
    loss = _loss(model, ids_BS)
    loss.backward()  # type: ignore[no-untyped-call]
    if not steps_in_backward(optimizer):
        optimizer.step()
    return loss.item()


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=lambda m, n=name: f"{n}: {m}")


def _assert_same_state(a: dict[str, object], b: dict[str, object]) -> None:
    assert a["param_groups"] == b["param_groups"]
    state_a, state_b = a["state"], b["state"]
    assert isinstance(state_a, dict) and isinstance(state_b, dict) and state_a.keys() == state_b.keys()
    for index, entry in state_a.items():
        assert entry.keys() == state_b[index].keys()
        for key, value in entry.items():
            assert torch.equal(value, state_b[index][key]), (index, key)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_in_backward_step_equals_the_normal_step(arch: str, optimizer: str) -> None:
    normal_model, fused_model = _model(arch), _model(arch)
    normal = build_optimizer(normal_model, _settings(optimizer), CPU)
    fused = build_optimizer(fused_model, _settings(optimizer, in_backward=True), CPU)
    assert isinstance(fused, InBackwardOptimizer) and steps_in_backward(fused) and not steps_in_backward(normal)
    for step, lr in enumerate([1e-3, 3e-3, 2e-3]):
        set_lr(normal, lr)
        set_lr(fused, lr)
        assert _step(normal_model, normal, _batch(step)) == _step(fused_model, fused, _batch(step))
        assert all(p.grad is None for p in fused_model.parameters())
        _assert_same_weights(normal_model, fused_model)
    assert optimizer_state_bytes(fused) == optimizer_state_bytes(normal)


def test_in_backward_step_with_activation_checkpointing() -> None:
    """Recomputed blocks: every parameter still steps once, after the backward that needs its old value."""
    normal_model, fused_model = _model("glam"), _model("glam")
    fused_model.activation_checkpointing = True
    normal = build_optimizer(normal_model, _settings("adamw"), CPU)
    fused = build_optimizer(fused_model, _settings("adamw", in_backward=True), CPU)
    for step in range(2):
        _step(normal_model, normal, _batch(step))
        _step(fused_model, fused, _batch(step))
    _assert_same_weights(normal_model, fused_model)


@pytest.mark.parametrize("arch", ["dense", "glam"])
def test_at_most_one_gradient_is_alive_during_the_backward(arch: str) -> None:
    model = _model(arch)
    params = list(model.parameters())
    alive: list[int] = []
    # Registered before the optimiser's hooks, so each runs just before its parameter steps and frees its gradient.
    for p in params:
        p.register_post_accumulate_grad_hook(lambda _: alive.append(sum(q.grad is not None for q in params)))
    optimizer = build_optimizer(model, _settings("adafactor", in_backward=True), CPU)
    for step in range(2):
        alive.clear()
        _step(model, optimizer, _batch(step))
        assert alive == [1] * len(params)  # each parameter stepped once (the tied embedding too), alone
        assert all(p.grad is None for p in params)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_state_dict_round_trip_continues_identically(optimizer: str) -> None:
    model = _model("glam")
    first = build_optimizer(model, _settings(optimizer, in_backward=True), CPU)
    for step in range(2):
        set_lr(first, 1e-3 * (step + 1))
        _step(model, first, _batch(step))
    buffer = io.BytesIO()  # through a file, as brainsearch.train.checkpoint saves a single-device optimiser
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = copy.deepcopy(model)
    resumed = build_optimizer(resumed_model, _settings(optimizer, in_backward=True, lr=0.5), CPU)
    resumed.load_state_dict(saved)
    _assert_same_state(resumed.state_dict(), saved)
    assert [g["lr"] for g in resumed.param_groups] == [2e-3] * len(resumed.param_groups)
    for step in range(2, 4):
        _step(model, first, _batch(step))
        _step(resumed_model, resumed, _batch(step))
    _assert_same_weights(model, resumed_model)
    _assert_same_state(resumed.state_dict(), first.state_dict())


def test_distributed_checkpoint_state_dict_round_trip() -> None:
    """``torch.distributed.checkpoint``'s get/set_state_dict (parameter names as keys) on a fresh optimiser: its
    state initialisation (zero gradients, ``step()``, ``zero_grad()``) leaves no gradient behind."""
    model = _model("brainformer-1")
    optimizer = build_optimizer(model, _settings("adafactor", in_backward=True), CPU)
    _step(model, optimizer, _batch(0))
    model_state, optim_state = get_state_dict(model, optimizer)
    assert "layers.0.qkv.weight" in optim_state["state"]
    resumed_model = _model("brainformer-1")
    resumed = build_optimizer(resumed_model, _settings("adafactor", in_backward=True), CPU)
    set_state_dict(
        resumed_model, resumed, model_state_dict=copy.deepcopy(model_state), optim_state_dict=copy.deepcopy(optim_state)
    )
    assert all(p.grad is None for p in resumed_model.parameters())
    _assert_same_state(resumed.state_dict(), optimizer.state_dict())
    _step(model, optimizer, _batch(1))
    _step(resumed_model, resumed, _batch(1))
    _assert_same_weights(model, resumed_model)


def test_a_foreign_state_dict_is_refused() -> None:
    model = _model("dense")
    normal = build_optimizer(model, _settings("adamw"), CPU)
    fused = build_optimizer(copy.deepcopy(model), _settings("adamw", in_backward=True), CPU)
    with pytest.raises(ValueError, match="one per parameter"):
        fused.load_state_dict(normal.state_dict())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_in_backward_decays_matrices_only(optimizer: str) -> None:
    model = _model("glam")
    settings = _settings(optimizer, in_backward=True, weight_decay=0.5, lr=0.1)
    fused = build_optimizer(model, settings, CPU)
    for group in fused.param_groups:
        (p,) = group["params"]
        assert group["weight_decay"] == (0.5 if p.ndim >= 2 else 0.0)
    # A zero gradient moves no weight; only the decay does, on matrices: w * (1 - lr * wd).
    with torch.no_grad():
        for norm in model.norms:
            norm.weight.add_(0.25)  # not 1: a decay would show
    before = [p.detach().clone() for p in model.parameters()]
    sum(p.sum() for p in model.parameters()).mul(0.0).backward()  # type: ignore[union-attr]
    for p, old in zip(model.parameters(), before, strict=True):
        expected = old * (1 - 0.1 * 0.5) if p.ndim >= 2 else old
        torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize(
    ("arch", "optimizer", "in_backward"),
    [(arch, optimizer, (i + j) % 2 == 1) for i, arch in enumerate(ARCHS) for j, optimizer in enumerate(OPTIMIZERS)],
)
def test_bf16_parameters_train_on_the_cpu(arch: str, optimizer: str, in_backward: bool) -> None:
    model = _model(arch, torch.bfloat16)
    grad_dtypes: set[torch.dtype] = set()
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda q: grad_dtypes.add(q.grad.dtype))  # type: ignore[union-attr]
    optimizer_ = build_optimizer(model, _settings(optimizer, in_backward=in_backward, lr=1e-2), CPU)
    ids_BS = _batch(0, batch=4)
    losses = [_step(model, optimizer_, ids_BS) for _ in range(5)]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0] and sorted(losses, reverse=True) == losses, losses
    assert grad_dtypes == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_optimizer_state_bytes_counts_moments_and_step_counters() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        model = _model("glam", dtype)
        params = list(model.parameters())
        adamw = build_optimizer(model, _settings("adamw", in_backward=True), CPU)
        assert optimizer_state_bytes(adamw) == 0
        _step(model, adamw, _batch(0))
        # Two moments in the weights' dtype, one fp32 step counter (on the CPU: not fused) per parameter.
        assert optimizer_state_bytes(adamw) == sum(2 * p.nbytes + 4 for p in params)
        adamw.remove()
    model = _model("glam")
    adafactor = build_optimizer(model, _settings("adafactor"), CPU)
    _step(model, adafactor, _batch(0))
    assert 0 < optimizer_state_bytes(adafactor) < sum(p.nbytes for p in model.parameters()) / 10


def test_remove_takes_the_hooks_off_and_step_runs_a_closure() -> None:
    model = _model("dense")
    optimizer = build_optimizer(model, _settings("adamw", in_backward=True), CPU)
    before = [p.detach().clone() for p in model.parameters()]
    loss = optimizer.step(lambda: _loss(model, _batch(0)).backward() or 1.5)  # type: ignore[func-returns-value]
    assert loss == 1.5 and not all(torch.equal(p, old) for p, old in zip(model.parameters(), before, strict=True))
    optimizer.remove()
    after = [p.detach().clone() for p in model.parameters()]
    _loss(model, _batch(1)).backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is not None for p in model.parameters())
    assert all(torch.equal(p, old) for p, old in zip(model.parameters(), after, strict=True))
    optimizer.zero_grad(set_to_none=False)  # never zero-filled: a kept gradient would be stepped again
    assert all(p.grad is None for p in model.parameters())
