"""MoE layer forward + backward against a dense floor and peer dispatch implementations, interleaved in one run.

    python benchmarks/moe_dispatch.py              # the GPU grid where CUDA is available, else the CPU grid
    python benchmarks/moe_dispatch.py --grid cpu   # the CPU grid (about 15 minutes on 2 CPU cores)
    python benchmarks/moe_dispatch.py --grid gpu   # the GPU grid (the paper-scale sizes; bf16 autocast on CUDA)
    python benchmarks/moe_dispatch.py --quick      # one small configuration, to check the script

From another script: ``run_grid(GPU_GRID, device, reps)`` gives the rows, ``markdown(rows)`` the tables, and
``fast_paths_vs_loop(device)`` the largest relative error of each fast dispatch path against a per-expert loop.

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

On CUDA every implementation runs under bf16 autocast (the router's maths stays float32 inside the layer). The
one-hot einsum peer is left out where its [T, K, E, C] tensor would exceed 2^28 elements.

Times are medians over interleaved repetitions (implementations alternate, so machine noise hits all alike);
ratios are to the dense floor with the same k. "saved MiB" is what autograd keeps for the backward pass (exact,
from saved-tensor hooks); on CUDA the peak allocation is reported instead.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainsearch.arch import MoESpec
from brainsearch.model.ffn import DenseFFN, FeedForward
from brainsearch.model.moe import MoE

__all__ = ["CPU_GRID", "GPU_GRID", "QUICK_GRID", "Case", "Row", "fast_paths_vs_loop", "markdown", "run_grid"]


@dataclass(frozen=True)
class Case:
    """One layer size: model width, expert hidden width, number of experts, tokens per forward."""

    d_model: int
    hidden: int
    experts: int
    tokens: int

    def __str__(self) -> str:
        return f"d_model {self.d_model}, hidden {self.hidden}, E {self.experts}, {self.tokens} tokens"


@dataclass(frozen=True)
class Row:
    """One implementation at one case: median fwd+bwd time, its ratio to the dense floor with the same k, memory."""

    case: Case
    implementation: str
    ms: float
    x_dense_floor: float
    mib: float


QUICK_GRID = [Case(128, 256, 8, 1024)]
CPU_GRID = [Case(d, h, e, t) for (d, h, t) in ((256, 512, 4096), (512, 1024, 8192)) for e in (8, 32, 64)]
# Issue 15's H200 measurements: ours was 2.5-4.3x the dense floor at these sizes; the target is <= 1.5x.
GPU_GRID = [Case(768, 3072, 32, 16384), Case(1024, 2048, 64, 16384), Case(512, 1536, 32, 32768)]
ONE_HOT_MAX_ELEMENTS = 2**28


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
    if c.tokens * 2 * e * math.ceil(2.0 * c.tokens * 2 / e) > ONE_HOT_MAX_ELEMENTS:
        del impls["one-hot einsum top2"]
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


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA (how the GPU trains), nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_case(c: Case, reps: int, device: torch.device) -> list[Row]:
    """Every implementation at case ``c``: warm-up and memory one at a time, then ``reps`` interleaved timings."""
    torch.manual_seed(0)
    impls = {name: (k, m.to(device), call) for name, (k, m, call) in _implementations(c).items()}
    # 64 rows: causal expert choice picks per position across the batch, so its effective capacity factor is
    # max(cf, E / rows); 64 rows keep it at cf for every E in the grid.
    batch = 64
    x = torch.randn(batch, c.tokens // batch, c.d_model, device=device)
    grad = torch.randn_like(x)
    times: dict[str, list[float]] = {name: [] for name in impls}
    memory: dict[str, float] = {}

    def step(m: nn.Module, call: Callable[[nn.Module, Tensor], Tensor], xi: Tensor) -> None:
        with _autocast(device):
            y = call(m, xi)
        y.backward(grad.to(y.dtype))

    for name, (_, m, call) in impls.items():  # warm-up and memory, one at a time
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(m, call, x.detach().requires_grad_())
            memory[name] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:

            def fwd(m: nn.Module = m, call: Callable[[nn.Module, Tensor], Tensor] = call) -> Tensor:
                return call(m, x.detach().requires_grad_())

            memory[name] = _saved_bytes(fwd) / 2**20
        m.zero_grad(set_to_none=True)
    for _ in range(reps):
        for name, (_, m, call) in impls.items():
            xi = x.detach().requires_grad_()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(m, call, xi)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            m.zero_grad(set_to_none=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    rows = []
    for name, (k, _, _) in impls.items():
        floor = medians[f"dense floor k={k}"]
        rows.append(Row(c, name, medians[name] * 1e3, medians[name] / floor, memory[name]))
    return rows


def run_grid(cases: list[Case], device: torch.device | str, reps: int) -> list[Row]:
    """:func:`run_case` over ``cases``; the rows of all cases in order."""
    device = torch.device(device)
    return [row for c in cases for row in run_case(c, reps, device)]


def markdown(rows: list[Row]) -> str:
    """One markdown table per case (in the order the rows come)."""
    out: list[str] = []
    case: Case | None = None
    for r in rows:
        if r.case != case:
            case = r.case
            memory = "peak MiB" if torch.cuda.is_available() else "saved MiB"
            out += [
                "",
                f"### {case}",
                f"| implementation | fwd+bwd ms | x dense floor | {memory} |",
                "|---|---:|---:|---:|",
            ]
        out.append(f"| {r.implementation} | {r.ms:.1f} | {r.x_dense_floor:.2f} | {r.mib:.0f} |")
    return "\n".join(out).lstrip("\n")


class PathError(NamedTuple):
    """Largest relative error (output, input gradient and every parameter gradient; ``max |diff| / max |ref|``)
    of one fast dispatch path against the per-expert loop."""

    case: str
    max_rel_error: float


def _ffn_one_group(ffn: FeedForward, g: int, x_CD: Tensor) -> Tensor:
    from brainsearch.model.ffn import activate

    if ffn.rank is None:
        return activate(x_CD @ ffn.w_in_GXD[g].t(), ffn.activation) @ ffn.w_out_GDH[g].t()
    z = (x_CD @ ffn.u_in_GXD[g].t()).chunk(ffn.num_in, dim=-1)
    h = torch.cat([zj @ ffn.v_in_MGHR[j, g].t() for j, zj in enumerate(z)], dim=-1)
    return (activate(h, ffn.activation) @ ffn.u_out_GRH[g].t()) @ ffn.v_out_GDR[g].t()


def _loop(moe: MoE, x_BSD: Tensor) -> Tensor:
    """The layer with the same routing, one expert at a time over its kept assignments, in float32."""
    B, S, D = x_BSD.shape
    r = moe.router(x_BSD)
    x_TD = x_BSD.reshape(B * S, D)
    out_TD = torch.zeros_like(x_TD)
    for e in range(moe.spec.experts):
        mask = (r.expert_idx_N == e) & r.kept_N
        tokens = r.token_idx_N[mask]
        if tokens.numel():
            y = _ffn_one_group(moe.experts, e, x_TD[tokens])
            out_TD = out_TD.index_add(0, tokens, y * r.gate_N[mask].unsqueeze(-1))
    return out_TD.view(B, S, D)


@contextlib.contextmanager
def _no_autocast() -> Iterator[None]:
    with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
        yield


def fast_paths_vs_loop(device: torch.device | str) -> list[PathError]:
    """Each fast path (padded, grouped where grouped_mm exists) of each router, under bf16 autocast on CUDA (float32
    on the CPU), against the float32 per-expert loop with the same routing (the router computes in float32 either
    way): outputs and all gradients. Capacity factor 0.5 drops assignments."""
    device = torch.device(device)
    d, hidden, experts, batch, seq = (256, 512, 8, 16, 256) if device.type == "cuda" else (64, 64, 4, 8, 32)
    dispatches = (
        ["padded", "grouped"]
        if getattr(torch.nn.functional, "grouped_mm", None) or hasattr(torch, "_grouped_mm")
        else ["padded"]
    )
    out = []
    for gating, cf in (("top1", 1.0), ("top1", 0.5), ("top2", 2.0), ("top2", 0.5), ("expert_choice", 1.0)):
        for dispatch in dispatches:
            torch.manual_seed(0)
            spec = MoESpec(hidden=hidden, experts=experts, gating=gating, capacity_factor=cf, activation="swiglu")
            moe = MoE(d, spec, dispatch=dispatch).to(device)  # type: ignore[arg-type]
            x = torch.randn(batch, seq, d, device=device)
            grad = torch.randn_like(x)
            results = []
            for fast in (True, False):
                moe.zero_grad(set_to_none=True)
                xi = x.detach().requires_grad_()
                with _autocast(device) if fast else _no_autocast():
                    y = moe(xi)[0] if fast else _loop(moe, xi)
                y.float().backward(grad)
                grads = [
                    p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in moe.parameters()
                ]
                results.append([y.detach().float(), xi.grad.detach(), *grads])
            err = max(
                ((a.float() - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
                for a, b in zip(results[0], results[1], strict=True)
            )
            out.append(PathError(f"{gating} cf={cf:g} {dispatch}", err))
    return out


def main() -> None:
    """Run a grid and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small case, two repetitions (--grid quick)")
    parser.add_argument(
        "--grid", choices=["quick", "cpu", "gpu"], default=None, help="default: gpu with CUDA, else cpu"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 2 for quick, else 3)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--check", action="store_true", help="also print fast_paths_vs_loop on the device")
    args = parser.parse_args()
    device = torch.device(args.device)
    grid = "quick" if args.quick else args.grid or ("gpu" if device.type == "cuda" else "cpu")
    cases = {"quick": QUICK_GRID, "cpu": CPU_GRID, "gpu": GPU_GRID}[grid]
    reps = args.reps or (2 if grid == "quick" else 3)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, grid {grid}, reps {reps}")
    if args.check:
        print("\n| fast path | max rel. error vs loop |\n|---|---:|")
        for e in fast_paths_vs_loop(device):
            print(f"| {e.case} | {e.max_rel_error:.2e} |")
    for c in cases:  # one case at a time, so a long grid prints as it goes
        print("\n" + markdown(run_case(c, reps, device)))


if __name__ == "__main__":
    main()
