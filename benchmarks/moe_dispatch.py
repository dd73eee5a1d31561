"""MoE layer forward + backward against a dense floor and peer dispatch implementations, interleaved in one run.

    python benchmarks/moe_dispatch.py            # the default grid (about 15 minutes on 2 CPU cores)
    python benchmarks/moe_dispatch.py --quick    # one small configuration, to check the script

Every implementation computes a SwiGLU expert FFN (three matrices) on the same tokens:

- ``dense floor``: one dense FFN whose hidden width is k x the expert width (the same activated FLOPs);
- ``ours top1 / top2 / ec``: brainsearch's MoE layer (``auto`` dispatch: grouped_mm for token choice, padded bmm
  for expert choice),
  capacity factor 2 for token choice, 1 for expert choice (so EC activates one expert per token like top-1 and the
  top-1 floor applies; EC with capacity 2 is compared with the top-2 floor);
- ``ours top2 padded``: the same layer forced onto the padded-bmm path (the alternative ``auto`` did not pick);
- ``one-hot einsum top2``: GShard / DeepSpeed-MoE style dispatch and combine through a [T, E, C] one-hot tensor;
- ``per-expert loop top2``: a Python loop over experts with boolean masks (as fairseq / early Mixtral code);
- ``HF qwen3 eager / grouped_mm top2``: Hugging Face transformers' Qwen3-MoE sparse block built from a config
  with random weights, with its eager and grouped-mm expert backends (dropless), when transformers is installed.

Times are medians over interleaved repetitions (implementations alternate, so machine noise hits all alike);
ratios are to the dense floor with the same k. "saved MiB" is what autograd keeps for the backward pass (exact,
from saved-tensor hooks); on CUDA the peak allocation is reported instead.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainsearch.arch import MoESpec
from brainsearch.model.ffn import DenseFFN, FeedForward
from brainsearch.model.moe import MoE


@dataclass
class Case:
    d_model: int
    hidden: int
    experts: int
    tokens: int


def _topk_routing(x_TD: Tensor, router: nn.Linear, k: int) -> tuple[Tensor, Tensor]:
    probs = router(x_TD).float().softmax(-1)
    gate_TK, expert_TK = probs.topk(k, dim=-1)
    return gate_TK / gate_TK.sum(-1, keepdim=True), expert_TK


class OneHotEinsumMoE(nn.Module):
    """GShard-style: dispatch and combine tensors [T, E, C] built from one-hot masks, experts as one bmm."""

    def __init__(self, d: int, h: int, e: int, k: int, capacity_factor: float = 2.0) -> None:
        super().__init__()
        self.k, self.e, self.cf = k, e, capacity_factor
        self.router = nn.Linear(d, e, bias=False)
        self.experts = FeedForward(e, d, h, "swiglu")

    def forward(self, x_BSD: Tensor) -> Tensor:
        B, S, D = x_BSD.shape
        T = B * S
        x_TD = x_BSD.reshape(T, D)
        gate_TK, expert_TK = _topk_routing(x_TD, self.router, self.k)
        capacity = math.ceil(self.cf * T * self.k / self.e)
        mask_TKE = F.one_hot(expert_TK, self.e).float()
        # Position of each token in its expert's buffer: cumulative sum over tokens (k-major priority).
        position_TKE = (
            torch.cumsum(mask_TKE.transpose(0, 1).reshape(-1, self.e), 0).view(self.k, T, self.e).transpose(0, 1) - 1
        ) * mask_TKE
        keep_TKE = mask_TKE * (position_TKE < capacity).float()
        slot_TKEC = F.one_hot(position_TKE.long().clamp(max=capacity - 1), capacity).float() * keep_TKE.unsqueeze(-1)
        dispatch_TEC = slot_TKEC.sum(1)
        combine_TEC = (slot_TKEC * gate_TK.view(T, self.k, 1, 1)).sum(1)
        x_ECD = torch.einsum("tec,td->ecd", dispatch_TEC, x_TD)
        y_ECD = self.experts(x_ECD)
        return torch.einsum("tec,ecd->td", combine_TEC, y_ECD).view(B, S, D)


class PerExpertLoopMoE(nn.Module):
    """Top-k routing, then a Python loop over experts with boolean masks (dropless)."""

    def __init__(self, d: int, h: int, e: int, k: int) -> None:
        super().__init__()
        self.k, self.e = k, e
        self.router = nn.Linear(d, e, bias=False)
        self.experts = FeedForward(e, d, h, "swiglu")

    def forward(self, x_BSD: Tensor) -> Tensor:
        B, S, D = x_BSD.shape
        x_TD = x_BSD.reshape(B * S, D)
        gate_TK, expert_TK = _topk_routing(x_TD, self.router, self.k)
        out_TD = torch.zeros_like(x_TD)
        w_in, w_out = self.experts.w_in_GXD.mT.unbind(0), self.experts.w_out_GDH.mT.unbind(0)
        for e in range(self.e):
            token_idx, slot = torch.where(expert_TK == e)
            if token_idx.numel() == 0:
                continue
            g, u = (x_TD[token_idx] @ w_in[e]).chunk(2, dim=-1)
            y = (F.silu(g) * u) @ w_out[e]
            out_TD = out_TD.index_add(0, token_idx, y * gate_TK[token_idx, slot].unsqueeze(-1))
        return out_TD.view(B, S, D)


def _hf_qwen3(d: int, h: int, e: int, k: int, implementation: str) -> nn.Module | None:
    try:
        from transformers.models.qwen3_moe.configuration_qwen3_moe import Qwen3MoeConfig
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
    except ImportError:
        return None
    config = Qwen3MoeConfig(
        hidden_size=d,
        moe_intermediate_size=h,
        num_experts=e,
        num_experts_per_tok=k,
        norm_topk_prob=True,
        hidden_act="silu",
    )
    config._experts_implementation = implementation
    block = Qwen3MoeSparseMoeBlock(config)
    for p in block.parameters():
        nn.init.normal_(p, std=0.02)
    return block


def _implementations(c: Case) -> dict[str, tuple[int, nn.Module, Callable[[nn.Module, Tensor], Tensor]]]:
    """name -> (k of its dense floor, module, call)."""
    d, h, e = c.d_model, c.hidden, c.experts

    def ours(gating: str, cf: float, dispatch: str = "auto") -> nn.Module:
        return MoE(
            d, MoESpec(hidden=h, experts=e, gating=gating, capacity_factor=cf, activation="swiglu"), dispatch=dispatch
        )  # type: ignore[arg-type]

    def first(m: nn.Module, x: Tensor) -> Tensor:
        return m(x)[0]

    def plain(m: nn.Module, x: Tensor) -> Tensor:
        return m(x)

    impls = {
        "dense floor k=1": (1, DenseFFN(d, h, "swiglu"), plain),
        "dense floor k=2": (2, DenseFFN(d, 2 * h, "swiglu"), plain),
        "ours top1": (1, ours("top1", 2.0), first),
        "ours top2": (2, ours("top2", 2.0), first),
        "ours ec cf=1": (1, ours("expert_choice", 1.0), first),
        "ours ec cf=2": (2, ours("expert_choice", 2.0), first),
        "ours top2 padded": (2, ours("top2", 2.0, "padded"), first),
        "one-hot einsum top2": (2, OneHotEinsumMoE(d, h, e, 2), plain),
        "per-expert loop top2": (2, PerExpertLoopMoE(d, h, e, 2), plain),
    }
    for impl in ("eager", "grouped_mm"):
        block = _hf_qwen3(d, h, e, 2, impl)
        if block is not None:
            impls[f"HF qwen3 {impl} top2"] = (2, block, plain)
    return impls


def _saved_bytes(fn: Callable[[], Tensor]) -> int:
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn()
    y.sum().backward()
    return total


def run_case(c: Case, reps: int, device: torch.device) -> list[tuple[str, float, float, float]]:
    torch.manual_seed(0)
    impls = {name: (k, m.to(device), call) for name, (k, m, call) in _implementations(c).items()}
    # 64 rows: causal expert choice picks per position across the batch, so its effective capacity factor is
    # max(cf, E / rows); 64 rows keep it at cf for every E in the grid.
    batch = 64
    x = torch.randn(batch, c.tokens // batch, c.d_model, device=device)
    grad = torch.randn_like(x)
    times: dict[str, list[float]] = {name: [] for name in impls}
    memory: dict[str, float] = {}
    for name, (_, m, call) in impls.items():  # warm-up and memory, one at a time
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            call(m, x.requires_grad_()).backward(grad)
            memory[name] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            memory[name] = _saved_bytes(lambda m=m, call=call: call(m, x.requires_grad_())) / 2**20
        m.zero_grad(set_to_none=True)
    for _ in range(reps):
        for name, (_, m, call) in impls.items():
            xi = x.detach().requires_grad_()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            call(m, xi).backward(grad)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            m.zero_grad(set_to_none=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    rows = []
    for name, (k, _, _) in impls.items():
        floor = medians[f"dense floor k={k}"]
        rows.append((name, medians[name] * 1e3, medians[name] / floor, memory[name]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small case, two repetitions")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.quick:
        cases, reps = [Case(128, 256, 8, 1024)], 2
    else:
        cases = [Case(d, h, e, t) for (d, h, t) in ((256, 512, 4096), (512, 1024, 8192)) for e in (8, 32, 64)]
        reps = args.reps
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, reps {reps}")
    for c in cases:
        print(f"\n### d_model {c.d_model}, hidden {c.hidden}, E {c.experts}, {c.tokens} tokens")
        print("| implementation | fwd+bwd ms | x dense floor | saved MiB |")
        print("|---|---:|---:|---:|")
        for name, ms, ratio, mib in run_case(c, reps, device):
            print(f"| {name} | {ms:.1f} | {ratio:.2f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
