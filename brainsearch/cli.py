"""The ``brainsearch`` command.

Bad input exits with status 2 and one line per problem, ``FILE: dotted.path: message``, on stderr; never a
traceback. Heavy imports (torch, the service) happen inside the commands that need them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperOption

from brainsearch import __version__
from brainsearch._format import fmt_bytes, fmt_count, fmt_flops
from brainsearch.arch import Architecture, Cost, cost, preset, preset_names
from brainsearch.errors import ArchitectureError, BrainsearchError, Problem

__all__ = ["app", "main"]

app = typer.Typer(
    name="brainsearch",
    help="Neural architecture search for Brainformer-style Mixture-of-Experts blocks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"brainsearch {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Neural architecture search for Brainformer-style Mixture-of-Experts blocks."""


SearchIdArgument = Annotated[int, typer.Argument(metavar="SEARCH_ID", help="The search.")]


def _display_type(self: TyperOption, ctx: Any) -> str | None:
    # Typer's help shows every option's type, flags included ("--json <bool>", "--help <bool>"), as if a flag took
    # a value; a flag's row shows none.
    return None if self.is_flag else _typer_display_type(self, ctx)


_typer_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _display_type  # type: ignore[method-assign]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2


def _fail(problems: tuple[Problem, ...] | list[Problem]) -> typer.Exit:
    for problem in problems:
        err.print(str(problem), markup=False, highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)


@app.command()
def validate(
    space_file: Annotated[str, typer.Argument(metavar="SPACE.yaml", help="A space file or a bundled space name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check a search-space file; print its dimensions, size and cost range (exit 2 on problems)."""
    from brainsearch.space import bounds, dimensions, load_space, space_size

    space = load_space(space_file)
    extremes = bounds(space)
    assert extremes is not None, "load_space rejects spaces without a feasible assignment"
    batch = space.proxy.batch_size
    small_total, large_total, small_act, large_act = extremes.cost_range(batch)
    dims = dimensions(space)
    size = space_size(space)
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
    if as_json:
        out.print_json(json.dumps(summary))
        return
    p, s = space.proxy, space.search
    budget = next(f"{fmt_count(v)} {k}" for k, v in p.budget.model_dump().items() if v is not None)
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
    table.add_row(
        "proxy",
        f"{p.num_blocks} x block, seq_len {p.seq_len}, vocab {p.vocab_size}, batch {p.batch_size},"
        f" budget {budget}, data {p.data}",
    )
    if s.scale_up is None:
        stage = "no scale-up stage (add search.scale_up, or run one later: brainsearch scale-up ID --ladder ...)"
    else:
        rungs = " -> ".join(r.preset for r in s.scale_up.ladder)
        stage = f"top-{s.top_k} and {space.constraints.baseline} scaled up over {rungs}"
        stage += f", predicted at {s.scale_up.target}"
    table.add_row("search", f"{s.sampler}, {s.trials} trials, objectives {', '.join(s.objectives)}; {stage}")
    out.print(table)


@app.command("sample")
def sample_cmd(
    space_file: Annotated[str, typer.Argument(metavar="SPACE.yaml", help="A space file or a bundled space name.")],
    n: Annotated[int, typer.Option("-n", min=1, max=100_000, help="How many architectures.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
) -> None:
    """Print architectures sampled uniformly from a space as JSON, one per line."""
    from brainsearch.space import RandomSuggester, load_space, sample

    space = load_space(space_file)
    suggester = RandomSuggester(seed)
    for _ in range(n):
        sys.stdout.write(sample(space, suggester).to_json() + "\n")


def _read_architecture(arch_file: str) -> Architecture:
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
    # An export document carries the architecture under "architecture".
    if isinstance(data, dict) and isinstance(data.get("architecture"), dict):
        data = data["architecture"]
    return Architecture.from_json(data, source=source)


@app.command("cost")
def cost_cmd(
    arch_file: Annotated[
        str | None, typer.Argument(metavar="ARCH.json", help="Architecture JSON ('-': stdin).")
    ] = None,
    preset_name: Annotated[str | None, typer.Option("--preset", help=f"One of: {', '.join(preset_names())}.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1 << 20, help="For the memory estimate.")] = 8,
    precision: Annotated[str, typer.Option("--precision", help="Activation precision: fp32 or bf16.")] = "fp32",
    as_json: Annotated[bool, typer.Option("--json", help="Print the cost as JSON.")] = False,
) -> None:
    """Parameters (total, activated, embedding), training FLOPs per token and a training-memory estimate."""
    if (arch_file is None) == (preset_name is None):
        raise _fail([Problem("", "give exactly one of ARCH.json or --preset NAME", "cost")])
    if precision not in ("fp32", "bf16"):
        raise _fail([Problem("--precision", f"expected fp32 or bf16, got {precision!r}", "cost")])
    arch = preset(preset_name) if preset_name else _read_architecture(str(arch_file))
    result = cost(arch, batch_size=batch_size, precision="bf16" if precision == "bf16" else "fp32")
    if as_json:
        sys.stdout.write(json.dumps({**result.model_dump(), "pattern": arch.pattern, "digest": arch.digest}) + "\n")
        return
    _print_cost(arch, result)


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
    table.add_row(
        f"training memory (batch {c.batch_size}, {c.precision})",
        fmt_bytes(c.memory_bytes),
        f"{c.memory_bytes:,}",
    )
    table.add_row("layers attention / ffn / moe", f"{c.num_attention} / {c.num_ffn} / {c.num_moe}", "")
    out.print(table)


def _resolve_architecture(arch: str) -> Architecture:
    """A JSON file, '-' for stdin, or the name of an architecture preset (``glam``, ``brainformer-1`` ...)."""
    if arch != "-" and not Path(arch).exists() and arch in preset_names():
        return preset(arch)
    return _read_architecture(arch)


@app.command("train")
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train one proxy model under a budget; exit 0 if it completed, 1 if it diverged, ran out of memory or time."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from brainsearch._validation import problems_from_validation_error
    from brainsearch.arch.scale import scale, scale_preset

    arch = _resolve_architecture(arch_file)
    given = {k: v for k, v in (("tokens", budget_tokens), ("flops", budget_flops), ("seconds", budget_seconds)) if v}
    if len(given) > 1:
        raise _fail(
            [Problem("--budget-*", "give at most one of --budget-tokens, --budget-flops, --budget-seconds", "train")]
        )
    options: dict[str, Any] = {"data": data, "seed": seed, "device": device}
    if scale_name:
        p = scale_preset(scale_name)
        arch = scale(arch, p)
        options["batch_size"] = p.batch_size
        options["budget"] = {"tokens": p.budget_tokens}
    if given:
        options["budget"] = given
    for key, value in (("batch_size", batch_size), ("lr", lr), ("time_limit_s", time_limit)):
        if value is not None:
            options[key] = value
    from brainsearch.train import CurvePoint, TrainSettings, train
    from brainsearch.train.result import HEADLINE_METRICS

    try:
        settings = TrainSettings.model_validate(options)
    except ValidationError as exc:
        raise _fail(problems_from_validation_error(exc, "train")) from None
    total = None
    if settings.budget.tokens is not None:
        total = max(1, -(-int(settings.budget.tokens) // (settings.batch_size * arch.seq_len)))
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=as_json,
    ) as progress:
        task = progress.add_task(f"{arch.pattern} x{arch.num_blocks}", total=total, status="")

        def report(point: CurvePoint) -> None:
            shown = f"step {point.step}  loss {point.train_loss:.3f}"
            if point.val_loss is not None:
                shown += f"  val {point.val_loss:.3f}"
            progress.update(task, completed=point.step, status=shown)

        result = train(arch, settings, report=report)
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        table = Table(title=f"{arch.pattern} x {arch.num_blocks}: {result.status}", show_header=False)
        for key in ("reason", *HEADLINE_METRICS):
            value = getattr(result, key)
            if value is not None:
                table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        if result.moe is not None:
            table.add_row("moe load cv / dropped", f"{result.moe.load_cv:.3f} / {result.moe.dropped_fraction:.3f}")
        out.print(table)
    if result.status != "completed":
        raise typer.Exit(1)


DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $BRAINSEARCH_DATABASE_URL, else SQLite in the data directory)."),
]


def _repository(db: str | None) -> tuple[Any, str]:
    """The repository on ``db`` (schema migrated) and the URL the trials' workers use."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from brainsearch.settings import get_settings
    from brainsearch.storage import Repository, make_engine, migrate

    url = db or get_settings().resolved_database_url
    try:
        engine = make_engine(url)
        migrate(engine)
    except (ArgumentError, SQLAlchemyError, OSError) as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__
        raise _fail([Problem("--db", f"cannot use database {url!r}: {first}")]) from None
    return Repository(engine), engine.url.render_as_string(hide_password=False)


def _follow(repo: Any, search_id: int, url: str) -> Any:
    """Run (or resume) a stored search in the foreground with a live progress bar; returns the finished search."""
    import signal

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _drive(repo, search_id, url)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bar_state(p: dict[str, Any]) -> tuple[int, int | None, str]:
    """``(completed, total, text)`` for a progress bar from a search's progress (the API's ``progress`` or the
    driver's, as a dict): the stage leads ("baselines", "trials", "scale-up 2/6"), the states are counted apart
    ("3/3 done: 1 completed, 2 pruned", never "3/3 completed"), and the scale-up stage moves the bar on its own
    count."""
    stage = p.get("stage") or "trials"
    done, total = p["completed"] + p["pruned"] + p["failed"], p["requested"]
    if stage.startswith("scale-up ") and "/" in stage:
        ran, _, planned = stage.removeprefix("scale-up ").partition("/")
        done, total = int(ran), int(planned)
    counts = f"{p['completed']} completed, {p['pruned']} pruned, {p['failed'] + p['crashed']} failed"
    best = f"best {p['best_val_loss']:.4f} (#{p['best_number']})" if p.get("best_val_loss") is not None else "best -"
    base = "  ".join(f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in p.get("baselines", {}).items())
    return done, total, f"[bold]{stage}[/]  {counts}, {p['running']} running  {best}  [dim]baselines: {base or '-'}[/]"


def _drive(repo: Any, search_id: int, url: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from brainsearch.search.driver import Progress as SearchProgress
    from brainsearch.search.driver import SearchDriver

    with Progress(
        TextColumn("[bold]search {task.fields[id]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("trials", total=None, id=search_id, status="starting")

        def on_progress(p: SearchProgress) -> None:
            done, total, status = _bar_state(vars(p))
            bar.update(task, total=total, completed=done, status=status)

        driver = SearchDriver(
            repo, search_id, url, on_progress=on_progress, on_note=lambda text: bar.console.print(f"note: {text}")
        )
        return driver.run()


def _print_wide(table: Table) -> None:
    """A table on stdout; piped output is not cut to 80 columns: a row is read whole."""
    (out if out.is_terminal else Console(width=160)).print(table)


def _print_leaderboard(
    rows: list[dict[str, Any]],
    search_id: int,
    total: int,
    reference: tuple[str, float | None],
    sort: str = "val_loss",
) -> None:
    """The leaderboard table of trial rows (the API's or the repository's, as dicts), compared with the search's
    reference baseline ``(name, validation loss)``. Ranks count completed trials, not baselines: ``export --rank N``
    exports the row ranked N."""
    name, reference_loss = reference
    table = Table(title=f"search {search_id}: {total} trials (baselines included), by {sort}")
    for column in ("rank", "#", "block", "state", "val loss", f"vs {name}", "step ms", "activated", "note"):
        table.add_column(column, justify="right" if column not in ("block", "state", "note") else "left")
    rank = 0
    for r in rows:
        loss, step = r["val_loss"], r["step_time_s"]
        vs = f"{loss - reference_loss:+.4f}" if reference_loss is not None and loss is not None else ""
        ranked = r["state"] == "completed" and not r["is_baseline"]
        rank += ranked
        table.add_row(
            str(rank) if ranked else "",
            str(r["number"]),
            r["pattern"],
            r["state"],
            f"{loss:.4f}" if loss is not None else "",
            vs,
            f"{step * 1e3:.1f}" if step is not None else "",
            fmt_count(r["params_activated"]),
            _note(r),
        )
    _print_wide(table)
    if total > len(rows):
        out.print(f"({total - len(rows)} more: brainsearch leaderboard {search_id} --limit N)")


def _note(row: dict[str, Any], width: int = 100) -> str:
    """A leaderboard row's note: the baseline's name, or the reason, shortened at a word boundary (never mid-word)."""
    import textwrap

    if row["is_baseline"]:
        return f"{row['baseline_name']} baseline"
    return textwrap.shorten(row["reason"] or "", width, placeholder=" …")


def _repo_leaderboard(repo: Any, search_id: int, sort: str = "val_loss", limit: int = 20) -> None:
    from dataclasses import asdict

    page = repo.list_trials(search_id, sort=sort, limit=limit)
    _print_leaderboard([asdict(t) for t in page.items], search_id, page.total, _repo_reference(repo, search_id), sort)


def _repo_reference(repo: Any, search_id: int) -> tuple[str, float | None]:
    """The search's reference baseline and its validation loss, from the database."""
    from brainsearch.search.driver import reference_baseline

    name = reference_baseline(repo.get_search(search_id))
    return name, next((t.val_loss for t in repo.baselines(search_id) if t.baseline_name == name and t.val_loss), None)


def _remote_reference(search: dict[str, Any]) -> tuple[str, float | None]:
    """The search's reference baseline and its validation loss, from the API's search document."""
    name = search["reference_baseline"]
    return name, search["progress"]["baselines"].get(name)


@app.command("search")
def search_cmd(
    space_file: Annotated[str, typer.Argument(metavar="SPACE.yaml", help="A space file or a bundled space name.")],
    trials: Annotated[int | None, typer.Option(help="Trials to run (default: the space's search.trials).")] = None,
    sampler: Annotated[str | None, typer.Option(help="evolution, random, tpe or nsga2.")] = None,
    executor: Annotated[str | None, typer.Option(help="local (processes) or ray.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Trials at once.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler and training seed.")] = None,
    pruner: Annotated[str | None, typer.Option(help="none, baseline, median or successive_halving.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads per trial (default: cores / concurrency).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    ray_address: Annotated[str | None, typer.Option(help="An existing Ray cluster (default: a local Ray).")] = None,
    gpus_per_trial: Annotated[float, typer.Option(help="GPUs each Ray trial reserves.")] = 0.0,
    memory_per_trial: Annotated[
        str | None, typer.Option(help="Memory a local trial may allocate, e.g. 4GiB (past it: out_of_memory).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the search (default: the space's).")] = None,
    top_k: Annotated[int | None, typer.Option(help="Candidates the scale-up stage trains again.")] = None,
    scale_up: Annotated[
        str | None,
        typer.Option(
            help="Scale-up ladder, e.g. cpu-tiny,cpu-small:100K (preset[:token budget], comma-separated); "
            "default: the space's search.scale_up"
        ),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Scale preset the scaling law predicts at.")] = None,
    db: DbOption = None,
) -> None:
    """Run a search in the foreground: baselines, then trials, with a progress bar; print the leaderboard (and the
    scale-up stage's report when the search has one)."""
    from pydantic import ValidationError

    from brainsearch._validation import problems_from_validation_error
    from brainsearch.search.driver import RunOptions, create_search
    from brainsearch.settings import get_settings
    from brainsearch.space import load_space

    space = load_space(space_file)
    overrides: dict[str, Any] = {
        k: v
        for k, v in (
            ("trials", trials),
            ("sampler", sampler),
            ("concurrency", concurrency),
            ("seed", seed),
            ("pruner", pruner),
            ("top_k", top_k),
        )
        if v is not None
    }
    if scale_up is not None or target is not None:
        overrides["scale_up"] = _scale_up_option(space, scale_up, target)
    try:
        options = RunOptions(
            executor=executor or get_settings().executor,
            threads_per_trial=threads,
            device=device,
            ray_address=ray_address or get_settings().ray_address,
            gpus_per_trial=gpus_per_trial,
            memory_per_trial=memory_per_trial,
        )
    except ValidationError as exc:
        raise _fail(problems_from_validation_error(exc, "options")) from None
    repo, url = _repository(db)
    search, _ = create_search(repo, space, name=name, overrides=overrides, options=options)
    err.print(
        f"search {search.id} of space {space.name}: stored in {repo.engine.url!r}; resume it with "
        f"`brainsearch resume {search.id}`" + (f" --db {db}" if db else "")
    )
    _finish(repo, search.id, url)


@app.command("resume")
def resume_cmd(
    search_id: Annotated[int, typer.Argument(metavar="SEARCH_ID", help="The search to resume.")],
    db: DbOption = None,
) -> None:
    """Resume a stopped search from the database: finished trials are kept, interrupted ones retried."""
    repo, url = _repository(db)
    if repo.get_search(search_id) is None:
        raise _fail([Problem("SEARCH_ID", f"no search {search_id} in {repo.engine.url!r}")])
    _finish(repo, search_id, url)


def _scale_up_option(space: Any, ladder: str | None, target: str | None) -> dict[str, Any]:
    """``--scale-up`` / ``--target`` over the space's own ``search.scale_up``."""
    current = space.search.scale_up.model_dump(mode="json") if space.search.scale_up else {}
    if ladder is not None:
        current["ladder"] = _ladder_document(ladder, {})["ladder"]
    if target is not None:
        current["target"] = target
    if "ladder" not in current:
        raise _fail([Problem("--target", "the space has no scale-up ladder: give --scale-up too")])
    return current


def _finish(repo: Any, search_id: int, url: str) -> None:
    search = _follow(repo, search_id, url)
    _repo_leaderboard(repo, search_id)
    if search.settings.get("search", {}).get("scale_up"):
        _print_scale_up(_repo_scale_up(repo, search_id))
    if search.status != "completed":
        err.print(f"search {search_id} {search.status}: {search.error}", markup=False)
        raise typer.Exit(1)


ServerOption = Annotated[
    str | None, typer.Option("--server", envvar="BRAINSEARCH_SERVER", help="A brainsearch service's URL.")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="BRAINSEARCH_API_TOKEN", help="Bearer token of the service.")
]


@app.command("leaderboard")
def leaderboard_cmd(
    search_id: SearchIdArgument,
    sort: Annotated[str, typer.Option(help="val_loss, step_time_s, params_activated, mfu, tokens_per_s, ...")] = (
        "val_loss"
    ),
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trials as JSON lines.")] = False,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """The ranked trials of a search (from a database, or a service with --server): completed by validation
    loss, then pruned and failed ones."""
    from brainsearch.storage import TRIAL_SORT_KEYS

    if sort not in TRIAL_SORT_KEYS:
        raise _fail([Problem("--sort", f"must be one of {', '.join(TRIAL_SORT_KEYS)}, got {sort!r}")])
    if server:
        from brainsearch.client import Client

        client = Client(server, token)
        page = client.trials(search_id, sort=sort, limit=limit)
        rows, total, reference = page["items"], page["total"], _remote_reference(client.search(search_id))
    else:
        from dataclasses import asdict

        repo, _ = _repository(db)
        if repo.get_search(search_id) is None:
            raise _fail([Problem("SEARCH_ID", f"no search {search_id} in {repo.engine.url!r}")])
        trial_page = repo.list_trials(search_id, sort=sort, limit=limit)
        rows, total = [asdict(t) for t in trial_page.items], trial_page.total
        reference = _repo_reference(repo, search_id)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return
    _print_leaderboard(rows, search_id, total, reference, sort)


@app.command("submit")
def submit_cmd(
    space_file: Annotated[str, typer.Argument(metavar="SPACE.yaml", help="A space file or a bundled space name.")],
    server: ServerOption = None,
    token: TokenOption = None,
    trials: Annotated[int | None, typer.Option(help="Trials to run.")] = None,
    sampler: Annotated[str | None, typer.Option(help="evolution, random, tpe or nsga2.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the search.")] = None,
) -> None:
    """Submit a search to a service; the space file is checked here first (the same messages as validate)."""
    from brainsearch.client import Client
    from brainsearch.space import bundled_space_names, load_space

    if not server:
        raise _fail([Problem("--server", "give the service's URL (or BRAINSEARCH_SERVER)")])
    space: str | dict[str, Any] = space_file
    if not (space_file in bundled_space_names() and not Path(space_file).exists()):
        space = load_space(space_file).model_dump(mode="json")
    body = {"space": space, "trials": trials, "sampler": sampler, "name": name}
    search = Client(server, token).submit({k: v for k, v in body.items() if v is not None})
    sys.stdout.write(f"{search['id']}\n")
    err.print(f"search {search['id']} queued on {server}; follow it with `brainsearch status {search['id']}`")


def _follow_remote(client: Any, search_id: int, follow: bool = True, interval: float = 2.0) -> dict[str, Any]:
    """Poll a search on a service with a progress bar until it ends (or once, without ``follow``)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    search: dict[str, Any] = client.search(search_id)
    with Progress(
        TextColumn(f"[bold]search {search_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not follow,
    ) as bar:
        task = bar.add_task("trials", total=search["trials_requested"], status=search["status"])
        while True:
            done, total, shown = _bar_state(search["progress"])
            bar.update(task, total=total, completed=done, status=shown)
            if not follow or search["status"] not in ("queued", "running"):
                return search
            time.sleep(interval)
            search = client.search(search_id)


@app.command("status")
def status_cmd(
    search_id: SearchIdArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    follow: Annotated[bool, typer.Option(help="Follow the search with a progress bar until it ends.")] = True,
    interval: Annotated[float, typer.Option(min=0.2, max=600, help="Seconds between polls.")] = 2.0,
) -> None:
    """A search's status on a service; with --follow (default), a progress bar until it ends."""
    from brainsearch.client import Client

    if not server:
        raise _fail([Problem("--server", "give the service's URL (or BRAINSEARCH_SERVER)")])
    search = _follow_remote(Client(server, token), search_id, follow, interval)
    sys.stdout.write(json.dumps({k: search[k] for k in ("id", "status", "error", "progress")}) + "\n")
    if search["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to bind (a non-loopback one needs a token).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8000,
    token: Annotated[
        str | None, typer.Option(envvar="BRAINSEARCH_API_TOKEN", help="Bearer token required on writes.")
    ] = None,
    worker: Annotated[bool, typer.Option(help="Run an embedded worker for queued searches.")] = True,
    db: DbOption = None,
) -> None:
    """The REST API (OpenAPI at /docs) with an embedded worker running queued searches."""
    import uvicorn

    from brainsearch.settings import get_settings
    from service.app import create_app

    if host not in _LOOPBACK and not token:
        raise _fail([Problem("--host", f"binding {host} needs a token (--token or BRAINSEARCH_API_TOKEN)")])
    repo, url = _repository(db)  # a bad database is a clear error before the server starts
    settings = get_settings()
    hosts = ["*"] if host in ("0.0.0.0", "::") else list(dict.fromkeys([*settings.allowed_hosts, host]))
    settings = settings.model_copy(update={"database_url": url, "api_token": token, "allowed_hosts": hosts})
    err.print(f"brainsearch API on http://{host}:{port}/api/v1 (docs at /docs); database {repo.engine.url!r}")
    config = uvicorn.Config(
        create_app(settings, embedded_worker=worker),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    uvicorn.Server(config).run()
    _exit_if_threads_linger()


# SIGTERM: requests in flight get this long to finish, then the server closes (the embedded worker requeues its
# search as it stops).
GRACEFUL_SHUTDOWN_S = 3


def _exit_if_threads_linger() -> None:
    """After the server stopped: a request handler still computing in a worker thread (threads cannot be
    cancelled) would keep the process alive, burning CPU, past SIGTERM. The state that matters is in the database,
    so the process ends here instead of waiting for it."""
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@app.command("worker")
def worker_cmd(
    executor: Annotated[str | None, typer.Option(help="Run every search with this executor: local or ray.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="The Ray cluster for the ray executor.")] = None,
    lease: Annotated[float, typer.Option(min=1.0, max=3600.0, help="Lease seconds (renewed every third).")] = 30.0,
    once: Annotated[bool, typer.Option(help="Run the queued searches, then exit.")] = False,
    db: DbOption = None,
) -> None:
    """A standalone worker: claims queued searches from a shared database and runs them (SIGTERM requeues)."""
    import logging
    import signal

    from service.worker import Worker

    if executor not in (None, "local", "ray"):
        raise _fail([Problem("--executor", f"must be local or ray, got {executor!r}")])
    repo, url = _repository(db)
    options = {k: v for k, v in (("executor", executor), ("ray_address", ray_address)) if v is not None}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    w = Worker(repo, url, lease_seconds=lease, options=options or None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: w.shutdown())
    err.print(f"worker {w.name} on {repo.engine.url!r}")
    if once:
        while w.run_once() is not None:
            pass
        return
    w.run_forever()


def _remote_export(
    client: Any, search_id: int, fmt: str, pick: tuple[int | None, int | None, int | None]
) -> tuple[dict[str, Any], bytes, bytes | None]:
    """The trial ``pick`` = (id, number, rank) names, its export and (for weights) its JSON spec, from a service."""
    trial, number, rank = pick
    row: dict[str, Any] | None = None
    if trial is not None:
        row = client.get_trial(trial)
        if row["search_id"] != search_id:
            raise _fail([Problem("--trial", f"search {search_id} has no trial with id {trial}")])
    else:
        wanted, offset, completed = rank or 1, 0, 0
        while row is None:
            page = client.trials(search_id, limit=500, offset=offset)  # validation-loss order, completed first
            for r in page["items"]:
                if number is not None and r["number"] == number:
                    row = r
                elif number is None and r["state"] == "completed" and not r["is_baseline"]:
                    completed += 1
                    row = r if completed == wanted else None
                if row is not None:
                    break
            offset += len(page["items"])
            if row is None and (not page["items"] or offset >= page["total"]):
                raise _fail([_missing(search_id, number, rank, completed)])
    body = client.download(row["id"], fmt)
    return row, body, client.download(row["id"], "json") if fmt == "safetensors" else None


def _missing(search_id: int, number: int | None, rank: int | None, completed: int) -> Problem:
    if number is not None:
        return Problem("--number", f"search {search_id} has no trial #{number}")
    return Problem("--rank", f"search {search_id} has {completed} completed trial(s), not {rank or 1}")


@app.command("export")
def export_cmd(
    search_id: SearchIdArgument,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="json | yaml (spec), pytorch (standalone .py), safetensors (weights)")
    ] = "json",
    trial: Annotated[int | None, typer.Option(help="The trial's id (as the API and dashboard show it).")] = None,
    number: Annotated[int | None, typer.Option(help="Or its number in the search (the leaderboard's #).")] = None,
    rank: Annotated[int | None, typer.Option(min=1, help="Or the N-th best completed trial (default: the best).")] = (
        None
    ),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: the data dir's search folder)."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Export a trial: its architecture spec (JSON / YAML, with the search, trial, cost and metrics), a standalone
    PyTorch file (only torch imports, a build() function), or the trained proxy's weights (safetensors, with the
    JSON spec written beside them)."""
    from dataclasses import asdict

    from brainsearch.export import EXPORT_FORMATS, WeightsNotKept, export_file
    from brainsearch.settings import get_settings
    from brainsearch.store import RunStore

    if fmt not in EXPORT_FORMATS:
        raise _fail([Problem("--format", f"must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")])
    if sum(x is not None for x in (trial, number, rank)) > 1:
        raise _fail([Problem("--trial", "give one of --trial, --number and --rank")])
    if output is not None and fmt == "safetensors":
        _check_writable(output, ".safetensors")  # the spec goes beside it as .json
    if server:
        from brainsearch.client import Client

        client = Client(server, token)
        row, body, spec = _remote_export(client, search_id, fmt, (trial, number, rank))
        store = RunStore(get_settings().data_dir, client.health()["database_id"])
    else:
        repo, _ = _repository(db)
        if repo.get_search(search_id) is None:
            raise _fail([Problem("SEARCH_ID", f"no search {search_id} in {repo.engine.url!r}")])
        if trial is not None:
            picked = repo.get_trial(trial)
            if picked is None or picked.search_id != search_id:
                raise _fail([Problem("--trial", f"search {search_id} has no trial with id {trial}")])
        elif number is not None:
            picked = repo.trial_by_number(search_id, number)
            if picked is None:
                raise _fail([_missing(search_id, number, None, 0)])
        else:
            page = repo.list_trials(search_id, state="completed", is_baseline=False, limit=rank or 1)
            if len(page.items) < (rank or 1):
                raise _fail([_missing(search_id, None, rank, page.total)])
            picked = page.items[-1]
        row = asdict(picked)
        store = RunStore(get_settings().data_dir, repo.database_id())
        try:
            body = export_file(picked, fmt, store).read()  # type: ignore[arg-type]
        except WeightsNotKept as exc:
            raise _fail([Problem("--format", str(exc))]) from None
        spec = export_file(picked, "json", store).read() if fmt == "safetensors" else None
    if output is None:  # in the search's folder of its database's run store: never another database's file
        suffix = EXPORT_FORMATS[fmt][0]
        output = store.exports_dir(search_id) / f"trial{row['number']}.{suffix}"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(body)
        if spec is not None:
            output.with_suffix(".json").write_bytes(spec)
    except OSError as exc:
        raise _fail([Problem("--output", f"cannot write {output}: {exc.strerror or exc}")]) from None
    beside = f" (spec beside it: {output.with_suffix('.json')})" if spec is not None else ""
    out.print(
        f"trial #{row['number']} (id {row['id']}, {row['pattern']}) exported as {fmt} to {output}{beside}", markup=False
    )


def _print_scale_up(report: dict[str, Any]) -> None:
    """The scale-up report as tables: candidates per rung, then predictions at the target scale."""
    if not report["candidates"]:
        out.print("scale-up: no candidates yet" if report["configured"] else "scale-up: not configured for this search")
        return
    table = Table(title=f"search {report['search_id']}: scale-up over {' -> '.join(report['ladder'])}")
    for column in ("candidate", "block", "proxy loss", "rung", "val loss", "steps/s vs base", "convergence", "state"):
        table.add_column(column, justify="left" if column in ("candidate", "block", "rung", "state") else "right")
    for c in report["candidates"]:
        for i, r in enumerate(c["rungs"]):
            ratio, conv = r["steps_per_s_ratio"], r["convergence_speedup"]
            conv_text = (
                f"{conv:.2f}x" if conv is not None else ("not reached" if r["reached_baseline_loss"] is False else "")
            )
            table.add_row(
                c["label"] if i == 0 else "",
                c["pattern"] if i == 0 else "",
                f"{c['proxy_val_loss']:.4f}" if i == 0 and c["proxy_val_loss"] is not None else "",
                r["rung"],
                f"{r['val_loss']:.4f}" if r["val_loss"] is not None else "",
                f"{ratio:.2f}x" if ratio is not None else "",
                conv_text,
                r["state"],
            )
    _print_wide(table)
    fidelity = ", ".join(
        f"{rung} " + (f"{tau:+.2f}" if tau is not None else "-") + f" ({report['fidelity_pairs'][rung]} candidates)"
        for rung, tau in report["fidelity"].items()
    )
    out.print(f"proxy fidelity (Kendall tau, proxy vs rung ranking): {fidelity}")
    law = Table(title=f"{report['law']} law in {report['scale_by']}, predicted at {report['target']}")
    for column in ("candidate", "proxy rank", "predicted rank", "predicted loss", "95% band", "note"):
        law.add_column(column, justify="left" if column in ("candidate", "note") else "right")
    for c in sorted(report["candidates"], key=lambda c: c["predicted_rank"] or 10**9):
        p = c["prediction"]
        law.add_row(
            c["label"],
            str(c["proxy_rank"]),
            str(c["predicted_rank"] or ""),
            f"{p['predicted_loss']:.4f}" if p else "",
            f"{p['low']:.4f} - {p['high']:.4f}" if p else "",
            c["prediction_error"] or "",
        )
    _print_wide(law)


@app.command("scale-up")
def scale_up_cmd(
    search_id: SearchIdArgument,
    target: Annotated[str | None, typer.Option(help="Scale preset to predict at (default: the search's).")] = None,
    law: Annotated[str | None, typer.Option(help="kaplan | chinchilla (default: the search's).")] = None,
    scale_by: Annotated[str | None, typer.Option(help="params_activated | compute (default: the search's).")] = None,
    ladder: Annotated[
        str | None,
        typer.Option(
            help="Run the stage first, for a finished search: a ladder such as cpu-tiny,cpu-small:100K "
            "(preset[:token budget], comma-separated); trials are kept, recorded runs not trained again"
        ),
    ] = None,
    top_k: Annotated[int | None, typer.Option(min=0, max=100, help="With --ladder: candidates to scale up.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """The scale-up stage of a search: candidates per rung with their speed-up over the baseline, proxy fidelity
    (Kendall tau) and the scaling-law prediction of each at the target scale. With --ladder, run the stage first
    (in the foreground on --db, or queued on --server and followed)."""
    if law not in (None, "kaplan", "chinchilla"):
        raise _fail([Problem("--law", f"must be kaplan or chinchilla, got {law!r}")])
    if scale_by not in (None, "params_activated", "compute"):
        raise _fail([Problem("--scale-by", f"must be params_activated or compute, got {scale_by!r}")])
    if top_k is not None and ladder is None:
        raise _fail([Problem("--top-k", "only with --ladder (the stage it runs)")])
    params = {k: v for k, v in {"target": target, "law": law, "scale_by": scale_by}.items() if v is not None}
    if server:
        from brainsearch.client import Client

        client = Client(server, token)
        if ladder is not None:
            stage = _ladder_document(ladder, params)
            client.add_scale_up(search_id, {"scale_up": stage, **({"top_k": top_k} if top_k is not None else {})})
            _follow_remote(client, search_id, interval=1.0)
        report = client.scale_up(search_id, **params)
    else:
        repo, url = _repository(db)
        if ladder is not None:
            from brainsearch.search.driver import add_scale_up

            search = repo.get_search(search_id)
            if search is None:
                raise _fail([Problem("SEARCH_ID", f"no search {search_id} in {repo.engine.url!r}")])
            add_scale_up(repo, search, _ladder_document(ladder, params), top_k=top_k, prefix=("--ladder",))
            _follow(repo, search_id, url)
        report = _repo_scale_up(repo, search_id, **params)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _print_scale_up(report)


@app.command("delete")
def delete_cmd(
    search_id: SearchIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a finished search: its trials, curves, scale-up candidates, Optuna study and kept files (weights,
    exports). A queued or running search must be cancelled first."""
    if not yes:
        if not sys.stdin.isatty():
            raise _fail([Problem("--yes", "deleting a search needs --yes when not run from a terminal")])
        typer.confirm(f"delete search {search_id} with its trials and files?", abort=True)
    if server:
        from brainsearch.client import Client

        Client(server, token).delete(search_id)
    else:
        from brainsearch.errors import ConflictError
        from brainsearch.search.driver import delete_search
        from brainsearch.settings import get_settings
        from brainsearch.store import RunStore

        repo, _ = _repository(db)
        if repo.get_search(search_id) is None:
            raise _fail([Problem("SEARCH_ID", f"no search {search_id} in {repo.engine.url!r}")])
        try:
            delete_search(repo, search_id, RunStore(get_settings().data_dir, repo.database_id()))
        except ConflictError as exc:
            raise _fail([Problem("SEARCH_ID", str(exc))]) from None
    err.print(f"search {search_id} deleted")


def _ladder_document(ladder: str, params: dict[str, Any]) -> dict[str, Any]:
    """A ``search.scale_up`` document from ``--ladder`` (``preset[:tokens],...``) and --target / --law / --scale-by."""
    rungs: list[dict[str, Any]] = []
    for item in ladder.split(","):
        preset_name, _, tokens = item.strip().partition(":")
        rungs.append({"preset": preset_name, **({"budget_tokens": tokens} if tokens else {})})
    return {"ladder": rungs, **params}


def _repo_scale_up(repo: Any, search_id: int, **params: Any) -> dict[str, Any]:
    from brainsearch.search.driver import stored_space
    from brainsearch.search.scaleup import scale_up_report

    search = repo.get_search(search_id)
    if search is None:
        raise _fail([Problem("SEARCH_ID", f"no search {search_id} in {repo.engine.url!r}")])
    try:
        return scale_up_report(repo, search_id, stored_space(search), **params).model_dump(mode="json")
    except ArchitectureError as exc:
        raise _fail([Problem("--target", p.message) for p in exc.problems]) from None


def _check_writable(path: Path, suffix: str) -> None:
    """Before long work: ``path`` ends in ``suffix``, is not a folder and its folder can be written."""
    import os

    if path.suffix != suffix:
        raise _fail([Problem("--output", f"expected a {suffix} path, got {path}")])
    if path.is_dir():
        raise _fail([Problem("--output", f"{path} is a folder")])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail([Problem("--output", f"cannot create {path.parent}: {exc.strerror or exc}")]) from None
    if not os.access(path.parent, os.W_OK):
        raise _fail([Problem("--output", f"cannot write to {path.parent}")])


def _weights_source(source: str, db: str | None) -> Path:
    """``TRIAL_OR_WEIGHTS``: a ``.safetensors`` file, ``SEARCH_ID:NUMBER`` (the leaderboard's #) or a trial id, whose
    kept proxy weights are read from the data directory."""
    path = Path(source).expanduser()
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise _fail([Problem("TRIAL_OR_WEIGHTS", f"no such weights file: {path}")])
        return path
    from brainsearch.export import WeightsNotKept, kept_weights
    from brainsearch.settings import get_settings
    from brainsearch.store import RunStore

    search_part, colon, number_part = source.partition(":")
    if not (search_part.isdigit() and (not colon or number_part.isdigit())):
        raise _fail(
            [
                Problem(
                    "TRIAL_OR_WEIGHTS", f"expected a .safetensors file, SEARCH_ID:NUMBER or a trial id, got {source!r}"
                )
            ]
        )
    repo, _ = _repository(db)
    found = repo.trial_by_number(int(search_part), int(number_part)) if colon else repo.get_trial(int(search_part))
    if found is None:
        raise _fail([Problem("TRIAL_OR_WEIGHTS", f"no trial {source} in {repo.engine.url!r}")])
    try:
        return kept_weights(found, RunStore(get_settings().data_dir, repo.database_id()))
    except WeightsNotKept as exc:
        raise _fail([Problem("TRIAL_OR_WEIGHTS", str(exc))]) from None


@app.command("expand")
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
        raise _fail(problems_from_validation_error(exc, "options")) from None
    weights = _weights_source(source, db)
    if output is not None:
        _check_writable(output, ".safetensors")
    try:
        with err.status(f"expanding {weights.name}: +{add_experts} experts per MoE layer, training on {data}"):
            report = expand(weights, add_experts, data, old_data, settings, output=output)
    except OSError as exc:  # the weights could not be written after all (a full disk, say)
        raise _fail([Problem("--output", f"cannot write {output}: {exc.strerror or exc}")]) from None
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        return
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
    _print_wide(table)
    out.print(
        f"activated parameters {fmt_count(report.params_activated_before)} -> "
        f"{fmt_count(report.params_activated_after)}, total {fmt_count(report.params_total_before)} -> "
        f"{fmt_count(report.params_total_after)}"
        + (f"; expanded weights saved to {output}" if output is not None else ""),
        markup=False,
    )


@app.command("quickstart")
def quickstart_cmd(
    trials: Annotated[int, typer.Option(min=1, max=1000, help="Trials of the tiny space to run.")] = 6,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the local service (0: any free one).")] = 8000,
    keep_serving: Annotated[bool, typer.Option(help="Keep the dashboard up afterwards, until Ctrl-C.")] = False,
    scale_up: Annotated[bool, typer.Option(help="Run the scale-up stage (cpu-tiny -> cpu-small) after the trials.")] = (
        True
    ),
    db: DbOption = None,
) -> None:
    """The main job on embedded defaults: start the service on 127.0.0.1 (SQLite, local executor), submit the
    tiny space, show the dashboard URL and the progress, then print the leaderboard and export the winner."""
    import socket
    import threading
    import time

    import uvicorn

    from brainsearch.client import Client
    from brainsearch.settings import get_settings
    from brainsearch.store import RunStore
    from service.app import create_app

    repo, url = _repository(db)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise _fail([Problem("--port", f"port {port} on 127.0.0.1 is in use (try --port 0)")]) from None
    settings = get_settings().model_copy(update={"database_url": url, "executor": "local"})
    config = uvicorn.Config(
        create_app(settings, embedded_worker=True), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="brainsearch-service", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise _fail([Problem("--port", f"the service could not start on 127.0.0.1:{port}")])
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        client = Client(base)
        body: dict[str, Any] = {"space": "tiny", "trials": trials, "name": "quickstart"}
        if scale_up:  # the paper's second stage at CPU size: the top 2 and GLaM again at cpu-tiny and cpu-small
            body["scale_up"] = {"ladder": ["cpu-tiny", "cpu-small"]}  # the presets' budgets: 64K and 200K tokens
        search = client.submit(body)
        err.print(f"dashboard (live while this runs): [bold]{base}/searches/{search['id']}[/]  (API: {base}/docs)")
        search = _follow_remote(client, search["id"], interval=1.0)
        page = client.trials(search["id"], limit=50)
        _print_leaderboard(page["items"], search["id"], page["total"], _remote_reference(search))
        if scale_up:
            _print_scale_up(client.scale_up(search["id"]))
        winner = next((t for t in page["items"] if t["state"] == "completed" and not t["is_baseline"]), None)
        if winner is not None:
            exports = RunStore(get_settings().data_dir, repo.database_id()).exports_dir(search["id"])
            exports.mkdir(parents=True, exist_ok=True)
            stem = exports / f"trial{winner['number']}"
            written = []
            for fmt, suffix in (("json", "json"), ("pytorch", "py"), ("safetensors", "safetensors")):
                stem.with_suffix(f".{suffix}").write_bytes(client.download(winner["id"], fmt))
                written.append(stem.with_suffix(f".{suffix}").name)
            out.print(
                f"winner: trial {winner['number']} ({winner['pattern']}), exported to {exports}: "
                + ", ".join(written)
                + f"  (run it: python {stem.with_suffix('.py')} {stem.with_suffix('.safetensors')})",
                markup=False,
            )
        if keep_serving:
            err.print(f"dashboard: {base}/searches/{search['id']}  (serving until Ctrl-C)", markup=False)
            while thread.is_alive():
                time.sleep(0.5)
    finally:
        server.should_exit = True
        thread.join(60)
    if not keep_serving:  # said after the service stopped, so the link is never shown dead
        port = port or 8000
        again = f"brainsearch serve --port {port}" + (f" --db {url}" if db else "")
        err.print(
            f"the quickstart's service has stopped; to browse this search: `{again}`, then open "
            f"http://127.0.0.1:{port}/searches/{search['id']} (or run `brainsearch quickstart --keep-serving`)",
            markup=False,
        )
    if search["status"] != "completed":
        err.print(f"search {search['id']} {search['status']}: {search.get('error')}", markup=False)
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the Typer app, turning brainsearch errors into exit status 2 without a traceback."""
    try:
        # With standalone_mode off, click returns the code of a typer.Exit instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except BrainsearchError as exc:
        problems = getattr(exc, "problems", ()) or (Problem("", str(exc)),)
        code = _fail(problems).exit_code
        sys.exit(code)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown command, bad option value
        exc.show()  # type: ignore[attr-defined]
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:  # a bug: one line, not a traceback, and a distinct exit status
        err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
