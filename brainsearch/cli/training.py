"""The training commands: ``train`` (one proxy run under a budget) and ``expand`` (Lifelong-MoE on a trained
model). torch is imported inside them, when they run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from brainsearch._format import fmt_count
from brainsearch.arch import Architecture
from brainsearch.arch.devices import DevicePlan
from brainsearch.cli.common import DbOption, check_writable, data_dir, err, fail, open_repository, out, run_store
from brainsearch.cli.render import print_wide
from brainsearch.cli.spec import resolve_architecture
from brainsearch.errors import Problem

if TYPE_CHECKING:
    from brainsearch.train import ProxyResult, TrainSettings
    from brainsearch.train.lifelong import ExpansionReport

__all__ = ["expand_cmd", "train_cmd"]


def train_cmd(
    arch_file: Annotated[str, typer.Argument(metavar="ARCH", help="Architecture JSON, '-' (stdin) or a preset name.")],
    scale_name: Annotated[
        str | None, typer.Option("--preset", help="Scale preset: cpu-tiny, cpu-small, 100m-32e, 1b-64e, 8b-64e.")
    ] = None,
    budget_tokens: Annotated[str | None, typer.Option("--budget-tokens", help="Tokens to train on (64K, 1e6).")] = None,
    budget_flops: Annotated[str | None, typer.Option("--budget-flops", help="Training FLOPs (2e12).")] = None,
    budget_seconds: Annotated[str | None, typer.Option("--budget-seconds", help="Wall-clock seconds.")] = None,
    data: Annotated[
        str, typer.Option("--data", help="'default', a text file or folder, .jsonl, .npy/.bin.")
    ] = "default",
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, max=4096)] = None,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    time_limit: Annotated[float | None, typer.Option("--time-limit", min=0.0, help="Hard limit, seconds.")] = None,
    micro_batch: Annotated[
        int | None,
        typer.Option(
            "--micro-batch",
            min=1,
            help="Sequences per forward (divides the batch); default: the largest that fits in memory.",
        ),
    ] = None,
    checkpointing: Annotated[
        str,
        typer.Option("--activation-checkpointing", help="off, auto (only when no micro-batch fits without) or on."),
    ] = "auto",
    compile_model: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile (default: on for CUDA).")
    ] = None,
    memory_limit: Annotated[
        str | None, typer.Option("--memory-limit", help="Training memory per device (80GiB); default 90% of free.")
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(
            "--gpus", min=1, max=4096, help="GPUs to train on (one process each; more than one shards with FSDP2)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=4096, help="Processes to shard over on the CPU (gloo), like --gpus."),
    ] = None,
    launcher: Annotated[
        str, typer.Option("--launcher", help="How several processes start: torchrun (this machine) or ray.")
    ] = "torchrun",
    checkpoint_dir: Annotated[
        str | None,
        typer.Option("--checkpoint-dir", help="Save resumable checkpoints here; resume from the newest one there."),
    ] = None,
    checkpoint_minutes: Annotated[
        float, typer.Option("--checkpoint-minutes", min=0.001, help="Minutes between checkpoints.")
    ] = 10.0,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", min=1, help="Also checkpoint every N steps.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train one proxy model under a budget; exit 0 if it completed, 1 if it diverged, ran out of memory or time.

    The run's devices and training recipe come from the memory model before anything is allocated: on one device
    the leanest recipe that fits (fp32 AdamW, then bf16 weights with Adafactor, then its step inside the
    backward), on --gpus N (or --workers N on the CPU) FSDP2 over them; a run they cannot hold is refused with
    what it needs (exit 1)."""
    from brainsearch.arch.scale import scale, scale_preset

    arch = resolve_architecture(arch_file)
    given = {k: v for k, v in (("tokens", budget_tokens), ("flops", budget_flops), ("seconds", budget_seconds)) if v}
    if len(given) > 1:
        raise fail(
            [Problem("--budget-*", "give at most one of --budget-tokens, --budget-flops, --budget-seconds", "train")]
        )
    options: dict[str, Any] = {"data": data, "data_dir": data_dir(), "seed": seed, "device": device}
    if scale_name:
        p = scale_preset(scale_name)
        arch = scale(arch, p)
        options["batch_size"] = p.batch_size
        options["budget"] = {"tokens": p.budget_tokens}
    if given:
        options["budget"] = given
    options["activation_checkpointing"] = checkpointing
    optional = {
        "batch_size": batch_size,
        "lr": lr,
        "time_limit_s": time_limit,
        "micro_batch": micro_batch,
        "compile": compile_model,
        "memory_limit_bytes": memory_limit,
    }
    for key, value in optional.items():
        if value is not None:
            options[key] = value
    if gpus is not None and workers is not None:
        raise fail([Problem("--gpus", "give --gpus (GPU processes) or --workers (CPU processes), not both", "train")])
    if gpus is not None:
        options["device"] = "cuda"
    if launcher not in ("torchrun", "ray"):
        raise fail([Problem("--launcher", f"expected torchrun or ray, got {launcher!r}", "train")])
    if checkpoint_dir is not None:
        options["checkpoint"] = {
            "dir": str(Path(checkpoint_dir).expanduser().resolve()),
            "interval_s": checkpoint_minutes * 60,
            "every_steps": checkpoint_every,
        }
    settings = _train_settings(options)
    devices = gpus or workers
    plan = _device_plan(arch, settings, devices, scale_name or arch_file)
    if not isinstance(plan, DevicePlan):
        result = plan  # refused
    elif plan.devices > 1:
        result = _train_sharded(arch, settings, plan, launcher, quiet=as_json)
    else:
        result = _train_with_bar(arch, settings.with_recipe(plan.recipe), transient=as_json)
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        _print_train_result(arch, result)
    if result.status != "completed":
        raise typer.Exit(1)


def _device_plan(
    arch: Architecture, settings: TrainSettings, devices: int | None, name: str
) -> DevicePlan | ProxyResult:
    """The devices and recipe of the run: ``devices`` processes (default one), the single-device recipe leanest
    only as far as needed; for a run the hardware cannot hold, an ``out_of_memory`` result naming what it needs."""
    from brainsearch.arch.cost import cost
    from brainsearch.arch.devices import NotEnoughDevices, plan_devices
    from brainsearch.arch.plan import NoPlanFits
    from brainsearch.search.hardware import probe_hardware
    from brainsearch.train import ProxyResult

    hardware = probe_hardware(settings.device)
    if settings.memory_limit_bytes is not None:
        limit = int(settings.memory_limit_bytes / 0.9)  # the planner fills 90% of a device
        hardware = hardware.model_copy(update={"memory_bytes": min(hardware.memory_bytes, limit)})
    try:
        return plan_devices(
            arch,
            settings.batch_size,
            hardware.precision,
            hardware.memory_bytes,
            max(hardware.available, devices or 1),
            name=Path(name).stem if name.endswith(".json") else name,
            unit=hardware.unit,
            devices=devices or 1,
            checkpointing=settings.activation_checkpointing,
            micro_batch=settings.micro_batch,
        )
    except (NotEnoughDevices, NoPlanFits) as refusal:
        c = cost(arch, settings.batch_size, hardware.precision)
        reason = str(refusal)
        if hardware.unit != "GPU":  # a host without GPUs: say what the run needs on them
            reason += f"; on GPUs it needs {_gpus_needed(arch, settings.batch_size, name)}"
        return ProxyResult(
            status="out_of_memory",
            reason=reason,
            arch_digest=arch.digest,
            device=settings.device,
            flops_per_token=c.flops_per_token,
            params_total=c.params_total,
            params_activated=c.params_activated,
        )


# Datasheet memory of the GPUs a refusal on a host without GPUs is worked out for (bf16 weights, as there).
_REFERENCE_GPUS = (("H100", 80 * 10**9), ("H200", 141 * 10**9))


def _gpus_needed(arch: Architecture, batch_size: int, name: str) -> str:
    """``"16 H100s of 80 GB (FSDP2 x 16, fp32 AdamW), or 8 H200s of 141 GB (...)"``: the fewest of each reference
    GPU the memory planner trains ``arch`` on at ``batch_size`` in bf16 (what ``cost --device-memory`` plans)."""
    from brainsearch.arch.devices import NotEnoughDevices, plan_devices
    from brainsearch.arch.plan import NoPlanFits

    needs = []
    for model, memory in _REFERENCE_GPUS:
        try:
            plan = plan_devices(arch, batch_size, "bf16", memory, 4096, name=name, unit=model)
        except (NotEnoughDevices, NoPlanFits):
            needs.append(f"no number of {model}s of {round(memory / 1e9)} GB")
            continue
        plural = "" if plan.devices == 1 else "s"
        needs.append(f"{plan.devices} {model}{plural} of {round(memory / 1e9)} GB in bf16 ({plan.recipe.label})")
    return ", or ".join(needs)


def _train_sharded(
    arch: Architecture, settings: TrainSettings, plan: DevicePlan, launcher: str, *, quiet: bool
) -> ProxyResult:
    """Train over ``plan.devices`` processes; a launch that fails (a rank died) exits 1 with its message."""
    from brainsearch.train.launch import LaunchError
    from brainsearch.train.sharded import train_distributed

    if not quiet:
        err.print(
            f"training on {plan.devices} {'GPUs' if settings.device == 'cuda' else 'processes'}: {plan.recipe.label}"
        )
    try:
        return train_distributed(
            arch,
            settings.with_recipe(plan.recipe),
            plan.plan,
            launcher="ray" if launcher == "ray" else "torchrun",
            use_gpu=settings.device == "cuda",
        )
    except LaunchError as exc:
        err.print(f"[red]failed[/red]: {exc}")
        raise typer.Exit(1) from None


def _train_settings(options: dict[str, Any]) -> TrainSettings:
    """The options as TrainSettings; invalid ones exit 2 naming the field."""
    from pydantic import ValidationError

    from brainsearch._validation import problems_from_validation_error
    from brainsearch.train import TrainSettings

    try:
        return TrainSettings.model_validate(options)
    except ValidationError as exc:
        raise fail(problems_from_validation_error(exc, "train")) from None


def _train_with_bar(arch: Architecture, settings: TrainSettings, *, transient: bool) -> ProxyResult:
    """Train with a progress bar on stderr (steps, when the budget counts tokens; the latest losses)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from brainsearch.train import CurvePoint, train

    total = None
    if settings.budget.tokens is not None:
        total = max(1, -(-int(settings.budget.tokens) // (settings.batch_size * arch.seq_len)))
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=transient,
    ) as progress:
        task = progress.add_task(f"{arch.pattern} x{arch.num_blocks}", total=total, status="")

        def report(point: CurvePoint) -> None:
            shown = f"step {point.step}  loss {point.train_loss:.3f}"
            if point.val_loss is not None:
                shown += f"  val {point.val_loss:.3f}"
            progress.update(task, completed=point.step, status=shown)

        return train(arch, settings, report=report)


def _print_train_result(arch: Architecture, result: ProxyResult) -> None:
    from brainsearch.train.result import HEADLINE_METRICS
    from service._ui_format import fmt_metric  # the dashboard's units: the trial page and this table agree

    table = Table(title=f"{arch.pattern} x {arch.num_blocks}: {result.status}", show_header=False)
    for key in ("reason", *HEADLINE_METRICS):
        value = getattr(result, key)
        if value is not None:
            table.add_row(key, str(value) if key == "reason" else fmt_metric(key, value))
    if result.moe is not None:
        table.add_row("moe load cv / dropped", f"{result.moe.load_cv:.3f} / {result.moe.dropped_fraction:.3f}")
    for text in result.notes:
        table.add_row("note", text)
    out.print(table)


def _weights_source(source: str, db: str | None) -> Path:
    """``TRIAL_OR_WEIGHTS``: a ``.safetensors`` file, ``SEARCH_ID:NUMBER`` (the leaderboard's #) or a trial id, whose
    kept proxy weights are read from the data directory."""
    path = Path(source).expanduser()
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise fail([Problem("TRIAL_OR_WEIGHTS", f"no such weights file: {path}")])
        return path
    from brainsearch.export import WeightsNotKept, kept_weights

    search_part, colon, number_part = source.partition(":")
    if not (search_part.isdigit() and (not colon or number_part.isdigit())):
        raise fail(
            [
                Problem(
                    "TRIAL_OR_WEIGHTS", f"expected a .safetensors file, SEARCH_ID:NUMBER or a trial id, got {source!r}"
                )
            ]
        )
    repo, _ = open_repository(db)
    found = repo.trial_by_number(int(search_part), int(number_part)) if colon else repo.get_trial(int(search_part))
    if found is None:
        raise fail([Problem("TRIAL_OR_WEIGHTS", f"no trial {source} in {repo.engine.url!r}")])
    try:
        return kept_weights(found, run_store(repo))
    except WeightsNotKept as exc:
        raise fail([Problem("TRIAL_OR_WEIGHTS", str(exc))]) from None


def expand_cmd(
    source: Annotated[
        str,
        typer.Argument(
            metavar="TRIAL_OR_WEIGHTS", help="A .safetensors file, SEARCH_ID:NUMBER (leaderboard #) or a trial id."
        ),
    ],
    add_experts: Annotated[int, typer.Option(min=1, help="Experts added to every MoE layer.")],
    data: Annotated[str, typer.Option("--data", help="The new data: a text file or folder, .jsonl, .npy / .bin.")],
    old_data: Annotated[str, typer.Option(help="The data the model was trained on (forgetting is measured on it).")] = (
        "default"
    ),
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps of each method (default 200).")] = None,
    tokens: Annotated[int | None, typer.Option(min=1, help="Or a token budget instead of steps.")] = None,
    kl_weight: Annotated[float, typer.Option(min=0, help="Lambda of the distillation term KL(p_old || p_new).")] = 1.0,
    lr: Annotated[float, typer.Option(min=0, help="Peak learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per step.")] = 8,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the new experts' noise and of the batches.")] = 0,
    baseline: Annotated[bool, typer.Option(help="Also fine-tune the old model plainly, for comparison.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Save the expanded model (.safetensors).")] = (
        None
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Lifelong-MoE (arXiv 2305.12281): add experts to every MoE layer of a trained model (compute per token
    unchanged), freeze the old experts and their router rows, train on new data with a distillation term toward the
    old model, and report the loss on the old and the new data before and after, against plain fine-tuning."""
    from pydantic import ValidationError

    from brainsearch._validation import problems_from_validation_error
    from brainsearch.train.lifelong import ExpansionSettings, expand

    try:
        settings = ExpansionSettings(
            steps=steps,
            tokens=tokens,
            kl_weight=kl_weight,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            baseline=baseline,
            device=device,
        )
    except ValidationError as exc:
        raise fail(problems_from_validation_error(exc, "options")) from None
    weights = _weights_source(source, db)
    if output is not None:
        check_writable(output, ".safetensors")
    try:
        with err.status(f"expanding {weights.name}: +{add_experts} experts per MoE layer, training on {data}"):
            report = expand(weights, add_experts, data, old_data, settings, data_dir=data_dir(), output=output)
    except OSError as exc:  # the weights could not be written after all (a full disk, say)
        raise fail([Problem("--output", f"cannot write {output}: {exc.strerror or exc}")]) from None
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        return
    _print_expansion(report, output)


def _print_expansion(report: ExpansionReport, output: Path | None) -> None:
    """Losses on the old and the new data before and after each method, then the parameter counts."""
    table = Table(
        title=f"Lifelong-MoE: experts {report.experts_before} -> {report.experts_after}, {report.steps} steps"
    )
    for column in ("model", "old data loss", "new data loss", "forgetting", "new-data gain"):
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row("before", f"{report.before.old:.4f}", f"{report.before.new:.4f}", "", "")
    for method in (report.lifelong, report.plain):
        if method is None:
            continue
        name = f"lifelong (lambda {report.kl_weight:g})" if method.method == "lifelong" else "plain fine-tuning"
        if method.losses is None:
            table.add_row(name, "", "", "", method.log.reason or method.log.status)
            continue
        table.add_row(
            name,
            f"{method.losses.old:.4f}",
            f"{method.losses.new:.4f}",
            f"{method.forgetting:+.4f}" if method.forgetting is not None else "",
            f"{method.new_gain:+.4f}" if method.new_gain is not None else "",
        )
    print_wide(table)
    out.print(
        f"activated parameters {fmt_count(report.params_activated_before)} -> "
        f"{fmt_count(report.params_activated_after)}, total {fmt_count(report.params_total_before)} -> "
        f"{fmt_count(report.params_total_after)}"
        + (f"; expanded weights saved to {output}" if output is not None else ""),
        markup=False,
    )
