"""The model of the ``pytorch`` export: brainsearch's language model restated in one file of plain PyTorch.

:func:`brainsearch.export.standalone_source` writes this file out for an architecture: it replaces this docstring
with one describing the architecture and the ``ARCHITECTURE`` and ``PROVENANCE`` assignments with the architecture
JSON and the trial's provenance, and copies everything else as it is. What a user reads is this code, so it favours
clarity over speed: one dispatch path, the ``padded`` maths of :mod:`brainsearch.model.moe`.

It imports only the standard library and torch (a user runs it without installing brainsearch), so it restates
brainsearch.model (attention.py, ffn.py, routing.py, moe.py, lm.py) rather than importing it. Keep the maths in step
with those modules: tests/export/test_standalone.py builds both and compares state_dicts and logits.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHITECTURE: dict[str, Any] = {}  # the exported architecture's JSON

PROVENANCE: dict[str, Any] | None = None  # where the export came from

NORM_EPS = 1e-6  # RMSNorm epsilon
ROTARY_BASE = 10_000.0
# Weights of the auxiliary losses of token-choice routers (brainsearch's training defaults).
LOAD_BALANCE_WEIGHT = 0.01
Z_LOSS_WEIGHT = 0.001
GATED_ACTIVATIONS = {"reglu", "geglu", "swiglu"}
ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "reglu": F.relu,
    "geglu": F.gelu,
    "swiglu": F.silu,
}


def normal_parameter(*shape: int, std: float) -> nn.Parameter:
    """A parameter of ``shape`` drawn from N(0, std^2)."""
    return nn.Parameter(nn.init.normal_(torch.empty(*shape), std=std))


# --- attention -------------------------------------------------------------------------------------------------------


def rotary_tables(seq_len: int, rotary_dim: int) -> tuple[Tensor, Tensor]:
    """``cos, sin`` ``[S, rotary_dim / 2]`` of rotary position embedding (Su et al. 2021, arXiv 2104.09864)."""
    inv_freq_R = 1.0 / ROTARY_BASE ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
    angles_SR = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq_R)
    return angles_SR.cos(), angles_SR.sin()


def rotate(x_BNSK: Tensor, cos_SR: Tensor, sin_SR: Tensor) -> Tensor:
    """Rotary positions, "rotate half" form: dims ``[0, R)`` and ``[R, 2R)`` are rotated as pairs, the rest kept."""
    r = cos_SR.shape[-1]
    x1, x2, rest = x_BNSK[..., :r], x_BNSK[..., r : 2 * r], x_BNSK[..., 2 * r :]
    cos, sin = cos_SR.to(x_BNSK.dtype), sin_SR.to(x_BNSK.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1)


class Attention(nn.Module):
    """Causal self-attention: fused q/k/v projection, rotary q and k, scaled dot-product attention, output projection.

    ``heads * head_dim`` need not equal ``d_model``. An odd ``head_dim`` rotates its first ``head_dim - 1`` dims.
    """

    def __init__(self, d_model: int, heads: int, head_dim: int, max_seq_len: int, out_init_std: float) -> None:
        super().__init__()
        self.heads, self.head_dim, self.max_seq_len = heads, head_dim, max_seq_len
        self.qkv = nn.Linear(d_model, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, d_model, bias=False)
        nn.init.normal_(self.qkv.weight, std=0.02)
        nn.init.normal_(self.out.weight, std=out_init_std)
        cos_SR, sin_SR = rotary_tables(max_seq_len, head_dim - head_dim % 2)
        # Computed, not learnt: kept out of the state_dict.
        self.cos_SR: Tensor
        self.sin_SR: Tensor
        self.register_buffer("cos_SR", cos_SR, persistent=False)
        self.register_buffer("sin_SR", sin_SR, persistent=False)

    def forward(self, x_BSD: Tensor) -> Tensor:
        """``[B, S, D] -> [B, S, D]``; position t attends to positions ``<= t`` only."""
        B, S, _ = x_BSD.shape
        if self.max_seq_len < S:
            raise ValueError(f"sequence length {S} exceeds the architecture's seq_len {self.max_seq_len}")
        qkv = self.qkv(x_BSD).view(B, S, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q_BNSK, k_BNSK, v_BNSK = qkv.unbind(0)
        cos_SR, sin_SR = self.cos_SR[:S], self.sin_SR[:S]
        q_BNSK, k_BNSK = rotate(q_BNSK, cos_SR, sin_SR), rotate(k_BNSK, cos_SR, sin_SR)
        o_BNSK = F.scaled_dot_product_attention(q_BNSK, k_BNSK, v_BNSK, is_causal=True)
        out_BSD: Tensor = self.out(o_BNSK.transpose(1, 2).reshape(B, S, self.heads * self.head_dim))
        return out_BSD


# --- feed-forward networks -------------------------------------------------------------------------------------------


def activate(h_GCX: Tensor, activation: str) -> Tensor:
    """The activation; a gated one (GLU variant, Shazeer 2020, arXiv 2002.05202) is ``act(gate) * up`` of the two
    halves of the last dim."""
    fn = ACTIVATION_FUNCTIONS[activation]
    if activation in GATED_ACTIVATIONS:
        gate, up = h_GCX.chunk(2, dim=-1)
        return fn(gate) * up
    return fn(h_GCX)


class FeedForward(nn.Module):
    """``G`` independent FFNs with stacked weights: ``G = 1`` is a dense FFN, ``G = E`` a bank of experts.

    Weights are stored ``[G, out, in]``; a gated activation's input matrix stacks W_gate and W_up. With ``rank`` R
    each matrix W is factorised as ``y = V(Ux)`` (Brainformer, arXiv 2306.00008, section 3).
    """

    def __init__(
        self, num_groups: int, d_model: int, hidden: int, activation: str, rank: int | None, out_init_std: float
    ) -> None:
        super().__init__()
        self.activation, self.rank = activation, rank
        self.num_in = 2 if activation in GATED_ACTIVATIONS else 1
        G, D, H, M = num_groups, d_model, hidden, self.num_in
        if rank is None:
            self.w_in_GXD = normal_parameter(G, M * H, D, std=0.02)
            self.w_out_GDH = normal_parameter(G, D, H, std=out_init_std)
        else:
            R = rank
            # U of every input matrix stacked on its output dim; one V per input matrix.
            self.u_in_GXD = normal_parameter(G, M * R, D, std=1 / math.sqrt(D))
            self.v_in_MGHR = normal_parameter(M, G, H, R, std=0.02 * math.sqrt(D / R))
            self.u_out_GRH = normal_parameter(G, R, H, std=1 / math.sqrt(H))
            self.v_out_GDR = normal_parameter(G, D, R, std=out_init_std * math.sqrt(H / R))

    def forward(self, x_GCD: Tensor) -> Tensor:
        """``[G, C, D] -> [G, C, D]``: group g's FFN applied to its C tokens."""
        if self.rank is None:
            h_GCX = torch.bmm(x_GCD, self.w_in_GXD.mT)
        else:
            z_GCX = torch.bmm(x_GCD, self.u_in_GXD.mT)
            z_per_matrix = z_GCX.chunk(self.num_in, dim=-1)
            v_per_matrix = self.v_in_MGHR.unbind(0)
            h_GCX = torch.cat([torch.bmm(z, v.mT) for z, v in zip(z_per_matrix, v_per_matrix, strict=True)], dim=-1)
        a_GCH = activate(h_GCX, self.activation)
        if self.rank is None:
            return torch.bmm(a_GCH, self.w_out_GDH.mT)
        return torch.bmm(torch.bmm(a_GCH, self.u_out_GRH.mT), self.v_out_GDR.mT)


class DenseFFN(nn.Module):
    """A dense FFN sub-layer: a one-group :class:`FeedForward` over all tokens."""

    def __init__(self, d_model: int, hidden: int, activation: str, rank: int | None, out_init_std: float) -> None:
        super().__init__()
        self.ffn = FeedForward(1, d_model, hidden, activation, rank, out_init_std)

    def forward(self, x_BSD: Tensor) -> Tensor:
        """``[B, S, D] -> [B, S, D]``."""
        B, S, D = x_BSD.shape
        out_1TD: Tensor = self.ffn(x_BSD.reshape(1, B * S, D))
        return out_1TD.view(B, S, D)


# --- routing ----------------------------------------------------------------------------------------------------------
#
# Causality: a causal LM's logits at position t must not depend on tokens after t, yet capacity-based routing couples
# tokens (one token's assignment can take the slot another would get). So the coupling only runs forward in time:
# token choice fills expert slots in the order (position, choice rank, batch row); expert choice lets every expert
# pick, at each position separately, among the B tokens at that position across the batch.


class Routing(NamedTuple):
    """The routed (token, expert) assignments, N of them (dropped ones left out): token index ``t = b * S + s``,
    expert, slot in the expert's buffer and gate; plus the weighted auxiliary loss (a scalar)."""

    token_N: Tensor
    expert_N: Tensor
    slot_N: Tensor
    gate_N: Tensor
    aux_loss: Tensor


class Router(nn.Module):
    """A linear gate ``D -> E`` whose logits and softmax are computed in float32."""

    def __init__(self, d_model: int, num_experts: int, capacity_factor: float) -> None:
        super().__init__()
        self.num_experts, self.capacity_factor = num_experts, capacity_factor
        self.weight_ED = normal_parameter(num_experts, d_model, std=0.02)

    def probabilities(self, x_BSD: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, probabilities)``, ``[B, S, E]`` each, in float32."""
        with torch.autocast(device_type=x_BSD.device.type, enabled=False):
            logits_BSE = F.linear(x_BSD.float(), self.weight_ED.float())
        return logits_BSE, logits_BSE.softmax(dim=-1)


def slots_in_order(expert_N: Tensor, num_experts: int) -> Tensor:
    """Slot of each assignment in its expert's buffer: the number of earlier assignments to the same expert."""
    seen_NE = F.one_hot(expert_N, num_experts).cumsum(dim=0)
    return seen_NE.gather(1, expert_N.unsqueeze(1)).squeeze(1) - 1


class TokenChoiceRouter(Router):
    """Top-k token choice (Switch top-1, arXiv 2101.03961; GShard / GLaM top-2, arXiv 2006.16668, 2112.06905).

    Each token takes its k most probable experts; top-2 renormalises its two gates, top-1 keeps the probability.
    An expert takes at most ``ceil(capacity_factor * T * k / E)`` assignments per forward; later ones are dropped.
    Auxiliary loss: Switch load balancing ``E * sum_e f_e P_e`` (f_e: fraction of tokens whose first choice is e,
    P_e: mean probability of e) plus the ST-MoE router z-loss (arXiv 2202.08906, eq. 5).
    """

    def __init__(self, d_model: int, num_experts: int, capacity_factor: float, top_k: int) -> None:
        super().__init__(d_model, num_experts, capacity_factor)
        self.top_k = top_k

    def forward(self, x_BSD: Tensor) -> Routing:
        """Route the ``[B, S, D]`` tokens."""
        B, S, _ = x_BSD.shape
        E, K, T = self.num_experts, self.top_k, B * S
        logits_BSE, probs_BSE = self.probabilities(x_BSD)
        gate_BSK, expert_BSK = probs_BSE.topk(K, dim=-1)
        if K > 1:
            gate_BSK = gate_BSK / gate_BSK.sum(dim=-1, keepdim=True)
        capacity = min(T, math.ceil(self.capacity_factor * T * K / E))

        # Assignments in priority order (position, choice rank, batch row): first choices before second choices.
        expert_N = expert_BSK.permute(1, 2, 0).reshape(-1)
        gate_N = gate_BSK.permute(1, 2, 0).reshape(-1)
        token_SKB = torch.arange(S, device=x_BSD.device).view(S, 1, 1) + S * torch.arange(B, device=x_BSD.device)
        token_N = token_SKB.expand(S, K, B).reshape(-1)
        slot_N = slots_in_order(expert_N, E)
        keep_N = slot_N < capacity

        first_choice_fraction_E = torch.bincount(expert_BSK[..., 0].reshape(-1), minlength=E).float() / T
        load_balance = E * (first_choice_fraction_E * probs_BSE.reshape(T, E).mean(0)).sum()
        z_loss = torch.logsumexp(logits_BSE, dim=-1).square().mean()
        aux_loss = LOAD_BALANCE_WEIGHT * load_balance + Z_LOSS_WEIGHT * z_loss
        return Routing(token_N[keep_N], expert_N[keep_N], slot_N[keep_N], gate_N[keep_N], aux_loss)


def expert_choice_k(batch_size: int, capacity_factor: float, num_experts: int) -> int:
    """Tokens each expert picks at each position: ``ceil(B * capacity_factor / E)`` of the B tokens there, at least
    1 (so every expert works when ``B * capacity_factor < E``) and at most B (all there are)."""
    return min(batch_size, max(1, math.ceil(batch_size * capacity_factor / num_experts)))


class ExpertChoiceRouter(Router):
    """Expert choice routing (Zhou et al. 2022, arXiv 2202.09368), made causal.

    At each position, every expert picks its :func:`expert_choice_k` most probable tokens among the B tokens at that
    position; the gate is that probability. Balanced by construction: no auxiliary loss.
    """

    def forward(self, x_BSD: Tensor) -> Routing:
        """Route the ``[B, S, D]`` tokens."""
        B, S, _ = x_BSD.shape
        E, device = self.num_experts, x_BSD.device
        _, probs_BSE = self.probabilities(x_BSD)
        k = expert_choice_k(B, self.capacity_factor, E)
        gate_SEK, row_SEK = probs_BSE.permute(1, 2, 0).topk(k, dim=-1)
        position_S11 = torch.arange(S, device=device).view(S, 1, 1)
        token_N = (row_SEK * S + position_S11).reshape(-1)
        expert_N = torch.arange(E, device=device).view(1, E, 1).expand(S, E, k).reshape(-1)
        # Expert e's buffer holds its k picks of position 0, then of position 1, ...
        slot_N = (position_S11 * k + torch.arange(k, device=device)).expand(S, E, k).reshape(-1)
        return Routing(token_N, expert_N, slot_N, gate_SEK.reshape(-1), torch.zeros((), device=device))


# --- the MoE layer and the language model -----------------------------------------------------------------------------


class MoE(nn.Module):
    """A router and a bank of expert FFNs.

    Each routed assignment copies its token into the expert's buffer ``[E, C, D]`` at its slot; every expert runs on
    its buffer; a token's output is the gate-weighted sum of its experts' outputs. A token no expert took gets zeros
    (the residual connection carries it). ``aux_loss`` holds the router's auxiliary loss after a forward.
    """

    def __init__(self, d_model: int, spec: dict[str, Any], out_init_std: float) -> None:
        super().__init__()
        self.router: Router
        if spec["gating"] == "expert_choice":
            self.router = ExpertChoiceRouter(d_model, spec["experts"], spec["capacity_factor"])
        else:
            top_k = {"top1": 1, "top2": 2}[spec["gating"]]
            self.router = TokenChoiceRouter(d_model, spec["experts"], spec["capacity_factor"], top_k)
        self.experts = FeedForward(
            spec["experts"], d_model, spec["hidden"], spec["activation"], spec.get("rank"), out_init_std
        )
        self.aux_loss: Tensor | None = None

    def forward(self, x_BSD: Tensor) -> Tensor:
        """``[B, S, D] -> [B, S, D]``."""
        B, S, D = x_BSD.shape
        routing = self.router(x_BSD)
        self.aux_loss = routing.aux_loss
        x_TD = x_BSD.reshape(B * S, D)
        num_slots = int(routing.slot_N.max()) + 1 if routing.slot_N.numel() else 1
        buffer_ECD = x_TD.new_zeros(self.router.num_experts, num_slots, D)
        buffer_ECD[routing.expert_N, routing.slot_N] = x_TD[routing.token_N]
        out_ECD = self.experts(buffer_ECD)
        y_ND = out_ECD[routing.expert_N, routing.slot_N] * routing.gate_N.unsqueeze(-1).to(out_ECD.dtype)
        out_TD = torch.zeros_like(x_TD).index_add_(0, routing.token_N, y_ND)
        return out_TD.view(B, S, D)


def make_layer(spec: dict[str, Any], d_model: int, seq_len: int, out_init_std: float) -> nn.Module:
    """The sub-layer one entry of the architecture's ``block`` describes."""
    if spec["type"] == "attention":
        return Attention(d_model, spec["heads"], spec["head_dim"], seq_len, out_init_std)
    if spec["type"] == "ffn":
        return DenseFFN(d_model, spec["hidden"], spec["activation"], spec.get("rank"), out_init_std)
    if spec["type"] == "moe":
        return MoE(d_model, spec, out_init_std)
    raise ValueError(f"unknown layer type {spec['type']!r}")


class LanguageModel(nn.Module):
    """A decoder-only LM: the block's sub-layers repeated ``num_blocks`` times between a token embedding and an
    output head, each sub-layer pre-norm (RMSNorm) with a residual connection.

    The head is the token embedding (tied) unless ``tie_embeddings`` is false. ``aux_loss`` holds the sum of the
    MoE layers' auxiliary losses after a forward.
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = arch
        d, vocab_size = arch["d_model"], arch["vocab_size"]
        layers = arch["block"] * arch["num_blocks"]
        out_init_std = 0.02 / math.sqrt(2 * len(layers))  # GPT-2 style: residual outputs scaled down with depth
        self.embed = nn.Embedding(vocab_size, d)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.norms = nn.ModuleList(nn.RMSNorm(d, eps=NORM_EPS) for _ in layers)
        self.layers = nn.ModuleList(make_layer(spec, d, arch["seq_len"], out_init_std) for spec in layers)
        self.final_norm = nn.RMSNorm(d, eps=NORM_EPS)
        self.head: nn.Linear | None = None
        if not arch["tie_embeddings"]:
            self.head = nn.Linear(d, vocab_size, bias=False)
            nn.init.normal_(self.head.weight, std=0.02)
        self.aux_loss: Tensor | None = None

    def forward(self, ids_BS: Tensor) -> Tensor:
        """Token ids ``[B, S]`` (``S <= seq_len``) -> logits ``[B, S, V]``."""
        x_BSD = self.embed(ids_BS)
        aux_loss = torch.zeros((), device=ids_BS.device)
        for norm, layer in zip(self.norms, self.layers, strict=True):
            x_BSD = x_BSD + layer(norm(x_BSD))
            if isinstance(layer, MoE):
                assert layer.aux_loss is not None  # set by the forward just run
                aux_loss = aux_loss + layer.aux_loss
        self.aux_loss = aux_loss
        weight_VD = self.embed.weight if self.head is None else self.head.weight
        logits_BSV: Tensor = self.final_norm(x_BSD) @ weight_VD.t()
        return logits_BSV


# --- weights ----------------------------------------------------------------------------------------------------------

# safetensors dtype names (https://github.com/huggingface/safetensors, "Format").
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
ARCHITECTURE_KEY = "brainsearch.architecture"  # where brainsearch's weights files keep the architecture JSON


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a ``.safetensors`` file, on the CPU; a malformed file raises ValueError naming it.

    The format: an 8-byte little-endian header length n, n bytes of JSON header (``{name: {"dtype", "shape",
    "data_offsets": [begin, end]}}`` plus an optional ``"__metadata__"`` of strings), then the tensors' raw
    little-endian bytes, offsets counted from the end of the header.
    """
    if sys.byteorder != "little":
        raise ValueError(f"{path}: this reader needs a little-endian machine (safetensors data is little-endian)")
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: truncated safetensors file ({file_size} bytes, no header)")
        header_size = int.from_bytes(prefix, "little")
        if 8 + header_size > file_size:
            raise ValueError(f"{path}: truncated safetensors file (a {header_size}-byte header in {file_size} bytes)")
        try:
            header = json.loads(f.read(header_size))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
            raise ValueError(f"{path}: not a safetensors file (unreadable header: {exc})") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path}: not a safetensors file (the header is not a JSON object)")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict):
            raise ValueError(f"{path}: not a safetensors file (its __metadata__ is not a JSON object)")
        data_start = 8 + header_size
        tensors = {}
        for name, entry in header.items():
            try:
                dtype_name = entry["dtype"]
                shape = [int(n) for n in entry["shape"]]
                begin, end = (int(offset) for offset in entry["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: tensor {name!r} has a malformed header entry {entry!r}") from None
            dtype = SAFETENSORS_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
            if dtype is None:
                raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}")
            if not 0 <= begin <= end or end - begin != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"{path}: tensor {name!r}: offsets {[begin, end]} do not fit {dtype_name} {shape}")
            if data_start + end > file_size:
                raise ValueError(f"{path}: truncated safetensors file (tensor {name!r} ends past the end of the file)")
            f.seek(data_start + begin)
            data = bytearray(f.read(end - begin))  # writable, so torch.frombuffer shares it without a warning
            tensor = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
            tensors[name] = tensor.reshape(shape)
    return tensors, metadata


def load_weights(model: LanguageModel, path: str | os.PathLike[str]) -> None:
    """Load a ``.safetensors`` file (e.g. from ``brainsearch export --format safetensors``) into ``model``.

    Raises ValueError naming the file when it is malformed, was saved for another architecture, lacks a tensor
    the model needs, has one it does not, or has one of another shape.
    """
    tensors, metadata = read_safetensors(path)
    if ARCHITECTURE_KEY in metadata:
        try:
            same = json.loads(metadata[ARCHITECTURE_KEY]) == model.arch
        except ValueError:
            same = False
        if not same:
            raise ValueError(f"{path}: the weights were saved for another architecture than this model's")
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - tensors.keys()), sorted(tensors.keys() - expected.keys())
    if missing:
        raise ValueError(f"{path}: missing tensor(s) {', '.join(missing)}")
    if unexpected:
        raise ValueError(f"{path}: unexpected tensor(s) {', '.join(unexpected)}")
    for name, tensor in expected.items():
        if tensors[name].shape != tensor.shape:
            shape, needed = list(tensors[name].shape), list(tensor.shape)
            raise ValueError(f"{path}: tensor {name!r} has shape {shape}, the model needs {needed}")
    model.load_state_dict(tensors, strict=True)


def build(weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> LanguageModel:
    """The model ``ARCHITECTURE`` describes, in float32 on ``device``, in eval mode: with the weights of a
    ``.safetensors`` file when ``weights`` is given, else freshly initialised (as brainsearch initialises it)."""
    model = LanguageModel(ARCHITECTURE)
    if weights is not None:
        load_weights(model, weights)
    return model.to(device).eval()


def main(argv: list[str]) -> int:
    """Smoke test: build the model (with the weights file given, if any) and run one forward on random tokens."""
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        print(f"usage: python {os.path.basename(__file__)} [WEIGHTS.safetensors]", file=sys.stderr)
        return 2
    weights = argv[0] if argv else None
    try:
        model = build(weights)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    num_params = sum(p.numel() for p in model.parameters())
    print(f"{num_params:,} parameters, " + (f"weights from {weights}" if weights else "random weights"))
    ids_BS = torch.randint(ARCHITECTURE["vocab_size"], (2, min(16, ARCHITECTURE["seq_len"])))
    with torch.no_grad():
        logits_BSV = model(ids_BS)
    print(f"forward: token ids {list(ids_BS.shape)} -> logits {list(logits_BSV.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
