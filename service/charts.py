"""The dashboard's charts: each a plain Plotly figure (a dict ``{"data", "layout"}``) that ``static/dashboard.js``
draws, or a :class:`Chart` whose ``empty`` says why there is none yet. Learning curves are smoothed (a debiased EMA,
TensorBoard's default weight) with the raw line faint and the validation points marked; long curves are thinned."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brainsearch._format import fmt_count
from brainsearch.search.noise import NoiseView
from brainsearch.search.scaleup_report import ScaleUpReport
from brainsearch.search.submission import study_name
from brainsearch.storage import MetricPoint, Repository, Trial
from service._ui_format import fmt_loss
from service.routers.searches import ParetoAxis, pareto_front, pareto_x

__all__ = [
    "PALETTE",
    "Chart",
    "curves_chart",
    "expert_load_chart",
    "importance_chart",
    "pareto_chart",
    "scaling_chart",
    "trial_curve_chart",
    "trial_label",
]

SMOOTHING = 0.6  # TensorBoard's default EMA weight
MAX_POINTS = 400  # per line: a long run's curve is thinned (after smoothing) to keep pages light
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_BASELINE_COLOURS = {"glam": "#3b3b3b", "dense": "#9a9a9a"}


@dataclass(frozen=True)
class Chart:
    """One chart slot of a page: a Plotly figure (``{"data", "layout"}``), or ``empty``, the reason there is none."""

    id: str
    title: str
    figure: dict[str, Any] | None = None
    empty: str = ""
    note: str = ""
    wide: bool = False  # spans the page's width

    def as_json(self) -> dict[str, Any]:
        """The slot for the page's script; NaN and infinities become null (gaps), which JSON can carry."""
        slot: dict[str, Any] = _json_safe(
            {
                "id": self.id,
                "title": self.title,
                "figure": self.figure,
                "empty": self.empty,
                "note": self.note,
                "wide": self.wide,
            }
        )
        return slot


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


_LEGEND = {"orientation": "h", "x": 0, "y": 0, "yref": "container", "yanchor": "bottom", "font": {"size": 11}}


def _layout(x: dict[str, Any], y: dict[str, Any], **extra: Any) -> dict[str, Any]:
    axis = {"gridcolor": "#eceff3", "zeroline": False, "linecolor": "#c5cad3", "automargin": True}
    return {
        "height": 340,
        # Titles are the cards' headings, not Plotly's: the top margin only holds the toolbar shown on hover.
        "margin": {"l": 60, "r": 16, "t": 28, "b": 84 if extra.get("showlegend", True) else 48},
        "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#2b2f36"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "closest",
        "uirevision": "keep",  # a live update keeps the user's zoom and hidden lines
        # The legend sits at the figure's bottom edge, under the x axis' title whatever the tick labels' height.
        "legend": _LEGEND,
        "xaxis": {**axis, **x},
        "yaxis": {**axis, **y},
        **extra,
    }


def _ema(ys: list[float], weight: float = SMOOTHING) -> list[float | None]:
    """TensorBoard's debiased exponential moving average (the first points are not pulled towards zero); a
    non-finite value is a gap and does not poison what follows."""
    out: list[float | None] = []
    last, n = 0.0, 0
    for y in ys:
        if not math.isfinite(y):
            out.append(None)
            continue
        n += 1
        last = last * weight + (1 - weight) * y
        out.append(last / (1 - weight**n))
    return out


def _thin(n: int) -> list[int]:
    """Indices of at most MAX_POINTS evenly spread points out of ``n``, the last one included."""
    stride = max(1, math.ceil(n / MAX_POINTS))
    keep = list(range(0, n, stride))
    if n and keep[-1] != n - 1:
        keep.append(n - 1)
    return keep


def _curve_traces(
    curve: list[MetricPoint], label: str, colour: str, group: str, *, dash: str = "solid", parts_in_legend: bool = False
) -> list[dict[str, Any]]:
    """A trial's training loss (raw, faint; smoothed, bold) and its validation points, one legend group."""
    keep = _thin(len(curve))
    xs = [curve[i].tokens for i in keep]
    smooth = _ema([p.train_loss for p in curve])
    evals = [p for p in curve if p.val_loss is not None]
    name = "training loss" if parts_in_legend else label
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": xs,
            "y": [curve[i].train_loss for i in keep],
            "name": "training loss (raw)" if parts_in_legend else f"{label} raw",
            "legendgroup": group,
            "showlegend": parts_in_legend,
            "opacity": 0.25,
            "line": {"color": colour, "width": 1},
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": xs,
            "y": [smooth[i] for i in keep],
            "name": f"{name} (smoothed)" if parts_in_legend else label,
            "legendgroup": group,
            "line": {"color": colour, "width": 2.2, "dash": dash},
            "hovertemplate": f"{label}<br>%{{x:.3s}} tokens<br>training loss %{{y:.4f}} (smoothed)<extra></extra>",
        },
    ]
    if evals:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": [p.tokens for p in evals],
                "y": [p.val_loss for p in evals],
                "name": "validation loss" if parts_in_legend else f"{label} validation",
                "legendgroup": group,
                "showlegend": parts_in_legend,
                "marker": {"color": colour, "size": 8, "symbol": "diamond", "line": {"color": "#fff", "width": 1}},
                "hovertemplate": f"{label}<br>%{{x:.3s}} tokens<br>validation loss %{{y:.4f}}<extra></extra>",
            }
        )
    return traces


def trial_label(t: Trial) -> str:
    return f"{t.baseline_name} baseline" if t.is_baseline else f"#{t.number} {t.pattern}"


_CURVE_NOTE = (
    "Training loss smoothed (EMA {w}, debiased); the faint line is the raw loss, diamonds are validation losses."
)


def curves_chart(
    repo: Repository,
    trials: list[Trial],
    chart_id: str,
    *,
    empty: str,
    note: str = "",
    colours: list[str] | None = None,
    label: Callable[[Trial], str] | None = None,
    wide: bool = False,
) -> Chart:
    """Several trials' learning curves overlaid: ``colours`` per trial, else the palette in turn and baselines
    dashed in grey."""
    data: list[dict[str, Any]] = []
    palette = iter(PALETTE * 2)
    for i, t in enumerate(trials):
        curve = repo.trial_curve(t.id)
        if colours is not None:
            colour, dash = colours[i], "solid"
        elif t.is_baseline:
            colour, dash = _BASELINE_COLOURS.get(t.baseline_name or "", "#666666"), "dash"
        else:
            colour, dash = next(palette), "solid"
        if curve:
            data += _curve_traces(curve, (label or trial_label)(t), colour, f"t{t.id}", dash=dash)
    title = "Learning curves"
    if not data:
        return Chart(chart_id, title, empty=empty, wide=wide)
    layout = _layout(
        {"title": {"text": "tokens"}, "tickformat": "~s"},
        {"title": {"text": "loss (nats per token)"}},
        height=400,
    )
    note = " ".join(x for x in (_CURVE_NOTE.format(w=SMOOTHING), note) if x)
    return Chart(chart_id, title, {"data": data, "layout": layout}, note=note, wide=wide)


def trial_curve_chart(repo: Repository, trial: Trial) -> Chart:
    title = "Learning curve"
    curve = repo.trial_curve(trial.id)
    if not curve:
        if trial.state == "running":
            why = "The trial is still training: its curve is stored when it finishes."
        elif trial.state == "pruned":
            why = "No learning curve: the trial was pruned before it trained" + (
                f" ({trial.reason})." if trial.reason else "."
            )
        else:
            why = f"No learning curve was recorded (the trial {trial.state.replace('_', ' ')})."
        return Chart("curve", title, empty=why)
    data = _curve_traces(curve, trial_label(trial), PALETTE[0], "t", parts_in_legend=True)
    layout = _layout(
        {"title": {"text": "tokens"}, "tickformat": "~s"},
        {"title": {"text": "loss (nats per token)"}},
        # One legend group: "normal" lists its three parts in a row rather than stacked as a group.
        legend={**_LEGEND, "traceorder": "normal"},
    )
    return Chart("curve", title, {"data": data, "layout": layout}, note=_CURVE_NOTE.format(w=SMOOTHING))


_NO_TRIAL = "No completed trial yet: each one adds a point here."
_PARETO = {
    "compute_ratio": ("training compute vs the baseline", "pareto-compute", _NO_TRIAL),
    "params_activated": ("activated parameters", "pareto-params", _NO_TRIAL),
    "step_time_ratio": (
        "step time vs the baseline (timing probe)",
        "pareto-step",
        "No timing probe: step times are compared only by a probe timing a trial and the baseline back to back (the "
        "space's max_step_time_ratio); a step time measured in a trial's own run holds the machine's load, not the "
        "block's speed.",
    ),
}


def pareto_chart(trials: list[Trial], axis: ParetoAxis, view: NoiseView) -> Chart:
    """Completed trials' validation loss against ``axis`` (:func:`~service.routers.searches.pareto_x`: training
    compute or step time as ratios to the reference baseline's, or activated parameters), the Pareto front as a
    staircase, baselines as stars (the reference at 1 on the ratios); a click on a point opens the trial."""
    label, chart_id, empty = _PARETO[axis]
    title = f"Validation loss vs {label}"
    placed = {t.id: pareto_x(t, axis, view) for t in trials if t.state == "completed" and t.val_loss is not None}
    xs = {tid: x for tid, x in placed.items() if x is not None}
    done = [t for t in trials if t.id in xs]
    if not any(not t.is_baseline for t in done):
        return Chart(chart_id, title, empty=empty)
    shown = fmt_count if axis == "params_activated" else (lambda x: f"{x:.2f}x")

    def points(ts: list[Trial]) -> dict[str, Any]:
        return {
            "x": [xs[t.id] for t in ts],
            "y": [t.val_loss for t in ts],
            "customdata": [t.id for t in ts],
            "text": [f"{trial_label(t)}<br>val loss {fmt_loss(t.val_loss)}<br>{shown(xs[t.id])}" for t in ts],
            "hovertemplate": "%{text}<extra></extra>",
        }

    searched = [t for t in done if not t.is_baseline]
    front = pareto_front(searched, axis, view)
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "trials",
            **points(searched),
            "marker": {"color": PALETTE[0], "size": 8, "opacity": 0.75},
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "Pareto front",
            **points(front),
            "line": {"color": PALETTE[1], "shape": "hv", "width": 2},
            "marker": {"color": PALETTE[1], "size": 9},
        },
    ]
    for t in (t for t in done if t.is_baseline):
        data.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": trial_label(t),
                **points([t]),
                "textposition": "top center",
                "texttemplate": t.baseline_name or "baseline",
                "cliponaxis": False,  # the name may stand above the plot area
                "marker": {"symbol": "star", "size": 14, "color": _BASELINE_COLOURS.get(t.baseline_name or "", "#666")},
            }
        )
    x = {"title": {"text": label}, "tickformat": "~s"} if axis == "params_activated" else {"title": {"text": label}}
    layout = _layout(x, {"title": {"text": "validation loss (nats, first run)"}}, meta={"click": "trial"})
    note = "Lower left is better. The front joins the trials no other beats on both axes; click a point to open it."
    if axis == "compute_ratio":
        note += " At 1.00x a trial trained with the baseline's compute; to the right, with more."
    return Chart(chart_id, title, {"data": data, "layout": layout}, note=note)


def expert_load_chart(trial: Trial | None, chart_id: str = "expert-load") -> Chart:
    title = "Expert load" + (f" of the best trial (#{trial.number})" if trial and chart_id == "expert-load" else "")
    if trial is None:
        return Chart(chart_id, title, empty="No completed trial yet.")
    load = (trial.metrics.get("moe") or {}).get("expert_load")
    if not load:
        return Chart(chart_id, title, empty="No MoE statistics: the block has no MoE layer, or it did not train.")
    experts = max(len(row) for row in load)
    data = [
        {
            "type": "heatmap",
            "z": load,
            "x": list(range(experts)),
            "y": list(range(len(load))),
            "colorscale": "Viridis",
            "zmin": 0,
            "colorbar": {"title": {"text": "share"}, "tickformat": ".0%", "thickness": 12},
            "hovertemplate": "MoE layer %{y}, expert %{x}: %{z:.1%} of routed tokens<extra></extra>",
        }
    ]
    layout = _layout(
        {"title": {"text": "expert"}, "dtick": 1, "tickmode": "linear", "showgrid": False},
        {"title": {"text": "MoE layer"}, "dtick": 1, "tickmode": "linear", "autorange": "reversed", "showgrid": False},
        height=max(220, 90 + 34 * len(load)),
        showlegend=False,
    )
    return Chart(
        chart_id,
        title,
        {"data": data, "layout": layout},
        note=f"Each expert's share of the routed tokens per layer; balanced is {1 / experts:.0%} each.",
    )


def _importance(database_url: str, search_id: int) -> tuple[list[tuple[str, float]], str]:
    """Optuna's parameter importance (fANOVA) over the completed trials, or ``([], why there is none)``."""
    import optuna

    from brainsearch.storage.optuna_storage import optuna_storage

    try:
        study = optuna.load_study(study_name=study_name(search_id), storage=optuna_storage(database_url))
    except KeyError:
        return [], "No trial has been sampled yet."
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(study.directions) != 1:
        return [], f"Importance is computed for one objective; this search minimises {len(study.directions)}."
    if len(complete) < 5:  # fewer trials say nothing about importance
        return [], f"Parameter importance needs at least 5 completed trials ({len(complete)} so far)."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(optuna.importance.get_param_importances(study).items()), ""
    except (ValueError, RuntimeError) as exc:  # e.g. every completed trial has the same parameters
        return [], f"Optuna could not compute the importance: {exc}"


def importance_chart(database_url: str, search_id: int) -> Chart:
    title = "Parameter importance"
    items, why = _importance(database_url, search_id)
    if not items:
        return Chart("importance", title, empty=why)
    items = sorted(items, key=lambda kv: kv[1])  # Plotly draws the first bar at the bottom: the largest goes on top
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "x": [v for _, v in items],
            "y": [k for k, _ in items],
            "text": [f"{v:.2f}" for _, v in items],
            "textposition": "outside",
            "cliponaxis": False,
            "marker": {"color": PALETTE[0]},
            "hovertemplate": "%{y}: %{x:.3f}<extra></extra>",
        }
    ]
    top = max(v for _, v in items) or 1.0
    layout = _layout(
        {"title": {"text": "importance (share of variance)"}, "range": [0, top * 1.18]},
        {"automargin": True, "gridcolor": "rgba(0,0,0,0)"},
        height=max(220, 80 + 24 * len(items)),
        showlegend=False,
    )
    return Chart(
        "importance",
        title,
        {"data": data, "layout": layout},
        note="fANOVA (Optuna's default): how much of the validation loss's variance each parameter explains.",
    )


def scaling_chart(report: ScaleUpReport) -> Chart:
    """Each candidate's rung losses against the law's x (log scale), its fitted law out to the target, and the
    predicted loss there with its 95% band."""
    title = f"Scaling laws: rung losses and the prediction at {report.target}"
    fitted = [c for c in report.candidates if c.prediction is not None]
    if not fitted:
        why = (
            "The laws are fitted once candidates have finished two rungs."
            if report.candidates
            else ("The scale-up stage runs after the trials.")
        )
        return Chart("scaling", title, empty=why)
    data: list[dict[str, Any]] = []
    for i, c in enumerate(fitted):
        fit = c.prediction
        assert fit is not None
        colour = PALETTE[i % len(PALETTE)]
        xs = [x for x, _ in fit.points]
        lo, hi = min(xs), fit.target_x
        grid = [lo * (hi / lo) ** (k / 40) for k in range(41)]
        data += [
            {
                "type": "scatter",
                "mode": "markers",
                "x": xs,
                "y": [y for _, y in fit.points],
                "name": c.label,
                "legendgroup": c.label,
                "marker": {"color": colour, "size": 8},
            },
            {
                "type": "scatter",
                "mode": "lines",
                "x": grid,
                "y": [fit.predict(x) for x in grid],
                "name": f"{c.label}: {fit.law} law",
                "legendgroup": c.label,
                "showlegend": False,
                "line": {"dash": "dot", "color": colour},
            },
            {
                "type": "scatter",
                "mode": "markers",
                "x": [fit.target_x],
                "y": [fit.predicted_loss],
                "name": f"{c.label} at {report.target}",
                "legendgroup": c.label,
                "showlegend": False,
                "marker": {"symbol": "diamond", "size": 11, "color": colour},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [fit.high - fit.predicted_loss],
                    "arrayminus": [fit.predicted_loss - fit.low],
                },
            },
        ]
    axis = "activated parameters" if report.scale_by == "params_activated" else "training FLOPs"
    layout = _layout(
        {"type": "log", "title": {"text": axis}}, {"title": {"text": "validation loss (nats)"}}, height=400
    )
    note = "Dots: each candidate's loss per rung; dotted: its fitted law; diamond: the prediction, 95% band."
    if report.init == "both":
        note += " The laws are fitted to the scratch runs; the upcycled ones are in the tables."
    return Chart("scaling", title, {"data": data, "layout": layout}, note=note)
