"""Lifelong-MoE expansion (Chen et al. 2023, arXiv 2305.12281) of a trained model: the same model with ``add_experts``
more experts in every MoE sub-layer (top-k, capacity factor and gating unchanged), every old weight copied exactly.
Training the expanded model on new data, with the old experts frozen, is :mod:`brainsearch.train.lifelong`.

How the new parameters start, where the paper leaves it open:

- New experts start as copies of trained ones (new expert ``j`` copies old expert ``j mod E``) plus Gaussian noise of
  ``init_noise`` times the weight tensor's standard deviation, which breaks the symmetry with the parent; the copies
  start from features the shared layers already feed. ``expert_init="random"`` gives them a fresh init instead.
- New router rows start at the mean of the old rows (plus the same relative noise), so a token's logit for a new
  expert is the mean of its old logits: a new expert enters a token's top-k only where one old expert dominates.
  Fresh ``N(0, 0.02)`` rows would not do: the router z-loss drives trained logits below zero, so near-zero rows win
  most tokens (measured on cpu-tiny GLaM: 75-79% of assignments to the new experts and +0.13 to +0.31 nats on the
  old corpus before any training, against 10-15% and +0.004 to +0.03 with mean rows). The router has no bias, so no
  choice of rows keeps the new experts unused for every token (and more experts mean less capacity per expert):
  the expanded model starts *close to*, not equal to, the old one. Every old parameter is copied exactly; the
  distillation term of the training pulls the outputs back toward the old model's.

Compute per token. Token choice: each token still visits k experts; capacity per expert ``ceil(cf * T * k / E)``
shrinks as E grows, so the total number of slots stays ``cf * T * k``; only the router grows (``d_model`` parameters
per new expert per MoE layer). Expert choice: each expert takes ``ceil(B * cf / E)`` tokens per position, so a token
still meets about ``cf`` experts (more after rounding up; once ``B * cf < E`` every expert takes one token per
position, ``E / B`` per token), but each old expert takes fewer tokens than before: expert choice cannot keep the old
experts' assignments (the new experts take ``add / (E + add)`` of them at once; on cpu-tiny Brainformer-1, 4 + 4
experts, the old-corpus loss still rose only 0.02-0.03 nats at expansion).

The copying itself (old experts first along each expert dim, new expert ``j`` from old expert ``j mod E``) is the
rule sparse upcycling uses too; both go through :mod:`brainsearch.model.transplant`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from brainsearch.arch.spec import Architecture, MoESpec
from brainsearch.errors import InputError, Problem
from brainsearch.model.lm import LanguageModel, build_model
from brainsearch.model.moe import MoE
from brainsearch.model.routing import TokenChoiceRouter
from brainsearch.model.transplant import copy_groups, copy_module, expert_params, moe_layers, transplant

__all__ = ["ExpertInit", "check_expandable", "expand_model", "expanded_architecture"]

ExpertInit = Literal["copy", "random"]
_PURPOSE = "expansion"


def check_expandable(arch: Architecture, add_experts: int) -> None:
    """Raise :class:`~brainsearch.errors.InputError` listing why ``arch`` cannot get ``add_experts`` more experts per
    MoE sub-layer: ``add_experts < 1``, or no MoE sub-layer at all."""
    problems = []
    if add_experts < 1:
        problems.append(Problem("add_experts", f"must be at least 1, got {add_experts}"))
    if not any(isinstance(layer, MoESpec) for layer in arch.block):
        problems.append(
            Problem("architecture", f"has no MoE sub-layer to add experts to (block pattern {arch.pattern!r})")
        )
    if problems:
        raise InputError(problems)


def expanded_architecture(arch: Architecture, add_experts: int) -> Architecture:
    """``arch`` with ``add_experts`` more experts in every MoE sub-layer, all else equal.

    Raises :class:`~brainsearch.errors.InputError` for ``add_experts < 1`` or an architecture without MoE sub-layers
    (an :class:`~brainsearch.errors.ArchitectureError` when the result breaks a limit of the spec).
    """
    check_expandable(arch, add_experts)
    doc = arch.to_dict()
    for layer in doc["block"]:
        if layer["type"] == "moe":
            layer["experts"] += add_experts
    return Architecture.from_json(doc, source=f"the architecture with {add_experts} experts added")


def expand_model(
    model: LanguageModel, add_experts: int, *, seed: int = 0, expert_init: ExpertInit = "copy", init_noise: float = 0.01
) -> LanguageModel:
    """A new model (on the CPU) of :func:`expanded_architecture` holding ``model``'s weights.

    Every old parameter is copied exactly: the old experts are the first ``E`` along each expert dim and the old
    router rows the first ``E`` rows. New experts are copies of old ones plus noise (``expert_init="copy"``: new
    expert ``j`` copies expert ``j mod E``, noise ``init_noise`` x the tensor's std) or freshly initialised
    (``"random"``); new router rows are the mean of the old rows plus the same relative noise (see the module
    docstring for why). Deterministic in ``seed``; the global RNG is left alone.
    """
    arch = expanded_architecture(model.arch, add_experts)
    moes = [moe for _, moe in moe_layers(model)]
    token_choice = next((m.router for m in moes if isinstance(m.router, TokenChoiceRouter)), None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        expanded = build_model(
            arch,
            dispatch=moes[0].dispatch,
            load_balance_weight=token_choice.load_balance_weight if token_choice is not None else 0.01,
            z_loss_weight=token_choice.z_loss_weight if token_choice is not None else 0.001,
        )
    gen = torch.Generator().manual_seed(seed)

    def copy_layer(new: nn.Module, old: nn.Module) -> None:
        if isinstance(new, MoE) and isinstance(old, MoE):
            _expand_moe(new, old, gen, expert_init, init_noise)
        else:
            copy_module(new, old)

    transplant(expanded, model, copy_layer, _PURPOSE)
    return expanded


def _expand_moe(new: MoE, old: MoE, gen: torch.Generator, expert_init: ExpertInit, init_noise: float) -> None:
    """Fill the expanded layer ``new`` from ``old``: see :func:`expand_model`. Draws the noise from ``gen``, one
    tensor per expert parameter in :func:`~brainsearch.model.transplant.expert_params` order (drawn under
    ``"random"`` too, so a seed gives the same router rows either way)."""
    num_old = old.spec.experts
    sources = {name: param.detach() for name, param, _ in expert_params(old, _PURPOSE)}
    for name, param, dim in expert_params(new, _PURPOSE):
        source = sources[name]
        added = param.narrow(dim, num_old, param.shape[dim] - num_old)
        noise = torch.randn(added.shape, generator=gen) * (init_noise * float(source.float().std()))
        if name == "router.weight_ED":
            param.narrow(dim, 0, num_old).copy_(source)
            # Every token's logit for a new expert starts at the mean of its old logits: rarely in the top-k.
            added.copy_(source.float().mean(0, keepdim=True).cpu() + noise)
        elif expert_init == "copy":
            copy_groups(param, source, dim)
            added.add_(noise)
        else:
            param.narrow(dim, 0, num_old).copy_(source)
