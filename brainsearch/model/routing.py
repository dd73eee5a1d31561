"""Routers: one small class family with a fixed base call (logits -> float32 probabilities -> routing decision) and
a typed result, :class:`Routing`, carrying the dispatch data, the auxiliary loss and diagnostics.

Shape legend: B batch, S sequence, T = B * S tokens, D model dim, E experts, K top-k (or tokens per expert and
position for expert choice), N routed (token, expert) assignments.

No host synchronisation: every shape is known from the input's shape and the config (token choice lists all
``T * K`` assignments, dropped ones included; expert choice fills ``E`` buffers of ``capacity`` slots), and counts
are taken by sorting or scattering, never by ``bincount`` (which reads its input's maximum back on CUDA) or a
boolean mask.

Causality. A causal LM's logits at position t must not depend on any token after t. Capacity-based routing couples
tokens (one token's assignment can take the slot another would get), so the coupling must only run forward in time:

- token choice processes assignments in the priority order (position, choice rank, batch row): all assignments at
  position t (first choices before second choices, as GShard gives top-1 priority) are placed before any at t + 1.
  Whether a token is dropped then depends on tokens at positions <= t only. Capacity is per forward,
  ``ceil(capacity_factor * T * k / E)``, so tokens late in the sequence are the ones dropped when an expert fills.
- expert choice (Zhou et al. 2022, arXiv 2202.09368) lets each expert pick its top tokens by score. Picking among
  all tokens of a sequence leaks the future (a token's selection depends on later tokens' scores). Here every
  expert picks, *at each position separately*, its top ``k = ceil(B * capacity_factor / E)`` tokens among the B
  tokens at that position across the batch: the choice for position t sees only the batch's tokens at t. Each
  expert still processes exactly ``k`` tokens per position (balanced by construction, no auxiliary loss). With
  ``B * capacity_factor < E`` each expert still takes one token per position, so the effective capacity factor is
  ``E * k / B``; it is reported in the statistics. k is :func:`brainsearch.arch.spec.expert_choice_k`, the rule the
  cost model counts as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainsearch.arch.spec import expert_choice_k

__all__ = ["ExpertChoiceRouter", "Router", "Routing", "TokenChoiceRouter", "positions_in_expert", "sort_by_expert"]


@dataclass
class Routing:
    """Which token goes to which expert slot, with what gate, and what the routing cost.

    ``position_N`` is the rank of the assignment among those sent to its expert; the assignment is kept when it is
    ``< capacity`` (its slot in the expert's buffer) and dropped otherwise, in which case its gate is 0 (the mask
    multiplies the gate, so neither the expert nor the router gets gradient through it). Token choice lists all
    ``T * K`` assignments in (token, choice) order (``token_idx_N = n // K``); expert choice lists exactly the
    assignments that fill the buffers. ``aux_loss`` is already weighted. Statistics are detached.

    Token choice also fills ``top_k``, ``order_N`` (the assignments sorted by expert, each expert's in priority
    order, so its first ``capacity`` are its kept ones) and ``count_E`` (assignments per expert, dropped ones
    included); a router that leaves them ``None`` is dispatched as expert choice (fixed slots, any number of
    experts per token).
    """

    token_idx_N: Tensor
    expert_idx_N: Tensor
    position_N: Tensor
    gate_N: Tensor
    capacity: int
    num_tokens: int
    aux_loss: Tensor
    load_balance_loss: Tensor
    z_loss: Tensor
    tokens_per_expert_E: Tensor
    dropped_fraction: Tensor
    router_entropy: Tensor
    capacity_factor_effective: float
    top_k: int | None = None
    order_N: Tensor | None = None
    count_E: Tensor | None = None

    @property
    def kept_N(self) -> Tensor:
        """Boolean ``[N]``: the assignment got a slot (it is within its expert's capacity)."""
        return self.position_N < self.capacity


def sort_by_expert(expert_idx_N: Tensor, num_experts: int) -> tuple[Tensor, Tensor, Tensor]:
    """Stable sort of the assignments by expert: ``(order_N, count_E, position_N)``.

    ``order_N`` lists the assignment indices expert by expert (each expert's in the given order), ``count_E`` how
    many each expert got, ``position_N`` the rank of each assignment among its expert's. No one-hot, no host sync:
    counts come from ``searchsorted`` on the sorted experts.
    """
    n, device = expert_idx_N.numel(), expert_idx_N.device
    sorted_N, order_N = torch.sort(expert_idx_N, stable=True)
    bounds_E1 = torch.searchsorted(sorted_N, torch.arange(num_experts + 1, device=device, dtype=sorted_N.dtype))
    count_E = bounds_E1.diff()
    rank_sorted_N = torch.arange(n, device=device) - bounds_E1.index_select(0, sorted_N)
    position_N = torch.empty_like(expert_idx_N).scatter_(0, order_N, rank_sorted_N)
    return order_N, count_E, position_N


def positions_in_expert(expert_idx_N: Tensor, num_experts: int) -> tuple[Tensor, Tensor]:
    """Rank of each assignment among those sent to the same expert, in the given order (a stable sort, no one-hot).

    Returns ``(position_N, count_E)``.
    """
    _, count_E, position_N = sort_by_expert(expert_idx_N, num_experts)
    return position_N, count_E


def _count(index_N: Tensor, size: int) -> Tensor:
    """How often each value in ``[0, size)`` occurs (``bincount`` without its host sync on CUDA)."""
    return torch.zeros(size, dtype=torch.long, device=index_N.device).scatter_add_(0, index_N, torch.ones_like(index_N))


class Router(nn.Module):
    """Base: a linear gate ``D -> E`` whose logits and softmax are computed in float32."""

    def __init__(self, d_model: int, num_experts: int, capacity_factor: float, z_loss_weight: float = 0.0) -> None:
        super().__init__()
        self.num_experts, self.capacity_factor, self.z_loss_weight = num_experts, capacity_factor, z_loss_weight
        self.weight_ED = nn.Parameter(torch.empty(num_experts, d_model))
        nn.init.normal_(self.weight_ED, std=0.02)

    def probabilities(self, x_BSD: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, probs)`` in float32, ``[B, S, E]`` each (router maths in float32, as Switch advises)."""
        with torch.autocast(device_type=x_BSD.device.type, enabled=False):
            logits_BSE = F.linear(x_BSD.float(), self.weight_ED.float())
        return logits_BSE, logits_BSE.softmax(dim=-1)

    @staticmethod
    def _entropy(probs: Tensor) -> Tensor:
        return -(probs * probs.clamp_min(1e-9).log()).sum(-1).mean()

    @staticmethod
    def _z_loss(logits: Tensor) -> Tensor:
        # ST-MoE (arXiv 2202.08906), eq. 5: mean over tokens of logsumexp(logits)^2.
        return torch.logsumexp(logits, dim=-1).square().mean()

    def forward(self, x_BSD: Tensor) -> Routing:  # pragma: no cover - abstract
        """Route the ``[B, S, D]`` tokens."""
        raise NotImplementedError


class TokenChoiceRouter(Router):
    """Top-k token choice (Switch top-1, arXiv 2101.03961; GShard / GLaM top-2, arXiv 2006.16668, 2112.06905).

    Each token takes its k most probable experts; top-2 renormalises its two gates, top-1 keeps the raw
    probability. Expert capacity ``ceil(capacity_factor * T * k / E)``; assignments past it are dropped (the
    residual connection carries the token). Auxiliary loss: ``lb_weight * E * sum_i f_i P_i`` (f_i: fraction of
    tokens whose top-1 is expert i; P_i: mean probability of expert i) plus ``z_weight * z_loss``.
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int,
        capacity_factor: float,
        load_balance_weight: float = 0.01,
        z_loss_weight: float = 0.001,
    ) -> None:
        super().__init__(d_model, num_experts, capacity_factor, z_loss_weight)
        self.top_k, self.load_balance_weight = top_k, load_balance_weight

    def forward(self, x_BSD: Tensor) -> Routing:
        """Route ``[B, S, D]`` tokens (token index ``t = b * S + s``); assignment ``n = t * K + choice``."""
        B, S, _ = x_BSD.shape
        E, K, T = self.num_experts, self.top_k, B * S
        device = x_BSD.device
        logits_BSE, probs_BSE = self.probabilities(x_BSD)
        gate_BSK, expert_BSK = probs_BSE.topk(K, dim=-1)
        if K > 1:
            gate_BSK = gate_BSK / gate_BSK.sum(dim=-1, keepdim=True)
        capacity = min(T, math.ceil(self.capacity_factor * T * K / E))

        # Rank the assignments in priority order (position, choice rank, batch row): causal, and first choices
        # before second choices. n_P maps each priority slot back to its (token, choice) index.
        n_P = torch.arange(T * K, device=device).view(B, S, K).permute(1, 2, 0).reshape(-1)
        order_P, count_E, position_P = sort_by_expert(expert_BSK.permute(1, 2, 0).reshape(-1), E)
        order_N = n_P.index_select(0, order_P)
        position_N = torch.empty_like(position_P).scatter_(0, n_P, position_P)
        keep_N = position_N < capacity
        gate_N = gate_BSK.reshape(-1) * keep_N

        probs_TE = probs_BSE.reshape(T, E)
        top1_fraction_E = _count(expert_BSK[..., 0].reshape(-1), E).float() / T
        load_balance = E * (top1_fraction_E * probs_TE.mean(0)).sum()
        z_loss = self._z_loss(logits_BSE)
        aux = self.load_balance_weight * load_balance + self.z_loss_weight * z_loss
        with torch.no_grad():
            tokens_per_expert = count_E.clamp(max=capacity)  # the kept ones: each expert's first `capacity`
            dropped = 1.0 - keep_N.float().mean()
            entropy = self._entropy(probs_TE)
        return Routing(
            token_idx_N=torch.arange(T * K, device=device) // K,
            expert_idx_N=expert_BSK.reshape(-1),
            position_N=position_N,
            gate_N=gate_N,
            capacity=capacity,
            num_tokens=T,
            aux_loss=aux,
            load_balance_loss=load_balance.detach(),
            z_loss=z_loss.detach(),
            tokens_per_expert_E=tokens_per_expert,
            dropped_fraction=dropped,
            router_entropy=entropy,
            capacity_factor_effective=capacity * E / (T * K),
            top_k=K,
            order_N=order_N,
            count_E=count_E,
        )


class ExpertChoiceRouter(Router):
    """Expert choice routing (arXiv 2202.09368), made causal: experts choose per position across the batch.

    Gate of a chosen token = its softmax probability for that expert. No auxiliary loss (balanced by
    construction); ``z_loss_weight`` may add ST-MoE's router z-loss (default 0).
    """

    def forward(self, x_BSD: Tensor) -> Routing:
        """Route ``[B, S, D]`` tokens (token index ``t = b * S + s``)."""
        B, S, _ = x_BSD.shape
        E, T = self.num_experts, B * S
        logits_BSE, probs_BSE = self.probabilities(x_BSD)
        k = expert_choice_k(B, self.capacity_factor, E)
        # For each position s and expert e: the k best batch rows at that position.
        gate_SEK, row_SEK = probs_BSE.permute(1, 2, 0).topk(k, dim=-1)
        device = x_BSD.device
        pos_S11 = torch.arange(S, device=device).view(S, 1, 1)
        token_N = (row_SEK * S + pos_S11).reshape(-1)
        expert_N = torch.arange(E, device=device).view(1, E, 1).expand(S, E, k).reshape(-1)
        position_N = (pos_S11 * k + torch.arange(k, device=device).view(1, 1, k)).expand(S, E, k).reshape(-1)
        z_loss = self._z_loss(logits_BSE)
        aux = self.z_loss_weight * z_loss
        with torch.no_grad():
            covered_T = _count(token_N, T) > 0
            entropy = self._entropy(probs_BSE.reshape(T, E))
        return Routing(
            token_idx_N=token_N,
            expert_idx_N=expert_N,
            position_N=position_N,
            gate_N=gate_SEK.reshape(-1),
            capacity=S * k,
            num_tokens=T,
            aux_loss=aux,
            load_balance_loss=torch.zeros((), device=device),
            z_loss=z_loss.detach(),
            tokens_per_expert_E=torch.full((E,), S * k, device=device),
            dropped_fraction=1.0 - covered_T.float().mean(),
            router_entropy=entropy,
            capacity_factor_effective=E * k / B,
        )
