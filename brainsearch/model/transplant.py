"""Copying a trained model's weights into a new model of a related architecture: the part that sparse upcycling
(:mod:`brainsearch.model.upcycle`) and Lifelong-MoE expansion (:mod:`brainsearch.model.expand`) share.

Both build the new model first and then copy into it, sub-layer by sub-layer (:func:`transplant`): the embeddings,
the RMSNorms, the output head and every sub-layer that is not a new MoE are copied as they are, and a bank of ``E'``
experts is filled from a source of ``G`` groups by one rule, expert ``j`` copies source group ``j mod G``
(:func:`copy_groups`), so the first ``G`` experts are exactly the source's. The two differ only in what an MoE
sub-layer gets beyond that copy (upcycling: fresh or repeated router rows; expansion: noise and mean router rows).

Every per-expert tensor has one expert dim (:func:`expert_params`): the router's rows (``weight_ED``, dim 0) and the
experts' group dim, read off the parameter's shape suffix (``w_in_GXD`` -> 0, ``v_in_MGHR`` -> 1; see
:mod:`brainsearch.model.ffn`). A module or MoE parameter added to the model later is an error here, not a weight
silently left at its initialisation: whoever copies weights must be taught it first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from brainsearch.model.ffn import FeedForward
from brainsearch.model.lm import LanguageModel
from brainsearch.model.moe import MoE

__all__ = [
    "check_moe_params",
    "copy_experts",
    "copy_groups",
    "copy_module",
    "expert_params",
    "moe_layers",
    "transplant",
]

_MODEL_MODULES = {"embed", "norms", "layers", "final_norm", "head"}


def transplant(
    new: LanguageModel, old: LanguageModel, copy_layer: Callable[[nn.Module, nn.Module], None], purpose: str
) -> None:
    """Copy ``old``'s weights into ``new`` (the same model dims and number of sub-layers): the embeddings, every
    RMSNorm and the output head as they are, and each pair of sub-layers by ``copy_layer(new_layer, old_layer)``,
    all without gradients. ``purpose`` names the caller in the error for a module of the model it does not know."""
    unknown = {name for name, _ in new.named_children()} - _MODEL_MODULES
    if unknown:  # a module added to the language model later must be taught to every caller
        raise NotImplementedError(f"{purpose} does not know the language model's modules {sorted(unknown)}")
    with torch.no_grad():
        for name in ("embed", "norms", "final_norm"):
            copy_module(getattr(new, name), getattr(old, name))
        if new.head is not None and old.head is not None:
            copy_module(new.head, old.head)
        for new_layer, old_layer in zip(new.layers, old.layers, strict=True):
            copy_layer(new_layer, old_layer)


def copy_module(new: nn.Module, old: nn.Module) -> None:
    """Copy every parameter and persistent buffer of ``old`` into ``new`` (same structure and shapes)."""
    new.load_state_dict(old.state_dict())


def moe_layers(model: LanguageModel) -> list[tuple[int, MoE]]:
    """``(index in model.layers, layer)`` of every MoE sub-layer of ``model``, in model order."""
    return [(i, layer) for i, layer in enumerate(model.layers) if isinstance(layer, MoE)]


def check_moe_params(moe: MoE, purpose: str) -> None:
    """Raise :class:`NotImplementedError` naming ``purpose`` when ``moe`` has a parameter that is neither the
    router's weight nor an expert's."""
    unknown = [n for n, _ in moe.named_parameters() if n != "router.weight_ED" and not n.startswith("experts.")]
    if unknown:  # a parameter added to the MoE layer later must be taught to every caller
        raise NotImplementedError(f"{purpose} does not know the MoE parameters {unknown}")


def expert_params(moe: MoE, purpose: str) -> list[tuple[str, nn.Parameter, int]]:
    """``(name inside the MoE layer, parameter, its expert dim)`` for every per-expert parameter of ``moe``, the
    router's first; see :func:`check_moe_params` for ``purpose``."""
    check_moe_params(moe, purpose)
    return [("router.weight_ED", moe.router.weight_ED, 0)] + [
        (f"experts.{name}", param, _group_dim(name)) for name, param in moe.experts.named_parameters()
    ]


def copy_groups(new: Tensor, old: Tensor, dim: int) -> None:
    """Fill ``new``'s groups along ``dim`` from ``old``'s ``G`` (the other dims equal): group ``j`` copies group
    ``j mod G``, so the first ``G`` are ``old``'s exactly. ``old`` may live on any device."""
    rows = torch.arange(new.shape[dim]) % old.shape[dim]
    new.copy_(old.index_select(dim, rows.to(old.device)))


def copy_experts(new: FeedForward, old: FeedForward) -> None:
    """Fill ``new``'s ``E'`` groups from ``old``'s ``G`` (same widths) by :func:`copy_groups`' rule, parameter by
    parameter."""
    sources = dict(old.named_parameters())
    for name, param in new.named_parameters():
        copy_groups(param, sources[name], _group_dim(name))


def _group_dim(name: str) -> int:
    """The group (expert) dimension of a :class:`FeedForward` parameter, read from its shape suffix: ``w_in_GXD``
    -> 0, ``v_in_MGHR`` -> 1."""
    return name.rsplit("_", 1)[-1].index("G")
