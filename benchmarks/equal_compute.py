"""A preset block against GLaM at one scale preset, at equal compute and at equal tokens, over several seeds.

The question a search answers is which block is better *for the same compute*. This trains the baseline (GLaM) on a
token budget and the candidate (Brainformer-1 by default) twice per seed: on the training FLOPs GLaM spent (equal
compute: a block cheaper per token trains on more tokens) and on GLaM's tokens (equal tokens, the comparison the
paper's fixed-step tables make). Each comparison is paired by seed (a seed fixes the data order and the validation
batches for both), with a 95% Student's t interval over the seeds:

    python benchmarks/equal_compute.py                                   # cpu-small, 4 seeds: about 6 minutes
    python benchmarks/equal_compute.py --preset cpu-tiny --seeds 6 --candidate brainformer-2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainsearch.arch import Architecture, cost, preset, scale, scale_preset
from brainsearch.data import Corpus, load_corpus
from brainsearch.settings import get_settings
from brainsearch.space.schema import parse_quantity
from brainsearch.train import ProxyResult, TrainSettings, train

__all__ = ["paired_interval"]


def paired_interval(differences: list[float]) -> tuple[float, float, float]:
    """The mean of per-seed differences and its 95% Student's t interval (n - 1 degrees of freedom)."""
    from scipy import stats

    mean = statistics.fmean(differences)
    half = float(stats.t.ppf(0.975, len(differences) - 1)) * statistics.stdev(differences) / math.sqrt(len(differences))
    return mean, mean - half, mean + half


def _run(arch: Architecture, budget: dict[str, float], batch: int, seed: int, corpus: Corpus) -> ProxyResult:
    result = train(arch, TrainSettings(budget=budget, batch_size=batch, seed=seed, device="cpu"), corpus=corpus)
    if result.status != "completed" or result.val_loss is None:
        raise SystemExit(f"{arch.pattern} seed {seed}: {result.status}: {result.reason}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu-small", help="scale preset both blocks are trained at")
    parser.add_argument("--candidate", default="brainformer-1", help="architecture preset compared with GLaM")
    parser.add_argument("--baseline", default="glam")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--tokens", default=None, help="the baseline's token budget (default: the preset's)")
    args = parser.parse_args()
    p = scale_preset(args.preset)
    tokens = float(parse_quantity(args.tokens)) if args.tokens else p.budget_tokens
    baseline, candidate = scale(preset(args.baseline), p), scale(preset(args.candidate), p)
    base_fpt = cost(baseline, batch_size=p.batch_size).flops_per_token
    cand_fpt = cost(candidate, batch_size=p.batch_size).flops_per_token
    steps = math.ceil(tokens / (p.batch_size * p.seq_len))
    flops = float(base_fpt * steps * p.batch_size * p.seq_len)
    corpus = load_corpus("default", baseline.vocab_size, get_settings().data_dir)
    print(
        f"{args.candidate} ({candidate.pattern}) against {args.baseline} ({baseline.pattern}) at "
        f"{args.preset}: {args.baseline} trains {steps * p.batch_size * p.seq_len:,} tokens ({flops:.3g} FLOPs); "
        f"FLOPs per token {cand_fpt / base_fpt:.2f}x {args.baseline}'s"
    )
    rows = []
    for seed in range(args.seeds):
        base = _run(baseline, {"tokens": tokens}, p.batch_size, seed, corpus)
        matched = _run(candidate, {"flops": flops}, p.batch_size, seed, corpus)
        same_tokens = _run(candidate, {"tokens": tokens}, p.batch_size, seed, corpus)
        rows.append((seed, base, matched, same_tokens))
        print(
            f"  seed {seed}: {args.baseline} {base.val_loss:.4f}; {args.candidate} at equal compute "
            f"{matched.val_loss:.4f}, at equal tokens {same_tokens.val_loss:.4f}",
            flush=True,
        )
    print()
    print(
        f"| comparison | {args.candidate} tokens | compute vs {args.baseline} | {args.baseline} mean | "
        f"{args.candidate} mean | difference (95%, paired over {args.seeds} seeds) | beyond noise |"
    )
    print("|---|---:|---:|---:|---:|---|---|")
    for label, index in (("equal compute", 2), ("equal tokens", 3)):
        runs = [r[index] for r in rows]
        d = [run.val_loss - r[1].val_loss for run, r in zip(runs, rows, strict=True)]  # type: ignore[operator]
        mean, low, high = paired_interval(d)
        ratio = statistics.fmean(
            run.flops_per_token * run.tokens / (r[1].flops_per_token * r[1].tokens)
            for run, r in zip(runs, rows, strict=True)
        )
        verdict = "better" if high < 0 else ("worse" if low > 0 else "no")
        print(
            f"| {label} | {runs[0].tokens:,} | {ratio:.2f}x | {statistics.fmean(r[1].val_loss for r in rows):.4f} | "  # type: ignore[misc]
            f"{statistics.fmean(run.val_loss for run in runs):.4f} | {mean:+.4f} [{low:+.4f}, {high:+.4f}] | "  # type: ignore[misc]
            f"{verdict} |"
        )


if __name__ == "__main__":
    main()
