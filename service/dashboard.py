"""The dashboard: server-rendered pages (Jinja2) with Plotly charts, every script served by the app itself.

``/``: searches with status and progress, and a form that submits a bundled space. ``/searches/{id}``: the live
leaderboard (sortable, paginated, baselines marked), learning curves, the Pareto fronts (loss against step time and
against activated parameters), Optuna's parameter importance, the best trial's expert-load heatmap and the scale-up
stage (candidates per rung, fidelity, speed-ups, scaling-law predictions and their chart); it refreshes while the
search runs. ``/trials/{id}``: the block drawn as its layer sequence, cost,
metrics, MoE statistics, the learning curve and export links (JSON, YAML, standalone PyTorch, kept weights).
"""

from __future__ import annotations

import secrets
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import plotly
import plotly.graph_objects as go
from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from brainsearch.errors import BrainsearchError
from brainsearch.export.weights import trial_weights_path
from brainsearch.search.driver import Progress, RunOptions, create_search, stored_space, study_name
from brainsearch.search.samplers import SAMPLER_NAMES
from brainsearch.search.scaleup import ScaleUpReport, scale_up_report
from brainsearch.space import bundled_space_names, load_space
from brainsearch.storage import Repository, Trial
from brainsearch.train.result import HEADLINE_METRICS
from service.deps import Offset, ReadAccess, Repo, SearchId, TrialId
from service.routers.searches import pareto_front

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
REFRESH_S = 5
COLUMNS = [("number", "#"), ("val_loss", "val loss"), ("step_time_s", "step ms"), ("params_activated", "activated")]
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_LAYOUT = {"margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "height": 360, "template": "plotly_white"}


def _figure(fig: go.Figure) -> str:
    fig.update_layout(**_LAYOUT)
    return str(fig.to_json())


def _curves(repo: Repository, trials: list[Trial], title: str) -> str:
    fig = go.Figure()
    for t in trials:
        curve = repo.trial_curve(t.id)
        label = f"{t.baseline_name} baseline" if t.is_baseline else f"#{t.number} {t.pattern}"
        fig.add_scatter(x=[p.tokens for p in curve], y=[p.train_loss for p in curve], mode="lines", name=label)
    fig.update_layout(title=title, xaxis_title="tokens", yaxis_title="training loss (nats)")
    return _figure(fig)


def _pareto(trials: list[Trial], key: Literal["step_time_s", "params_activated"], label: str) -> str:
    done = [t for t in trials if t.state == "completed" and t.val_loss is not None]
    front = pareto_front(done, key)
    fig = go.Figure()
    fig.add_scatter(
        x=[getattr(t, key) for t in done],
        y=[t.val_loss for t in done],
        mode="markers",
        name="trials",
        text=[f"#{t.number} {t.pattern}" + (f" ({t.baseline_name})" if t.is_baseline else "") for t in done],
    )
    fig.add_scatter(
        x=[getattr(t, key) for t in front], y=[t.val_loss for t in front], mode="lines+markers", name="Pareto front"
    )
    fig.update_layout(title=f"validation loss vs {label}", xaxis_title=label, yaxis_title="validation loss")
    return _figure(fig)


def _scaling_chart(report: ScaleUpReport) -> str | None:
    """Each candidate's rung losses against the law's x (log scale), its fitted law out to the target, and the
    predicted loss there with its 95% band."""
    fitted = [c for c in report.candidates if c.prediction is not None]
    if not fitted:
        return None
    fig = go.Figure()
    for i, c in enumerate(fitted):
        fit = c.prediction
        assert fit is not None
        colour = _PALETTE[i % len(_PALETTE)]
        xs = [x for x, _ in fit.points]
        fig.add_scatter(x=xs, y=[y for _, y in fit.points], mode="markers", name=c.label, marker={"color": colour})
        lo, hi = min(xs), fit.target_x
        grid = [lo * (hi / lo) ** (k / 40) for k in range(41)]
        fig.add_scatter(
            x=grid,
            y=[fit.predict(x) for x in grid],
            mode="lines",
            line={"dash": "dot", "color": colour},
            name=f"{c.label}: {fit.law} law",
            showlegend=False,
        )
        fig.add_scatter(
            x=[fit.target_x],
            y=[fit.predicted_loss],
            mode="markers",
            marker={"symbol": "diamond", "size": 10, "color": colour},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [fit.high - fit.predicted_loss],
                "arrayminus": [fit.predicted_loss - fit.low],
            },
            name=f"{c.label} at {report.target}",
            showlegend=False,
        )
    axis = "activated parameters" if report.scale_by == "params_activated" else "training FLOPs"
    fig.update_layout(
        title=f"scaling laws: rung losses and the prediction at {report.target} (95% band)",
        xaxis={"type": "log", "title": axis},
        yaxis_title="validation loss",
    )
    return _figure(fig)


def _expert_load(trial: Trial) -> str | None:
    moe = trial.metrics.get("moe") or {}
    load = moe.get("expert_load")
    if not load:
        return None
    fig = go.Figure(go.Heatmap(z=load, colorscale="Viridis", colorbar={"title": "share"}))
    fig.update_layout(title=f"expert load, trial #{trial.number}", xaxis_title="expert", yaxis_title="MoE layer")
    return _figure(fig)


def _importance(database_url: str, search_id: int) -> list[tuple[str, float]]:
    import optuna

    from brainsearch.search.trial import optuna_storage

    try:
        study = optuna.load_study(study_name=study_name(search_id), storage=optuna_storage(database_url))
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(study.directions) != 1 or len(complete) < 5:  # fewer trials say nothing about importance
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(optuna.importance.get_param_importances(study).items())
    except (KeyError, ValueError, RuntimeError):  # no study yet, or too few completed trials
        return []


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    """Plotly.js from the plotly package: no CDN, nothing fetched from the internet."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@router.get("/", response_class=HTMLResponse, dependencies=[ReadAccess])
def index(request: Request, repo: Repo, error: str | None = None) -> HTMLResponse:
    """Searches and the submit form."""
    rows = []
    for s in repo.list_searches(limit=100).items:
        p = Progress.from_counts(s.trials_requested, repo.count_trials(s.id, is_baseline=False))
        rows.append({**vars(s), "done": p.done, "pruned": p.pruned, "failed": p.failed + p.crashed})
    running = any(r["status"] in ("queued", "running") for r in rows)
    context = {
        "searches": rows,
        "spaces": bundled_space_names(),
        "samplers": SAMPLER_NAMES,
        "token_required": bool(request.app.state.settings.api_token),
        "refresh": REFRESH_S if running else None,
        "error": error,
    }
    return templates.TemplateResponse(request, "index.html", context)


@router.post("/ui/searches", dependencies=[])
def submit_form(
    request: Request,
    repo: Repo,
    space: Annotated[str, Form(max_length=64)],
    trials: Annotated[int, Form(ge=1, le=100_000)],
    sampler: Annotated[str, Form(max_length=32)],
    token: Annotated[str, Form(max_length=1000)] = "",
) -> RedirectResponse:
    """The form's submission: queue the bundled space, then show the search."""
    expected = request.app.state.settings.api_token
    if expected and not secrets.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid token is required to submit")
    if space not in bundled_space_names():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no bundled space {space!r}")
    try:
        search, _ = create_search(
            repo,
            load_space(space),
            overrides={"trials": trials, "sampler": sampler},
            options=RunOptions(executor=request.app.state.settings.executor),
        )
    except BrainsearchError as exc:
        return RedirectResponse(f"/?{urlencode({'error': str(exc)[:300]})}", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"/searches/{search.id}", status.HTTP_303_SEE_OTHER)


@router.get("/searches/{search_id}", response_class=HTMLResponse, dependencies=[ReadAccess])
def search_page(
    request: Request,
    search_id: SearchId,
    repo: Repo,
    sort: Literal["number", "val_loss", "step_time_s", "params_activated"] = "val_loss",
    order: Literal["asc", "desc"] = "asc",
    offset: Offset = 0,
    limit: int = 25,
) -> HTMLResponse:
    """A search's live leaderboard and charts."""
    search = repo.get_search(search_id)
    if search is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no search {search_id}")
    offset, limit = max(0, offset), min(max(1, limit), 200)
    page = repo.list_trials(search_id, sort=sort, order=order, offset=offset, limit=limit)
    completed = repo.list_trials(search_id, state="completed", limit=2000).items
    baselines = repo.baselines(search_id)
    glam = next((t.val_loss for t in baselines if t.baseline_name == "glam" and t.val_loss is not None), None)
    best = [t for t in completed if not t.is_baseline][:6]
    charts = [
        _curves(
            repo, best + [t for t in baselines if t.state == "completed"], "learning curves: best trials, baselines"
        ),
        _pareto(completed, "step_time_s", "step time (s)"),
        _pareto(completed, "params_activated", "activated parameters"),
    ]
    heatmap = _expert_load(best[0]) if best else None
    if heatmap:
        charts.append(heatmap)
    report = scale_up_report(repo, search_id, stored_space(search))
    scaling = _scaling_chart(report)
    if scaling:
        charts.append(scaling)
    counts = repo.count_trials(search_id, is_baseline=False)
    progress = Progress.from_counts(search.trials_requested, counts)
    running = search.status in ("queued", "running")
    context: dict[str, Any] = {
        "search": search,
        "trials": page.items,
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "order": order,
        "columns": COLUMNS,
        "glam": glam,
        "counts": counts,
        "failed": progress.failed + progress.crashed,
        "done": progress.done,
        "charts": charts,
        "importance": _importance(request.app.state.database_url, search_id),
        "scale_up": report,
        "refresh": REFRESH_S if running else None,
    }
    return templates.TemplateResponse(request, "search.html", context)


@router.get("/trials/{trial_id}", response_class=HTMLResponse, dependencies=[ReadAccess])
def trial_page(request: Request, trial_id: TrialId, repo: Repo) -> HTMLResponse:
    """One trial: its block, cost, metrics, curve and expert load, with export links."""
    trial = repo.get_trial(trial_id)
    if trial is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trial {trial_id}")
    curve = repo.trial_curve(trial_id)
    fig = go.Figure()
    fig.add_scatter(x=[p.tokens for p in curve], y=[p.train_loss for p in curve], mode="lines", name="training")
    evals = [p for p in curve if p.val_loss is not None]
    fig.add_scatter(x=[p.tokens for p in evals], y=[p.val_loss for p in evals], mode="markers", name="validation")
    fig.update_layout(title="learning curve", xaxis_title="tokens", yaxis_title="loss (nats)")
    charts = [_figure(fig)]
    heatmap = _expert_load(trial)
    if heatmap:
        charts.append(heatmap)
    keys = [*HEADLINE_METRICS, "device"]
    weights = trial_weights_path(request.app.state.settings.data_dir / "weights", trial.search_id, trial.id)
    context = {
        "trial": trial,
        "charts": charts,
        "metric_keys": keys,
        "moe": trial.metrics.get("moe"),
        "weights_kept": weights.is_file(),
    }
    return templates.TemplateResponse(request, "trial.html", context)
