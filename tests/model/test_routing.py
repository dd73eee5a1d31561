"""Routers at known inputs: capacity, dropping, gate normalisation, auxiliary losses, expert-choice balance."""

from __future__ import annotations

import math

import pytest
import torch

from brainsearch.arch.spec import MoESpec
from brainsearch.model.routing import ExpertChoiceRouter, TokenChoiceRouter, positions_in_expert, sort_by_expert


def test_positions_in_expert_ranks_in_order() -> None:
    position, count = positions_in_expert(torch.tensor([2, 0, 2, 2, 1, 0]), 4)
    assert position.tolist() == [0, 0, 1, 2, 0, 1]
    assert count.tolist() == [2, 1, 3, 0]


def test_sort_by_expert_is_stable_and_counts() -> None:
    order, count, position = sort_by_expert(torch.tensor([2, 0, 2, 2, 1, 0]), 4)
    assert order.tolist() == [1, 5, 4, 0, 2, 3]
    assert count.tolist() == [2, 1, 3, 0]
    assert position.tolist() == [0, 0, 1, 2, 0, 1]


@pytest.mark.parametrize(("top_k", "capacity_factor"), [(1, 0.5), (2, 0.5), (2, 2.0)])
def test_token_choice_lists_every_assignment_in_token_order(top_k: int, capacity_factor: float) -> None:
    """All T * K assignments, (token, choice) order; the kept ones are each expert's first `capacity` in priority
    order, the statistics count only those."""
    torch.manual_seed(0)
    router = TokenChoiceRouter(4, 4, top_k=top_k, capacity_factor=capacity_factor)
    x = torch.randn(3, 5, 4)
    r = router(x)
    T = 15
    assert r.top_k == top_k and r.token_idx_N.tolist() == [n // top_k for n in range(T * top_k)]
    _, probs = router.probabilities(x)
    torch.testing.assert_close(r.expert_idx_N, probs.topk(top_k, -1).indices.reshape(-1))
    assert r.order_N is not None and r.count_E is not None
    assert r.expert_idx_N[r.order_N].tolist() == sorted(r.expert_idx_N.tolist())
    torch.testing.assert_close(r.count_E, torch.bincount(r.expert_idx_N, minlength=4))
    kept = r.kept_N
    torch.testing.assert_close(r.tokens_per_expert_E, torch.bincount(r.expert_idx_N[kept], minlength=4))
    assert r.dropped_fraction.item() == pytest.approx(1 - kept.float().mean().item())
    assert (r.gate_N[~kept] == 0).all() and (r.gate_N[kept] > 0).all()
    # Priority (position, choice, batch row): a kept assignment never ranks after a dropped one of its expert.
    priority = (r.token_idx_N % 5) * 10 * top_k + (torch.arange(T * top_k) % top_k) * 10 + r.token_idx_N // 5
    for e in range(4):
        mine = r.expert_idx_N == e
        ranked = priority[mine].argsort().argsort()
        assert r.position_N[mine].tolist() == ranked.tolist()


def _uniform_router(cls, **kw):
    router = cls(d_model=4, num_experts=4, **kw)
    with torch.no_grad():
        router.weight_ED.zero_()
    return router


def test_aux_losses_at_a_uniform_router() -> None:
    """Zero router weights: every probability is 1/E and ties send every top-1 to expert 0, so the Switch loss is
    E * (1 * 1/E) = 1 and the z-loss is log(E)^2."""
    router = _uniform_router(
        TokenChoiceRouter, top_k=2, capacity_factor=1.0, load_balance_weight=0.01, z_loss_weight=0.001
    )
    r = router(torch.randn(2, 5, 4))
    assert r.load_balance_loss.item() == pytest.approx(1.0)
    assert r.z_loss.item() == pytest.approx(math.log(4) ** 2)
    assert r.aux_loss.item() == pytest.approx(0.01 * 1.0 + 0.001 * math.log(4) ** 2)
    assert r.router_entropy.item() == pytest.approx(math.log(4))


def test_load_balance_loss_of_a_known_assignment() -> None:
    router = TokenChoiceRouter(
        d_model=2, num_experts=2, top_k=1, capacity_factor=2.0, load_balance_weight=1.0, z_loss_weight=0.0
    )
    with torch.no_grad():
        router.weight_ED.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[[3.0, 0.0], [3.0, 0.0], [3.0, 0.0], [0.0, 3.0]]])  # 3 tokens to expert 0, 1 to expert 1
    r = router(x)
    p0 = torch.softmax(torch.tensor([3.0, 0.0]), 0)
    mean_p = (3 * p0 + p0.flip(0)) / 4
    expected = 2 * (0.75 * mean_p[0] + 0.25 * mean_p[1])
    assert r.load_balance_loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert r.aux_loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_top2_gates_are_renormalised_and_top1_gates_are_raw() -> None:
    x = torch.randn(2, 6, 4)
    top2 = TokenChoiceRouter(4, 4, top_k=2, capacity_factor=4.0)
    r = top2(x)
    per_token = torch.zeros(12).index_add_(0, r.token_idx_N, r.gate_N)
    torch.testing.assert_close(per_token, torch.ones(12))
    top1 = TokenChoiceRouter(4, 4, top_k=1, capacity_factor=4.0)
    r1 = top1(x)
    _, probs = top1.probabilities(x)
    torch.testing.assert_close(r1.gate_N.sort().values, probs.reshape(12, 4).max(-1).values.sort().values)


@pytest.mark.parametrize(
    ("capacity_factor", "top_k", "expected"), [(1.0, 1, 3), (1.0, 2, 6), (2.0, 2, 12), (0.5, 1, 2), (8.0, 2, 12)]
)
def test_capacity_formula(capacity_factor: float, top_k: int, expected: int) -> None:
    router = TokenChoiceRouter(4, 4, top_k=top_k, capacity_factor=capacity_factor)
    assert router(torch.randn(2, 6, 4)).capacity == expected  # min(T, ceil(cf * T * k / E)), T = 12


def test_second_choices_yield_to_first_choices_at_the_same_position() -> None:
    router = TokenChoiceRouter(d_model=3, num_experts=3, top_k=2, capacity_factor=0.5)
    with torch.no_grad():
        router.weight_ED.copy_(torch.eye(3))
    # Batch of 2, one position: row 0 prefers expert 0 then 1; row 1 prefers expert 1 then 0. Capacity 1 each.
    x = torch.tensor([[[5.0, 4.0, 0.0]], [[4.0, 5.0, 0.0]]])
    r = router(x)
    assert r.capacity == 1
    kept = sorted(zip(r.token_idx_N[r.kept_N].tolist(), r.expert_idx_N[r.kept_N].tolist(), strict=True))
    assert kept == [(0, 0), (1, 1)]  # both first choices kept, both second choices dropped
    assert r.dropped_fraction.item() == pytest.approx(0.5)
    assert r.gate_N[~r.kept_N].tolist() == [0.0, 0.0]  # dropped assignments weigh nothing
    assert r.tokens_per_expert_E.tolist() == [1, 1, 0]


def test_expert_choice_is_balanced_per_position() -> None:
    router = ExpertChoiceRouter(d_model=8, num_experts=4, capacity_factor=2.0)
    r = router(torch.randn(4, 5, 8))  # B=4: each expert takes k = ceil(4 * 2 / 4) = 2 tokens per position
    assert r.tokens_per_expert_E.tolist() == [10, 10, 10, 10]
    assert r.capacity == 10 and r.capacity_factor_effective == 2.0
    assert r.aux_loss.item() == 0.0
    # Per position, each expert picked distinct rows at that same position.
    positions = r.token_idx_N % 5
    for e in range(4):
        mine = r.token_idx_N[r.expert_idx_N == e]
        assert len(set(mine.tolist())) == 10
    assert set(positions.tolist()) == set(range(5))


def test_expert_choice_with_few_rows_takes_one_token_per_position() -> None:
    router = ExpertChoiceRouter(d_model=8, num_experts=8, capacity_factor=1.0)
    r = router(torch.randn(2, 3, 8))
    assert r.capacity == 3 and r.capacity_factor_effective == 4.0


@pytest.mark.parametrize(("batch_size", "experts", "capacity_factor"), [(4, 4, 2.0), (2, 8, 1.0), (3, 2, 8.0)])
def test_expert_choice_takes_the_spec_k_per_position(batch_size: int, experts: int, capacity_factor: float) -> None:
    """The router's k is the one the cost model counts (MoESpec.expert_choice_k), small and large batches alike."""
    layer = MoESpec(hidden=8, experts=experts, gating="expert_choice", capacity_factor=capacity_factor)
    router = ExpertChoiceRouter(d_model=8, num_experts=experts, capacity_factor=capacity_factor)
    r = router(torch.randn(batch_size, 5, 8))
    assert r.capacity == 5 * layer.expert_choice_k(batch_size)
