"""The GPU check: one command on a bare GPU machine (torch and the project's dependencies installed, no internet)
prints one markdown report of what matters at the Brainformer paper's 100M/32E proxy scale (seq 1024, batch 64).

    python benchmarks/gpu_check.py                    # sized for under 8 minutes on one H200
    python benchmarks/gpu_check.py --out report.md    # the same report, also written to a file
    python benchmarks/gpu_check.py --smoke            # every section at tiny sizes on the CPU (about a minute)
    python -m benchmarks.gpu_check --only 1,5         # some sections only

Sections (each independent: one that raises is reported as "failed: ..." and the others still run; the exit code
is 1 when any section failed):

1. device and software;
2. the MoE fast dispatch paths against a per-expert Python loop in bf16 (max relative error);
3. causality of every router under bf16: outputs at positions <= t unchanged when tokens after t change;
4. the MoE dispatch grid against the peers (``benchmarks/moe_dispatch.py``, fewer repetitions);
5. MFU of dense / GLaM / Brainformer-1 at 100m-32e, eager and compiled (``benchmarks/train_throughput.py``);
6. the trainer's memory estimate against the measured peak, for the presets and samples of the ``brainformer`` space;
7. a short search of the ``brainformer`` space (SQLite in a temporary directory): its leaderboard and how many
   trials were pruned for memory (the acceptance asks for none);
8. GLaM at the 1b-64e rung (15B total parameters) on one device: the planner's recipe (bf16 weights, Adafactor)
   and memory plan, a few steps, the measured peak against the estimate.

Each section's time is printed as it ends and shown in the report. Where the budget is tight, ``--no-compile``,
``--search-seconds``, ``--search-trials``, ``--memory-samples`` and ``--grid-reps`` trade coverage for time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import Tensor

from brainsearch.arch import Architecture, cost
from brainsearch.settings import get_settings

__all__ = ["SECTIONS", "Check", "main", "run_sections"]

PRESETS = ("dense", "glam", "brainformer-1")
# Routers checked for causality: (gating, capacity factor); capacity 0.5 drops tokens, which is where a
# capacity-order leak would show.
ROUTERS = (("top1", 1.0), ("top1", 0.5), ("top2", 1.0), ("top2", 0.5), ("expert_choice", 1.0), ("expert_choice", 2.0))
# Besides any changed routing decision (exact), a logit change at positions <= t larger than this share of the
# logits' largest magnitude is a leak. Identical inputs through identical kernels give 0; kernels whose shapes follow
# the data (grouped_mm's group sizes) may round differently, by about one bf16 unit (2^-8 = 3.9e-3) at most; the
# sequence-wide expert-choice control moves them by about 2e-2 even at tiny sizes.
CAUSALITY_TOLERANCE = 1e-2
# Largest relative error of a bf16 fast path against the float32 loop: a few bf16 roundings (2^-8 each) deep.
FAST_PATH_TOLERANCE = 5e-2


@dataclass
class Check:
    """What the sections share: the mode, the device, and results one section may reuse from another."""

    smoke: bool
    device: torch.device
    search_trials: int
    search_seconds: float
    memory_samples: int
    grid_reps: int
    compile: bool
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def scale_preset(self) -> str:
        """The scale the model sections train at."""
        return "cpu-tiny" if self.smoke else "100m-32e"

    @property
    def batch_size(self) -> int:
        """The global batch of the model sections (the paper's 64 on the GPU)."""
        return 8 if self.smoke else 64

    def corpus(self, vocab_size: int) -> Any:
        """The default corpus at ``vocab_size``, loaded once for every section."""
        key = f"corpus-{vocab_size}"
        if key not in self.shared:
            from brainsearch.data import load_corpus

            self.shared[key] = load_corpus("default", vocab_size, get_settings().data_dir)
        return self.shared[key]


def _bench(name: str) -> ModuleType:
    """A sibling benchmark module (``benchmarks.<name>``), imported however this script was started."""
    import importlib

    return importlib.import_module(f"benchmarks.{name}")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one letter per column (``l`` or ``r``), default: all left."""
    align = align or "l" * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _on_off(flag: bool | str | None) -> str:
    """A plan's activation checkpointing as the report writes it."""
    if flag is None:
        return "-"
    return flag if isinstance(flag, str) else ("on" if flag else "off")


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


# --- 1. device and software -------------------------------------------------------------------------------------------


def device_and_software(check: Check) -> str:
    """Versions, the device, the date."""
    import brainsearch

    rows: list[tuple[str, str]] = [
        ("date (UTC)", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")),
        ("mode", "smoke (tiny sizes, CPU)" if check.smoke else "full"),
        ("host", f"{platform.node()}, {platform.platform()}"),
        ("python", platform.python_version()),
        ("brainsearch", f"{brainsearch.__version__} ({_git_commit()})"),
        ("torch", torch.__version__),
        ("CUDA (torch build)", str(torch.version.cuda)),
        ("cuDNN", _cudnn()),
        ("device", str(check.device)),
        ("CPU threads", f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores"),
    ]
    if check.device.type == "cuda":
        p = torch.cuda.get_device_properties(check.device)
        rows += [
            ("GPU", p.name),
            ("compute capability", f"{p.major}.{p.minor}"),
            ("GPU memory", f"{p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs"),
            ("GPUs visible", str(torch.cuda.device_count())),
            ("bf16 supported", str(torch.cuda.is_bf16_supported())),
        ]
    rows.append(("grouped_mm", _has_grouped_mm()))
    for package in ("triton", "transformers", "optuna", "numpy"):
        rows.append((package, _version(package)))
    return _table(["what", "value"], rows)


def _cudnn() -> str:
    available = torch.backends.cudnn.is_available()  # type: ignore[no-untyped-call]
    return str(torch.backends.cudnn.version()) if available else "-"  # type: ignore[no-untyped-call]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return f"commit {out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        return "no git checkout"


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _has_grouped_mm() -> str:
    if hasattr(torch.nn.functional, "grouped_mm"):
        return "torch.nn.functional.grouped_mm"
    return "torch._grouped_mm" if hasattr(torch, "_grouped_mm") else "absent (padded bmm only)"


# --- 2. fast paths vs the per-expert loop -----------------------------------------------------------------------------


def fast_paths(check: Check) -> str:
    """The MoE layer's dispatch paths (bf16 autocast on CUDA) against the float32 per-expert loop with the same routing:
    ``moe_dispatch.fast_paths_vs_loop``, the largest relative error over output and every gradient."""
    fn = getattr(_bench("moe_dispatch"), "fast_paths_vs_loop", None)
    if fn is None:
        raise AttributeError("benchmarks/moe_dispatch.py has no fast_paths_vs_loop")
    rows = []
    high = []
    for case, error in fn(check.device):
        ok = math.isfinite(error) and error < FAST_PATH_TOLERANCE
        rows.append((case, f"{error:.2e}", "ok" if ok else "HIGH"))
        if not ok:
            high.append(case)
    precision = "bf16 autocast" if check.device.type == "cuda" else "float32 (the CPU trains in float32)"
    body = (
        f"Each fast path in {precision} against the float32 per-expert loop with the same routing; relative error "
        f"= max |diff| / max |reference| over the output, the input gradient and every parameter gradient; "
        f"ok below {FAST_PATH_TOLERANCE:g}.\n\n"
        + _table(["router and path", "max relative error", "verdict"], rows, "lrl")
    )
    if high:
        raise AssertionError(f"fast path(s) above {FAST_PATH_TOLERANCE:g}: {', '.join(high)}\n\n{body}")
    return body


# --- 3. causality under bf16 ------------------------------------------------------------------------------------------


def causality(check: Check) -> str:
    """For every router (train and eval mode, bf16 autocast): replace every token after position t in every row and
    compare, at positions <= t, the routing decisions of every MoE layer (which (token, expert) assignments are kept)
    and the logits. A control, the paper's sequence-wide expert choice, must be caught."""
    from brainsearch.model import build_model

    d, experts, seq, batch, heads = (32, 4, 16, 6, 2) if check.smoke else (256, 32, 256, 32, 4)
    vocab = 64 if check.smoke else 1024
    positions = (0, seq // 3, seq - 2)
    rows = []
    leaks = []
    cases: list[tuple[str, float, bool]] = [(g, cf, False) for g, cf in ROUTERS] + [("expert_choice", 1.0, True)]
    for gating, cf, control in cases:
        arch = Architecture.model_validate(
            {
                "d_model": d,
                "vocab_size": vocab,
                "seq_len": seq,
                "num_blocks": 2,
                "block": [
                    {"type": "moe", "hidden": 2 * d, "experts": experts, "gating": gating, "capacity_factor": cf},
                    {"type": "attention", "heads": heads},
                    {"type": "ffn", "hidden": 2 * d, "activation": "swiglu"},
                ],
            }
        )
        torch.manual_seed(0)
        model = build_model(arch)
        name = f"{gating} cf={cf:g}"
        if control:
            name = "control: sequence-wide expert choice (leaks by design)"
            try:
                _make_sequence_wide(model)
            except Exception as exc:  # the control is a check of the check: its absence is noted, not a failure
                rows.append((name, "-", "-", "-", f"control not built: {type(exc).__name__}: {exc}"))
                continue
        model.to(check.device)
        for mode in ("train", "eval") if not control else ("train",):
            model.train(mode == "train")
            found = _future_dependence(model, positions, batch, seq, vocab, check.device)
            changed = sum(n for n, _ in found)
            logit_change = max(c for _, c in found)
            leak = changed > 0 or logit_change > CAUSALITY_TOLERANCE
            if control:
                verdict = "caught (as it must be)" if leak else "NOT CAUGHT: the check is blind"
                if not leak:
                    leaks.append(name)
            else:
                verdict = "LEAK" if leak else "ok"
                if leak:
                    leaks.append(f"{name} ({mode})")
            rows.append((name, mode, str(changed), f"{logit_change:.1e}", verdict))
    body = (
        f"d_model {d}, {experts} experts, batch {batch} x {seq} tokens, vocab {vocab}, 2 blocks of "
        f"(moe, attention, ffn), bf16 autocast; positions t = {', '.join(map(str, positions))}. A leak: any routing "
        f"decision at a position <= t changes (kept (token, expert) assignments, every MoE layer), or the logits there "
        f"change by more than {CAUSALITY_TOLERANCE:g} of their largest magnitude (above one bf16 rounding unit, "
        "which kernels whose shapes follow the data may differ by; a routing leak is caught exactly by the first "
        "test).\n\n"
        + _table(
            ["router", "mode", "routing decisions changed at <= t", "max logit change at <= t (relative)", "verdict"],
            rows,
            "llrrl",
        )
    )
    if leaks:
        raise AssertionError(f"causality check failed for {', '.join(leaks)}\n\n{body}")
    return body


def _future_dependence(
    model: Any, positions: Sequence[int], batch: int, seq: int, vocab: int, device: torch.device
) -> list[tuple[int, float]]:
    """For each t of ``positions``: (routing decisions at positions <= t that differ, largest logit change there /
    largest logit) when every token after t, in every row, is replaced."""
    from brainsearch.model.routing import Router

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    routings: list[Any] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: routings.append(out))
        for m in model.modules()
        if isinstance(m, Router)
    ]
    found = []
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            a = model(ids.to(device)).logits.float()
            base = list(routings)
            for t in positions:
                changed = ids.clone()
                changed[:, t + 1 :] = torch.randint(0, vocab, changed[:, t + 1 :].shape, generator=g)
                routings.clear()
                b = model(changed.to(device)).logits.float()
                differ = sum(
                    len(_kept_assignments(ra, seq, t) ^ _kept_assignments(rb, seq, t))
                    for ra, rb in zip(base, routings, strict=True)
                )
                change = (a[:, : t + 1] - b[:, : t + 1]).abs().max() / a[:, : t + 1].abs().max().clamp_min(1e-6)
                found.append((differ, float(change)))
    finally:
        for h in hooks:
            h.remove()
    return found


def _kept_assignments(r: Any, seq: int, t: int) -> set[tuple[int, int]]:
    """The (token, expert) assignments of a Routing that got a slot, for tokens at positions <= t."""
    kept = r.position_N < r.capacity
    token, expert = r.token_idx_N[kept].tolist(), r.expert_idx_N[kept].tolist()
    return {(tok, e) for tok, e in zip(token, expert, strict=True) if tok % seq <= t}


def _make_sequence_wide(model: Any) -> None:
    """Turn every expert-choice router of ``model`` into the paper's form: each expert picks its top tokens among
    all of the batch's tokens, so a token's selection depends on later tokens."""
    import math

    from brainsearch.model.routing import ExpertChoiceRouter

    def forward(self: Any, x_BSD: Tensor) -> Any:
        B, S, _ = x_BSD.shape
        E, T = self.num_experts, B * S
        r = ExpertChoiceRouter.forward(self, x_BSD)
        _, probs = self.probabilities(x_BSD)
        k = math.ceil(T * self.capacity_factor / E)
        gate_EK, token_EK = probs.reshape(T, E).t().topk(k, dim=-1)
        device = x_BSD.device
        fields = {
            "token_idx_N": token_EK.reshape(-1),
            "expert_idx_N": torch.arange(E, device=device).repeat_interleave(k),
            "position_N": torch.arange(k, device=device).repeat(E),
            "gate_N": gate_EK.reshape(-1),
            "capacity": k,
        }
        names = {f.name for f in dataclasses.fields(r)}
        fields.update({n: None for n in ("top_k", "order_N", "count_E") if n in names})
        return dataclasses.replace(r, **fields)

    routers = [m for m in model.modules() if isinstance(m, ExpertChoiceRouter)]
    if not routers:
        raise ValueError("no expert-choice router to replace")
    for m in routers:
        m.forward = forward.__get__(m)  # type: ignore[method-assign]


# --- 4. the dispatch grid ---------------------------------------------------------------------------------------------


def dispatch_grid(check: Check) -> str:
    """``moe_dispatch.run_grid`` over its GPU grid (one tiny case in smoke mode), rendered by its ``markdown``."""
    md = _bench("moe_dispatch")
    # Smoke: smaller than the benchmark's own quick case (64 rows of 8 tokens), to prove the wiring in seconds.
    cases = [md.Case(64, 128, 4, 512)] if check.smoke else md.GPU_GRID
    rows = md.run_grid(cases, check.device, check.grid_reps)
    return f"{len(cases)} case(s), {check.grid_reps} repetition(s) each.\n\n" + str(md.markdown(rows))


# --- 5. MFU -----------------------------------------------------------------------------------------------------------


def mfu_table(check: Check) -> str:
    """Dense / GLaM / Brainformer-1 at the check's scale, eager and compiled (``train_throughput.measure``)."""
    tt = _bench("train_throughput")
    compile_modes = (False, True) if check.compile else (False,)
    table = tt.measure(
        check.scale_preset,
        models=PRESETS,
        steps=4 if check.smoke else 10,
        rounds=1,
        compile_modes=compile_modes,
        device=check.device.type,
        batch_size=check.batch_size,
        corpus=check.corpus(_vocab(check)),
    )
    check.shared["eager"] = {row.model: row.result for row in table.rows if not row.compiled and row.result}
    body = str(tt.markdown(table))
    if not check.compile:
        body += "\n\nCompiled runs skipped" + (
            " in --smoke (inductor on a CPU takes about a minute a model)." if check.smoke else " (--no-compile)."
        )
    if table.failures:
        raise RuntimeError(f"{len(table.failures)} run(s) did not complete\n\n{body}")
    return body


def _vocab(check: Check) -> int:
    from brainsearch.arch import scale_preset

    return scale_preset(check.scale_preset).vocab_size


# --- 6. memory: estimate vs measured ----------------------------------------------------------------------------------


def memory(check: Check) -> str:
    """Train each preset and ``memory_samples`` feasible samples of the ``brainformer`` space for 3 steps; the plan,
    the trainer's estimate, the measured peak (``max_memory_allocated``; on the CPU H1's exact counter) and the
    error of the estimate."""
    from brainsearch.arch import preset, scale
    from brainsearch.train import TrainSettings, train

    archs: dict[str, Architecture] = {name: scale(preset(name), check.scale_preset) for name in PRESETS}
    archs.update(_space_samples(check))
    corpus = check.corpus(_vocab(check))
    settings = TrainSettings(
        budget={"tokens": 3 * check.batch_size * next(iter(archs.values())).seq_len},
        batch_size=check.batch_size,
        eval_interval=10**6,
        eval_batches=1,
        timing_warmup_steps=1,
        device=check.device.type,
        compile=False,  # the eager peak, as section 5's eager rows measure it; compiling each sample costs minutes
    )
    reused: dict[str, Any] = check.shared.get("eager", {})
    rows = []
    worst = 0.0
    for name, arch in archs.items():
        r = reused.get(name) or train(arch, settings, corpus=corpus)
        estimate = _field(r, "memory_estimate_bytes")
        measured, how = _field(r, "memory_peak_bytes"), "peak allocated"
        if measured is None and r.status == "completed" and check.device.type == "cpu":
            checkpointing = _field(r, "activation_checkpointing") in (True, "on")
            micro_batch = _field(r, "micro_batch") or check.batch_size
            measured, how = _counted_bytes(arch, micro_batch, checkpointing), "exact count (CPU)"
        error = (estimate - measured) / measured if estimate and measured else None
        if error is not None:
            worst = max(worst, abs(error))
        rows.append(
            (
                name,
                arch.pattern,
                r.status if r.status == "completed" else f"{r.status}: {r.reason}",
                _field(r, "micro_batch"),
                _on_off(_field(r, "activation_checkpointing")),
                _gib(estimate),
                _gib(measured),
                how,
                "-" if error is None else f"{error:+.2%}",
            )
        )
    header = ["model", "block", "status", "micro-batch", "checkpointing", "estimate GiB", "measured GiB", "measured as"]
    table = _table([*header, "estimate error"], rows, "lllrlrrlr")
    return (
        f"{check.scale_preset}, global batch {check.batch_size}, 3 steps each (the presets' rows reuse section 5's "
        f"eager runs when they exist); worst |error| {worst:.1%}.\n\n{table}"
    )


def _field(result: Any, name: str) -> Any:
    return _bench("train_throughput").result_field(result, name)


def _space_samples(check: Check) -> dict[str, Architecture]:
    """The first ``memory_samples`` samples of the bundled ``brainformer`` space (seeded random suggester, as a
    random-sampler search draws them) meeting its static constraints other than memory; resized in smoke mode."""
    from brainsearch.arch import scale
    from brainsearch.space import RandomSuggester, load_space, sample, violations

    space = load_space("brainformer")
    out: dict[str, Architecture] = {}
    seed = 0
    while len(out) < check.memory_samples and seed < 200:
        arch = sample(space, RandomSuggester(seed))
        if not [v for v in violations(space, arch) if not v.startswith("memory")]:
            out[f"brainformer sample {seed}"] = scale(arch, check.scale_preset) if check.smoke else arch
        seed += 1
    return out


def _counted_bytes(arch: Architecture, micro_batch: int, checkpointing: bool) -> int:
    """H1's exact training-memory count for one micro-batch under the trainer's plan (the CPU has no allocator
    peak)."""
    from brainsearch.model import build_model

    try:
        from brainsearch.train.memory import count_training_memory
    except ImportError as exc:
        raise ImportError(f"brainsearch.train.memory.count_training_memory is missing: {exc}") from None
    torch.manual_seed(0)
    model = build_model(arch).train()
    model.activation_checkpointing = checkpointing
    ids = torch.randint(0, arch.vocab_size, (micro_batch, arch.seq_len + 1))
    return int(count_training_memory(model, ids[:, :-1], ids[:, 1:]).total_bytes)


# --- 7. a short search ------------------------------------------------------------------------------------------------


def short_search(check: Check) -> str:
    """A random-sampler search of the ``brainformer`` space (``tiny`` in smoke mode): ``search_trials`` trials of
    ``search_seconds`` each, one at a time, the local executor, SQLite in a temporary directory."""
    from brainsearch.search.driver import SearchDriver
    from brainsearch.search.submission import RunOptions, create_search
    from brainsearch.space import load_space
    from brainsearch.space.schema import Budget
    from brainsearch.storage import Repository, make_engine, migrate

    space = load_space("tiny" if check.smoke else "brainformer")
    budget = Budget(tokens=4096) if check.smoke else Budget(seconds=check.search_seconds)
    space = space.model_copy(update={"proxy": space.proxy.model_copy(update={"budget": budget})})
    with tempfile.TemporaryDirectory(prefix="brainsearch-gpu-check-") as tmp:
        url = f"sqlite:///{tmp}/search.db"
        engine = make_engine(url)
        migrate(engine)
        repo = Repository(engine)
        # Eager trials: compiling each would cost more wall-clock time than its budget (it is not charged to it).
        options = RunOptions(executor="local", device=check.device.type, compile=False)
        overrides = {"trials": check.search_trials, "sampler": "random", "concurrency": 1, "top_k": 1}
        search, _ = create_search(repo, space, name="gpu-check", overrides=overrides, options=options)
        start = time.perf_counter()
        done = SearchDriver(repo, search.id, url, data_dir=Path(tmp)).run()
        wall = time.perf_counter() - start
        trials = repo.list_trials(search.id, limit=1000).items
        engine.dispose()
    memory_pruned = [t for t in trials if t.state == "out_of_memory" or "memory" in (t.reason or "").lower()]
    rows = []
    for t in trials:
        m = t.metrics
        rows.append(
            (
                t.number,
                t.baseline_name or "",
                t.pattern,
                "-" if t.val_loss is None else f"{t.val_loss:.4f}",
                "-" if t.step_time_s is None else f"{t.step_time_s * 1e3:.0f}",
                m.get("micro_batch", "-"),
                _on_off(m.get("activation_checkpointing")),
                t.state + (f": {t.reason}" if t.reason else ""),
            )
        )
    header = ["#", "baseline", "block", "val loss", "step ms", "micro-batch", "checkpointing", "status / reason"]
    summary = (
        f"space {space.name}, {check.search_trials} trials + baselines, budget {_budget_text(budget)} a trial, "
        f"concurrency 1, random sampler, local executor, device {check.device.type}; search {done.status} in "
        f"{wall:.0f} s; **pruned for memory: {len(memory_pruned)}** (acceptance: 0)."
    )
    body = f"{summary}\n\n" + _table(header, rows, "rlllrrll")
    if done.status != "completed":
        raise RuntimeError(f"search {done.status}: {done.error}\n\n{body}")
    if memory_pruned:
        raise AssertionError(f"{len(memory_pruned)} trial(s) pruned for memory\n\n{body}")
    return body


def _budget_text(budget: Any) -> str:
    if budget.seconds is not None:
        return f"{budget.seconds:g} s"
    return f"{budget.tokens:,.0f} tokens" if budget.tokens is not None else f"{budget.flops:g} FLOPs"


def large_rung(check: Check) -> str:
    """GLaM at 1b-64e (15.1B total / 1.02B activated parameters; cpu-small in smoke mode) on one device: the device
    planner's recipe and memory plan before any allocation, then a few steps with it - the measured peak against
    the estimate, tokens/s and MFU."""
    from brainsearch.arch import preset, scale
    from brainsearch.arch.devices import plan_devices
    from brainsearch.train import TrainSettings, train

    rung = "cpu-small" if check.smoke else "1b-64e"
    arch = scale(preset("glam"), rung)
    c = cost(arch)
    gpu = check.device.type == "cuda"
    if gpu:
        memory = torch.cuda.get_device_properties(check.device).total_memory
    else:  # smoke: a device just too small for fp32 AdamW, so the planner takes the lean recipe, as 1b-64e does
        from brainsearch.arch.plan import RECIPES, min_memory_bytes

        memory = int(min_memory_bytes(arch, check.batch_size, "fp32", RECIPES["fp32-adamw"]) / 0.9 * 0.95)
    plan = plan_devices(
        arch, check.batch_size, "bf16" if gpu else "fp32", memory, 1, name=rung, unit="GPU" if gpu else "process"
    )
    settings = TrainSettings(
        budget={"tokens": 4 * check.batch_size * arch.seq_len},
        batch_size=check.batch_size,
        eval_interval=10**6,
        eval_batches=1,
        timing_warmup_steps=1,
        device=check.device.type,
        compile=False,
    )
    r = train(arch, settings.with_recipe(plan.recipe), corpus=check.corpus(arch.vocab_size), plan=plan.plan)
    measured = r.memory_peak_bytes
    error = (plan.plan.memory_bytes - measured) / measured if measured else None
    rows = [
        ("parameters total / activated", f"{c.params_total / 1e9:.2f}B / {c.params_activated / 1e9:.2f}B"),
        ("device memory GiB", _gib(memory)),
        ("recipe", plan.recipe.label),
        ("micro-batch / checkpointing", f"{plan.plan.micro_batch} / {_on_off(plan.plan.checkpointing)}"),
        ("estimated peak GiB", _gib(plan.plan.memory_bytes)),
        ("measured peak GiB", _gib(measured) if measured else "- (CPU)"),
        ("estimate error", "-" if error is None else f"{error:+.2%}"),
        ("status", r.status if r.status == "completed" else f"{r.status}: {r.reason}"),
        ("steps / step time", f"{r.steps} / {r.step_time_s or 0:.3f} s"),
        ("tokens/s", f"{r.tokens_per_s or 0:,.0f}"),
        ("MFU", "-" if r.mfu is None else f"{r.mfu:.1%} of {r.peak_flops_label}"),
    ]
    return f"GLaM at {rung}, global batch {check.batch_size}, 4 steps.\n\n" + _table(["", ""], rows, "ll")


# --- the report -------------------------------------------------------------------------------------------------------

SECTIONS: list[tuple[str, Callable[[Check], str]]] = [
    ("Device and software", device_and_software),
    ("Fast paths vs the per-expert loop (bf16)", fast_paths),
    ("Causality of every router (bf16)", causality),
    ("MoE dispatch grid against the peers", dispatch_grid),
    ("MFU: dense / GLaM / Brainformer-1", mfu_table),
    ("Memory: estimate vs measured", memory),
    ("A short search of the brainformer space", short_search),
    ("The 1B/64E rung on one device", large_rung),
]


@dataclass(frozen=True)
class SectionResult:
    """One section's markdown body, whether it failed, and how long it took."""

    number: int
    title: str
    body: str
    failed: bool
    seconds: float


def run_sections(check: Check, only: set[int] | None = None) -> list[SectionResult]:
    """Run the sections in order (those in ``only`` when given); an exception ends its own section only."""
    results = []
    for number, (title, fn) in enumerate(SECTIONS, start=1):
        if only is not None and number not in only:
            continue
        print(f"[gpu_check] {number}. {title} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            body, failed = fn(check), False
        except Exception as exc:  # a section's failure is data in the report
            body, failed = _failure(exc), True
        finally:
            if check.device.type == "cuda":
                torch.cuda.empty_cache()
        seconds = time.perf_counter() - start
        print(f"[gpu_check] {number}. {'FAILED' if failed else 'ok'} in {seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(SectionResult(number, title, body, failed, seconds))
    return results


def _failure(exc: BaseException) -> str:
    """``failed: Type: message`` (a message that carries a partial table keeps it), then the traceback's tail."""
    message = str(exc).strip()
    first, _, rest = message.partition("\n")
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
    text = f"failed: {type(exc).__name__}: {first}"
    if rest.strip():
        text += f"\n\n{rest.strip()}"
    return f"{text}\n\n```\n{tb.strip()}\n```"


def report(check: Check, results: Sequence[SectionResult], total_s: float) -> str:
    """The whole markdown report: a summary table, then every section with its time."""
    failed = sum(r.failed for r in results)
    head = [
        "# brainsearch GPU check" + (" (smoke)" if check.smoke else ""),
        "",
        f"device {check.device}, {len(results)} section(s), {failed} failed, total {total_s:.0f} s.",
        "",
        _table(
            ["section", "status", "seconds"],
            [(f"{r.number}. {r.title}", "FAILED" if r.failed else "ok", f"{r.seconds:.1f}") for r in results],
            "llr",
        ),
    ]
    parts = ["\n".join(head)]
    for r in results:
        parts.append(f"## {r.number}. {r.title} ({r.seconds:.1f} s)\n\n{r.body}")
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the sections, print (and write) the report; 1 when any section failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every section at tiny sizes on the CPU")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown report to this file")
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu in --smoke)")
    parser.add_argument("--only", default=None, help="comma-separated section numbers to run, e.g. 1,5")
    parser.add_argument("--search-trials", type=int, default=None, help="trials of section 7 (default 6; smoke 2)")
    parser.add_argument("--search-seconds", type=float, default=10.0, help="training budget of a search trial")
    parser.add_argument("--memory-samples", type=int, default=6, help="brainformer samples (section 6; smoke: <= 3)")
    parser.add_argument("--grid-reps", type=int, default=None, help="repetitions of the dispatch grid (default 2)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled runs of section 5")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
    check = Check(
        smoke=args.smoke,
        device=device,
        search_trials=args.search_trials or (2 if args.smoke else 6),
        search_seconds=args.search_seconds,
        memory_samples=min(args.memory_samples, 3) if args.smoke else args.memory_samples,
        grid_reps=args.grid_reps or (1 if args.smoke else 2),
        compile=not (args.no_compile or args.smoke),
    )
    only = {int(n) for n in args.only.split(",")} if args.only else None
    start = time.perf_counter()
    results = run_sections(check, only)
    text = report(check, results, time.perf_counter() - start)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
