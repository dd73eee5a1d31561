"""The dashboard: server-rendered pages (Jinja2) with Plotly charts and one small script, all served by the app.

``/``: searches with status, progress, best loss against the reference baseline, sampler and duration, and a form
that submits a bundled space. ``/searches/{id}``: the search's settings, progress, the leaderboard (sortable,
paginated, baselines marked, trials picked for comparison), learning curves, Pareto fronts, parameter importance,
the best trial's expert load and the scale-up stage; a cancel button while it runs. ``/trials/{id}``: one trial's
block, cost, metrics, MoE statistics, learning curve and export links. ``/compare?trials=ID,ID``: two to four
trials side by side, their curves overlaid, their metrics against the first one's.

While a search is queued or running its page (and ``/`` while any is) polls a JSON route under ``/ui/`` every few
seconds and swaps in the parts that changed, rendered by the same templates: no page reload. Numbers go through
``service._ui_format``; every chart is a plain Plotly figure (a dict) that ``static/dashboard.js`` draws, or a sentence
saying why there is none yet.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import plotly
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from brainsearch._format import fmt_bytes, fmt_count
from brainsearch.errors import BrainsearchError, ConflictError
from brainsearch.search.documents import search_facts
from brainsearch.search.noise import NoiseView, TrialNoise, timing_fields
from brainsearch.search.standings import ranks, reference_trial, standings
from brainsearch.search.submission import (
    Progress,
    RunOptions,
    create_search,
    search_noise_view,
    search_scale_up_report,
    stored_space,
)
from brainsearch.search.verdict import Verdict
from brainsearch.space import SearchSpace, bundled_space_names, load_space
from brainsearch.space.baselines import describe_budget
from brainsearch.space.schema import SAMPLER_NAMES
from brainsearch.storage import Repository, Search, Trial
from brainsearch.train.result import HEADLINE_METRICS
from service._ui_format import FILTERS, MISSING, fmt_delta, fmt_ratio
from service.charts import (
    PALETTE,
    curves_chart,
    expert_load_chart,
    importance_chart,
    pareto_chart,
    scaling_chart,
    trial_curve_chart,
    trial_label,
)
from service.deps import (
    MAX_ID,
    FoundTrial,
    Offset,
    ReadAccess,
    Repo,
    SearchId,
    get_store,
    search_or_404,
    trials_or_404,
)
from service.routers.searches import PARETO_AXES

__all__ = ["error_page", "router", "wants_html"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters.update(FILTERS)
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC = Path(__file__).parent / "static"
POLL_S = 3  # how often a live page asks for changes
ACTIVE = ("queued", "running")
SortKey = Literal["number", "val_loss", "step_time_s", "params_activated", "params_total", "flops_per_token"]
BEST_CURVES = 5  # learning curves drawn on a search page besides the baselines': more is a tangle
COMPARE_MIN, COMPARE_MAX = 2, 4
_NOT_HTML = ("/api", "/static", "/docs", "/redoc")


# --- searches ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchSummary:
    """What the list and a search's header show about a search."""

    search: Search
    space: SearchSpace | None
    progress: Progress
    best: Trial | None
    reference: str  # the baseline its trials are compared with (its space's constraints.baseline)
    reference_loss: float | None
    duration_s: float | None
    sampler: str
    noise: NoiseView | None = None  # the seed noise the search measured (None: its space could not be read)
    verdict: Verdict | None = None  # what the search found (None: its space could not be read)

    @property
    def active(self) -> bool:
        """Queued or running: its page polls for changes."""
        return self.search.status in ACTIVE

    def of(self, trial: Trial) -> TrialNoise | None:
        """A trial's runs over seeds and interval against the baseline."""
        return self.noise.of(trial) if self.noise is not None else None

    @property
    def percent_done(self) -> int:
        """Progress for the bar, 0-100."""
        return min(100, round(100 * self.progress.done / max(1, self.search.trials_requested)))


def _space_of(search: Search) -> SearchSpace | None:
    try:
        return stored_space(search)
    except (BrainsearchError, ValidationError):  # a document an older version stored: the page shows what it can
        return None


def _summary(repo: Repository, search: Search, now: datetime | None = None) -> SearchSummary:
    facts = search_facts(repo, search, _space_of(search))
    space = facts.space
    best = repo.list_trials(search.id, state="completed", is_baseline=False, sort="val_loss", limit=1).items
    duration = None
    if search.started_at is not None:
        end = search.finished_at or (now or datetime.now(UTC))
        duration = (end - search.started_at).total_seconds()
    sampler = space.search.sampler if space else str(search.settings.get("search", {}).get("sampler", "?"))
    reference_loss = facts.reference_loss
    if facts.view is None:  # the space could not be read: the reference baseline's loss is still the database's
        reference_loss = _reference_loss(repo, search.id, facts.reference)
    return SearchSummary(
        search=search,
        space=space,
        progress=facts.progress,
        best=best[0] if best and best[0].val_loss is not None else None,
        reference=facts.reference,
        reference_loss=reference_loss,
        duration_s=duration,
        sampler=sampler,
        noise=facts.view,
        verdict=facts.verdict,
    )


def _reference_loss(repo: Repository, search_id: int, reference: str) -> float | None:
    trial = reference_trial(repo, search_id, reference)
    return trial.val_loss if trial is not None else None


def _settings_rows(search: Search, space: SearchSpace | None) -> list[tuple[str, str]]:
    """The search's settings as (name, value) lines for the settings panel."""
    run = search.settings.get("run", {})
    if space is None:
        return [("space", search.space_name), ("trials requested", f"{search.trials_requested:,}")]
    s, p, c = space.search, space.proxy, space.constraints
    budget = describe_budget(space)
    sampler: str = s.sampler
    if s.sampler == "evolution":
        e = s.evolution
        sampler += f" (population {e.population_size}, tournament {e.tournament_size})"
    limits = [
        f"total params ≤ {fmt_count(c.max_params_total)}" if c.max_params_total is not None else "",
        f"activated params ≤ {fmt_count(c.max_params_activated)}" if c.max_params_activated is not None else "",
        f"memory ≤ {fmt_bytes(c.max_memory_bytes)}" if c.max_memory_bytes is not None else "",
        f"step time ≤ {c.max_step_time_ratio:g}× the baseline's" if c.max_step_time_ratio is not None else "",
        f"FLOPs per token ≤ {c.max_flops_per_token_ratio:g}× the baseline's"
        if c.max_flops_per_token_ratio is not None
        else "",
        ("at least " + ", ".join(f"{n} {t}" for t, n in c.min_layers.items())) if c.min_layers else "",
    ]
    rows = [
        ("space", space.name),
        ("sampler", sampler),
        ("seed", str(s.seed)),
        ("trials requested", f"{search.trials_requested:,}"),
        ("concurrency", str(s.concurrency)),
        ("pruner", s.pruner),
        ("objectives", ", ".join(s.objectives) + " (minimised)"),
        ("budget per trial", budget),
        ("proxy model", f"block × {p.num_blocks}, context {p.seq_len}, batch {p.batch_size}, vocab {p.vocab_size}"),
        ("data", p.data),
        ("reference baseline", c.baseline),
        ("constraints", "; ".join(x for x in limits if x) or "none"),
    ]
    if s.scale_up is not None:
        su = s.scale_up
        ladder = " → ".join(r.preset + _rung_note(r.budget_tokens, r.devices) for r in su.ladder)
        init = "" if su.init == "scratch" else f"; init {su.init}"
        rows.append(
            ("scale-up", f"{ladder}; predicts at {su.target} ({su.law} law in {su.scale_by}), top {s.top_k}{init}")
        )
    else:
        rows.append(("scale-up", "none"))
    rows.append(("weights kept", s.keep_weights.replace("_", " ")))
    rows.append(("executor", f"{run.get('executor', 'local')}, device {run.get('device', 'auto')}"))
    return rows


def _rung_note(budget_tokens: float | None, devices: int | None) -> str:
    """A ladder rung's own settings in the settings table: `` (100K tokens, 2 devices)``, or nothing."""
    parts = [f"{fmt_count(budget_tokens)} tokens" if budget_tokens is not None else "", _devices_text(devices)]
    text = ", ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def _devices_text(devices: int | None) -> str:
    return "" if devices is None else f"{devices} device{'s' if devices != 1 else ''}"


def _search_view(
    request: Request,
    repo: Repository,
    search: Search,
    sort: SortKey,
    order: Literal["asc", "desc"],
    offset: int,
    limit: int,
    *,
    importance: bool,
) -> dict[str, Any]:
    """What the search page and its live updates render (importance only when asked: it is the costly part)."""
    summary = _summary(repo, search)
    view = summary.noise
    page = repo.list_trials(search.id, sort=sort, order=order, offset=offset, limit=limit)
    completed = repo.list_trials(search.id, state="completed", limit=2000).items
    baselines = [t for t in repo.baselines(search.id) if t.state == "completed"]
    latest_baselines = list({t.baseline_name: t for t in baselines}.values())
    best = [t for t in completed if not t.is_baseline][:BEST_CURVES]
    searched = sum(1 for t in completed if not t.is_baseline)
    shown = f"The best {len(best)} of {searched} completed trials and the baselines." if searched > len(best) else ""
    charts = [
        curves_chart(
            repo,
            best + latest_baselines,
            "curves",
            empty="No learning curve yet: curves appear as trials finish.",
            note=shown,
        ),
        *(pareto_chart(completed, axis, view) for axis in PARETO_AXES if view is not None),
        expert_load_chart(best[0] if best else None),
    ]
    if importance:
        charts.append(importance_chart(request.app.state.database_url, search.id))
    space = summary.space
    report = None
    if space is not None:
        report = search_scale_up_report(repo, search, space, view, store=get_store(request))
    if report is not None and report.configured:
        charts.append(scaling_chart(report))
    query = {"sort": sort, "order": order, "offset": offset, "limit": limit}
    return {
        "ranks": ranks(view.ranking) if view is not None else ranks(standings(repo, search.id, {})),
        "search": search,
        "summary": summary,
        "settings_rows": _settings_rows(search, space),
        "trials": page.items,
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "order": order,
        "columns": _LEADERBOARD_COLUMNS,
        "charts": [c.as_json() for c in charts],
        "scale_up": report,
        "token_required": bool(request.app.state.settings.api_token),
        "live_url": f"/ui/searches/{search.id}/live?{urlencode(query)}",
        "poll_s": POLL_S,
    }


# Sortable leaderboard columns: (sort key, header, cell class). The other columns are not sortable.
_LEADERBOARD_COLUMNS: list[tuple[SortKey, str, str]] = [
    ("number", "#", "num"),
    ("val_loss", "val loss", "val-loss"),
    ("step_time_s", "step time", "step-time"),
    ("params_activated", "activated", "activated"),
    ("params_total", "total params", "total"),
    ("flops_per_token", "FLOPs/token", "flops"),
]
SearchSort = Annotated[SortKey, Query()]


def _page_args(offset: int, limit: int) -> tuple[int, int]:
    return max(0, offset), min(max(1, limit), 200)


# --- routes -----------------------------------------------------------------------------------------------------------
@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    """Plotly.js from the plotly package: no CDN, nothing fetched from the internet."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@router.get("/static/dashboard.js")
def dashboard_js() -> FileResponse:
    """The dashboard's one script: charts, live updates, the compare picker."""
    return FileResponse(STATIC / "dashboard.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/static/dashboard.css")
def dashboard_css() -> FileResponse:
    """The dashboard's style sheet."""
    return FileResponse(STATIC / "dashboard.css", media_type="text/css", headers={"Cache-Control": "no-cache"})


def _index_rows(repo: Repository) -> list[SearchSummary]:
    now = datetime.now(UTC)
    return [_summary(repo, s, now) for s in repo.list_searches(limit=100).items]


@router.get("/", response_class=HTMLResponse, dependencies=[ReadAccess])
def index(request: Request, repo: Repo, error: str | None = None) -> HTMLResponse:
    """Searches and the submit form."""
    rows = _index_rows(repo)
    context = {
        "rows": rows,
        "spaces": bundled_space_names(),
        "samplers": SAMPLER_NAMES,
        "token_required": bool(request.app.state.settings.api_token),
        "active": any(r.active for r in rows),
        "live_url": "/ui/searches/live",
        "poll_s": POLL_S,
        "error": error,
    }
    return templates.TemplateResponse(request, "index.html", context)


@router.get("/ui/searches/live", dependencies=[ReadAccess])
def index_live(repo: Repo) -> JSONResponse:
    """The searches table's rows, for the list page while a search is queued or running."""
    rows = _index_rows(repo)
    html = templates.get_template("_search_rows.html").render(rows=rows)
    return JSONResponse(
        {"active": any(r.active for r in rows), "parts": {"searches": html}}, headers={"Cache-Control": "no-store"}
    )


class _FormToken:
    """The forms' auth rule, as a dependency so that it is checked before the form's fields (a form without the
    token is a 401 whatever else is wrong with it): with a token configured, the ``token`` field must match it
    (constant-time)."""

    def __init__(self, action: str) -> None:
        self.action = action

    async def __call__(self, request: Request) -> None:
        expected = request.app.state.settings.api_token
        if not expected:
            return
        given = (await request.form()).get("token", "")
        if not isinstance(given, str) or not secrets.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"a valid token is required to {self.action}")


@router.post("/ui/searches", dependencies=[Depends(_FormToken("submit"))])
def submit_form(
    request: Request,
    repo: Repo,
    space: Annotated[str, Form(max_length=64)],
    trials: Annotated[int, Form(ge=1, le=100_000)],
    sampler: Annotated[str, Form(max_length=32)],
) -> RedirectResponse:
    """The form's submission: queue the bundled space, then show the search."""
    if space not in bundled_space_names():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no bundled space {space!r}")
    try:
        search, _ = create_search(
            repo,
            load_space(space, max_params=request.app.state.settings.max_space_params),
            overrides={"trials": trials, "sampler": sampler},
            options=RunOptions(executor=request.app.state.settings.executor),
        )
    except BrainsearchError as exc:
        return RedirectResponse(f"/?{urlencode({'error': str(exc)[:300]})}", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"/searches/{search.id}", status.HTTP_303_SEE_OTHER)


@router.post("/ui/searches/{search_id}/cancel", dependencies=[Depends(_FormToken("cancel a search"))])
def cancel_form(search_id: SearchId, repo: Repo) -> RedirectResponse:
    """The cancel button: cancel a queued or running search, then show it (409 when it has finished)."""
    search_or_404(repo, search_id)
    try:
        repo.cancel_search(search_id)
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{exc}: there is nothing to cancel.") from None
    return RedirectResponse(f"/searches/{search_id}", status.HTTP_303_SEE_OTHER)


@router.get("/searches/{search_id}", response_class=HTMLResponse, dependencies=[ReadAccess])
def search_page(
    request: Request,
    search_id: SearchId,
    repo: Repo,
    sort: SearchSort = "val_loss",
    order: Literal["asc", "desc"] = "asc",
    offset: Offset = 0,
    limit: int = 25,
) -> HTMLResponse:
    """A search: settings, progress, leaderboard and charts, updated in place while it runs."""
    search = search_or_404(repo, search_id)  # after the query's checks: bad input is a 422 first
    offset, limit = _page_args(offset, limit)
    context = _search_view(request, repo, search, sort, order, offset, limit, importance=True)
    return templates.TemplateResponse(request, "search.html", context)


@router.get("/ui/searches/{search_id}/live", dependencies=[ReadAccess])
def search_live(
    request: Request,
    search_id: SearchId,
    repo: Repo,
    sort: SearchSort = "val_loss",
    order: Literal["asc", "desc"] = "asc",
    offset: Offset = 0,
    limit: int = 25,
) -> JSONResponse:
    """The search page's changing parts (header, leaderboard, scale-up, charts) for its live updates; the last
    answer, once the search has finished, also carries the parameter importance."""
    search = search_or_404(repo, search_id)
    offset, limit = _page_args(offset, limit)
    active = search.status in ACTIVE
    view = _search_view(request, repo, search, sort, order, offset, limit, importance=not active)
    parts = {name: templates.get_template(f"_{name}.html").render(view) for name in ("head", "leaderboard", "scaleup")}
    body = {
        "active": active,
        "title": f"{search.name} · search {search.id} · brainsearch",
        "parts": parts,
        "charts": view["charts"],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/trials/{trial_id}", response_class=HTMLResponse, dependencies=[ReadAccess])
def trial_page(request: Request, trial: FoundTrial, repo: Repo) -> HTMLResponse:
    """One trial: its block, cost, metrics, curve and expert load, with export links."""
    search = repo.get_search(trial.search_id)
    assert search is not None  # trials are deleted with their search
    summary = _summary(repo, search)
    charts = [trial_curve_chart(repo, trial), expert_load_chart(trial, "trial-expert-load")]
    keys = [*HEADLINE_METRICS, "device"]
    weights = get_store(request).kept_weights(trial.search_id, trial.id)
    moe = trial.metrics.get("moe")
    context = {
        "trial": trial,
        "search": search,
        "summary": summary,
        "charts": [c.as_json() for c in charts],
        "metric_keys": keys,
        "moe": {k: v for k, v in moe.items() if k != "expert_load"} if moe else None,
        "weights_kept": weights is not None,
        "noise": summary.of(trial),
        "seed_runs": repo.list_seed_runs(search.id, [trial.id]),
    }
    return templates.TemplateResponse(request, "trial.html", context)


# Compared metrics: (label, how to read it from a trial, format, delta kind, whether higher is better). A delta kind
# of "" shows the value alone: a first run's loss differs from another first run's by seed noise as much as by the
# block (the paired comparison with the baseline is the row above them), and a wall-clock step time or throughput
# holds the machine's load during each run.
_COMPARED: list[tuple[str, str, str, str, bool]] = [
    ("validation loss (first run)", "val_loss", "loss", "", False),
    ("training loss (first run)", "train_loss", "loss", "", False),
    ("step time (wall clock, its run)", "step_time_s", "ms", "", False),
    ("throughput (wall clock, its run)", "tokens_per_s", "rate", "", True),
    ("activated parameters", "params_activated", "count", "rel", False),
    ("total parameters", "params_total", "count", "rel", False),
    ("training FLOPs per token", "flops_per_token", "flops", "rel", False),
    ("training memory (estimate)", "memory_bytes", "bytes", "rel", False),
]


def _value(t: Trial, key: str) -> Any:
    if key == "val_loss":
        return t.val_loss
    if key == "step_time_s":
        return t.step_time_s
    if key == "params_activated":
        return t.cost.get(key, t.params_activated)
    return t.metrics.get(key, t.cost.get(key))


def _compared_with_baselines(repo: Repository, chosen: list[Trial]) -> list[dict[str, Any]]:
    """The compare view's first rows: each trial against its own search's reference baseline, as the leaderboard
    compares it (the paired mean difference with its interval and what it says, training compute and FLOPs per
    token as ratios, the step time over the baseline's from a timing probe). Deltas between the trials themselves
    would be first-run differences without an interval."""
    views: dict[int, tuple[NoiseView | None, str]] = {}
    for t in chosen:
        if t.search_id not in views:
            search = repo.get_search(t.search_id)
            space = _space_of(search) if search is not None else None
            view = search_noise_view(repo, search, space) if search is not None and space is not None else None
            views[t.search_id] = (view, space.constraints.baseline if space is not None else "baseline")
    cells: dict[str, list[dict[str, Any]]] = {"vs": [], "compute": [], "flops": [], "step": []}
    for t in chosen:
        view, name = views[t.search_id]
        n = view.of(t) if view is not None else None
        vs = n.vs_baseline if n is not None else None
        probe = timing_fields(t.metrics)
        cells["vs"].append(
            {
                "value": f"{FILTERS['versus'](vs)} vs {name}" if vs is not None else MISSING,
                "delta": n.comparison if n is not None and n.comparison else "",
                "better": n.beats_baseline if vs is not None and n is not None and vs.beyond_noise else None,
            }
        )
        cells["compute"].append({"value": fmt_ratio(n.compute_ratio if n else None), "delta": "", "better": None})
        cells["flops"].append({"value": fmt_ratio(n.flops_per_token_ratio if n else None), "delta": "", "better": None})
        step = "timing uncertain" if probe.get("step_time_uncertain") else fmt_ratio(probe.get("step_time_ratio"))
        cells["step"].append({"value": step, "delta": "", "better": None})
    return [
        {"label": "vs its baseline (paired, 95% simultaneous)", "cells": cells["vs"]},
        {"label": "training compute vs its baseline", "cells": cells["compute"]},
        {"label": "FLOPs per token vs its baseline", "cells": cells["flops"]},
        {"label": "step time vs its baseline (timing probe)", "cells": cells["step"]},
    ]


def _compare_ids(raw: list[str]) -> list[int]:
    """The trial ids of ``?trials=1,2&trials=3`` (comma-separated, repeated, or both), duplicates dropped."""
    ids: list[int] = []
    for part in (p.strip() for item in raw for p in item.split(",")):
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or int(part) > MAX_ID:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"trials: {part[:40]!r} is not a trial id")
        if int(part) not in ids:
            ids.append(int(part))
        if len(ids) > COMPARE_MAX:
            break  # already too many: no need to read the rest
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        got = str(len(ids)) if len(ids) <= COMPARE_MAX else f"more than {COMPARE_MAX}"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Pick {COMPARE_MIN} to {COMPARE_MAX} different trials to compare (got {got}).",
        )
    return ids


@router.get("/compare", response_class=HTMLResponse, dependencies=[ReadAccess])
def compare_page(
    request: Request,
    repo: Repo,
    trials: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006
) -> HTMLResponse:
    """Two to four trials side by side: blocks, learning curves overlaid, metrics against the first trial's."""
    ids = _compare_ids(trials[: COMPARE_MAX + 1])
    chosen = trials_or_404(repo, ids)
    several = len({t.search_id for t in chosen}) > 1
    curves = curves_chart(
        repo,
        chosen,
        "compare-curves",
        empty="None of these trials recorded a learning curve.",
        colours=list(PALETTE[: len(chosen)]),
        label=lambda t: trial_label(t) + (f" (search {t.search_id})" if several else ""),
        wide=True,
    )
    first = chosen[0]
    rows = _compared_with_baselines(repo, chosen)
    for label, key, fmt, kind, higher_better in _COMPARED:
        cells = []
        base = _value(first, key)
        for j, t in enumerate(chosen):
            v = _value(t, key)
            d = "" if j == 0 or not kind else fmt_delta(v, base, kind)
            better = None
            if d and v != base:
                better = (v > base) == higher_better
            cells.append({"value": FILTERS[fmt](v), "delta": d, "better": better})
        rows.append({"label": label, "cells": cells})
    context = {
        "trials": chosen,
        "colours": PALETTE,
        "rows": rows,
        "charts": [curves.as_json()],
        "searches": {t.search_id for t in chosen},
    }
    return templates.TemplateResponse(request, "compare.html", context)


# --- errors -----------------------------------------------------------------------------------------------------------
def _accepts_html(accept: str) -> bool:
    """Whether the Accept header prefers HTML to JSON (q-values honoured; browsers send ``text/html`` first)."""
    html = json = 0.0
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in ("text/html", "application/xhtml+xml"):
            html = max(html, q)
        elif media == "application/json":
            json = max(json, q)
    return html > 0 and html >= json


def wants_html(request: Request) -> bool:
    """Whether an error on this request should be the dashboard's HTML page: a dashboard path (not the API, the
    static files or the API docs) asked for by a client that names ``text/html`` in its Accept header, as browsers
    do. ``*/*`` alone (curl, httpx) and the live updates' ``application/json`` get JSON."""
    path = request.url.path
    if path == "/openapi.json" or any(path == p or path.startswith(p + "/") for p in _NOT_HTML):
        return False
    return _accepts_html(request.headers.get("accept", ""))


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    """A small page in the site's layout: the status, the message and a way back, with that status code."""
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Error"
    context = {"status_code": status_code, "phrase": phrase, "message": message}
    return templates.TemplateResponse(request, "error.html", context, status_code=status_code)
