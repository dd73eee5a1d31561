"""Activation checkpointing: the same loss, gradients and MoE statistics as without, for every kind of block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainsearch.arch import Architecture
from brainsearch.model.lm import LanguageModel, LMOutput, build_model

BLOCKS = {
    "dense": [{"type": "attention", "heads": 2, "head_dim": 8}, {"type": "ffn", "hidden": 32, "activation": "swiglu"}],
    "top1": [
        {"type": "attention", "heads": 2, "head_dim": 8},
        {"type": "moe", "hidden": 16, "experts": 4, "gating": "top1", "capacity_factor": 1.0},
    ],
    "top2": [
        {"type": "moe", "hidden": 16, "experts": 4, "gating": "top2", "capacity_factor": 1.0, "activation": "geglu"},
        {"type": "attention", "heads": 2, "head_dim": 8},
        {"type": "ffn", "hidden": 32, "rank": 4},
    ],
    "expert_choice": [
        {"type": "attention", "heads": 2, "head_dim": 8},
        {"type": "moe", "hidden": 16, "experts": 4, "gating": "expert_choice", "capacity_factor": 1.5},
    ],
}


def _arch(block: list[dict[str, object]]) -> Architecture:
    return Architecture.model_validate(
        {"d_model": 16, "vocab_size": 32, "seq_len": 12, "num_blocks": 3, "block": block}
    )


def _step(
    model: LanguageModel, x_BS: torch.Tensor, y_BS: torch.Tensor
) -> tuple[LMOutput, torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(x_BS)
    loss = F.cross_entropy(out.logits.flatten(0, 1), y_BS.flatten()) + out.aux_loss
    loss.backward()  # type: ignore[no-untyped-call]
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, loss.detach(), grads


@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("dispatch", ["padded", "grouped"])
def test_checkpointing_gives_the_same_loss_gradients_and_stats(kind: str, dispatch: str) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(BLOCKS[kind]), dispatch=dispatch).train()  # type: ignore[arg-type]
    x_BS, y_BS = torch.randint(0, 32, (4, 12)), torch.randint(0, 32, (4, 12))
    plain, plain_loss, plain_grads = _step(model, x_BS, y_BS)
    model.activation_checkpointing = True
    ckpt, ckpt_loss, ckpt_grads = _step(model, x_BS, y_BS)
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=0, atol=0)
    torch.testing.assert_close(ckpt.aux_loss, plain.aux_loss, rtol=0, atol=0)
    assert ckpt_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert len(ckpt.moe) == len(plain.moe) == 3 * sum(layer["type"] == "moe" for layer in BLOCKS[kind])
    for a, b in zip(ckpt.moe, plain.moe, strict=True):
        torch.testing.assert_close(a.tokens_per_expert, b.tokens_per_expert)
        torch.testing.assert_close(a.aux_loss, b.aux_loss)
        torch.testing.assert_close(a.dropped_fraction, b.dropped_fraction)
        assert a.capacity == b.capacity


def test_checkpointing_only_while_training_with_gradients() -> None:
    model = build_model(_arch(BLOCKS["top2"]))
    model.activation_checkpointing = True
    x_BS = torch.randint(0, 32, (2, 12))
    model.train()
    with torch.no_grad():
        no_grad = model(x_BS).logits
    model.eval()
    evaluated = model(x_BS).logits
    assert evaluated.grad_fn is not None and "Checkpoint" not in type(evaluated.grad_fn).__name__
    torch.testing.assert_close(no_grad, evaluated)


def test_checkpointing_keeps_block_inputs_only() -> None:
    """The checkpointed forward keeps far less for the backward than the plain one."""
    from brainsearch.train.memory import count_training_memory

    torch.manual_seed(0)
    model = build_model(_arch(BLOCKS["expert_choice"])).train()
    x_BS, y_BS = torch.randint(0, 32, (4, 12)), torch.randint(0, 32, (4, 12))
    plain = count_training_memory(model, x_BS, y_BS)
    model.activation_checkpointing = True
    ckpt = count_training_memory(model, x_BS, y_BS)
    assert ckpt.state_bytes == plain.state_bytes
    assert ckpt.saved_bytes < plain.saved_bytes
