"""The spec commands, ``validate``, ``sample`` and ``cost``: they read a space or an architecture and never import
torch (tests/test_layering.py checks it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from brainsearch._format import fmt_bytes, fmt_count, fmt_flops
from brainsearch.arch import Architecture, Cost, cost, preset, preset_names
from brainsearch.arch.cost import Precision
from brainsearch.arch.devices import NotEnoughDevices, plan_devices
from brainsearch.arch.plan import RECIPES
from brainsearch.arch.scale import SCALE_PRESETS, scale, scale_preset
from brainsearch.cli.common import err, fail, out, read_space
from brainsearch.errors import ArchitectureError, Problem
from brainsearch.space.baselines import describe_budget

if TYPE_CHECKING:
    from brainsearch.space import SearchSpace

__all__ = ["cost_cmd", "read_architecture", "resolve_architecture", "sample_cmd", "validate_cmd"]

# The most devices --shards, --gpus and the device plan consider.
MAX_DEVICES = 4096

SpaceArgument = Annotated[str, typer.Argument(metavar="SPACE.yaml", help="A space file or a bundled space name.")]


def validate_cmd(
    space_file: SpaceArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check a search-space file; print its dimensions, size and cost range (exit 2 on problems)."""
    from brainsearch.space import bounds, dimensions, space_size

    space = read_space(space_file)
    extremes = bounds(space)
    assert extremes is not None, "load_space rejects spaces without a feasible assignment"
    batch = space.proxy.batch_size
    small_total, large_total, small_act, large_act = extremes.cost_range(batch)
    dims = dimensions(space)
    size = space_size(space)
    if as_json:
        summary: dict[str, Any] = {
            "file": space_file,
            "name": space.name,
            "dimensions": dims,
            "size": size,
            "params_total": [small_total.params_total, large_total.params_total],
            "params_activated": [small_act.params_activated, large_act.params_activated],
            "flops_per_token": [small_act.flops_per_token, large_act.flops_per_token],
            "memory_bytes": [small_total.memory_bytes, large_total.memory_bytes],
            "smallest": extremes.smallest_total.to_dict(),
            "largest": extremes.largest_total.to_dict(),
        }
        out.print_json(json.dumps(summary))
        return
    out.print(f"[bold green]OK[/] {space_file}: space [bold]{space.name}[/]  {space.description}")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("dimensions", f"{len(dims)} free parameters")
    table.add_row("size", "continuous" if size is None else f"{size:,} architectures (before constraints)")
    table.add_row(
        "params (total)",
        f"{fmt_count(small_total.params_total)} .. {fmt_count(large_total.params_total)}  (no embeddings)",
    )
    table.add_row(
        "params (activated)",
        f"{fmt_count(small_act.params_activated)} .. {fmt_count(large_act.params_activated)}",
    )
    table.add_row(
        "training FLOPs/token",
        f"{fmt_flops(small_act.flops_per_token)} .. {fmt_flops(large_act.flops_per_token)}",
    )
    table.add_row(
        f"memory (batch {batch})",
        f"{fmt_bytes(small_total.memory_bytes)} .. {fmt_bytes(large_total.memory_bytes)}",
    )
    table.add_row("smallest", f"{extremes.smallest_total.pattern}  d_model {extremes.smallest_total.d_model}")
    table.add_row("largest", f"{extremes.largest_total.pattern}  d_model {extremes.largest_total.d_model}")
    for name, value in _settings_rows(space):
        table.add_row(name, value)
    out.print(table)


def _settings_rows(space: SearchSpace) -> list[tuple[str, str]]:
    """The proxy and search settings of a space, and what its scale-up stage (if any) will do."""
    p, s = space.proxy, space.search
    budget = describe_budget(space)
    if s.scale_up is None:
        stage = "no scale-up stage (add search.scale_up, or run one later: brainsearch scale-up ID --ladder ...)"
    else:
        rungs = " -> ".join(r.preset for r in s.scale_up.ladder)
        stage = f"top-{s.top_k} and {space.constraints.baseline} scaled up over {rungs}"
        stage += f", predicted at {s.scale_up.target}"
    return [
        (
            "proxy",
            f"{p.num_blocks} x block, seq_len {p.seq_len}, vocab {p.vocab_size}, batch {p.batch_size},"
            f" budget {budget}, data {p.data}",
        ),
        ("search", f"{s.sampler}, {s.trials} trials, objectives {', '.join(s.objectives)}; {stage}"),
    ]


def sample_cmd(
    space_file: SpaceArgument,
    n: Annotated[int, typer.Option("-n", min=1, max=100_000, help="How many architectures.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
) -> None:
    """Print architectures sampled uniformly from a space as JSON, one per line."""
    from brainsearch.space import RandomSuggester, sample

    space = read_space(space_file)
    suggester = RandomSuggester(seed)
    for _ in range(n):
        sys.stdout.write(sample(space, suggester).to_json() + "\n")


def read_architecture(arch_file: str) -> Architecture:
    """An Architecture from a JSON file (``-``: stdin), or from an export document, which carries it under
    ``architecture``; what cannot be read is an ArchitectureError naming the file."""
    source = "<stdin>" if arch_file == "-" else arch_file
    try:
        text = sys.stdin.read() if arch_file == "-" else Path(arch_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ArchitectureError([Problem("", f"cannot read: {reason}", source)]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchitectureError([Problem("", f"not valid JSON: {exc}", source)]) from None
    if isinstance(data, dict) and isinstance(data.get("architecture"), dict):
        data = data["architecture"]
    return Architecture.from_json(data, source=source)


def resolve_architecture(arch: str) -> Architecture:
    """A JSON file, '-' for stdin, or the name of an architecture preset (``glam``, ``brainformer-1`` ...)."""
    if arch != "-" and not Path(arch).exists() and arch in preset_names():
        return preset(arch)
    return read_architecture(arch)


def cost_cmd(
    arch_file: Annotated[
        str | None,
        typer.Argument(
            metavar="ARCH", help=f"Architecture JSON, '-' (stdin) or a preset name: {', '.join(preset_names())}."
        ),
    ] = None,
    preset_name: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help=f"Scale preset to scale ARCH to, with its batch: {', '.join(SCALE_PRESETS)} (as train takes it).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, max=1 << 20, help="For the memory estimate (default: the preset's, or 8)."),
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, or bf16 (autocast, as training on a GPU runs).")
    ] = "fp32",
    micro_batch: Annotated[
        int | None,
        typer.Option("--micro-batch", min=1, help="Sequences per forward on each device (default: its whole share)."),
    ] = None,
    checkpointing: Annotated[
        bool, typer.Option("--checkpointing", help="Activations recomputed per block in the backward pass.")
    ] = False,
    recipe_name: Annotated[
        str | None, typer.Option("--recipe", help=f"Training state: {', '.join(RECIPES)} (default the first).")
    ] = None,
    shards: Annotated[
        str | None, typer.Option("--shards", help="FSDP2 over N devices, each with batch / N sequences.")
    ] = None,
    device_memory: Annotated[
        str | None,
        typer.Option("--device-memory", help="Plan devices of this memory (141GB, 80GiB): how many, which recipe."),
    ] = None,
    gpus: Annotated[
        str | None, typer.Option("--gpus", help="Devices the cluster has, with --device-memory (default 1).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cost as JSON.")] = False,
) -> None:
    """Parameters (total, activated, embedding), training FLOPs per token and the estimated peak training memory
    per device at a micro-batch; with --device-memory, how many devices the run needs and with which recipe (exit 1
    when the cluster has too few)."""
    if arch_file is None and preset_name in preset_names() and preset_name not in SCALE_PRESETS:
        arch_file, preset_name = preset_name, None  # `cost --preset glam`: an architecture preset, as before
    if arch_file is None:
        raise fail([Problem("ARCH", f"give an architecture: a JSON file, '-' or one of {', '.join(preset_names())}")])
    scaled = scale_preset(preset_name) if preset_name is not None else None
    batch_size = batch_size or (scaled.batch_size if scaled is not None else 8)
    if precision not in ("fp32", "bf16"):
        raise fail([Problem("--precision", f"expected fp32 or bf16, got {precision!r}", "cost")])
    num_shards = _count_option("--shards", shards)
    num_gpus = _count_option("--gpus", gpus)
    if recipe_name is not None and recipe_name not in RECIPES:
        raise fail([Problem("--recipe", f"expected one of {', '.join(RECIPES)}, got {recipe_name!r}", "cost")])
    recipe = RECIPES[recipe_name or "fp32-adamw"]
    if num_shards is not None:
        recipe = recipe.model_copy(update={"shards": num_shards})
    if batch_size % recipe.shards:
        raise fail([Problem("--shards", f"{recipe.shards} does not divide --batch-size {batch_size}", "cost")])
    share = batch_size // recipe.shards
    if micro_batch is not None and micro_batch > share:
        what = f"--batch-size {batch_size}" if recipe.shards == 1 else f"each device's share ({share})"
        raise fail([Problem("--micro-batch", f"{micro_batch} is larger than {what}", "cost")])
    if recipe.optimizer_in_backward and micro_batch not in (None, share):
        raise fail(
            [Problem("--micro-batch", f"{recipe_name} steps in the backward: one forward of {share} per step", "cost")]
        )
    memory_bytes = None if device_memory is None else _bytes_option("--device-memory", device_memory)
    if memory_bytes is None and num_gpus is not None:
        raise fail([Problem("--gpus", "needs --device-memory", "cost")])
    if memory_bytes is not None and recipe_name is not None:
        raise fail([Problem("--recipe", "not with --device-memory: the device plan picks the recipe", "cost")])
    arch = resolve_architecture(arch_file)
    if scaled is not None:
        arch = scale(arch, scaled)
    p: Precision = "bf16" if precision == "bf16" else "fp32"
    if memory_bytes is not None:
        name = preset_name or (
            "<stdin>" if arch_file == "-" else arch_file if arch_file in preset_names() else Path(arch_file).stem
        )
        _print_device_plan(
            arch, name, batch_size, p, memory_bytes, num_gpus or 1, num_shards, micro_batch, checkpointing, as_json
        )
        return
    try:
        result = cost(
            arch,
            batch_size=batch_size,
            precision=p,
            micro_batch=micro_batch,
            checkpointing=checkpointing,
            recipe=recipe,
        )
    except ValueError as exc:
        raise fail([Problem("--micro-batch", str(exc), "cost")]) from None
    if as_json:
        sys.stdout.write(json.dumps({**result.model_dump(), "pattern": arch.pattern, "digest": arch.digest}) + "\n")
        return
    _print_cost(arch, result)


def _count_option(option: str, value: str | None) -> int | None:
    """A device count given on the command line (an integer >= 1); anything else exits 2 naming the option."""
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_DEVICES:
        raise fail([Problem(option, f"expected a whole number of devices in 1..{MAX_DEVICES}, got {value!r}", "cost")])
    return count


def _bytes_option(option: str, value: str) -> int:
    """A memory size (``141GB``, ``80GiB``, ``1.4e11``); anything else exits 2 naming the option."""
    from brainsearch.space.schema import parse_quantity

    try:
        parsed = parse_quantity(value)
    except ValueError as exc:
        raise fail([Problem(option, str(exc), "cost")]) from None
    if not isinstance(parsed, float) or not 1 <= parsed <= 2**50:
        raise fail([Problem(option, f"expected a memory size such as 141GB or 80GiB, got {value!r}", "cost")])
    return int(parsed)


def _print_device_plan(
    arch: Architecture,
    name: str,
    batch_size: int,
    precision: Precision,
    memory_bytes: int,
    gpus: int,
    shards: int | None,
    micro_batch: int | None,
    checkpointing: bool,
    as_json: bool,
) -> None:
    """Plan the devices of a run and print the plan and its cost, or the refusal (exit 1)."""
    try:
        dp = plan_devices(
            arch,
            batch_size,
            precision,
            memory_bytes,
            gpus,
            name=name,
            devices=shards,
            micro_batch=micro_batch,
            checkpointing="on" if checkpointing else "auto",
            max_devices=MAX_DEVICES,
        )
    except NotEnoughDevices as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
    plan = dp.plan
    c = cost(
        arch, batch_size, precision, micro_batch=plan.micro_batch, checkpointing=plan.checkpointing, recipe=dp.recipe
    )
    if as_json:
        device_plan = {
            "devices": dp.devices,
            "recipe": dp.recipe.model_dump(),
            "recipe_label": dp.recipe.label,
            "micro_batch": plan.micro_batch,
            "checkpointing": plan.checkpointing,
            "memory_bytes": plan.memory_bytes,
            "limit_bytes": plan.limit_bytes,
            "device_memory_bytes": dp.device_memory_bytes,
        }
        doc = {**c.model_dump(), "pattern": arch.pattern, "digest": arch.digest, "device_plan": device_plan}
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    _print_cost(arch, c)
    units = f"{dp.devices} GPU{'' if dp.devices == 1 else 's'} of {round(dp.device_memory_bytes / 1e9)} GB"
    how = f"micro-batch {plan.micro_batch} of {batch_size // dp.recipe.shards} per device" + (
        ", checkpointing" if plan.checkpointing else ""
    )
    out.print(
        f"{name}: {units}, {dp.recipe.label}, {how}: "
        f"{fmt_bytes(plan.memory_bytes)} per device (limit {fmt_bytes(plan.limit_bytes)})",
        markup=False,
        highlight=False,
    )


def _print_cost(arch: Architecture, c: Cost) -> None:
    table = Table(title=f"{arch.pattern} x {arch.num_blocks}  (d_model {arch.d_model}, digest {arch.digest})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("exact", justify="right")
    table.add_row("params total (no embeddings)", fmt_count(c.params_total), f"{c.params_total:,}")
    table.add_row("params activated per token", fmt_count(c.params_activated), f"{c.params_activated:,}")
    table.add_row("params embedding", fmt_count(c.params_embedding), f"{c.params_embedding:,}")
    table.add_row("training FLOPs / token", fmt_flops(c.flops_per_token), f"{c.flops_per_token:,}")
    table.add_row("  with capacity padding", fmt_flops(c.flops_per_token_padded), f"{c.flops_per_token_padded:,}")
    plan = f"micro-batch {c.micro_batch} of {c.batch_size}, {c.precision}, {c.recipe.label}" + (
        ", checkpointing" if c.checkpointing else ""
    )
    table.add_row(f"training memory, peak per device ({plan})", fmt_bytes(c.memory_bytes), f"{c.memory_bytes:,}")
    table.add_row("  weights, gradients, optimizer", fmt_bytes(c.memory_state_bytes), f"{c.memory_state_bytes:,}")
    if c.memory_gather_bytes:
        table.add_row("    of which FSDP2 gathers", fmt_bytes(c.memory_gather_bytes), f"{c.memory_gather_bytes:,}")
    table.add_row("  activations and logits", fmt_bytes(c.memory_activation_bytes), f"{c.memory_activation_bytes:,}")
    table.add_row("layers attention / ffn / moe", f"{c.num_attention} / {c.num_ffn} / {c.num_moe}", "")
    out.print(table)
