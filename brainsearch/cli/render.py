"""Tables the commands print: the leaderboard (compared with the search's reference baseline) and the scale-up
report. Rows are the API's documents or the repository's objects as dicts, so a table reads the same from a
database and from a service."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from brainsearch._format import fmt_bytes, fmt_checkpoint, fmt_count, fmt_devices, fmt_memory_plan
from brainsearch.cli.common import out

__all__ = [
    "memory_plan",
    "noise_line",
    "note",
    "print_leaderboard",
    "print_scale_up",
    "print_verdict",
    "print_wide",
    "verdict_line",
]


def print_wide(table: Table) -> None:
    """A table on stdout; piped output is not cut to 80 columns: a row is read whole."""
    (out if out.is_terminal else Console(width=200)).print(table)


def print_leaderboard(
    rows: list[dict[str, Any]],
    search_id: int,
    total: int,
    reference: tuple[str, float | None],
    sort: str = "val_loss",
    noise: dict[str, Any] | None = None,
) -> None:
    """The leaderboard table of trial rows (the JSON of :func:`~brainsearch.search.documents.trial_row`), each
    compared with the search's reference baseline ``(name, validation loss)``: the paired mean difference with its
    95% interval (simultaneous over the search's comparisons), what it says ("beyond noise", "beyond noise at 1.86x
    compute", ...) and its training compute as a ratio to the baseline's; above it, the seed noise the search
    measured (``noise``: the search document's). Step times are the runs' own wall-clock medians (``step ms
    (wall)``); the ratio beside them is a timing probe's. Ranks are the search's standings
    (:mod:`brainsearch.search.standings`, baselines unranked): ``export --rank N`` exports the row ranked N."""
    name, _ = reference
    if noise is not None:
        out.print(noise_line(noise), markup=False, highlight=False)
    table = Table(title=f"search {search_id}: {total} trials (baselines included), by {sort}")
    columns = (
        "rank",
        "#",
        "block",
        "state",
        "val loss",
        "seeds",
        f"vs {name} (95%)",
        "comparison",
        "compute",
        "step ms (wall)",
        f"step vs {name}",
        "activated",
        "micro-batch",
        "note",
    )
    for column in columns:  # only the note wraps: a number or an interval split over two lines misreads
        left = column in ("block", "state", "note", "comparison")
        table.add_column(column, justify="left" if left else "right", no_wrap=column != "note")
    for r in rows:
        loss, step = r["val_loss"], r["step_time_s"]
        table.add_row(
            str(r["rank"]) if r.get("rank") is not None else "",
            str(r["number"]),
            r["pattern"],
            r["state"],
            f"{loss:.4f}" if loss is not None else "",
            seeds_cell(r),
            interval_cell(r.get("vs_baseline")),
            r.get("comparison") or "",
            f"{r['compute_ratio']:.2f}x" if r.get("compute_ratio") is not None else "",
            f"{step * 1e3:.1f}" if step is not None else "",
            "uncertain"
            if r.get("step_time_uncertain")
            else (f"{r['step_time_ratio']:.2f}x" if r.get("step_time_ratio") else ""),
            fmt_count(r["params_activated"]),
            memory_plan(r),
            note(r),
        )
    print_wide(table)
    if total > len(rows):
        out.print(f"({total - len(rows)} more: brainsearch leaderboard {search_id} --limit N)")


def noise_line(noise: dict[str, Any]) -> str:
    """What the search measured of its seed noise, in a sentence: the baseline's losses over its seeds and the
    seed standard deviation the intervals use."""
    name, values = noise.get("baseline") or "baseline", noise.get("baseline_values") or []
    wanted = noise.get("baseline_seeds", 1)
    losses = " / ".join(f"{v:.4f}" for v in values) or "none yet"
    head = f"{name} baseline over {len(values)} of {wanted} seed(s): {losses}"
    if noise.get("baseline_sd") is not None:
        head += f" (mean {noise['baseline_mean']:.4f}, sd {noise['baseline_sd']:.4f})"
    if noise.get("seed_sd") is None:
        return head + "; seed noise not measured yet: intervals hold the evaluation error only"
    pooled = f"{noise['architectures']} architecture(s), {noise['dof']} degrees of freedom"
    evaluation = f", evaluation error {noise['eval_stderr']:.4f}" if noise.get("eval_stderr") is not None else ""
    if noise.get("paired_sd") is not None:
        paired = (
            f"compared seed by seed with the baseline's run of the same seed: one seed's difference varies by "
            f"{noise['paired_sd']:.4f} ({noise['paired_architectures']} re-evaluated architecture(s), "
            f"{noise['paired_dof']} degrees of freedom)"
        )
    else:
        paired = "until a trial is re-evaluated, intervals are an unpaired bound (wider than they will be)"
    comparisons = noise.get("comparisons") or 1
    return (
        f"{head}; seed sd {noise['seed_sd']:.4f} (pooled over {pooled}{evaluation}); {paired}; intervals are 95% "
        f"simultaneous over {comparisons} comparison(s) (Bonferroni), on re-evaluated trials' held-out seeds: a trial "
        "beats the baseline beyond noise when its whole interval is below 0, and wins only at equal compute"
    )


def seeds_cell(row: dict[str, Any]) -> str:
    """A row's runs over seeds: ``1``, or ``3: 2.7012±0.0410`` (their mean and standard deviation)."""
    seeds = row.get("seeds") or 0
    if seeds < 2 or row.get("val_loss_mean") is None:
        return str(seeds) if seeds else ""
    sd = row.get("val_loss_seed_sd")
    return f"{seeds}: {row['val_loss_mean']:.4f}" + (f"±{sd:.4f}" if sd is not None else "")


def interval_cell(interval: dict[str, Any] | None) -> str:
    """``-0.041 [-0.210, +0.128]``: the difference from the baseline (seed by seed, averaged; a re-evaluated trial's
    selection seed left out) and its interval (``bound`` while it is the unpaired bound, ``eval only`` while the
    seed noise is not measured), as every view prints it (:func:`brainsearch.search.verdict.fmt_interval`)."""
    if not interval:
        return ""
    from brainsearch.search.noise import Interval
    from brainsearch.search.verdict import fmt_interval

    cell = fmt_interval(Interval.model_validate(interval))
    method = interval.get("method")
    return cell + {"unpaired bound": " bound", "evaluation only": " eval only"}.get(method or "", "")


def verdict_line(verdict: dict[str, Any]) -> str:
    """The search's verdict as printed (its ``text``, the same sentence the API and the dashboard show)."""
    return f"verdict: {verdict['text']}"


def print_verdict(verdict: dict[str, Any] | None) -> None:
    """The verdict line, last: what the search found (:mod:`brainsearch.search.verdict`)."""
    if verdict is not None:
        out.print(verdict_line(verdict), markup=False, highlight=False)


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
    """The scale-up report as tables: candidates per rung (val loss with its interval, steps/s against the baseline
    with its probe's range or "uncertain"), how each run went (slowed runs marked and timed again, the checkpoints
    on disk), then predictions at the one target scale, named in activated parameters and compute."""
    if not report["candidates"]:
        out.print("scale-up: no candidates yet" if report["configured"] else "scale-up: not configured for this search")
        return
    print_wide(_rungs_table(report))
    fidelity = ", ".join(
        f"{rung} " + (f"{tau:+.2f}" if tau is not None else "-") + f" ({report['fidelity_pairs'][rung]} candidates)"
        for rung, tau in report["fidelity"].items()
    )
    out.print(f"proxy fidelity (Kendall tau, proxy vs rung ranking): {fidelity}")
    for line in _speed_notes(report):
        out.print(line, highlight=False)
    print_wide(_runs_table(report))
    peaks = _peak_labels(report)
    if peaks:
        notes = [peaks[0]] if len(peaks) == 1 else [f"[{i}] {label}" for i, label in enumerate(peaks, start=1)]
        out.print("MFU against the peak of " + ", ".join(notes), highlight=False)  # a datasheet's, or "measured: ..."
    slowed = _slowed_lines(report)
    if slowed:
        out.print(
            "slowed runs (MFU well below the rung's median: timed again by a probe):",
            *slowed,
            sep="\n",
            highlight=False,
        )
    on_disk = [
        f"  {c['label']} at {r['rung']}: "
        + ", ".join(fmt_checkpoint(cp["step"], cp["saved_at"], cp["bytes"]) for cp in r["checkpoints_on_disk"])
        for c in report["candidates"]
        for r in c["rungs"]
        if r.get("checkpoints_on_disk")
    ]
    if on_disk:
        out.print("checkpoints on disk:", *on_disk, sep="\n", highlight=False)
    if report.get("target_scale"):
        out.print(_target_line(report["target_scale"]), highlight=False)
    print_wide(_predictions_table(report))
    if any((c["prediction"] or {}).get("far_extrapolation") for c in report["candidates"]):
        out.print(
            "far: the target is more than 100x past the largest rung run; the band is the fit's error, not whether "
            "the law holds that far",
            highlight=False,
        )


def _rungs_table(report: dict[str, Any]) -> Table:
    """Each candidate at each rung: its loss, its speed against the baseline's, how much sooner it converged."""
    table = Table(title=f"search {report['search_id']}: scale-up over {' -> '.join(report['ladder'])}")
    columns = (
        "candidate",
        "block",
        "proxy loss",
        "rung",
        "val loss",
        "vs base",
        "compute",
        "steps/s vs base",
        "convergence",
        "state",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("candidate", "block", "rung", "state") else "right")
    for c in report["candidates"]:
        for i, r in enumerate(c["rungs"]):
            conv = r["convergence_speedup"]
            conv_text = (
                f"{conv:.2f}x" if conv is not None else ("not reached" if r["reached_baseline_loss"] is False else "")
            )
            table.add_row(
                c["label"] if i == 0 else "",
                c["pattern"] if i == 0 else "",
                f"{c['proxy_val_loss']:.4f}" if i == 0 and c["proxy_val_loss"] is not None else "",
                r["rung"] + (" (proxy run)" if r.get("reused_proxy_run") else ""),
                _val_loss(r),
                interval_cell(r.get("vs_baseline")),
                f"{r['compute_ratio']:.2f}x" if r.get("compute_ratio") is not None else "",
                _speed(r),
                conv_text,
                r["state"],
            )
    return table


def _val_loss(r: dict[str, Any]) -> str:
    """``"2.6585 ± 0.0171"``: the loss and its 95% interval's half-width (evaluation error only); the loss alone
    without a stderr."""
    loss, low, high = r["val_loss"], r.get("val_loss_low"), r.get("val_loss_high")
    if loss is None:
        return ""
    return f"{loss:.4f} ± {(high - low) / 2:.4f}" if low is not None and high is not None else f"{loss:.4f}"


def _speed(r: dict[str, Any]) -> str:
    """The steps/s ratio against the baseline: ``"1.05x (0.98-1.12)"`` from a timing probe (its range over rounds),
    ``"1.05x"`` from separate runs, ``"uncertain"`` when it is not a number to read."""
    if r.get("speed_uncertain"):
        return "uncertain"
    ratio, low, high = r["steps_per_s_ratio"], r.get("steps_per_s_low"), r.get("steps_per_s_high")
    if ratio is None:
        return ""
    return f"{ratio:.2f}x ({low:.2f}-{high:.2f})" if low is not None and high is not None else f"{ratio:.2f}x"


def _speed_notes(report: dict[str, Any]) -> list[str]:
    """The legend of the intervals, and why each uncertain ratio is."""
    rungs = [(c, r) for c in report["candidates"] for r in c["rungs"]]
    lines = []
    if any(r.get("val_loss_low") is not None for _, r in rungs):
        lines.append("val loss ± its 95% interval: evaluation error only (one seed per rung)")
    if any(r.get("vs_baseline") for _, r in rungs):
        lines.append(
            "vs base: the run's loss minus the baseline's at the same rung and seed, with the interval the seed noise "
            "measured on the proxies gives it; compute: its training compute over the baseline's there; convergence: "
            "the baseline's compute to its final loss over the run's compute to reach it"
        )
    if any(r.get("speed_source") for _, r in rungs):
        lines.append(
            "steps/s vs base: a ratio with (low-high) is a timing probe's, its range over rounds (both models back "
            "to back in one process); a bare ratio is of separate runs' step times"
        )
    lines += [
        f"  uncertain: {c['label']} at {r['rung']}: {r.get('speed_note') or 'no reason recorded'}"
        for c, r in rungs
        if r.get("speed_uncertain")
    ]
    return lines


def _slowed_lines(report: dict[str, Any]) -> list[str]:
    """Each slowed run: why, its step time in its run, and the one a probe measured again."""
    lines = []
    for c in report["candidates"]:
        for r in c["rungs"]:
            if not r.get("slowed"):
                continue
            step, retimed = r.get("step_time_s"), r.get("retimed_step_time_s")
            times = f"step {step * 1e3:.1f} ms in its run" if step is not None else "no step time in its run"
            times += f", {retimed * 1e3:.1f} ms re-timed by a probe" if retimed is not None else ", not re-timed"
            lines.append(f"  {c['label']} at {r['rung']}: {r.get('slowed_note') or 'slowed'}; {times}")
    return lines


def _target_line(t: dict[str, Any]) -> str:
    """The one scale every candidate is predicted at, in activated parameters and training compute."""
    whose = f" ({t['reference']}'s block at {t['preset']})" if t.get("reference") else ""
    return (
        f"target: {t['preset']}{whose}: {fmt_count(t['params_activated'])} activated parameters, "
        f"{t['compute_flops']:.3g} FLOPs of training compute; every candidate is predicted at this one scale"
    )


def _extrapolation(p: dict[str, Any] | None) -> str:
    """How far a prediction reaches past the largest rung: ``"24x"``, ``"2,300x far"``."""
    if not p or p.get("extrapolation") is None:
        return ""
    e = p["extrapolation"]
    text = f"{e:,.0f}x" if e >= 10 else f"{e:.2g}x"
    return text + (" far" if p.get("far_extrapolation") else "")


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
                (f"{mfu * 100:.1f}%{mark}" if mfu is not None else "") + (" slowed" if r.get("slowed") else ""),
                f"{r.get('checkpoint_count') or 0}/{r.get('resume_count') or 0}",
                str(len(r.get("checkpoints_on_disk") or [])),
            )
    return table


def _bytes(n: int | None) -> str:
    return fmt_bytes(n) if n is not None else ""


def _predictions_table(report: dict[str, Any]) -> Table:
    """The scaling law's prediction of each candidate at the target scale (one for all), by predicted rank, with how
    far it extrapolates past the largest rung (``far`` beyond 100x)."""
    fitted = ", fitted to the scratch runs" if report.get("init") == "both" else ""
    law = Table(title=f"{report['law']} law in {report['scale_by']}{fitted}, predicted at {report['target']}")
    for column in ("candidate", "proxy rank", "predicted rank", "predicted loss", "95% band", "extrapolation", "note"):
        law.add_column(column, justify="left" if column in ("candidate", "note") else "right")
    for c in sorted(report["candidates"], key=lambda c: c["predicted_rank"] or 10**9):
        p = c["prediction"]
        law.add_row(
            c["label"],
            str(c["proxy_rank"]),
            str(c["predicted_rank"] or ""),
            f"{p['predicted_loss']:.4f}" if p else "",
            f"{p['low']:.4f} - {p['high']:.4f}" if p else "",
            _extrapolation(p),
            c["prediction_error"] or "",
        )
    return law
