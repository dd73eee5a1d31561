"""The MoE layer: the fast dispatch paths equal a per-expert loop (outputs and gradients), for every router."""

from __future__ import annotations

import pytest
import torch

from brainsearch.arch import MoESpec
from brainsearch.model import MoE
from tests.model.reference import moe_per_expert_loop

ROUTINGS = [
    ("top1", 1.0),
    ("top1", 2.0),
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
