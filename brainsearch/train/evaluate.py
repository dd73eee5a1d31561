"""Evaluation: a model's mean loss on fixed batches of a corpus's validation split, and where those tokens were routed.

The batches are drawn with ``seed + 1`` from a fresh sampler at every call, so every evaluation of a run sees the
same tokens (the learning curve's points compare) and so does every model evaluated with the same settings
(expansion's before / after losses compare). One function serves every configuration of the training loop.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from brainsearch.data import BatchSampler, Corpus
from brainsearch.model import LanguageModel
from brainsearch.train.settings import TrainSettings

__all__ = ["Evaluation", "evaluate"]


@dataclass(frozen=True)
class Evaluation:
    """``loss``: mean over the batches, nats per token; ``stderr``: its standard error across them (None for one
    batch); ``tokens_per_expert``: per MoE sub-layer in model order, the ``[E]`` routed assignments summed over the
    batches (on the model's device)."""

    loss: float
    stderr: float | None
    tokens_per_expert: list[Tensor]

    def share_beyond(self, num_experts: Sequence[int]) -> float | None:
        """The fraction of routed assignments that went to experts past the first ``num_experts[i]`` of the i-th MoE
        sub-layer (None when nothing was routed)."""
        beyond = routed = 0.0
        for load_E, first in zip(self.tokens_per_expert, num_experts, strict=True):
            beyond += float(load_E[first:].sum())
            routed += float(load_E.sum())
        return beyond / routed if routed > 0 else None


@torch.no_grad()
def evaluate(model: LanguageModel, corpus: Corpus, settings: TrainSettings) -> Evaluation:
    """``model`` on ``settings.eval_batches`` validation batches of ``settings.batch_size`` sequences of ``corpus``,
    on the model's device (bf16 autocast on CUDA, as in training); the model's train / eval mode is restored."""
    device = next(model.parameters()).device
    sampler = BatchSampler(
        corpus.val, settings.batch_size, model.arch.seq_len, seed=settings.seed + 1, split="validation"
    )
    was_training = model.training
    model.eval()
    losses: list[float] = []
    tokens_per_expert: list[Tensor] = []
    for _ in range(settings.eval_batches):
        x_BS, y_BS = sampler.next()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x_BS.to(device))
        losses.append(F.cross_entropy(out.logits.float().flatten(0, 1), y_BS.to(device).flatten()).item())
        loads = [stats.tokens_per_expert.float() for stats in out.moe]
        tokens_per_expert = (
            [a + b for a, b in zip(tokens_per_expert, loads, strict=True)] if tokens_per_expert else loads
        )
    model.train(was_training)
    stderr = statistics.stdev(losses) / math.sqrt(len(losses)) if len(losses) > 1 else None
    return Evaluation(loss=statistics.fmean(losses), stderr=stderr, tokens_per_expert=tokens_per_expert)
