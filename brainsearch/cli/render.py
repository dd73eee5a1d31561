"""Tables the commands print: the leaderboard (compared with the search's reference baseline) and the scale-up
report. Rows are the API's documents or the repository's objects as dicts, so a table reads the same from a
database and from a service."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from brainsearch._format import fmt_bytes, fmt_checkpoint, fmt_count, fmt_devices, fmt_memory_plan
from brainsearch.cli.common import out

__all__ = ["memory_plan", "note", "print_leaderboard", "print_scale_up", "print_wide"]


def print_wide(table: Table) -> None:
    """A table on stdout; piped output is not cut to 80 columns: a row is read whole."""
    (out if out.is_terminal else Console(width=160)).print(table)


def print_leaderboard(
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
    columns = ("rank", "#", "block", "state", "val loss", f"vs {name}", "step ms", "activated", "micro-batch", "note")
    for column in columns:
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
            memory_plan(r),
            note(r),
        )
    print_wide(table)
    if total > len(rows):
        out.print(f"({total - len(rows)} more: brainsearch leaderboard {search_id} --limit N)")


def memory_plan(row: dict[str, Any]) -> str:
    """The micro-batch (and ``ckpt`` when activations were recomputed) a row's run trained with: an API row carries
    the fields, a repository row has them in its metrics."""
    fields = row if "micro_batch" in row else row.get("metrics") or {}
    return fmt_memory_plan(fields.get("micro_batch"), fields.get("activation_checkpointing"))


def note(row: dict[str, Any], width: int = 100) -> str:
    """A leaderboard row's note: the baseline's name, or the reason, shortened at a word boundary (never mid-word)."""
    import textwrap

    if row["is_baseline"]:
        return f"{row['baseline_name']} baseline"
    return textwrap.shorten(row["reason"] or "", width, placeholder=" …")


def print_scale_up(report: dict[str, Any]) -> None:
    """The scale-up report as tables: candidates per rung, how each run went (and the checkpoints on disk), then
    predictions at the target scale."""
    if not report["candidates"]:
        out.print("scale-up: no candidates yet" if report["configured"] else "scale-up: not configured for this search")
        return
    print_wide(_rungs_table(report))
    fidelity = ", ".join(
        f"{rung} " + (f"{tau:+.2f}" if tau is not None else "-") + f" ({report['fidelity_pairs'][rung]} candidates)"
        for rung, tau in report["fidelity"].items()
    )
    out.print(f"proxy fidelity (Kendall tau, proxy vs rung ranking): {fidelity}")
    print_wide(_runs_table(report))
    peaks = _peak_labels(report)
    if peaks:
        notes = [peaks[0]] if len(peaks) == 1 else [f"[{i}] {label}" for i, label in enumerate(peaks, start=1)]
        out.print("MFU against the peak of " + ", ".join(notes), highlight=False)  # a datasheet's, or "measured: ..."
    on_disk = [
        f"  {c['label']} at {r['rung']}: "
        + ", ".join(fmt_checkpoint(cp["step"], cp["saved_at"], cp["bytes"]) for cp in r["checkpoints_on_disk"])
        for c in report["candidates"]
        for r in c["rungs"]
        if r.get("checkpoints_on_disk")
    ]
    if on_disk:
        out.print("checkpoints on disk:", *on_disk, sep="\n", highlight=False)
    print_wide(_predictions_table(report))


def _rungs_table(report: dict[str, Any]) -> Table:
    """Each candidate at each rung: its loss, its speed against the baseline's, how much sooner it converged."""
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
    return table


def _peak_labels(report: dict[str, Any]) -> list[str]:
    """The datasheet peaks the runs' MFUs are against, in order of appearance."""
    labels = (r.get("peak_flops_label") for c in report["candidates"] for r in c["rungs"] if r.get("mfu") is not None)
    return list(dict.fromkeys(label for label in labels if label))


def _runs_table(report: dict[str, Any]) -> Table:
    """How each run went: init (``upcycle @N``: its dense twin became MoE at step N), devices and sharding, recipe,
    memory per device (the estimate; the peak measured on CUDA), throughput, MFU (the peak it is against is printed
    below the table; ``[k]`` points to it when runs used several), checkpoints saved / resumes, checkpoints on disk.
    Rows of older reports lack these fields: they read as one device, no checkpoint."""
    table = Table(title="runs (memory per device: estimated, measured peak on CUDA)")
    columns = ("candidate", "rung", "init", "devices", "recipe", "mem est.", "mem peak", "tok/s", "MFU", "ckpt/resume")
    for column in (*columns, "on disk"):
        table.add_column(column, justify="left" if column in ("candidate", "rung", "init", "recipe") else "right")
    peaks = _peak_labels(report)
    for c in report["candidates"]:
        for i, r in enumerate(c["rungs"]):
            mfu, peak = r.get("mfu"), r.get("peak_flops_label")
            mark = f" [{peaks.index(peak) + 1}]" if len(peaks) > 1 and peak in peaks else ""
            upcycle_step = r.get("upcycle_step")
            table.add_row(
                c["label"] if i == 0 else "",
                r["rung"],
                (r.get("init") or "") + (f" @{upcycle_step}" if upcycle_step is not None else ""),
                fmt_devices(r.get("devices"), r.get("sharding")),
                r.get("recipe") or "",
                _bytes(r.get("memory_estimate_bytes")),
                _bytes(r.get("memory_peak_bytes")),
                fmt_count(r["tokens_per_s"]) if r.get("tokens_per_s") is not None else "",
                f"{mfu * 100:.1f}%{mark}" if mfu is not None else "",
                f"{r.get('checkpoint_count') or 0}/{r.get('resume_count') or 0}",
                str(len(r.get("checkpoints_on_disk") or [])),
            )
    return table


def _bytes(n: int | None) -> str:
    return fmt_bytes(n) if n is not None else ""


def _predictions_table(report: dict[str, Any]) -> Table:
    """The scaling law's prediction of each candidate at the target scale, by predicted rank."""
    fitted = ", fitted to the scratch runs" if report.get("init") == "both" else ""
    law = Table(title=f"{report['law']} law in {report['scale_by']}{fitted}, predicted at {report['target']}")
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
    return law
