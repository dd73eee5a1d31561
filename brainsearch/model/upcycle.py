"""Sparse upcycling (Komatsuzaki et al. 2022, arXiv 2212.05055): an MoE model started from a trained model's weights.

:func:`upcycle` builds the target architecture and copies every weight of the source model into it, sub-layer by
sub-layer (the two must agree in everything but the MoE sub-layers):

- a sub-layer of the same kind and size (attention, dense FFN, an MoE with as many experts), the embeddings, the
  output head and every RMSNorm: copied as they are;
- a target MoE whose source is a dense FFN: every expert is a copy of that FFN (same ``hidden``, ``activation`` and
  ``rank``; low-rank factors are copied factor by factor). The router is new, from the target's own initialisation
  (``N(0, 0.02)`` rows, drawn under ``seed``): the paper initialises the router from scratch too;
- a target MoE of ``E' = m * E`` experts whose source is an MoE of ``E`` (same widths): expert ``j`` copies source
  expert ``j mod E``, and router row ``j`` copies source row ``j mod E``. The target's first ``E`` experts are then
  exactly the source's, as in Lifelong-MoE expansion (:mod:`brainsearch.model.expand`): both copy through
  :mod:`brainsearch.model.transplant`.

Shape legend: G groups (1 for a dense FFN, E experts), E experts, D model dim; see :mod:`brainsearch.model.ffn`.

What stays the same function, and what does not (tests/model/test_upcycle.py checks each claim):

- Dense FFN -> top-2 token choice, nothing dropped: the model's logits are the dense model's. Every expert computes
  the FFN ``f``, and :class:`~brainsearch.model.routing.TokenChoiceRouter` renormalises a token's two gates to sum to
  1, so the layer outputs ``g1 * f(x) + g2 * f(x) = f(x)`` - for any router. It needs a capacity that drops nothing
  (``capacity_factor >= E / 2`` guarantees it: every expert has room for every token); a dropped assignment loses its
  share of ``f(x)``.
- Dense FFN -> top-1: not preserved. Top-1 keeps the raw softmax probability as the gate (Switch), so the layer
  outputs ``p_max(x) * f(x)``, about ``f(x) / E`` with a fresh router.
- Dense FFN -> expert choice: not preserved. A token's output is ``f(x)`` times the sum of the gates of the experts
  that picked it: zero for a token no expert took, more than one expert's share for a popular one.
- E -> m * E experts with copied router rows: every source logit appears ``m`` times, so each target probability is
  the source's divided by ``m``, and a token's ranking of source experts is unchanged. The *function* is not kept:
  a top-2 target gives both of its choices to the ``m`` copies of the source's first choice (gates 1/2 and 1/2), so
  it outputs that expert's ``f_a(x)`` where a top-2 source gave ``g1 * f_a(x) + g2 * f_b(x)``, a top-1 source
  ``p_a * f_a(x)``; a top-1 target outputs ``p_a / m * f_a(x)``. Breaking the ties between copies is left to
  training (the router has no bias, and no choice of rows keeps both the gates and the choices).
"""

from __future__ import annotations

import torch
from torch import nn

from brainsearch.arch.spec import Architecture, AttentionSpec, FFNSpec, LayerSpec, MoESpec
from brainsearch.errors import ArchitectureError, Problem
from brainsearch.model.ffn import DenseFFN
from brainsearch.model.lm import LanguageModel, build_model
from brainsearch.model.moe import Dispatch, MoE
from brainsearch.model.transplant import check_moe_params, copy_experts, copy_groups, copy_module, transplant

__all__ = ["upcycle", "upcycle_problems"]

_SOURCE = "upcycling"


def upcycle(
    source: LanguageModel,
    target: Architecture,
    *,
    seed: int = 0,
    dispatch: Dispatch = "auto",
    load_balance_weight: float = 0.01,
    z_loss_weight: float = 0.001,
) -> LanguageModel:
    """A new model of ``target`` (on the CPU, float32) holding ``source``'s weights, MoE experts copied from the
    source's FFN or experts (see the module docstring for the rules and for when the function is preserved).

    The target is first built by :func:`~brainsearch.model.build_model` under ``torch.manual_seed(seed)`` (the
    global RNG is restored afterwards), so what is not copied - the routers of MoE layers made from dense FFNs - has
    the target's own initialisation, deterministic in ``seed``. ``dispatch`` and the two router-loss weights are
    :func:`~brainsearch.model.build_model`'s. The source is left unchanged and may live on any device.

    Raises :class:`~brainsearch.errors.ArchitectureError` listing every mismatch (model dims, block length, a
    sub-layer's kind or widths, an expert count that is not a multiple of the source's).
    """
    problems = upcycle_problems(source.arch, target)
    if problems:
        raise ArchitectureError(problems)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(
            target, dispatch=dispatch, load_balance_weight=load_balance_weight, z_loss_weight=z_loss_weight
        )
    transplant(model, source, _copy_layer, _SOURCE)
    return model


def upcycle_problems(source: Architecture, target: Architecture) -> list[Problem]:
    """Why ``source``'s weights cannot start ``target`` (empty when they can), one problem per mismatch, each
    naming the field or ``block[i]``."""
    problems = [
        Problem(name, f"source has {getattr(source, name)}, target {getattr(target, name)}", _SOURCE)
        for name in ("d_model", "vocab_size", "seq_len", "num_blocks", "tie_embeddings")
        if getattr(source, name) != getattr(target, name)
    ]
    if len(source.block) != len(target.block):
        problems.append(
            Problem(
                "block",
                f"source has {len(source.block)} sub-layers ({source.pattern}), "
                f"target {len(target.block)} ({target.pattern})",
                _SOURCE,
            )
        )
        return problems
    for i, (old, new) in enumerate(zip(source.block, target.block, strict=True)):
        message = _layer_mismatch(old, new)
        if message:
            problems.append(Problem(f"block[{i}]", message, _SOURCE))
    return problems


def _layer_mismatch(old: LayerSpec, new: LayerSpec) -> str | None:
    """What stops ``new`` from starting from ``old``'s weights, or None."""
    if isinstance(new, MoESpec) and isinstance(old, FFNSpec | MoESpec):
        widths = [
            f"{field} {getattr(old, field)} != {getattr(new, field)}"
            for field in ("hidden", "activation", "rank")
            if getattr(old, field) != getattr(new, field)
        ]
        if widths:
            return f"{old.type} -> moe: " + ", ".join(widths)
        if isinstance(old, MoESpec) and new.experts % old.experts:
            return f"moe -> moe: target experts {new.experts} is not a multiple of the source's {old.experts}"
        return None
    if old.type != new.type:
        return f"source is {old.type}, target {new.type}: only ffn -> moe and moe -> moe change a sub-layer's kind"
    if old != new:
        assert isinstance(old, AttentionSpec | FFNSpec)
        before, after = old.model_dump(exclude_none=True), new.model_dump(exclude_none=True)
        return f"{old.type} differs: source {before}, target {after}"
    return None


def _copy_layer(new: nn.Module, old: nn.Module) -> None:
    """Copy one sub-layer of the source into the target's: experts from a dense FFN or from fewer experts (router
    row ``j`` follows expert ``j``), anything else as it is."""
    if isinstance(new, MoE) and isinstance(old, DenseFFN):
        check_moe_params(new, _SOURCE)
        copy_experts(new.experts, old.ffn)
    elif isinstance(new, MoE) and isinstance(old, MoE):
        check_moe_params(new, _SOURCE)
        copy_experts(new.experts, old.experts)
        copy_groups(new.router.weight_ED, old.router.weight_ED, 0)
    else:
        copy_module(new, old)
