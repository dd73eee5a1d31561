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

- state (``memory_state_bytes = params + grads + optimizer + gather``), from the :class:`TrainingRecipe`, per
  parameter tensor (:func:`parameter_shapes`, the model's own layout): weights and gradients in ``param_dtype``
  (the default fp32 AdamW recipe is 16 bytes per parameter: fp32 weight and gradient, two fp32 moments, also under
  bf16, which is CUDA's autocast over fp32 weights). ``optimizer_in_backward``: each parameter steps as soon as its
  gradient is accumulated and frees it, so only the largest single gradient is alive. Optimiser state is what
  torch keeps: AdamW two moments like the parameter; ``torch.optim.Adafactor`` a row variance ``shape[:-1]`` and a
  column variance ``shape[:-2] + shape[-1:]`` for a tensor of 2 or more dims (a 3-D expert bank ``[E, out, in]``
  is factored over its last two dims per expert), the full variance for a 1-D one. Their step counters (one
  scalar per tensor; Adafactor keeps them on the host) are not counted.
- ``shards = N > 1`` (FSDP2, ``fully_shard`` per sub-layer and on the root, as brainsearch.train.distributed does):
  every state tensor holds ``ceil(rows / N)`` rows of its sharded dim per device (dim 0, the experts of a bank;
  dim 1 of the low-rank factor ``[M, G, H, R]`` when its experts divide by N), plus ``gather``, the transient
  unsharded parameters in the compute dtype (bf16 under precision ``bf16``, CUDA's mixed-precision policy; else
  ``param_dtype``): the sub-layer being computed and the prefetched next one (counted as the two largest), the
  root's (embedding, head, final norm: not resharded between forward and backward), and the unsharded gradients
  of the largest sub-layer and of the root before their reduce-scatter
  (CUDA's policy reduces in float32: that copy lives within the reduce-scatter, like other buffers within one
  operation, and is not counted).
- activations, at ``micro_batch`` sequences per forward: what autograd saves, layer by layer as the model code
  saves it (``_attention_saved``, ``_ffn_saved``, ``_moe_saved``, ``_outside_saved``); fused attention (no S x S
  term); MoE rows: ``T * k`` assignments for token choice (grouped dispatch; ``E * capacity`` slots where CUDA falls
  back to padded), ``E * S * k_ec`` slots for causal expert choice; under bf16 the matmul inputs / outputs are bf16
  and every matmul's bf16 weight copy is kept (only where the weights are float32 on the device: one device,
  fp32 ``param_dtype``), while residual stream, norms, router and loss stay float32. bf16 weights make the whole
  computation bf16 (residual stream included; norms still compute in float32 inside, and on the CPU token choice
  takes the padded dispatch). Under ``shards`` the activations are those of the per-device micro-batch. Plus the
  logits the step holds and their float32 gradient (the transient that sets the peak at large vocabularies). With
  ``checkpointing``: what is saved outside the blocks, every block's input, and one block's saved tensors (its
  recomputation).
- fp32 is taken to be CPU training (unfused RMSNorm keeps ``x * rstd`` too), bf16 CUDA's (fused RMSNorm).
- not counted: allocator rounding and fragmentation, the CUDA context, cuBLAS / attention workspaces, tensors that
  live within one operation, gradients in flight in the backward other than the logits'.
  ``brainsearch.train.memory.count_training_memory`` counts the same quantities exactly; tests/arch/
  test_memory_model.py holds the estimate to it, tests/arch/test_recipes.py the state of every recipe (exactly)
  and tests/arch/test_fsdp_shards.py the sharded state against real FSDP2 shards.

With these conventions the published GLaM size tables are reproduced within 3% for the 1.7B/64E and 8B/64E rows
(tests/arch/test_cost.py has the comparison, including the rows that are not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from brainsearch.arch.spec import GATED_ACTIVATIONS, Architecture, AttentionSpec, FFNSpec, MoESpec

__all__ = ["Cost", "Precision", "Shape", "TrainingRecipe", "cost", "layer_params", "parameter_shapes"]

Precision = Literal["fp32", "bf16"]
Shape = tuple[int, ...]
_DTYPE_BYTES = {"fp32": 4, "bf16": 2}


class TrainingRecipe(BaseModel):
    """What the training state is made of and where it lives: the weights' (and gradients') dtype, the optimiser,
    whether each parameter steps inside the backward (its gradient freed at once: never all gradients alive), and
    over how many data-parallel devices parameters, gradients and optimiser state are sharded (FSDP2; the global
    batch is split between them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    param_dtype: Literal["fp32", "bf16"] = "fp32"
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    optimizer_in_backward: bool = False
    shards: int = Field(default=1, ge=1)

    @property
    def label(self) -> str:
        """How reports name it: ``fp32 AdamW``, ``bf16 Adafactor, step in backward``, ``FSDP2 x 4, fp32 AdamW``."""
        text = f"{self.param_dtype} {'AdamW' if self.optimizer == 'adamw' else 'Adafactor'}"
        if self.optimizer_in_backward:
            text += ", step in backward"
        return f"FSDP2 x {self.shards}, {text}" if self.shards > 1 else text


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
    # The parts of memory_state_bytes (per device); filled by cost(), defaulted for documents written before them.
    memory_params_bytes: int = 0
    memory_grads_bytes: int = 0
    memory_optimizer_bytes: int = 0
    memory_gather_bytes: int = 0
    recipe: TrainingRecipe = TrainingRecipe()

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
# sequences of S tokens (T = B * S), following what the model code saves (brainsearch/model), for a :class:`_Run`.
# Norm statistics and router maths are float32 always. Index tensors are int64.


@dataclass(frozen=True)
class _Run:
    """How a run computes, as far as activations go."""

    precision: Precision  # the device's convention: fp32 runs are CPU runs (unfused norms), bf16 runs CUDA's
    w: int  # bytes of a matmul's inputs and outputs: 4 in fp32, 2 under bf16 autocast or with bf16 weights
    residual: int  # bytes of the residual stream: float32, bf16 with bf16 weights
    copies: bool  # autocast keeps the bf16 copy of every float32 weight it multiplies


def _run(precision: Precision, recipe: TrainingRecipe) -> _Run:
    bf16_weights = recipe.param_dtype == "bf16"
    w = 2 if bf16_weights or precision == "bf16" else 4
    # Autocast copies a weight only where it is float32 on the device: one device, fp32 weights (under FSDP2 the
    # mixed-precision policy all-gathers the weights in bf16 already).
    copies = w == 2 and not bf16_weights and recipe.shards == 1
    return _Run(precision, w, 2 if bf16_weights else 4, copies)


def _norm_saved(d: int, tokens: int, run: _Run) -> int:
    # CUDA's fused RMSNorm keeps its input and the float32 inverse RMS; the unfused CPU kernel (fp32 runs are CPU
    # runs) computes in float32 (a float32 copy of a bf16 input) and also keeps x * rstd.
    if run.precision == "fp32":
        return tokens * (4 * d + 4 + 4 * d)
    return tokens * (run.residual * d + 4)


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


def _weight_copies(matrix_params: int, run: _Run) -> int:
    # Under autocast every matmul keeps the bf16 copy of its float32 weight for the backward (fp32 runs, bf16
    # weights and FSDP2's bf16 all-gathered weights use the weight itself).
    return 2 * matrix_params if run.copies else 0


def _attention_saved(layer: AttentionSpec, d: int, batch: int, seq: int, run: _Run) -> int:
    """Norm; qkv input; qkv output (v is a view of it); rotated q, k; SDPA out + logsumexp (fused, no S x S);
    the out projection's (reshaped copy of the) input; bf16 weight and rotary-table copies."""
    w, tokens, a = run.w, batch * seq, layer.d_attn
    assert layer.head_dim is not None
    # cos, sin cast to bf16 for q and k (float32 buffers: bf16 weights have bf16 buffers too)
    rotary = 2 * 2 * seq * (layer.head_dim // 2) * 2 if w == 2 and run.residual == 4 else 0
    return (
        _norm_saved(d, tokens, run)
        + tokens * (w * (d + 3 * a + a + a + a + a) + 4 * layer.heads)
        + _weight_copies(4 * d * a, run)
        + rotary
    )


def _ffn_saved(layer: FFNSpec, d: int, batch: int, seq: int, run: _Run) -> int:
    """Norm; the FFN on every token; bf16 weight copies."""
    tokens = batch * seq
    return (
        _norm_saved(d, tokens, run)
        + _ffn_rows_saved(layer.hidden, layer.activation, layer.rank, d, tokens, run.w)
        + _weight_copies(_ffn_matrix_params(d, layer.hidden, layer.gated, layer.rank), run)
    )


def _token_choice_grouped(layer: MoESpec, d: int, run: _Run) -> bool:
    # MoE dispatch "auto": grouped_mm for token choice on CPU in float32 (bf16 weights take the padded path there)
    # and on CUDA in bf16 with 16-aligned widths.
    if run.precision == "fp32":
        return run.w == 4
    return all(x % 16 == 0 for x in (d, layer.hidden, layer.rank or 16))


def _moe_saved(layer: MoESpec, d: int, batch: int, seq: int, run: _Run) -> int:
    """Norm; router (fp32 input, logits, probabilities, logsumexp for the z-loss); dispatch indices; the gathered
    rows through the expert FFNs; the gathered outputs and gates for the combine; bf16 expert weight copies.

    Token choice computes all ``T * k`` assignments (grouped path) or every expert's ``C`` capacity slots (padded
    path); causal expert choice fills ``E * S * k_ec`` slots, each also kept scaled for the scatter-add combine.
    """
    w, tokens, e = run.w, batch * seq, layer.experts
    router = tokens * (4 * d + 4 * 2 * e + 4)
    experts = _weight_copies(e * _ffn_matrix_params(d, layer.hidden, layer.gated, layer.rank), run)
    k = layer.top_k
    if k is None:
        rows = e * seq * layer.expert_choice_k(batch)
        # topk index, assignment -> slot, slot -> token; gate; output, gated output.
        per_row = 3 * 8 + w + 2 * w * d
        return (
            _norm_saved(d, tokens, run)
            + router
            + rows * per_row
            + experts
            + _ffn_rows_saved(layer.hidden, layer.activation, layer.rank, d, rows, w)
        )
    assignments = tokens * k
    # topk index, kept mask, (k > 1) renormalised gates and their sum.
    router += assignments * (8 + 1) + (assignments * 4 + tokens * 4 if k > 1 else 0)
    if _token_choice_grouped(layer, d, run):
        rows = assignments
        dispatch = assignments * (8 + 8 + w + w * d) + 4 * e  # inverse, order, gate, output row; group offsets
    else:
        rows = e * min(tokens, math.ceil(layer.capacity_factor * tokens * k / e))
        dispatch = assignments * (8 + w + w * d) + rows * 8  # slot of each assignment, gate, output; slot sources
    return (
        _norm_saved(d, tokens, run)
        + router
        + dispatch
        + experts
        + _ffn_rows_saved(layer.hidden, layer.activation, layer.rank, d, rows, w)
    )


def _layer_saved(layer: AttentionSpec | FFNSpec | MoESpec, d: int, batch: int, seq: int, run: _Run) -> int:
    if isinstance(layer, AttentionSpec):
        return _attention_saved(layer, d, batch, seq, run)
    if isinstance(layer, FFNSpec):
        return _ffn_saved(layer, d, batch, seq, run)
    return _moe_saved(layer, d, batch, seq, run)


def _outside_saved(arch: Architecture, batch: int, run: _Run) -> int:
    """Outside the blocks: token ids (embedding), final norm, head input (and its bf16 weight copy), the loss's
    log-softmax output and targets."""
    w, tokens, d, v = run.w, batch * arch.seq_len, arch.d_model, arch.vocab_size
    return tokens * 8 + _norm_saved(d, tokens, run) + tokens * w * d + _weight_copies(v * d, run) + tokens * (4 * v + 8)


def _logits_bytes(arch: Architecture, batch: int, run: _Run) -> int:
    """Logits the step holds (the model's output, and its float32 copy under bf16) and their float32 gradient,
    the transient that sets the peak at the start of the backward at large vocabularies."""
    tokens_v = batch * arch.seq_len * arch.vocab_size
    held = 4 * tokens_v if run.w == 4 else (2 + 4) * tokens_v
    return held + 4 * tokens_v


def _activation_bytes(arch: Architecture, micro_batch: int, run: _Run, checkpointing: bool) -> int:
    d, seq = arch.d_model, arch.seq_len
    block = sum(_layer_saved(layer, d, micro_batch, seq, run) for layer in arch.block)
    outside = _outside_saved(arch, micro_batch, run) + _logits_bytes(arch, micro_batch, run)
    if not checkpointing:
        return outside + arch.num_blocks * block
    # Checkpointing keeps every block's input (the residual stream); the backward recomputes one block at a time,
    # whose input is already kept.
    block_input = run.residual * micro_batch * arch.seq_len * arch.d_model
    return outside + arch.num_blocks * block_input + block - block_input


# --- training state ----------------------------------------------------------------------------------------------


def _ffn_shapes(groups: int, d: int, hidden: int, gated: bool, rank: int | None) -> list[Shape]:
    m = 2 if gated else 1
    if rank is None:
        return [(groups, m * hidden, d), (groups, d, hidden)]
    return [(groups, m * rank, d), (m, groups, hidden, rank), (groups, rank, hidden), (groups, d, rank)]


def _sublayer_shapes(layer: AttentionSpec | FFNSpec | MoESpec, d: int) -> list[Shape]:
    norm: Shape = (d,)
    if isinstance(layer, AttentionSpec):
        return [norm, (3 * layer.d_attn, d), (d, layer.d_attn)]
    if isinstance(layer, FFNSpec):
        return [norm, *_ffn_shapes(1, d, layer.hidden, layer.gated, layer.rank)]
    return [norm, (layer.experts, d), *_ffn_shapes(layer.experts, d, layer.hidden, layer.gated, layer.rank)]


def parameter_shapes(arch: Architecture) -> tuple[list[Shape], list[Shape]]:
    """``(block, root)``: the parameter tensors' shapes of one repeated block (``num_blocks`` alike) and of the
    root module (token embedding, untied output head, final norm), as :func:`brainsearch.model.build_model` lays
    them out (stacked experts ``[E, out, in]``; low-rank input factors ``[M, G, H, R]``)."""
    d = arch.d_model
    block = [shape for layer in arch.block for shape in _sublayer_shapes(layer, d)]
    root: list[Shape] = [(arch.vocab_size, d)] * (1 if arch.tie_embeddings else 2) + [(d,)]
    return block, root


def _local_numel(shape: Shape, shards: int) -> int:
    """Elements of a tensor's largest shard (FSDP2 pads the sharded dim to a multiple of ``shards``). Tensors shard
    along dim 0, the expert dim of a bank ``[E, ...]``; the low-rank input factor ``[M, G, H, R]`` (the only 4-D
    tensor) along its expert dim 1, as brainsearch.train.distributed shards it; optimiser state as its tensor."""
    dim = 1 if len(shape) == 4 and shape[1] % shards == 0 else 0  # FSDP2 shards only dim 0 unevenly
    return -(-shape[dim] // shards) * math.prod(shape) // shape[dim] if shape[dim] else 0


def _optimizer_state_shapes(shape: Shape, optimizer: Literal["adamw", "adafactor"]) -> list[Shape]:
    if optimizer == "adamw":
        return [shape, shape]  # exp_avg, exp_avg_sq
    if len(shape) >= 2:  # torch.optim.Adafactor: row_var (last dim 1), col_var (second-to-last dim 1)
        return [(*shape[:-1], 1), (*shape[:-2], 1, shape[-1])]
    return [shape]  # variance


def _state_bytes(arch: Architecture, recipe: TrainingRecipe, precision: Precision) -> tuple[int, int, int, int]:
    """``(params, grads, optimizer, gather)`` bytes per device (see the module docstring)."""
    block, root = parameter_shapes(arch)
    shapes = block * arch.num_blocks + root
    n, width = recipe.shards, _DTYPE_BYTES[recipe.param_dtype]
    local = [_local_numel(s, n) for s in shapes]
    params = width * sum(local)
    grads = width * (max(local) if recipe.optimizer_in_backward else sum(local))
    optimizer = width * sum(_local_numel(o, n) for s in shapes for o in _optimizer_state_shapes(s, recipe.optimizer))
    gather = 0
    if n > 1:
        compute = 2 if precision == "bf16" else width
        # One FSDP2 unit per sub-layer (its norm with it): the one computing and the prefetched next one, at most
        # the two largest.
        d = arch.d_model
        units = sorted((sum(math.prod(s) for s in _sublayer_shapes(layer, d)) for layer in arch.block), reverse=True)
        if arch.num_blocks > 1 and len(units) == 1:
            units = units * 2
        root_numel = sum(math.prod(s) for s in root)
        unsharded_params = sum(units[:2]) + root_numel
        gather = compute * (unsharded_params + units[0] + root_numel)
    return params, grads, optimizer, gather


def cost(
    arch: Architecture,
    batch_size: int = 8,
    precision: Precision = "fp32",
    *,
    micro_batch: int | None = None,
    checkpointing: bool = False,
    recipe: TrainingRecipe = TrainingRecipe(),  # noqa: B008 (frozen: one shared default is safe)
) -> Cost:
    """The :class:`Cost` of ``arch`` trained with ``recipe`` on batches of ``batch_size`` sequences of
    ``arch.seq_len`` tokens, each of the ``recipe.shards`` devices taking ``batch_size // shards`` of them as
    forwards of ``micro_batch`` sequences (default: all of its share), blocks checkpointed when ``checkpointing``.

    ``memory_bytes`` estimates the peak training memory per device (see the module docstring). Raises
    ``ValueError`` for a micro-batch outside the device's share, or shards that do not divide the batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size % recipe.shards:
        raise ValueError(f"shards ({recipe.shards}) must divide batch_size ({batch_size})")
    per_device = batch_size // recipe.shards
    micro = per_device if micro_batch is None else micro_batch
    if not 1 <= micro <= per_device:
        share = f"batch_size ({batch_size})" if recipe.shards == 1 else f"batch_size // shards ({per_device})"
        raise ValueError(f"micro_batch must be in 1..{share}, got {micro_batch}")
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

    params, grads, optimizer, gather = _state_bytes(arch, recipe, precision)
    state = params + grads + optimizer + gather
    activation = _activation_bytes(arch, micro, _run(precision, recipe), checkpointing)
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
        memory_params_bytes=params,
        memory_grads_bytes=grads,
        memory_optimizer_bytes=optimizer,
        memory_gather_bytes=gather,
        recipe=recipe,
    )
