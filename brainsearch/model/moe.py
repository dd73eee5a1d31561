"""The MoE sub-layer: a router, a bank of experts, and dispatch / combine without a Python loop over experts,
without a one-hot dispatch tensor, and without a host sync (every shape is static: see
:mod:`brainsearch.model.routing`).

Shape legend: B batch, S sequence, T tokens, D model dim, E experts, C slots per expert (the capacity), K top-k,
N routed assignments (``T * K`` for token choice).

Token choice keeps its ``T * K`` assignments in (token, choice) order and the router's stable sort of them by
expert (``order_N``). Dispatch gathers each assignment's token row into expert order; combine gathers the expert
outputs back into ``[T, K, D]`` and sums over K with the gates (dropped assignments have gate 0). Both gathers are
written as a scatter to distinct rows (:func:`_place_rows`), whose backward is a gather (by the same index, then a
sum over K): no scatter-add, so no atomics on a GPU, in either direction (``x[index]`` would backpropagate
through an accumulating ``index_put``, sort-based on CUDA).

Dispatch paths (same maths, tested against a per-expert reference in tests/model):

- ``padded``: the tokens go into an ``[E, C, D]`` buffer at their slot (C the static capacity; assignments past it
  are dropped, empty slots read zeros), every expert runs with one ``torch.bmm`` per matrix. Expert choice fills
  every buffer exactly, so this is its path.
- ``grouped``: the ``T * K`` assignments sorted by expert run through ``torch.nn.functional.grouped_mm`` with
  per-expert offsets (no padding at all; dropped assignments are computed and weighted 0, which keeps the shape
  static; a fused kernel on Hopper GPUs; on CUDA it needs bf16 and 16-aligned widths).
- ``auto``: ``padded`` for expert choice; ``grouped`` for token choice where grouped_mm exists (on CUDA also
  16-aligned widths; under ``torch.compile`` only in bf16), else ``padded``. The choice follows the measurements
  in ``benchmarks/moe_dispatch.py``.

Expert choice gives a token any number of experts, so its combine (and the backward of its dispatch) is a
scatter-add, ``index_add``, which uses atomics on a GPU.
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


def _place_rows(values: Tensor, dest: Tensor, num_rows: int, trash: bool = False, complete: bool = False) -> Tensor:
    """A ``[num_rows, D]`` tensor whose row ``dest[i]`` is ``values[i]``; rows nothing lands on are zeros.

    Destinations are distinct (except ``num_rows`` itself, a trash row cut off at the end, with ``trash``), so this
    is a plain scatter whose backward is a gather, ``grad[dest]``: no scatter-add, hence no atomics on a GPU, in
    either direction. ``values`` may broadcast over ``dest``'s last dim (a token placed at its K slots), and the
    backward then sums over it. ``complete`` says every row is written (skip the zero fill).
    """
    rows = num_rows + int(trash)
    out = values.new_empty(rows, values.shape[-1]) if complete else values.new_zeros(rows, values.shape[-1])
    out.index_put_((dest,), values)
    return out[:num_rows] if trash else out


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
        if x.dtype == torch.bfloat16:
            # bf16 weights on the CPU (a bf16-parameter run): CPU grouped_mm in bf16 rejects strides that are not
            # 16-byte aligned (a width not a multiple of 8, e.g. rank 4) and was no faster than bmm here.
            return "padded"
        return "grouped"

    def forward(self, x_BSD: Tensor) -> tuple[Tensor, MoEStats]:
        """``[B, S, D] -> ([B, S, D], stats)``; a token dropped by every expert gets zeros (the residual carries it)."""
        B, S, D = x_BSD.shape
        routing = self.router(x_BSD)
        x_TD = x_BSD.reshape(B * S, D)
        grouped = self._path(x_BSD) == "grouped"
        if routing.top_k is not None and routing.order_N is not None and routing.count_E is not None:
            out_TD = self._token_choice(x_TD, routing, routing.top_k, routing.order_N, routing.count_E, grouped)
        else:
            out_TD = self._expert_choice(x_TD, routing, grouped)
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

    def _token_choice(
        self, x_TD: Tensor, r: Routing, K: int, order_N: Tensor, count_E: Tensor, grouped: bool
    ) -> Tensor:
        T, D = x_TD.shape
        E, N, device = self.spec.experts, x_TD.shape[0] * K, x_TD.device
        if grouped:
            inverse_N = torch.empty_like(order_N).scatter_(0, order_N, torch.arange(N, device=device))
            x_ND = _place_rows(x_TD.unsqueeze(1), inverse_N.view(T, K), N, complete=True)
            y_ND = self.experts(x_ND, self._grouped_mm(x_TD, torch.cumsum(count_E, 0)))
            y_ND = _place_rows(y_ND, order_N, N, complete=True)
        else:
            C = r.capacity
            # Slot (e, c) holds expert e's c-th assignment in priority order (its kept ones come first), or stays
            # zeros (assignment index N: the trash row) when fewer came; a dropped assignment goes to the trash.
            start_E = torch.cumsum(count_E, 0) - count_E
            c_C = torch.arange(C, device=device)
            sorted_EC = (start_E.view(E, 1) + c_C).clamp(max=N - 1)
            assign_EC = torch.where(c_C < count_E.view(E, 1), order_N.index_select(0, sorted_EC.view(-1)).view(E, C), N)
            slot_N = torch.where(r.kept_N, r.expert_idx_N * C + r.position_N, E * C)
            x_ECD = _place_rows(x_TD.unsqueeze(1), slot_N.view(T, K), E * C, trash=True).view(E, C, D)
            y_ECD = self.experts(x_ECD)
            y_ND = _place_rows(y_ECD.view(E * C, D), assign_EC.view(-1), N, trash=True)
        y_TKD = y_ND.view(T, K, D)
        gate_TK1 = r.gate_N.view(T, K, 1).to(y_TKD.dtype)
        return (y_TKD[:, 0] * gate_TK1[:, 0]) if K == 1 else (y_TKD * gate_TK1).sum(1)

    def _expert_choice(self, x_TD: Tensor, r: Routing, grouped: bool) -> Tensor:
        T, D = x_TD.shape
        E, C, device = self.spec.experts, r.capacity, x_TD.device
        # The assignments fill the E * C slots exactly (slot e * C + position), so the layer runs in slot order.
        slot_N = r.expert_idx_N * C + r.position_N
        token_S = torch.empty_like(slot_N).scatter_(0, slot_N, r.token_idx_N)
        gate_S = r.gate_N.new_empty(E * C).scatter(0, slot_N, r.gate_N)
        x_SD = x_TD.index_select(0, token_S)  # backward: a scatter-add over a varying number of experts per token
        if grouped:
            offs_E = torch.arange(1, E + 1, device=device) * C
            y_SD = self.experts(x_SD, self._grouped_mm(x_TD, offs_E))
        else:
            y_SD = self.experts(x_SD.view(E, C, D)).view(E * C, D)
        contrib_SD = y_SD * gate_S.unsqueeze(-1).to(y_SD.dtype)
        return torch.zeros(T, D, dtype=contrib_SD.dtype, device=device).index_add_(0, token_S, contrib_SD)

    def _grouped_mm(self, x_TD: Tensor, ends_E: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """The grouped matmul over row groups ending at ``ends_E`` (in the autocast dtype on CUDA)."""
        grouped_mm = _grouped_mm_fn()
        if grouped_mm is None:
            raise RuntimeError("this torch has no grouped_mm; use dispatch='padded'")
        dtype = torch.get_autocast_dtype("cuda") if x_TD.is_cuda and torch.is_autocast_enabled("cuda") else x_TD.dtype
        offs_E = ends_E.to(torch.int32)

        def mm(a: Tensor, w: Tensor) -> Tensor:
            return grouped_mm(a.to(dtype), w.to(dtype), offs=offs_E)

        return mm
