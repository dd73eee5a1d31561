"""The MoE layer: the fast dispatch paths equal a per-expert loop (outputs and gradients), for every router, with
and without dropped assignments; they make no host sync, and token choice uses no scatter-add (atomics on a GPU)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from brainsearch.arch import MoESpec
from brainsearch.model import MoE
from tests.model.reference import moe_per_expert_loop

ROUTINGS = [
    ("top1", 0.5),
    ("top1", 1.0),
    ("top1", 2.0),
    ("top2", 0.5),
    ("top2", 1.0),
    ("top2", 2.0),
    ("expert_choice", 1.0),
    ("expert_choice", 2.0),
]


def _grads(module: torch.nn.Module, x: torch.Tensor, fn) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    module.zero_grad()
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
    return y.detach(), [p.grad.clone() for p in module.parameters()], x.grad.clone()


@pytest.mark.parametrize("dispatch", ["padded", "grouped"])
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
@pytest.mark.parametrize("rank", [None, 4])
@pytest.mark.parametrize(("gating", "capacity_factor"), ROUTINGS)
def test_fast_path_matches_per_expert_loop(
    dispatch: str, activation: str, rank: int | None, gating: str, capacity_factor: float
) -> None:
    torch.manual_seed(0)
    spec = MoESpec(
        hidden=24, experts=4, gating=gating, capacity_factor=capacity_factor, activation=activation, rank=rank
    )
    moe = MoE(16, spec, dispatch=dispatch)  # type: ignore[arg-type]
    x = torch.randn(3, 10, 16)
    fast_y, fast_g, fast_xg = _grads(moe, x, lambda t: moe(t)[0])
    ref_y, ref_g, ref_xg = _grads(moe, x, lambda t: moe_per_expert_loop(moe, t))
    torch.testing.assert_close(fast_y, ref_y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_xg, ref_xg, rtol=1e-5, atol=1e-6)
    for name_param, a, b in zip(moe.named_parameters(), fast_g, ref_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=name_param[0]: f"{n}: {m}")


def test_dropped_tokens_get_zero_output() -> None:
    torch.manual_seed(0)
    moe = MoE(8, MoESpec(hidden=8, experts=4, gating="top1", capacity_factor=1.0, activation="relu"), dispatch="padded")
    with torch.no_grad():
        moe.router.weight_ED.zero_()
        moe.router.weight_ED[0] = 10.0  # every token with a positive sum prefers expert 0
    x = torch.rand(2, 8, 8)  # positive inputs: all pick expert 0
    y, stats = moe(x)
    capacity = 4  # ceil(1.0 * 16 tokens * 1 / 4 experts)
    assert stats.capacity == capacity
    assert stats.tokens_per_expert.tolist() == [capacity, 0, 0, 0]
    assert stats.dropped_fraction.item() == pytest.approx(1 - capacity / 16)
    nonzero = (y.abs().sum(-1) > 0).nonzero().tolist()
    # Priority runs by position, then batch row: positions 0 and 1 of both rows are kept.
    assert sorted(nonzero) == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_stats_are_detached_and_aux_loss_has_gradient() -> None:
    moe = MoE(8, MoESpec(hidden=8, experts=4, gating="top2"))
    _, stats = moe(torch.randn(2, 6, 8))
    assert stats.aux_loss.requires_grad
    assert not stats.tokens_per_expert.requires_grad and not stats.router_entropy.requires_grad
    stats.aux_loss.backward()
    assert moe.router.weight_ED.grad is not None and moe.router.weight_ED.grad.abs().sum() > 0


@pytest.mark.parametrize("dispatch", ["padded", "grouped"])
@pytest.mark.parametrize("gating", ["top1", "top2"])
def test_drops_cost_output_and_gradient_exactly(dispatch: str, gating: str) -> None:
    """At a low capacity factor many assignments are dropped: the statistics count only the kept ones and the
    layer still equals the reference (which computes only the kept ones) in outputs and gradients."""
    torch.manual_seed(1)
    moe = MoE(8, MoESpec(hidden=8, experts=4, gating=gating, capacity_factor=0.25), dispatch=dispatch)  # type: ignore[arg-type]
    x = torch.randn(4, 6, 8)
    r = moe.router(x)
    k = 1 if gating == "top1" else 2
    assert r.capacity == k + 1  # ceil(0.25 * 24 tokens * k / 4 experts)
    assert r.kept_N.sum().item() == r.tokens_per_expert_E.sum().item() <= 4 * r.capacity < 24 * k
    assert r.dropped_fraction.item() == pytest.approx(1 - r.kept_N.float().mean().item())
    fast_y, fast_g, fast_xg = _grads(moe, x, lambda t: moe(t)[0])
    ref_y, ref_g, ref_xg = _grads(moe, x, lambda t: moe_per_expert_loop(moe, t))
    torch.testing.assert_close(fast_y, ref_y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_xg, ref_xg, rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_g, ref_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _RecordOps(TorchDispatchMode):
    """Every aten op run (forward and backward) with its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        self.calls.append((func, args))
        return func(*args, **(kwargs or {}))


# Ops that read a device value back to the host (or size their output by one): a sync on a GPU.
_SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "bincount", "unique", "_unique2", "unique_consecutive"}


def _record(dispatch: str, gating: str) -> list[tuple[str, tuple[Any, ...]]]:
    torch.manual_seed(0)
    moe = MoE(16, MoESpec(hidden=32, experts=4, gating=gating, capacity_factor=1.0), dispatch=dispatch)  # type: ignore[arg-type]
    x = torch.randn(3, 8, 16, requires_grad=True)
    with _RecordOps() as mode:
        y, stats = moe(x)
        (y.square().sum() + stats.aux_loss).backward()
    return [(func.overloadpacket.__name__, args) for func, args in mode.calls]


@pytest.mark.parametrize("dispatch", ["padded", "grouped"])
@pytest.mark.parametrize("gating", ["top1", "top2", "expert_choice"])
def test_forward_and_backward_make_no_host_sync(dispatch: str, gating: str) -> None:
    ops = {name for name, _ in _record(dispatch, gating)}
    assert not ops & _SYNCING


@pytest.mark.parametrize("dispatch", ["padded", "grouped"])
@pytest.mark.parametrize("gating", ["top1", "top2"])
def test_token_choice_uses_no_scatter_add_on_activations(dispatch: str, gating: str) -> None:
    """Dispatch, combine and their backward are gathers: no index_add, no accumulating index_put (the backward of
    ``x[index]``), no floating scatter-add. (Integer counts in the router may scatter-add: E bins, no activations.)"""
    for name, args in _record(dispatch, gating):
        assert name not in {"index_add", "index_add_", "index_reduce", "embedding_dense_backward"}, name
        if name in {"index_put", "index_put_", "_index_put_impl_"}:
            assert not (len(args) > 3 and args[3]), "accumulating index_put"
        if name in {"scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_"}:
            assert not args[0].is_floating_point(), name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dispatch", "gating", "dtype"),
    [
        ("padded", "top2", torch.float32),
        ("grouped", "top2", torch.bfloat16),
        ("padded", "expert_choice", torch.float32),
    ],
)
def test_compiles_without_graph_breaks(dispatch: str, gating: str, dtype: torch.dtype) -> None:
    """``fullgraph=True``: no data-dependent shape or host read anywhere in forward or backward (grouped_mm compiles
    in bf16 only)."""
    torch.manual_seed(0)
    spec = MoESpec(hidden=32, experts=4, gating=gating, capacity_factor=1.0, activation="swiglu")
    moe = MoE(16, spec, dispatch=dispatch).to(dtype)  # type: ignore[arg-type]
    x = torch.randn(2, 8, 16, dtype=dtype, requires_grad=True)
    y, _ = torch.compile(moe, fullgraph=True)(x)
    y.sum().backward()
    tol = {"rtol": 2e-2, "atol": 1e-3} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(y, moe(x)[0], **tol)


@pytest.mark.parametrize("gating", ["top2", "expert_choice"])
def test_bf16_weights_on_the_cpu_take_the_padded_path(gating: str) -> None:
    """A bf16-parameter run on the CPU: ``auto`` dispatches padded (CPU grouped_mm in bf16 rejects widths that are
    not 16-byte aligned, like rank 4 here), and the layer equals the fp32 one with the same weights, forward and
    backward, to bf16 precision."""
    torch.manual_seed(0)
    spec = MoESpec(hidden=24, experts=4, gating=gating, capacity_factor=2.0, activation="swiglu", rank=4)
    reference = MoE(16, spec).to(torch.bfloat16).float()  # weights exactly representable in bf16
    moe = MoE(16, spec).to(torch.bfloat16)
    moe.load_state_dict(reference.state_dict())
    x = torch.randn(3, 10, 16).bfloat16().float()
    assert moe._path(x.bfloat16()) == "padded"
    y, grads, xg = _grads(moe, x.bfloat16(), lambda t: moe(t)[0])
    ref_y, ref_grads, ref_xg = _grads(reference, x, lambda t: reference(t)[0])
    assert y.dtype == xg.dtype == torch.bfloat16 and {g.dtype for g in grads} == {torch.bfloat16}
    tol = {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(y.float(), ref_y, **tol)
    torch.testing.assert_close(xg.float(), ref_xg, **tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a.float(), b, **tol)
