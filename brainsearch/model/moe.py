"""The MoE sub-layer: a router, a bank of experts, and dispatch / combine without a Python loop over experts and
without a one-hot dispatch tensor.

Shape legend: B batch, S sequence, T tokens, D model dim, E experts, C slots per expert, N routed assignments.

Dispatch paths (same maths, tested against a per-expert reference in tests/model):

- ``padded``: scatter the routed tokens into an ``[E, C, D]`` buffer at their slot, run every expert with one
  ``torch.bmm`` per matrix, gather the outputs back. C is the largest number of tokens any expert received in this
  forward (at most the capacity). Expert choice fills every buffer exactly, so this is its path.
- ``grouped``: sort the assignments by expert and run ``torch.nn.functional.grouped_mm`` on the packed ``[N, D]``
  tokens with per-expert offsets (no padding at all; a fused kernel on Hopper GPUs; on CUDA it needs bf16 and
  16-aligned widths).
- ``auto``: ``padded`` for expert choice; ``grouped`` for token choice where grouped_mm exists (on CUDA also
  16-aligned widths; under ``torch.compile`` only in bf16), else ``padded``. The choice follows the measurements
  in ``benchmarks/moe_dispatch.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import Tensor, nn

from brainsearch.arch.spec import MoESpec
from brainsearch.model.ffn import FeedForward
from brainsearch.model.routing import ExpertChoiceRouter, Router, Routing, TokenChoiceRouter

__all__ = ["Dispatch", "MoE", "MoEStats"]

Dispatch = Literal["auto", "padded", "grouped"]


@dataclass
class MoEStats:
    """Diagnostics of one MoE layer's forward (detached tensors, so reading them costs no extra compute)."""

    tokens_per_expert: Tensor
    dropped_fraction: Tensor
    router_entropy: Tensor
    load_balance_loss: Tensor
    z_loss: Tensor
    aux_loss: Tensor
    capacity: int
    capacity_factor_effective: float


def _grouped_mm_fn() -> Callable[..., Tensor] | None:
    """``torch.nn.functional.grouped_mm`` (public since torch 2.10), else ``torch._grouped_mm``, else None."""
    fn = getattr(torch.nn.functional, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)
    return cast("Callable[..., Tensor] | None", fn)


class MoE(nn.Module):
    """Router + ``experts`` FFNs + dispatch/combine, built from a :class:`~brainsearch.arch.MoESpec`."""

    def __init__(
        self,
        d_model: int,
        spec: MoESpec,
        dispatch: Dispatch = "auto",
        load_balance_weight: float = 0.01,
        z_loss_weight: float = 0.001,
        out_init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.spec, self.dispatch = spec, dispatch
        self.router: Router
        if spec.top_k is None:
            self.router = ExpertChoiceRouter(d_model, spec.experts, spec.capacity_factor)
        else:
            self.router = TokenChoiceRouter(
                d_model, spec.experts, spec.top_k, spec.capacity_factor, load_balance_weight, z_loss_weight
            )
        self.experts = FeedForward(
            spec.experts, d_model, spec.hidden, spec.activation, spec.rank, out_init_std=out_init_std
        )

    def _path(self, x: Tensor) -> Literal["padded", "grouped"]:
        if self.dispatch != "auto":
            return self.dispatch
        # Expert choice fills every expert's buffer exactly: padded bmm wastes nothing. Token choice leaves the
        # buffers uneven; packing them for grouped_mm was faster in benchmarks/moe_dispatch.py on CPU too.
        if self.spec.top_k is None or _grouped_mm_fn() is None:
            return "padded"
        if torch.compiler.is_compiling() and x.dtype != torch.bfloat16 and not torch.is_autocast_enabled(x.device.type):
            return "padded"  # grouped_mm's compile-time (fake tensor) kernel accepts bf16 only
        if x.is_cuda:
            # CUDA grouped GEMM wants bf16 operands with 16-byte aligned strides, low-rank factors included.
            widths = [self.experts.d_model, self.experts.hidden, self.experts.rank or 16]
            bf16 = x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cuda")
            return "grouped" if bf16 and all(w % 16 == 0 for w in widths) else "padded"
        return "grouped"

    def forward(self, x_BSD: Tensor) -> tuple[Tensor, MoEStats]:
        """``[B, S, D] -> ([B, S, D], stats)``; a token dropped by every expert gets zeros (the residual carries it)."""
        B, S, D = x_BSD.shape
        routing = self.router(x_BSD)
        x_TD = x_BSD.reshape(B * S, D)
        if self._path(x_BSD) == "grouped":
            y_ND, token_N, gate_N = self._grouped(x_TD, routing)
        else:
            y_ND, token_N, gate_N = self._padded(x_TD, routing)
        contrib_ND = y_ND * gate_N.unsqueeze(-1).to(y_ND.dtype)
        out_TD = torch.zeros(B * S, D, dtype=contrib_ND.dtype, device=x_BSD.device)
        out_TD.index_add_(0, token_N, contrib_ND)
        stats = MoEStats(
            tokens_per_expert=routing.tokens_per_expert_E,
            dropped_fraction=routing.dropped_fraction,
            router_entropy=routing.router_entropy,
            load_balance_loss=routing.load_balance_loss,
            z_loss=routing.z_loss,
            aux_loss=routing.aux_loss,
            capacity=routing.capacity,
            capacity_factor_effective=routing.capacity_factor_effective,
        )
        return out_TD.view(B, S, D).to(x_BSD.dtype), stats

    def _padded(self, x_TD: Tensor, r: Routing) -> tuple[Tensor, Tensor, Tensor]:
        E, D = self.spec.experts, x_TD.shape[-1]
        if self.spec.top_k is None:
            used = r.capacity  # expert choice fills every slot
        else:
            # Slots actually used: one host sync, repaid by not multiplying empty capacity.
            used = int(r.position_N.max().item()) + 1 if r.position_N.numel() else 1
        buf_ECD = x_TD.new_zeros(E, used, D)
        buf_ECD[r.expert_idx_N, r.position_N] = x_TD[r.token_idx_N]
        out_ECD = self.experts(buf_ECD)
        return out_ECD[r.expert_idx_N, r.position_N], r.token_idx_N, r.gate_N

    def _grouped(self, x_TD: Tensor, r: Routing) -> tuple[Tensor, Tensor, Tensor]:
        order_N = torch.argsort(r.expert_idx_N, stable=True)
        counts_E = torch.bincount(r.expert_idx_N, minlength=self.spec.experts)
        offs_E = torch.cumsum(counts_E, 0).to(torch.int32)
        token_N = r.token_idx_N[order_N]
        x_ND = x_TD[token_N]
        dtype = torch.get_autocast_dtype("cuda") if x_TD.is_cuda and torch.is_autocast_enabled("cuda") else x_TD.dtype

        grouped_mm = _grouped_mm_fn()
        if grouped_mm is None:
            raise RuntimeError("this torch has no grouped_mm; use dispatch='padded'")

        def mm(a: Tensor, w: Tensor) -> Tensor:
            return grouped_mm(a.to(dtype), w.to(dtype), offs=offs_E)

        return self.experts(x_ND, mm), token_N, r.gate_N[order_N]
