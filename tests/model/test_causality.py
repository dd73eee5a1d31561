"""Causality: the logits at position t never depend on a token after t, for every router, in training and
evaluation mode. The check is shown to catch a leak: the sequence-wide expert choice fails it."""

from __future__ import annotations

import math

import pytest
import torch

from brainsearch.arch import Architecture
from brainsearch.model import build_model
from brainsearch.model.routing import ExpertChoiceRouter, Routing


def _arch(gating: str, capacity_factor: float) -> Architecture:
    return Architecture.model_validate(
        {
            "d_model": 32,
            "vocab_size": 64,
            "seq_len": 16,
            "num_blocks": 2,
            "block": [
                {"type": "moe", "hidden": 32, "experts": 4, "gating": gating, "capacity_factor": capacity_factor},
                {"type": "attention", "heads": 2},
                {"type": "ffn", "hidden": 32, "activation": "swiglu"},
            ],
        }
    )


def _future_dependence(model: torch.nn.Module, t: int, seed: int = 0) -> float:
    """Largest change of logits at positions <= t when every token after t (in every row) is replaced."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (6, 16), generator=g)
    changed = ids.clone()
    changed[:, t + 1 :] = torch.randint(0, 64, changed[:, t + 1 :].shape, generator=g)
    with torch.no_grad():
        a = model(ids).logits[:, : t + 1]
        b = model(changed).logits[:, : t + 1]
    return (a - b).abs().max().item()


ROUTERS = [("top1", 1.0), ("top1", 0.5), ("top2", 1.0), ("top2", 0.5), ("expert_choice", 1.0), ("expert_choice", 2.0)]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("gating", "capacity_factor"), ROUTERS)
def test_logits_do_not_depend_on_future_tokens(gating: str, capacity_factor: float, mode: str) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(gating, capacity_factor))
    model.train(mode == "train")
    for t in (0, 5, 14):
        assert _future_dependence(model, t) < 1e-5, (gating, t)


def test_the_check_catches_sequence_wide_expert_choice() -> None:
    """Expert choice over all tokens of the batch (the paper's form) lets a token's selection depend on later
    tokens; the same check must see it."""

    class SequenceWideExpertChoice(ExpertChoiceRouter):
        def forward(self, x_BSD: torch.Tensor) -> Routing:
            B, S, _ = x_BSD.shape
            E, T = self.num_experts, B * S
            _, probs = self.probabilities(x_BSD)
            k = math.ceil(T * self.capacity_factor / E)
            gate_EK, token_EK = probs.reshape(T, E).t().topk(k, dim=-1)
            zero = torch.zeros(())
            return Routing(
                token_EK.reshape(-1),
                torch.arange(E).repeat_interleave(k),
                torch.arange(k).repeat(E),
                gate_EK.reshape(-1),
                k,
                T,
                zero,
                zero,
                zero,
                torch.full((E,), k),
                zero,
                zero,
                1.0,
            )

    torch.manual_seed(0)
    model = build_model(_arch("expert_choice", 1.0))
    for layer in model.layers:
        if hasattr(layer, "router"):
            old = layer.router
            layer.router = SequenceWideExpertChoice(32, 4, 1.0)
            layer.router.load_state_dict(old.state_dict())
    assert max(_future_dependence(model, t) for t in (0, 5, 14)) > 1e-3
