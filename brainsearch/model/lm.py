"""The decoder-only language model: the block's sub-layers repeated ``num_blocks`` times between a token embedding
and an output head, each sub-layer pre-norm (RMSNorm) with a residual connection.

Shape legend: B batch, S sequence, D model dim, V vocabulary.

The output head is tied to the token embedding when ``arch.tie_embeddings`` (the default), else a separate
``D x V`` matrix; either way its parameters are counted in ``cost(arch).params_embedding``.

Activation checkpointing (``model.activation_checkpointing = True``) runs each repeated block under non-reentrant
``torch.utils.checkpoint``: the backward keeps only every block's input and recomputes one block at a time. Loss,
gradients and MoE statistics are the same as without (routing is deterministic given its input); the memory it saves
is what ``cost(arch, checkpointing=True)`` estimates and :func:`brainsearch.train.memory.count_training_memory`
counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from brainsearch.arch.spec import Architecture, AttentionSpec, FFNSpec, MoESpec
from brainsearch.model.attention import Attention
from brainsearch.model.ffn import DenseFFN
from brainsearch.model.moe import Dispatch, MoE, MoEStats

__all__ = ["LMOutput", "LanguageModel", "build_model"]

NORM_EPS = 1e-6


@dataclass
class LMOutput:
    """What a forward returns: ``logits`` ``[B, S, V]``, the weighted auxiliary router loss (a scalar to add to the
    LM loss) and one :class:`MoEStats` per MoE sub-layer, in model order."""

    logits: Tensor
    aux_loss: Tensor
    moe: list[MoEStats] = field(default_factory=list)


class LanguageModel(nn.Module):
    """A causal LM built from an :class:`~brainsearch.arch.Architecture`; use :func:`build_model`.

    ``activation_checkpointing`` (settable at any time) recomputes each block in the backward instead of keeping its
    activations; it applies only while training with gradients enabled.
    """

    activation_checkpointing: bool

    def __init__(
        self,
        arch: Architecture,
        dispatch: Dispatch = "auto",
        load_balance_weight: float = 0.01,
        z_loss_weight: float = 0.001,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.dispatch, self.load_balance_weight, self.z_loss_weight = dispatch, load_balance_weight, z_loss_weight
        self.activation_checkpointing = False
        # Built in part_names() order, each part initialised as it is built: see build_part.
        self.embed = self._embedding()
        self.norms = nn.ModuleList(self._norm() for _ in arch.layers)
        self.layers = nn.ModuleList(self._layer(i) for i in range(len(arch.layers)))
        self.final_norm = self._norm()
        self.head = None if arch.tie_embeddings else self._head()

    def part_names(self) -> list[str]:
        """The model's parts (``embed``, ``norms.<i>``, ``layers.<i>``, ``final_norm``, ``head`` when untied), in
        the order the model builds them."""
        n = len(self.arch.layers)
        names = ["embed", *(f"norms.{i}" for i in range(n)), *(f"layers.{i}" for i in range(n)), "final_norm"]
        return names if self.arch.tie_embeddings else [*names, "head"]

    def build_part(self, name: str) -> nn.Module:
        """A new, initialised part ``name`` (one of :meth:`part_names`) on the default device, drawn from the global
        RNG exactly as the model's own build draws it: building every part in :meth:`part_names` order from one RNG
        state gives the weights (and buffers) of a model built from that state, one part in memory at a time. This is
        how a sharded run's model, built on the meta device, gets its weights (:mod:`brainsearch.train.distributed`).
        """
        if name not in self.part_names():
            raise KeyError(f"no model part {name!r}")
        kind, _, index = name.partition(".")
        if kind == "layers":
            return self._layer(int(index))
        builders = {"embed": self._embedding, "norms": self._norm, "final_norm": self._norm, "head": self._head}
        return builders[kind]()

    def _embedding(self) -> nn.Embedding:
        embed = nn.Embedding(self.arch.vocab_size, self.arch.d_model)
        nn.init.normal_(embed.weight, std=0.02)
        return embed

    def _norm(self) -> nn.RMSNorm:
        return nn.RMSNorm(self.arch.d_model, eps=NORM_EPS)

    def _layer(self, index: int) -> nn.Module:
        arch, spec = self.arch, self.arch.layers[index]
        # GPT-2 style: residual-branch output projections scaled down with depth.
        out_std = 0.02 / math.sqrt(2 * len(arch.layers))
        if isinstance(spec, AttentionSpec):
            assert spec.head_dim is not None
            return Attention(arch.d_model, spec.heads, spec.head_dim, arch.seq_len, out_init_std=out_std)
        if isinstance(spec, FFNSpec):
            return DenseFFN(arch.d_model, spec.hidden, spec.activation, spec.rank, out_init_std=out_std)
        assert isinstance(spec, MoESpec)
        return MoE(
            arch.d_model, spec, self.dispatch, self.load_balance_weight, self.z_loss_weight, out_init_std=out_std
        )

    def _head(self) -> nn.Linear:
        head = nn.Linear(self.arch.d_model, self.arch.vocab_size, bias=False)
        nn.init.normal_(head.weight, std=0.02)
        return head

    def forward(self, ids_BS: Tensor) -> LMOutput:
        """Token ids ``[B, S]`` (``S <= arch.seq_len``) -> :class:`LMOutput` with logits ``[B, S, V]``."""
        x_BSD = self.embed(ids_BS)
        aux = torch.zeros((), device=ids_BS.device)
        moe_stats: list[MoEStats] = []
        checkpointing = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for index in range(self.arch.num_blocks):
            if checkpointing:
                x_BSD, aux, stats = torch.utils.checkpoint.checkpoint(
                    self._block, index, x_BSD, aux, use_reentrant=False
                )
            else:
                x_BSD, aux, stats = self._block(index, x_BSD, aux)
            moe_stats.extend(stats)
        h_BSD = self.final_norm(x_BSD)
        weight_VD = self.embed.weight if self.head is None else self.head.weight
        logits_BSV = h_BSD @ weight_VD.t()
        return LMOutput(logits=logits_BSV, aux_loss=aux, moe=moe_stats)

    def _block(self, index: int, x_BSD: Tensor, aux: Tensor) -> tuple[Tensor, Tensor, list[MoEStats]]:
        """Block ``index`` (``len(arch.block)`` pre-norm residual sub-layers): the residual stream ``[B, S, D]``
        after it, ``aux`` plus its MoE layers' auxiliary losses, and their statistics."""
        moe_stats: list[MoEStats] = []
        first = index * len(self.arch.block)
        for i in range(first, first + len(self.arch.block)):
            norm, layer = self.norms[i], self.layers[i]
            if isinstance(layer, MoE):
                y_BSD, stats = layer(norm(x_BSD))
                aux = aux + stats.aux_loss
                moe_stats.append(stats)
            else:
                y_BSD = layer(norm(x_BSD))
            x_BSD = x_BSD + y_BSD
        return x_BSD, aux, moe_stats

    def num_params(self) -> int:
        """Every parameter (embeddings included); equals ``cost(arch).params_total + params_embedding``."""
        return sum(p.numel() for p in self.parameters())


def build_model(
    arch: Architecture | dict[str, Any] | str,
    *,
    dispatch: Dispatch = "auto",
    load_balance_weight: float = 0.01,
    z_loss_weight: float = 0.001,
) -> LanguageModel:
    """Build the torch language model an Architecture (or its JSON) describes, on the CPU in float32.

    ``dispatch`` picks the MoE dispatch path (see :mod:`brainsearch.model.moe`); the two weights scale the Switch
    load-balancing loss and the router z-loss of token-choice routers.
    """
    if not isinstance(arch, Architecture):
        arch = Architecture.from_json(arch)
    return LanguageModel(arch, dispatch, load_balance_weight, z_loss_weight)
