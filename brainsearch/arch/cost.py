"""Cost model: parameters, activated parameters, training FLOPs per token and a training-memory estimate.

Conventions (the ones the model library builds, so ``cost(arch).params_total`` equals the built model's count):

- No biases anywhere. Every sub-layer is pre-norm with an RMSNorm of ``d_model`` weights; one final norm.
- attention: q, k, v, o projections, ``4 * d_model * heads * head_dim``; rotary positions (no parameters).
- ffn: 2 matrices (``d * hidden`` each), 3 for gated activations (reglu, geglu, swiglu). With ``rank r`` each
  matrix is factorised ``V(Ux)``: ``r * (d + hidden)`` instead of ``d * hidden``.
- moe: a router ``d * experts`` plus ``experts`` FFNs as above.
- ``params_total`` and ``params_activated`` exclude embeddings (as GLaM, arXiv 2112.06905, Table 4, counts them);
  ``params_embedding`` is the token embedding plus, when not tied, the output head.
- Activated: a token passes through every dense parameter and, per MoE layer, the router and
  ``experts_per_token`` experts: k for top-k routing, the capacity factor for expert choice.
- ``flops_per_token`` (training, forward + backward): ``6 * (params_activated + d * vocab)`` (the output head
  is real compute) plus ``12 * seq_len * heads * head_dim`` per attention layer (PaLM, arXiv 2204.02311,
  appendix B). ``flops_per_token_padded`` counts capacity slots instead: token choice computes
  ``capacity_factor * k`` expert slots per token, empty or not; causal expert choice (per position across a batch
  of B sequences, see brainsearch.model.routing) ``E * ceil(B * cf / E) / B``, which exceeds cf when B * cf < E.

With these conventions the published GLaM size tables are reproduced within 3% for the 1.7B/64E and 8B/64E rows
(tests/arch/test_cost.py has the comparison, including the rows that are not).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.spec import Architecture, AttentionSpec, FFNSpec, MoESpec

__all__ = ["Cost", "cost", "layer_params"]

Precision = Literal["fp32", "bf16"]
# Bytes of training state per parameter: fp32 weight, fp32 gradient, two fp32 Adam moments.
_STATE_BYTES_PER_PARAM = 16
_ACTIVATION_BYTES = {"fp32": 4, "bf16": 2}


class Cost(BaseModel):
    """What an architecture costs; every count is per model, FLOPs per training token."""

    model_config = ConfigDict(frozen=True)
    params_total: int
    params_activated: int
    params_embedding: int
    flops_per_token: int
    flops_per_token_padded: int
    memory_bytes: int
    batch_size: int
    precision: Precision
    num_attention: int
    num_ffn: int
    num_moe: int

    @property
    def params_all(self) -> int:
        """Every parameter, embeddings included."""
        return self.params_total + self.params_embedding


def _ffn_matrix_params(d_model: int, hidden: int, gated: bool, rank: int | None) -> int:
    per_matrix = d_model * hidden if rank is None else rank * (d_model + hidden)
    return (3 if gated else 2) * per_matrix


def layer_params(layer: AttentionSpec | FFNSpec | MoESpec, d_model: int) -> tuple[int, int]:
    """``(total, activated)`` parameters of one sub-layer, its pre-norm included."""
    norm = d_model
    if isinstance(layer, AttentionSpec):
        n = 4 * d_model * layer.d_attn + norm
        return n, n
    if isinstance(layer, FFNSpec):
        n = _ffn_matrix_params(d_model, layer.hidden, layer.gated, layer.rank) + norm
        return n, n
    expert = _ffn_matrix_params(d_model, layer.hidden, layer.gated, layer.rank)
    router = d_model * layer.experts
    total = router + layer.experts * expert + norm
    activated = router + round(layer.experts_per_token * expert) + norm
    return total, activated


def _activation_elements_per_token(layer: AttentionSpec | FFNSpec | MoESpec, d: int, batch_size: int) -> float:
    # Tensors autograd keeps per token, roughly: the norm's input and output, then the layer's intermediates.
    # Attention is assumed fused (flash / memory-efficient SDPA), so no seq_len x seq_len scores are kept.
    base = 2 * d
    if isinstance(layer, AttentionSpec):
        return base + 5 * layer.d_attn + d
    if isinstance(layer, FFNSpec):
        return base + (3 if layer.gated else 2) * layer.hidden + d
    slots = _padded_experts_per_token(layer, batch_size)
    per_slot = d + (3 if layer.gated else 2) * layer.hidden + d
    return base + 2 * layer.experts + slots * per_slot + d


def _padded_experts_per_token(layer: MoESpec, batch_size: int) -> float:
    if layer.top_k is None:
        # Causal expert choice picks k of the B tokens at each position, so a token meets E * k / B experts on
        # average: the capacity factor, or more when B * cf < E.
        return layer.experts * layer.expert_choice_k(batch_size) / batch_size
    return layer.capacity_factor * layer.top_k


def cost(arch: Architecture, batch_size: int = 8, precision: Precision = "fp32") -> Cost:
    """The :class:`Cost` of ``arch`` trained on batches of ``batch_size`` sequences of ``arch.seq_len`` tokens.

    ``memory_bytes`` estimates training memory: 16 bytes of state per parameter (weights, gradients, Adam) plus
    activations kept for the backward pass (``precision`` sets their width) and the logits.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    d = arch.d_model
    total = activated = padded_extra = 0
    attention_flops = 0
    activation_elements = 0.0
    for layer in arch.block:
        n_total, n_activated = layer_params(layer, d)
        total += n_total
        activated += n_activated
        activation_elements += _activation_elements_per_token(layer, d, batch_size)
        if isinstance(layer, AttentionSpec):
            attention_flops += 12 * arch.seq_len * layer.d_attn
        elif isinstance(layer, MoESpec):
            expert = _ffn_matrix_params(d, layer.hidden, layer.gated, layer.rank)
            padded_extra += round((_padded_experts_per_token(layer, batch_size) - layer.experts_per_token) * expert)
    nb = arch.num_blocks
    final_norm = d
    params_total = nb * total + final_norm
    params_activated = nb * activated + final_norm
    params_embedding = arch.vocab_size * d * (1 if arch.tie_embeddings else 2)
    head_flops = 6 * d * arch.vocab_size
    flops = 6 * params_activated + nb * attention_flops + head_flops
    flops_padded = flops + 6 * nb * padded_extra

    tokens = batch_size * arch.seq_len
    # Logits in fp32 and their gradient dominate at large vocabularies.
    per_token_bytes = _ACTIVATION_BYTES[precision] * nb * activation_elements + 8 * arch.vocab_size
    memory = _STATE_BYTES_PER_PARAM * (params_total + params_embedding) + round(tokens * per_token_bytes)

    return Cost(
        params_total=params_total,
        params_activated=params_activated,
        params_embedding=params_embedding,
        flops_per_token=flops,
        flops_per_token_padded=flops_padded,
        memory_bytes=memory,
        batch_size=batch_size,
        precision=precision,
        num_attention=nb * sum(isinstance(x, AttentionSpec) for x in arch.block),
        num_ffn=nb * sum(isinstance(x, FFNSpec) for x in arch.block),
        num_moe=nb * sum(isinstance(x, MoESpec) for x in arch.block),
    )
