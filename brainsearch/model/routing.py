"""Routers: one small class family with a fixed base call (logits -> float32 probabilities -> routing decision) and
a typed result, :class:`Routing`, carrying the dispatch data, the auxiliary loss and diagnostics.

Shape legend: B batch, S sequence, T = B * S tokens, D model dim, E experts, K top-k (or tokens per expert and
position for expert choice), N routed (token, expert) assignments.

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

__all__ = ["ExpertChoiceRouter", "Router", "Routing", "TokenChoiceRouter", "positions_in_expert"]


@dataclass
class Routing:
    """Which token goes to which expert slot, with what gate, and what the routing cost.

    ``position_N`` is the slot of the assignment inside its expert's buffer (``< capacity``); assignments dropped
    for capacity are not listed. ``aux_loss`` is already weighted. Statistics are detached.
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


def positions_in_expert(expert_idx_N: Tensor, num_experts: int) -> tuple[Tensor, Tensor]:
    """Rank of each assignment among those sent to the same expert, in the given order (a stable sort, no one-hot).

    Returns ``(position_N, count_E)``.
    """
    n = expert_idx_N.numel()
    order_N = torch.argsort(expert_idx_N, stable=True)
    count_E = torch.bincount(expert_idx_N, minlength=num_experts)
    start_E = torch.cumsum(count_E, 0) - count_E
    rank_sorted_N = torch.arange(n, device=expert_idx_N.device) - start_E[expert_idx_N[order_N]]
    position_N = torch.empty_like(expert_idx_N)
    position_N[order_N] = rank_sorted_N
    return position_N, count_E


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
        """Route ``[B, S, D]`` tokens (token index ``t = b * S + s``)."""
        B, S, _ = x_BSD.shape
        E, K, T = self.num_experts, self.top_k, B * S
        logits_BSE, probs_BSE = self.probabilities(x_BSD)
        gate_BSK, expert_BSK = probs_BSE.topk(K, dim=-1)
        if K > 1:
            gate_BSK = gate_BSK / gate_BSK.sum(dim=-1, keepdim=True)
        capacity = min(T, math.ceil(self.capacity_factor * T * K / E))

        # Priority order (position, choice rank, batch row): causal, and first choices before second choices.
        expert_N = expert_BSK.permute(1, 2, 0).reshape(-1)
        gate_N = gate_BSK.permute(1, 2, 0).reshape(-1)
        token_SKB = (torch.arange(B, device=x_BSD.device) * S).view(1, 1, B) + torch.arange(
            S, device=x_BSD.device
        ).view(S, 1, 1)
        token_N = token_SKB.expand(S, K, B).reshape(-1)
        position_N, _ = positions_in_expert(expert_N, E)
        keep_N = position_N < capacity
        kept_expert = expert_N[keep_N]

        probs_TE = probs_BSE.reshape(T, E)
        top1_fraction_E = torch.bincount(expert_BSK[..., 0].reshape(-1), minlength=E).float() / T
        load_balance = E * (top1_fraction_E * probs_TE.mean(0)).sum()
        z_loss = self._z_loss(logits_BSE)
        aux = self.load_balance_weight * load_balance + self.z_loss_weight * z_loss
        with torch.no_grad():
            tokens_per_expert = torch.bincount(kept_expert, minlength=E)
            dropped = 1.0 - keep_N.float().mean()
            entropy = self._entropy(probs_TE)
        return Routing(
            token_idx_N=token_N[keep_N],
            expert_idx_N=kept_expert,
            position_N=position_N[keep_N],
            gate_N=gate_N[keep_N],
            capacity=capacity,
            num_tokens=T,
            aux_loss=aux,
            load_balance_loss=load_balance.detach(),
            z_loss=z_loss.detach(),
            tokens_per_expert_E=tokens_per_expert,
            dropped_fraction=dropped,
            router_entropy=entropy,
            capacity_factor_effective=capacity * E / (T * K),
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
            covered_T = torch.bincount(token_N, minlength=T) > 0
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
