"""Causal multi-head self-attention with rotary positions, through ``scaled_dot_product_attention``.

Shape legend: B batch, S sequence, D model dim, N heads, K head dim.
Rotary position embedding: Su et al. 2021, arXiv 2104.09864 (the "rotate half" form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Attention", "rotary_tables"]


def rotary_tables(seq_len: int, rotary_dim: int, base: float = 10_000.0) -> tuple[Tensor, Tensor]:
    """``cos, sin`` of shape ``[S, rotary_dim / 2]`` for positions ``0..seq_len-1``."""
    inv_freq = 1.0 / base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
    angles_SR = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles_SR.cos(), angles_SR.sin()


def _rotate(x_BNSK: Tensor, cos_SR: Tensor, sin_SR: Tensor) -> Tensor:
    r = cos_SR.shape[-1]
    x1, x2, rest = x_BNSK[..., :r], x_BNSK[..., r : 2 * r], x_BNSK[..., 2 * r :]
    cos, sin = cos_SR.to(x_BNSK.dtype), sin_SR.to(x_BNSK.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1)


class Attention(nn.Module):
    """Causal self-attention: fused q/k/v projection, rotary q/k, SDPA (flash kernels on GPU), output projection.

    ``heads * head_dim`` need not equal ``d_model``. An odd ``head_dim`` rotates its first ``head_dim - 1`` dims.
    """

    def __init__(self, d_model: int, heads: int, head_dim: int, max_seq_len: int, out_init_std: float = 0.02):
        super().__init__()
        self.heads, self.head_dim, self.max_seq_len = heads, head_dim, max_seq_len
        self.qkv = nn.Linear(d_model, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, d_model, bias=False)
        nn.init.normal_(self.qkv.weight, std=0.02)
        nn.init.normal_(self.out.weight, std=out_init_std)
        cos, sin = rotary_tables(max_seq_len, head_dim - head_dim % 2)
        self.cos_SR: Tensor
        self.sin_SR: Tensor
        self.register_buffer("cos_SR", cos, persistent=False)
        self.register_buffer("sin_SR", sin, persistent=False)

    def forward(self, x_BSD: Tensor) -> Tensor:
        """``[B, S, D] -> [B, S, D]``; position t attends to positions ``<= t`` only."""
        B, S, _ = x_BSD.shape
        if self.max_seq_len < S:
            raise ValueError(f"sequence length {S} exceeds the architecture's seq_len {self.max_seq_len}")
        qkv = self.qkv(x_BSD).view(B, S, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q_BNSK, k_BNSK, v_BNSK = qkv.unbind(0)
        cos, sin = self.cos_SR[:S], self.sin_SR[:S]
        q_BNSK, k_BNSK = _rotate(q_BNSK, cos, sin), _rotate(k_BNSK, cos, sin)
        o_BNSK = F.scaled_dot_product_attention(q_BNSK, k_BNSK, v_BNSK, is_causal=True)
        out: Tensor = self.out(o_BNSK.transpose(1, 2).reshape(B, S, self.heads * self.head_dim))
        return out
