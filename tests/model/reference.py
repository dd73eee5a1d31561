"""Plain reference implementations the fast model code is checked against (test-only, deliberately slow)."""

from __future__ import annotations

import torch
from torch import Tensor

from brainsearch.model.ffn import FeedForward
from brainsearch.model.moe import MoE


def ffn_one_group(ffn: FeedForward, g: int, x_CD: Tensor) -> Tensor:
    """Group ``g`` of ``ffn`` applied to ``x`` with ordinary matmuls, one matrix at a time."""
    from brainsearch.model.ffn import activate

    if ffn.rank is None:
        h = x_CD @ ffn.w_in_GXD[g].t()
        return activate(h, ffn.activation) @ ffn.w_out_GDH[g].t()
    z = (x_CD @ ffn.u_in_GXD[g].t()).chunk(ffn.num_in, dim=-1)
    h = torch.cat([zj @ ffn.v_in_MGHR[j, g].t() for j, zj in enumerate(z)], dim=-1)
    return (activate(h, ffn.activation) @ ffn.u_out_GRH[g].t()) @ ffn.v_out_GDR[g].t()


def moe_per_expert_loop(moe: MoE, x_BSD: Tensor) -> Tensor:
    """The MoE layer with the same routing but a Python loop over experts and boolean masks (kept assignments only,
    combined by ``index_add``)."""
    B, S, D = x_BSD.shape
    r = moe.router(x_BSD)
    x_TD = x_BSD.reshape(B * S, D)
    out_TD = torch.zeros_like(x_TD)
    for e in range(moe.spec.experts):
        mask = (r.expert_idx_N == e) & r.kept_N
        tokens = r.token_idx_N[mask]
        if tokens.numel() == 0:
            continue
        y = ffn_one_group(moe.experts, e, x_TD[tokens])
        out_TD = out_TD.index_add(0, tokens, y * r.gate_N[mask].unsqueeze(-1))
    return out_TD.view(B, S, D)


def expert_tensors(moe: MoE) -> list[tuple[str, Tensor, int]]:
    """Every per-expert tensor of ``moe`` with its expert dim, read off the shape suffix independently of the
    library's own list (:func:`brainsearch.model.transplant.expert_params`)."""
    out: list[tuple[str, Tensor, int]] = [("router.weight_ED", moe.router.weight_ED, 0)]
    out += [(f"experts.{n}", p, n.rsplit("_", 1)[-1].index("G")) for n, p in moe.experts.named_parameters()]
    return out
