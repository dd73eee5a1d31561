"""Proxy training throughput: step time, tokens/s and model FLOP utilisation (MFU) for the dense baseline, GLaM and
Brainformer-1 at one scale preset, eager and (with ``--compile``) compiled, runs interleaved so machine noise hits
all alike.

    python benchmarks/train_throughput.py                                 # cpu-small on the CPU (about 3 minutes)
    python benchmarks/train_throughput.py --preset 100m-32e --compile     # the paper's proxy on a GPU (bf16)

MFU = model FLOP/s (the cost model's training FLOPs per token x tokens/s) / peak, given twice, because the two
denominators answer different questions:

- "MFU datasheet": against the device's datasheet peak for the training dtype (bf16 dense on a GPU), the number
  papers quote; empty where the trainer knows no datasheet figure (CPUs);
- "MFU matmul": against the best large square matmul measured on the same device in the same process (fp32 on CPU,
  bf16 on GPU), i.e. how far the model is from what this device really delivers on its best kernel.

Both come from the trainer's own :class:`~brainsearch.train.ProxyResult` (``peak_flops_per_s`` with
``peak_flops_source``, ``matmul_flops_per_s``), so the numbers are the ones a search stores. The memory plan the
trainer chose (micro-batch, activation checkpointing), its set-up and compile times are shown too: step times are
medians after the warm-up steps and never include compilation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainsearch.arch import Architecture, preset, scale, scale_preset
from brainsearch.data import Corpus, load_corpus
from brainsearch.settings import get_settings
from brainsearch.train import ProxyResult, TrainSettings, train

__all__ = ["MODELS", "ThroughputRow", "ThroughputTable", "markdown", "measure", "result_field"]

MODELS = ("dense", "glam", "brainformer-1")
# Global batch per scale preset where it differs from the preset's own (the CPU presets train smaller batches here
# so that a round takes seconds).
_BATCH = {"cpu-tiny": 8, "cpu-small": 16}


def result_field(result: ProxyResult, name: str) -> Any:
    """``result.<name>``, or an error naming the missing field (the trainer in this tree predates it)."""
    if name not in type(result).model_fields:
        raise AttributeError(f"ProxyResult has no field {name!r}: the trainer in this tree does not report it yet")
    return getattr(result, name)


@dataclass(frozen=True)
class ThroughputRow:
    """One model in one mode (eager or compiled): medians over its completed rounds and the last completed round's
    result; ``failure`` says why a round did not complete (``result`` is None when none did)."""

    model: str
    compiled: bool
    step_time_s: float | None
    tokens_per_s: float | None
    mfu_datasheet: float | None
    mfu_matmul: float | None
    result: ProxyResult | None
    failure: str | None = None

    @property
    def mode(self) -> str:
        """``eager`` or ``compiled``."""
        return "compiled" if self.compiled else "eager"


@dataclass(frozen=True)
class ThroughputTable:
    """The rows of one measurement and what they were measured on (the peaks: from the last completed run)."""

    preset: str
    batch_size: int
    seq_len: int
    steps: int
    rounds: int
    device: str
    peak_flops_per_s: float | None
    peak_flops_source: str
    peak_flops_label: str
    matmul_flops_per_s: float | None
    rows: list[ThroughputRow]

    @property
    def failures(self) -> list[str]:
        """``model (mode): why`` for every row with a run that did not complete."""
        return [f"{row.model} ({row.mode}): {row.failure}" for row in self.rows if row.failure]


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def measure(
    preset_name: str = "cpu-small",
    *,
    models: Sequence[str] = MODELS,
    steps: int = 12,
    rounds: int = 3,
    compile_modes: Sequence[bool] = (False,),
    device: str = "auto",
    batch_size: int | None = None,
    corpus: Corpus | None = None,
) -> ThroughputTable:
    """Train each of ``models`` (presets resized to ``preset_name``) for ``steps`` steps per round, in every mode of
    ``compile_modes``, ``rounds`` times interleaved. A run that does not complete (a failed status, or an exception
    such as a compiler error) is a row's ``failure``; the other runs go on."""
    archs: dict[str, Architecture] = {name: scale(preset(name), preset_name) for name in models}
    first = next(iter(archs.values()))
    batch = batch_size or _BATCH.get(preset_name, scale_preset(preset_name).batch_size)
    corpus = corpus or load_corpus("default", first.vocab_size, get_settings().data_dir)
    results: dict[tuple[str, bool], list[ProxyResult]] = {(n, c): [] for n in archs for c in compile_modes}
    failures: dict[tuple[str, bool], str] = {}
    for _ in range(rounds):
        for compiled in compile_modes:
            settings = TrainSettings(
                budget={"tokens": steps * batch * first.seq_len},
                batch_size=batch,
                eval_interval=10**6,
                eval_batches=1,
                device=device,
                compile=compiled,
            )
            for name, arch in archs.items():
                try:
                    r = train(arch, settings, corpus=corpus)
                except Exception as exc:  # a compiler crash, say: reported in its row, the other runs go on
                    failures[(name, compiled)] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                    continue
                if r.status == "completed":
                    results[(name, compiled)].append(r)
                else:
                    failures[(name, compiled)] = f"{r.status}: {r.reason}"
    rows = []
    for (name, compiled), runs in results.items():
        matmul = [_ratio(r.model_flops_per_s, result_field(r, "matmul_flops_per_s")) for r in runs]
        # The trainer's own MFU (withheld, with a note, when a FLOP count or peak is off) where its peak is the
        # datasheet's.
        datasheet = [r.mfu if result_field(r, "peak_flops_source") == "datasheet" else None for r in runs]
        rows.append(
            ThroughputRow(
                model=name,
                compiled=compiled,
                step_time_s=_median([r.step_time_s for r in runs]),
                tokens_per_s=_median([r.tokens_per_s for r in runs]),
                mfu_datasheet=_median(datasheet),
                mfu_matmul=_median(matmul),
                result=runs[-1] if runs else None,
                failure=failures.get((name, compiled)),
            )
        )
    last = next((row.result for row in reversed(rows) if row.result is not None), None)
    return ThroughputTable(
        preset=preset_name,
        batch_size=batch,
        seq_len=first.seq_len,
        steps=steps,
        rounds=rounds,
        device=last.device if last else device,
        peak_flops_per_s=last.peak_flops_per_s if last else None,
        peak_flops_source=str(result_field(last, "peak_flops_source")) if last else "-",
        peak_flops_label=str(result_field(last, "peak_flops_label")) if last else "-",
        matmul_flops_per_s=result_field(last, "matmul_flops_per_s") if last else None,
        rows=rows,
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _on_off(flag: bool | None) -> str:
    return "-" if flag is None else ("on" if flag else "off")


def _num(x: float | None, fmt: str, scale_by: float = 1.0) -> str:
    return "-" if x is None else format(x * scale_by, fmt)


def markdown(table: ThroughputTable) -> str:
    """The table as markdown: a header line naming the device and both peaks, then one row per model and mode."""
    peak = (
        f"datasheet peak {table.peak_flops_per_s / 1e12:.0f} TFLOP/s ({table.peak_flops_label})"
        if table.peak_flops_source == "datasheet" and table.peak_flops_per_s
        else f"no datasheet peak known for this device (the trainer's peak: {table.peak_flops_label})"
    )
    matmul = "-" if table.matmul_flops_per_s is None else f"{table.matmul_flops_per_s / 1e12:.3g} TFLOP/s"
    lines = [
        f"preset {table.preset}, device {table.device}, batch {table.batch_size} x {table.seq_len} tokens, "
        f"{table.rounds} interleaved round(s) of {table.steps} steps; {peak}; measured matmul {matmul}",
        "",
        "| model | mode | activated params | GFLOP/token | step ms | tokens/s | MFU datasheet | MFU matmul "
        "| micro-batch | checkpointing | peak memory GiB | set-up s | compile s | step time / FLOP vs dense | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    dense = {row.compiled: row for row in table.rows if row.model == "dense" and row.result is not None}
    for row in table.rows:
        r = row.result
        status = "ok" if row.failure is None else f"failed: {row.failure}"
        if r is None:
            lines.append(f"| {row.model} | {row.mode} |" + " - |" * 12 + f" {status} |")
            continue
        base = dense.get(row.compiled)
        relative = "-"
        if base is not None and base.result is not None and base.step_time_s and row.step_time_s:
            base_per_flop = base.step_time_s / base.result.flops_per_token
            relative = f"{row.step_time_s / r.flops_per_token / base_per_flop:.2f}"
        peak_memory = result_field(r, "memory_peak_bytes")
        lines.append(
            f"| {row.model} | {row.mode} | {r.params_activated / 1e6:.2f}M | {r.flops_per_token / 1e9:.4f} "
            f"| {_num(row.step_time_s, '.0f', 1e3)} | {_num(row.tokens_per_s, ',.0f')} "
            f"| {_pct(row.mfu_datasheet)} | {_pct(row.mfu_matmul)} | {result_field(r, 'micro_batch')} "
            f"| {_on_off(result_field(r, 'activation_checkpointing'))} | {_num(peak_memory, '.1f', 2**-30)} "
            f"| {_num(result_field(r, 'setup_s'), '.1f')} | {_num(result_field(r, 'compile_s'), '.1f')} "
            f"| {relative} | {status} |"
        )
    notes = sorted(
        {f"{row.model} ({row.mode}): {note}" for row in table.rows if row.result for note in row.result.notes}
    )
    if notes:
        lines += ["", "Notes from the trainer:", *[f"- {note}" for note in notes]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small", help="scale preset: cpu-tiny, cpu-small, 100m-32e, ...")
    parser.add_argument("--steps", type=int, default=12, help="steps per run (3 are timing warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default: 64; 8 / 16 on CPU presets)")
    parser.add_argument("--compile", action="store_true", help="also run every model under torch.compile")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    table = measure(
        args.preset,
        steps=args.steps,
        rounds=args.rounds,
        compile_modes=(False, True) if args.compile else (False,),
        device=args.device,
        batch_size=args.batch,
    )
    print(markdown(table))
    if table.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
