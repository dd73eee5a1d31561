"""Proxy training throughput: tokens/s and model FLOP utilisation against the measured matmul peak, for the dense
baseline, GLaM and Brainformer-1 at one scale preset, runs interleaved so machine noise hits all alike.

    python benchmarks/train_throughput.py                     # cpu-small on the CPU (about 3 minutes)
    python benchmarks/train_throughput.py --preset 100m-32e   # the paper's proxy on a GPU (bf16)

MFU = model FLOP/s (the cost model's training FLOPs per token x tokens/s) / peak, where the peak is the best
``n x n`` matmul FLOP/s measured on the same device in the same process (fp32 on CPU, bf16 on GPU).
"""

from __future__ import annotations

import argparse
import statistics

from brainsearch.arch import cost, preset, scale
from brainsearch.data import load_corpus
from brainsearch.train import TrainSettings, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=12, help="steps per run (3 are timing warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    archs = {name: scale(preset(name), args.preset) for name in ("dense", "glam", "brainformer-1")}
    batch = {"cpu-tiny": 8, "cpu-small": 16}.get(args.preset, 64)
    seq_len = next(iter(archs.values())).seq_len
    vocab = next(iter(archs.values())).vocab_size
    corpus = load_corpus("default", vocab)
    settings = TrainSettings(
        budget={"tokens": args.steps * batch * seq_len},
        batch_size=batch,
        eval_interval=10**6,
        eval_batches=1,
        device=args.device,
    )
    step_times: dict[str, list[float]] = {name: [] for name in archs}
    mfu: dict[str, list[float]] = {name: [] for name in archs}
    peak = 0.0
    device = ""
    for _ in range(args.rounds):
        for name, arch in archs.items():
            r = train(arch, settings, corpus=corpus)
            assert r.status == "completed", r.reason
            assert r.step_time_s is not None and r.mfu is not None and r.peak_flops_per_s is not None
            step_times[name].append(r.step_time_s)
            mfu[name].append(r.mfu)
            peak, device = r.peak_flops_per_s, r.device
    print(
        f"preset {args.preset}, device {device}, batch {batch} x {seq_len} tokens, matmul peak "
        f"{peak / 1e9:.1f} GFLOP/s, {args.rounds} interleaved rounds of {args.steps} steps\n"
    )
    print("| model | activated params | GFLOP/token | step ms | tokens/s | MFU | step time / FLOP vs dense |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    dense_per_flop = statistics.median(step_times["dense"]) / cost(archs["dense"]).flops_per_token
    for name, arch in archs.items():
        c = cost(arch)
        st = statistics.median(step_times[name])
        print(
            f"| {name} | {c.params_activated / 1e6:.2f}M | {c.flops_per_token / 1e9:.4f} | {st * 1e3:.0f} | "
            f"{batch * seq_len / st:,.0f} | {statistics.median(mfu[name]):.1%} | "
            f"{st / c.flops_per_token / dense_per_flop:.2f} |"
        )


if __name__ == "__main__":
    main()
