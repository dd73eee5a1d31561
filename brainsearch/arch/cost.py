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
  of B sequences, see brainsearch.model.routing; B is the micro-batch, routing runs per forward)
  ``E * ceil(B * cf / E) / B``, which exceeds cf when B * cf < E.

Memory (``memory_bytes = memory_state_bytes + memory_activation_bytes``, the peak training memory per device):

- state: 16 bytes per parameter, embeddings included: fp32 weight, fp32 gradient, two fp32 AdamW moments (also
  under bf16, which is CUDA's autocast over fp32 weights).
- activations, at ``micro_batch`` sequences per forward: what autograd saves, layer by layer as the model code
  saves it (``_attention_saved``, ``_ffn_saved``, ``_moe_saved``, ``_outside_saved``); fused attention (no S x S
  term); MoE rows: ``T * k`` assignments for token choice (grouped dispatch; ``E * capacity`` slots where CUDA falls
  back to padded), ``E * S * k_ec`` slots for causal expert choice; under bf16 the matmul inputs / outputs are bf16
  and every matmul's bf16 weight copy is kept, while residual stream, norms, router and loss stay float32. Plus the
  logits the step holds and their float32 gradient (the transient that sets the peak at large vocabularies). With
  ``checkpointing``: what is saved outside the blocks, every block's input, and one block's saved tensors (its
  recomputation).
- fp32 is taken to be CPU training (unfused RMSNorm keeps ``x * rstd`` too), bf16 CUDA's (fused RMSNorm).
- not counted: allocator rounding and fragmentation, the CUDA context, cuBLAS / attention workspaces, tensors that
  live within one operation, gradients in flight in the backward other than the logits'.
  ``brainsearch.train.memory.count_training_memory`` counts the same quantities exactly; tests/arch/
  test_memory_model.py holds the estimate to it.

With these conventions the published GLaM size tables are reproduced within 3% for the 1.7B/64E and 8B/64E rows
(tests/arch/test_cost.py has the comparison, including the rows that are not).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.arch.spec import GATED_ACTIVATIONS, Architecture, AttentionSpec, FFNSpec, MoESpec

__all__ = ["Cost", "Precision", "cost", "layer_params"]

Precision = Literal["fp32", "bf16"]
# Bytes of training state per parameter: fp32 weight, fp32 gradient, two fp32 AdamW moments.
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
    memory_state_bytes: int
    memory_activation_bytes: int
    batch_size: int
    micro_batch: int
    precision: Precision
    checkpointing: bool
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


def _padded_experts_per_token(layer: MoESpec, micro_batch: int) -> float:
    if layer.top_k is None:
        # Causal expert choice picks k of the B tokens at each position, so a token meets E * k / B experts on
        # average: the capacity factor, or more when B * cf < E.
        return layer.experts * layer.expert_choice_k(micro_batch) / micro_batch
    return layer.capacity_factor * layer.top_k


# --- training memory -------------------------------------------------------------------------------------------
# Each function below returns the bytes autograd saves for one sub-layer in one forward of a micro-batch of B
# sequences of S tokens (T = B * S), following what the model code saves (brainsearch/model); ``w`` is the width of
# a matmul's inputs and outputs (4 in fp32, 2 under bf16 autocast). Residual streams, norms and router maths are
# float32 either way. Index tensors are int64.


def _norm_saved(d: int, tokens: int, precision: Precision) -> int:
    # RMSNorm keeps its float32 input and the inverse RMS; the unfused CPU kernel also keeps x * rstd (fp32 runs
    # are CPU runs; CUDA's fused kernel keeps input and rstd only).
    return tokens * (4 * d + 4 + (4 * d if precision == "fp32" else 0))


def _activation_elements(hidden: int, activation: str) -> int:
    """Elements per row an FFN's activation keeps between its matmuls (the output matmul's input included)."""
    if activation in GATED_ACTIVATIONS:
        return 4 * hidden  # [gate | up], act(gate), act(gate) * up
    return hidden if activation == "relu" else 2 * hidden  # relu keeps its output only; gelu/silu input and output


def _ffn_rows_saved(hidden: int, activation: str, rank: int | None, d: int, rows: int, w: int) -> int:
    """An FFN applied to ``rows`` rows: its input rows, the low-rank factors' intermediates, the activation."""
    per_row = d + _activation_elements(hidden, activation)
    if rank is not None:
        per_row += (2 if activation in GATED_ACTIVATIONS else 1) * rank + rank  # U x (one per input matrix), U a
    return rows * per_row * w


def _weight_copies(matrix_params: int, precision: Precision) -> int:
    # Under autocast every matmul keeps the bf16 copy of its weight for the backward (fp32 runs use the weight).
    return 2 * matrix_params if precision == "bf16" else 0


def _attention_saved(layer: AttentionSpec, d: int, batch: int, seq: int, precision: Precision) -> int:
    """Norm; qkv input; qkv output (v is a view of it); rotated q, k; SDPA out + logsumexp (fused, no S x S);
    the out projection's (reshaped copy of the) input; bf16 weight and rotary-table copies."""
    w, tokens, a = _ACTIVATION_BYTES[precision], batch * seq, layer.d_attn
    assert layer.head_dim is not None
    rotary = 2 * 2 * seq * (layer.head_dim // 2) * 2 if precision == "bf16" else 0  # cos, sin cast for q and k
    return (
        _norm_saved(d, tokens, precision)
        + tokens * (w * (d + 3 * a + a + a + a + a) + 4 * layer.heads)
        + _weight_copies(4 * d * a, precision)
        + rotary
    )


def _ffn_saved(layer: FFNSpec, d: int, batch: int, seq: int, precision: Precision) -> int:
    """Norm; the FFN on every token; bf16 weight copies."""
    tokens = batch * seq
    return (
        _norm_saved(d, tokens, precision)
        + _ffn_rows_saved(layer.hidden, layer.activation, layer.rank, d, tokens, _ACTIVATION_BYTES[precision])
        + _weight_copies(_ffn_matrix_params(d, layer.hidden, layer.gated, layer.rank), precision)
    )


def _token_choice_grouped(layer: MoESpec, d: int, tokens: int, w: int) -> bool:
    # MoE dispatch "auto": grouped_mm for token choice (on CPU always; on CUDA in bf16 with 16-aligned widths).
    if w == _ACTIVATION_BYTES["fp32"]:
        return True
    return all(x % 16 == 0 for x in (d, layer.hidden, layer.rank or 16))


def _moe_saved(layer: MoESpec, d: int, batch: int, seq: int, precision: Precision) -> int:
    """Norm; router (fp32 input, logits, probabilities, logsumexp for the z-loss); dispatch indices; the gathered
    rows through the expert FFNs; the gathered outputs and gates for the combine; bf16 expert weight copies.

    Token choice computes all ``T * k`` assignments (grouped path) or every expert's ``C`` capacity slots (padded
    path); causal expert choice fills ``E * S * k_ec`` slots, each also kept scaled for the scatter-add combine.
    """
    w, tokens, e = _ACTIVATION_BYTES[precision], batch * seq, layer.experts
    router = tokens * (4 * d + 4 * 2 * e + 4)
    experts = _weight_copies(e * _ffn_matrix_params(d, layer.hidden, layer.gated, layer.rank), precision)
    k = layer.top_k
    if k is None:
        rows = e * seq * layer.expert_choice_k(batch)
        # topk index, assignment -> slot, slot -> token; gate; output, gated output.
        per_row = 3 * 8 + w + 2 * w * d
        return (
            _norm_saved(d, tokens, precision)
            + router
            + rows * per_row
            + experts
            + _ffn_rows_saved(layer.hidden, layer.activation, layer.rank, d, rows, w)
        )
    assignments = tokens * k
    # topk index, kept mask, (k > 1) renormalised gates and their sum.
    router += assignments * (8 + 1) + (assignments * 4 + tokens * 4 if k > 1 else 0)
    if _token_choice_grouped(layer, d, tokens, w):
        rows = assignments
        dispatch = assignments * (8 + 8 + w + w * d) + 4 * e  # inverse, order, gate, output row; group offsets
    else:
        rows = e * min(tokens, math.ceil(layer.capacity_factor * tokens * k / e))
        dispatch = assignments * (8 + w + w * d) + rows * 8  # slot of each assignment, gate, output; slot sources
    return (
        _norm_saved(d, tokens, precision)
        + router
        + dispatch
        + experts
        + _ffn_rows_saved(layer.hidden, layer.activation, layer.rank, d, rows, w)
    )


def _layer_saved(layer: AttentionSpec | FFNSpec | MoESpec, d: int, batch: int, seq: int, precision: Precision) -> int:
    if isinstance(layer, AttentionSpec):
        return _attention_saved(layer, d, batch, seq, precision)
    if isinstance(layer, FFNSpec):
        return _ffn_saved(layer, d, batch, seq, precision)
    return _moe_saved(layer, d, batch, seq, precision)


def _outside_saved(arch: Architecture, batch: int, precision: Precision) -> int:
    """Outside the blocks: token ids (embedding), final norm, head input (and its bf16 weight copy), the loss's
    log-softmax output and targets."""
    w, tokens, d, v = _ACTIVATION_BYTES[precision], batch * arch.seq_len, arch.d_model, arch.vocab_size
    return (
        tokens * 8
        + _norm_saved(d, tokens, precision)
        + tokens * w * d
        + _weight_copies(v * d, precision)
        + tokens * (4 * v + 8)
    )


def _logits_bytes(arch: Architecture, batch: int, precision: Precision) -> int:
    """Logits the step holds (the model's output, and its float32 copy under bf16) and their float32 gradient,
    the transient that sets the peak at the start of the backward at large vocabularies."""
    tokens_v = batch * arch.seq_len * arch.vocab_size
    held = 4 * tokens_v if precision == "fp32" else (2 + 4) * tokens_v
    return held + 4 * tokens_v


def _activation_bytes(arch: Architecture, micro_batch: int, precision: Precision, checkpointing: bool) -> int:
    block = sum(_layer_saved(layer, arch.d_model, micro_batch, arch.seq_len, precision) for layer in arch.block)
    outside = _outside_saved(arch, micro_batch, precision) + _logits_bytes(arch, micro_batch, precision)
    if not checkpointing:
        return outside + arch.num_blocks * block
    # Checkpointing keeps every block's float32 input; the backward recomputes one block at a time, whose input
    # is already kept.
    block_input = 4 * micro_batch * arch.seq_len * arch.d_model
    return outside + arch.num_blocks * block_input + block - block_input


def cost(
    arch: Architecture,
    batch_size: int = 8,
    precision: Precision = "fp32",
    *,
    micro_batch: int | None = None,
    checkpointing: bool = False,
) -> Cost:
    """The :class:`Cost` of ``arch`` trained on batches of ``batch_size`` sequences of ``arch.seq_len`` tokens, run
    as forwards of ``micro_batch`` sequences (default: the whole batch), blocks checkpointed when ``checkpointing``.

    ``memory_bytes`` estimates the peak training memory per device (see the module docstring).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    micro = batch_size if micro_batch is None else micro_batch
    if not 1 <= micro <= batch_size:
        raise ValueError(f"micro_batch must be in 1..batch_size ({batch_size}), got {micro_batch}")
    d = arch.d_model
    total = activated = padded_extra = 0
    attention_flops = 0
    for layer in arch.block:
        n_total, n_activated = layer_params(layer, d)
        total += n_total
        activated += n_activated
        if isinstance(layer, AttentionSpec):
            attention_flops += 12 * arch.seq_len * layer.d_attn
        elif isinstance(layer, MoESpec):
            expert = _ffn_matrix_params(d, layer.hidden, layer.gated, layer.rank)
            padded_extra += round((_padded_experts_per_token(layer, micro) - layer.experts_per_token) * expert)
    nb = arch.num_blocks
    final_norm = d
    params_total = nb * total + final_norm
    params_activated = nb * activated + final_norm
    params_embedding = arch.vocab_size * d * (1 if arch.tie_embeddings else 2)
    head_flops = 6 * d * arch.vocab_size
    flops = 6 * params_activated + nb * attention_flops + head_flops
    flops_padded = flops + 6 * nb * padded_extra

    state = _STATE_BYTES_PER_PARAM * (params_total + params_embedding)
    activation = _activation_bytes(arch, micro, precision, checkpointing)
    return Cost(
        params_total=params_total,
        params_activated=params_activated,
        params_embedding=params_embedding,
        flops_per_token=flops,
        flops_per_token_padded=flops_padded,
        memory_bytes=state + activation,
        memory_state_bytes=state,
        memory_activation_bytes=activation,
        batch_size=batch_size,
        micro_batch=micro,
        precision=precision,
        checkpointing=checkpointing,
        num_attention=nb * sum(isinstance(x, AttentionSpec) for x in arch.block),
        num_ffn=nb * sum(isinstance(x, FFNSpec) for x in arch.block),
        num_moe=nb * sum(isinstance(x, MoESpec) for x in arch.block),
    )
