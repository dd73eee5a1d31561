"""The dashboard's views in a real browser, on searches seeded through the repository (no training): the settings
panel, formatted numbers, charts and their empty states, live updates without a reload, cancel with the token, the
compare view and the HTML error pages. One server and one seeded database serve the whole module; screenshots go to
``test-artifacts/`` (or $BRAINSEARCH_TEST_ARTIFACTS)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page
from starlette.requests import Request

from brainsearch import cost
from brainsearch.arch import Architecture
from brainsearch.search.submission import create_search, study_name
from brainsearch.settings import Settings
from brainsearch.space import SearchSpace, sample
from brainsearch.space.baselines import baseline_architectures
from brainsearch.storage import MetricPoint, Repository
from service import dashboard
from tests.factories import fast_space, screenshot, sqlite_repository
from tests.service.conftest import LiveServer

TOKEN = "views-token"
RAW_FLOAT = re.compile(r"\d\.\d{7,}")  # a float shown as Python prints it: never on a page


@dataclass
class Site:
    """The module's server and what was seeded in its database."""

    server: LiveServer
    repo: Repository
    url: str
    finished: int  # a completed search: 2 baselines, 6 completed trials, one pruned, one diverged
    trial_ids: dict[str, int]  # "best", "pruned", "diverged", "glam", "completed-2", ...
    dense_ref: int  # a search whose space's reference baseline is dense


def _curve(final: float, steps: int = 24, tokens_per_step: int = 512, seed: int = 0) -> list[MetricPoint]:
    """A noisy decreasing training loss with validation points every 8 steps."""
    rng = random.Random(seed)
    points = []
    for step in range(1, steps + 1):
        loss = final + 2.4 * (1 - step / steps) ** 2 + rng.uniform(-0.08, 0.08)
        val = final + 2.4 * (1 - step / steps) ** 2 + 0.02 if step % 8 == 0 else None
        points.append(MetricPoint(step, step * tokens_per_step, 0.6 * step, loss, val, 1e-3))
    return points


def _metrics(arch: Architecture, val_loss: float, step_time_s: float) -> dict[str, Any]:
    """Metrics as a trained trial stores them (a ProxyResult's fields), with raw floats."""
    return {
        "status": "completed",
        "device": "cpu",
        "val_loss": val_loss,
        "val_bits_per_byte": val_loss / 0.6931471805599453,
        "train_loss": val_loss - 0.0123456789,
        "steps": 24,
        "tokens": 12288,
        "elapsed_s": 112.4,
        "step_time_s": step_time_s,
        "tokens_per_s": 512 / step_time_s,
        "mfu": 0.0123456789,
        "flops_per_token": cost(arch).flops_per_token,
        "params_total": cost(arch).params_total,
        "params_activated": cost(arch).params_activated,
        "moe": {
            "num_layers": 3,
            "load_cv": 0.2251234567,
            "max_load_ratio": 1.3212345678,
            "dropped_fraction": 0.0123456789,
            "router_entropy": 1.3801234567,
            "load_balance_loss": 1.0296123456,
            "z_loss": 1.3991234567,
            "expert_load": [[0.31, 0.19, 0.22, 0.28], [0.2, 0.3, 0.25, 0.25], [0.4, 0.1, 0.3, 0.2]],
        },
    }


def _add(
    repo: Repository,
    search_id: int,
    number: int,
    arch: Architecture,
    *,
    state: str = "completed",
    val_loss: float | None = None,
    step_time_s: float | None = None,
    params: dict[str, Any] | None = None,
    baseline: str | None = None,
    reason: str | None = None,
) -> int:
    """A trial row as the driver records it: added running, then finished with its metrics and curve."""
    c = cost(arch)
    t = repo.add_trial(
        search_id=search_id,
        number=number,
        arch=arch.to_dict(),
        arch_digest=arch.digest,
        pattern=arch.pattern,
        params=params or {},
        cost=c.model_dump(mode="json"),
        params_activated=c.params_activated,
        is_baseline=baseline is not None,
        baseline_name=baseline,
    )
    done = state == "completed" and val_loss is not None and step_time_s is not None
    repo.finish_trial(
        t.id,
        state=state,  # type: ignore[arg-type]
        reason=reason,
        val_loss=val_loss,
        step_time_s=step_time_s,
        metrics=_metrics(arch, val_loss, step_time_s) if done else {},  # type: ignore[arg-type]
        curve=_curve(val_loss, seed=number) if done else (),  # type: ignore[arg-type]
    )
    return t.id


def _seed_finished(repo: Repository, url: str, space: SearchSpace) -> tuple[int, dict[str, int]]:
    """A completed search: the GLaM and dense baselines, six completed trials proposed by an Optuna study (so that
    parameter importance has something to say), one pruned before training and one diverged."""
    import optuna

    from brainsearch.storage.optuna_storage import optuna_storage

    search, _ = create_search(repo, space, overrides={"trials": 8, "sampler": "random", "seed": 7})
    repo.set_search_status(search.id, "running")
    ids: dict[str, int] = {}
    archs = baseline_architectures(space)
    ids["glam"] = _add(
        repo, search.id, 0, archs["glam"], val_loss=3.3703587651252747, step_time_s=0.795, baseline="glam"
    )
    ids["dense"] = _add(
        repo, search.id, 1, archs["dense"], val_loss=3.361086994409561, step_time_s=1.244, baseline="dense"
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name(search.id), storage=optuna_storage(url), sampler=optuna.samplers.RandomSampler(seed=3)
    )
    rng = random.Random(5)
    best = (float("inf"), 0)
    for number in range(2, 10):
        trial = study.ask()
        arch = sample(space, trial)
        if number == 8:
            reason = "params_total 2.31M exceeds max_params_total 2M"
            ids["pruned"] = _add(repo, search.id, number, arch, state="pruned", params=trial.params, reason=reason)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif number == 9:
            ids["diverged"] = _add(
                repo, search.id, number, arch, state="diverged", params=trial.params, reason="loss is NaN at step 3"
            )
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            loss = 3.0 + 0.05 * arch.d_model / 16 + rng.uniform(0, 0.2)
            tid = _add(
                repo, search.id, number, arch, val_loss=loss, step_time_s=rng.uniform(0.08, 1.8), params=trial.params
            )
            ids[f"completed-{number}"] = tid
            study.tell(trial, loss)
            best = min(best, (loss, tid))
    ids["best"] = best[1]
    repo.set_search_status(search.id, "completed")
    return search.id, ids


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("views")
    repo, url = sqlite_repository(tmp, "views.db")
    finished, ids = _seed_finished(repo, url, fast_space())
    dense_space = fast_space(constraints={"baseline": "dense"})
    dense_ref, _ = create_search(repo, dense_space, name="dense-reference", overrides={"trials": 2})
    archs = baseline_architectures(dense_space)
    repo.set_search_status(dense_ref.id, "running")
    _add(repo, dense_ref.id, 0, archs["glam"], val_loss=3.2, step_time_s=0.5, baseline="glam")
    _add(repo, dense_ref.id, 1, archs["dense"], val_loss=3.4, step_time_s=0.6, baseline="dense")
    _add(repo, dense_ref.id, 2, archs["glam"], val_loss=3.3, step_time_s=0.55)
    repo.set_search_status(dense_ref.id, "completed")
    server = LiveServer(Settings(database_url=url, data_dir=tmp / "data", api_token=TOKEN))
    yield Site(server, repo, server.url, finished, ids, dense_ref.id)
    server.stop()
    repo.engine.dispose()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    p = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    p.close()
    assert not errors, errors  # no script error on any page


def _no_raw_floats(page: Page) -> None:
    text = page.inner_text("body")
    assert not RAW_FLOAT.findall(text), RAW_FLOAT.findall(text)[:5]


def _settings(page: Page) -> dict[str, str]:
    names, values = page.locator("#settings dt").all_inner_texts(), page.locator("#settings dd").all_inner_texts()
    return dict(zip(names, values, strict=True))


def _navigations(page: Page) -> int:
    return int(page.evaluate("performance.getEntriesByType('navigation').length"))


def test_search_page_settings_leaderboard_and_charts(page: Page, site: Site) -> None:
    """Pass: a finished search's page shows its settings (sampler, seed, budget, reference baseline, constraints),
    the leaderboard with formatted numbers and the baselines named, the curves, Pareto fronts, the expert load
    with integer layer ticks and the importance as a bar chart; Plotly's toolbar covers no title; nothing polls."""
    page.goto(f"{site.url}/searches/{site.finished}")
    settings = _settings(page)
    expected = {
        "sampler": "random",
        "seed": "7",
        "trials requested": "8",
        "pruner": "baseline",
        "objectives": "val_loss (minimised)",
        "budget per trial": "4.1K tokens",
        "reference baseline": "glam",
        "scale-up": "none",
    }
    assert expected.items() <= settings.items(), settings
    assert "total params ≤ 2M" in settings["constraints"] and "1 attention" in settings["constraints"]
    board = page.inner_text("#leaderboard")
    assert "glam baseline" in board and "dense baseline" in board and "vs glam" in board
    assert page.locator("#leaderboard tr.baseline").count() == 2
    # Ranks as the CLI and `export --rank` count them: completed trials 1..6, baselines unranked.
    assert page.locator("#leaderboard tr.baseline td.rank").all_inner_texts() == ["", ""]
    ranks = [r for r in page.locator("#leaderboard tr[data-trial] td.rank").all_inner_texts() if r]
    assert ranks == [str(i) for i in range(1, 7)]
    assert page.locator("#leaderboard tr[data-trial]").count() == 10
    assert "3.3704" in board and " ms" in board and ("KFLOP" in board or "MFLOP" in board)
    assert "params_total 2.31M exceeds" in board  # the pruned trial's reason
    assert "8 of 8 trials done: 6 completed, 1 pruned, 1 failed." in page.inner_text("#progress")
    _no_raw_floats(page)
    for chart in ("curves", "pareto-compute", "pareto-params", "expert-load", "importance"):
        assert page.locator(f"#chart-{chart} .main-svg").count() >= 1, chart
    # No trial was timed against the baseline by a probe: no step-time front (the runs' own wall clocks are not
    # a property of their blocks), and the card says why.
    assert page.locator("#chart-pareto-step .main-svg").count() == 0
    assert "No timing probe" in page.inner_text("#card-pareto-step")
    # Loss against training compute: the GLaM baseline at 1.00x among the trials.
    traces = "document.getElementById('chart-pareto-compute').data"
    assert page.evaluate(f"{traces}.find(d => d.texttemplate === 'glam').x") == [1.0]
    # The curves: five best trials and two baselines, each a raw and a smoothed line, plus validation points.
    assert page.evaluate("document.getElementById('chart-curves').data.length") == 7 * 3
    assert page.locator("#chart-importance .bars .point").count() >= 5
    layer_ticks = page.locator("#chart-expert-load .ytick text").all_text_contents()
    assert sorted(layer_ticks) == ["0", "1", "2"], layer_ticks  # one tick per layer, no fractions
    page.hover("#chart-curves")
    bar = page.locator("#card-curves .modebar").bounding_box()
    title = page.locator("#card-curves .chart-title").bounding_box()
    assert bar is not None and title is not None and bar["y"] >= title["y"] + title["height"]
    assert page.evaluate("window.brainsearch.polling") is False and page.locator("#live").count() == 0
    assert page.locator("#cancel").count() == 0  # a finished search has nothing to cancel
    screenshot(page, "10-search-settings-charts")


def test_searches_list_columns_and_reference_baseline(page: Page, site: Site) -> None:
    """Pass: the list shows sampler, trials done / requested, pruned, failed, the best first run and the verdict
    against each space's own reference baseline (glam for one, dense for the other: one seed each, so no block
    beats it), a duration and the creation time; the search page's leaderboard compares with dense."""
    page.goto(site.url + "/")
    row = page.inner_text(f"#searches tr[data-search='{site.finished}']")
    best = min(site.repo.get_trial(i).val_loss for k, i in site.trial_ids.items() if k.startswith("completed"))  # type: ignore[union-attr]
    assert "random" in row and "8 / 8" in row and f"{best:.4f}" in row
    assert "glam baseline" in row and "no block beats it at equal compute" in row
    dense = page.inner_text(f"#searches tr[data-search='{site.dense_ref}']")
    assert "dense baseline" in dense and "glam" not in dense
    assert re.search(r"\d+(\.\d)? s|\d+ min", row), row
    _no_raw_floats(page)
    screenshot(page, "11-searches-list")
    page.goto(f"{site.url}/searches/{site.dense_ref}")
    assert "vs dense" in page.inner_text("#leaderboard") and _settings(page)["reference baseline"] == "dense"
    assert page.inner_text("#verdict").startswith("winner: the dense baseline")
    # 3.3 against the dense baseline's 3.4, not GLaM's 3.2
    assert "-0.100 [-0.100, -0.100]" in page.inner_text("#leaderboard")


def _vs_cells(html: str) -> dict[int, str]:
    """The difference in the leaderboard's comparison cell of each trial row, by trial id, as text (its interval
    apart)."""
    rows = re.findall(r'<tr class="[^"]*" data-trial="(\d+)">(.*?)</tr>', html, re.S)
    cells = {int(tid): re.search(r'<td class="vs">(.*?)</td>', row, re.S) for tid, row in rows}
    deltas = {tid: re.search(r'<span class="delta[^"]*">(.*?)</span>', m.group(1)) for tid, m in cells.items() if m}
    return {tid: d.group(1).strip() if d else "" for tid, d in deltas.items()}


def test_the_comparison_follows_the_reference_baseline_without_a_browser(site: Site) -> None:
    """Pass: the HTML of a search whose space names dense as its reference (GLaM trained too, and better) heads the
    comparison "vs dense" and measures every delta against dense's loss, on the search page and a trial's page; a
    search whose stored space no longer loads still compares with the baseline its document names."""
    trials = {t.number: t for t in site.repo.list_trials(site.dense_ref).items}
    html = httpx.get(f"{site.url}/searches/{site.dense_ref}").text
    assert ">vs dense (95%)</th>" in html and "vs glam" not in html and "winner: the dense baseline" in html
    # One seed each and no evaluation error recorded: the interval is the difference itself.
    assert _vs_cells(html) == {
        trials[0].id: "-0.200 [-0.200, -0.200]",
        trials[1].id: "",
        trials[2].id: "-0.100 [-0.100, -0.100]",
    }
    trial_html = httpx.get(f"{site.url}/trials/{trials[2].id}").text
    assert "vs dense" in trial_html and "-0.100 [-0.100, -0.100]" in trial_html
    old, _ = site.repo.create_search(
        name="older document",
        space_name="older",
        space={"name": "older", "constraints": {"baseline": "dense"}},
        settings={},
        trials_requested=1,
    )
    site.repo.set_search_status(old.id, "completed")  # not active: the list page of the other tests does not poll
    assert ">vs dense (95%)</th>" in httpx.get(f"{site.url}/searches/{old.id}").text


def test_trial_pages_formatted_with_empty_states(page: Page, site: Site) -> None:
    """Pass: a trial page is titled by its number in its search (the id apart), links back to the search, shows
    units (ms, tok/s, MiB, FLOP) and no raw float; a trial pruned before training says so instead of an empty
    chart; a baseline is named as one."""
    best = site.repo.get_trial(site.trial_ids["best"])
    assert best is not None
    page.goto(f"{site.url}/trials/{best.id}")
    assert page.inner_text("h1") == f"Trial #{best.number} of search {site.finished}"
    assert page.title().startswith(f"Trial #{best.number} of search {site.finished}")
    assert f"id {best.id}" in page.inner_text(".title-row")
    assert page.get_attribute("#crumb-search", "href") == f"/searches/{site.finished}"
    text = page.inner_text("body")
    assert " ms" in text and "tok/s" in text and "MiB" in text and "FLOP" in text and "1.2%" in text
    _no_raw_floats(page)
    assert page.locator("#chart-curve .main-svg").count() >= 1
    assert page.locator("#chart-trial-expert-load .main-svg").count() >= 1
    screenshot(page, "12-trial")
    page.goto(f"{site.url}/trials/{site.trial_ids['pruned']}")
    assert "pruned before it trained (params_total 2.31M exceeds" in page.inner_text("#card-curve")
    assert page.locator("#chart-curve").is_hidden() and page.locator(".main-svg").count() == 0
    screenshot(page, "13-trial-pruned")
    page.goto(f"{site.url}/trials/{site.trial_ids['glam']}")
    assert page.inner_text("#baseline") == "glam baseline"


def test_compare_view_from_the_leaderboard(page: Page, site: Site) -> None:
    """Pass: ticking 2-4 trials enables "compare", which shows their blocks side by side, the curves overlaid and
    a metrics table: each trial against its baseline as the leaderboard compares it (paired difference with its
    interval, compute ratios), first-run losses and wall-clock step times without deltas, the model's sizes with
    deltas against the first; 1 or 5 trials, a bad or unknown id are HTML error pages."""
    page.goto(f"{site.url}/searches/{site.finished}")
    button = page.locator("#compare-button")
    boxes = page.locator("#leaderboard tr.completed input.pick")
    assert button.is_disabled()
    boxes.nth(0).check()
    assert button.is_disabled()
    for i in range(1, 5):
        boxes.nth(i).check()
    assert button.is_disabled()  # five
    boxes.nth(4).uncheck()
    assert button.is_enabled() and page.inner_text("#compare-count") == "4"
    boxes.nth(3).uncheck()
    picked = [boxes.nth(i).get_attribute("value") for i in range(3)]
    button.click()
    page.wait_for_url("**/compare?**")
    assert page.locator("#compare-blocks .compare-col").count() == 3
    assert page.locator("#compare-blocks .block .layer").count() == 3 * 8
    rows = page.locator("#compare-metrics tbody tr")
    assert rows.count() == 12
    versus = rows.nth(0).inner_text()
    assert versus.startswith("vs its baseline"), versus
    assert len(re.findall(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] vs glam", versus)) == 3, versus
    assert rows.nth(1).inner_text().startswith("training compute vs its baseline")
    assert len(re.findall(r"\d\.\d\dx", rows.nth(1).inner_text())) == 3
    loss = rows.nth(4).inner_text()
    assert loss.startswith("validation loss (first run)") and not re.findall(r"[+-]\d\.\d{4}", loss), loss
    step = rows.nth(6).inner_text()
    assert step.startswith("step time (wall clock") and not re.search(r"[+-]\d+\.\d%", step), step
    assert re.search(r"[+-]\d+\.\d%", rows.nth(8).inner_text())  # activated parameters, relative
    assert page.evaluate("document.getElementById('chart-compare-curves').data.length") == 3 * 3
    _no_raw_floats(page)
    screenshot(page, "14-compare")
    for query, code in (
        (f"trials={picked[0]}", 422),
        ("trials=1,2,3,4,5", 422),
        ("trials=1,abc", 422),
        (f"trials={picked[0]},99999", 404),
    ):
        response = page.goto(f"{site.url}/compare?{query}")
        assert response is not None and response.status == code, query
        assert str(code) in page.inner_text(".error-page") and page.locator("#home").count() == 1
    page.goto(f"{site.url}/compare?trials={picked[0]}&trials={picked[1]}")
    assert page.locator("#compare-blocks .compare-col").count() == 2


def test_live_updates_without_reloading(browser: Browser, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass: while a search runs, its page and the list take new trials and the final status in place (the same
    document: no navigation, a script variable, a ticked trial and a half-typed token survive), the curves' empty
    state turns into a chart; once it has finished, the cancel button goes and polling stops."""
    monkeypatch.setattr(dashboard, "POLL_S", 1)  # the server runs in this process: its pages poll every second
    space = fast_space()
    search, _ = create_search(site.repo, space, name="live", overrides={"trials": 2})
    site.repo.set_search_status(search.id, "running")
    page, listing = browser.new_page(), browser.new_page()
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/live" in r.url else None)
    page.goto(f"{site.url}/searches/{search.id}")
    listing.goto(site.url + "/")
    assert page.inner_text("#status") == "running" and page.locator("#live").count() == 1
    assert "No learning curve yet" in page.inner_text("#card-curves")
    page.evaluate("window.marker = 42")
    page.fill("#cancel input[name=token]", "half-typed")  # outside the swapped parts: updates keep it
    archs = baseline_architectures(space)
    _add(site.repo, search.id, 0, archs["glam"], val_loss=3.25, step_time_s=0.5, baseline="glam")
    page.wait_for_function("document.querySelectorAll('#leaderboard tr[data-trial]').length === 1", timeout=15_000)
    page.wait_for_selector("#chart-curves .main-svg", timeout=15_000)
    assert "0 of 2 trials done" in page.inner_text("#progress")
    page.check("#leaderboard tr[data-trial] input.pick")
    _add(site.repo, search.id, 1, archs["dense"], val_loss=3.125, step_time_s=0.25)
    page.wait_for_function("document.querySelector('#progress').innerText.startsWith('1 of 2')", timeout=15_000)
    assert page.locator("#leaderboard input.pick:checked").count() == 1  # the tick survived the update
    assert page.inner_text("#compare-count") == "1" and page.input_value("#cancel input[name=token]") == "half-typed"
    screenshot(page, "15-live-running")
    site.repo.set_search_status(search.id, "completed")
    page.wait_for_function("document.getElementById('status').innerText === 'completed'", timeout=15_000)
    listing.wait_for_function(
        f"document.querySelector(\"#searches tr[data-search='{search.id}'] .status\").innerText === 'completed'",
        timeout=15_000,
    )
    assert page.evaluate("window.marker") == 42 and _navigations(page) == 1 and _navigations(listing) == 1
    assert page.evaluate("window.brainsearch.polling") is False and page.evaluate("window.brainsearch.updates") >= 2
    assert page.locator("#live").count() == 0 and page.locator("#cancel").count() == 0
    assert "-0.125 [" in page.inner_text("#leaderboard") and "winner: the glam baseline" in page.inner_text("#verdict")
    screenshot(page, "16-live-finished")
    seen = len(polls)
    page.wait_for_timeout(1000 * dashboard.POLL_S + 1500)
    assert len(polls) == seen  # it stopped asking
    page.close()
    listing.close()


def test_cancel_needs_the_token(page: Page, site: Site) -> None:
    """Pass: the cancel button with a wrong token is a 401 page and cancels nothing; with the token the search is
    cancelled and its page shows it; cancelling a finished search is a 409 page."""
    search, _ = create_search(site.repo, fast_space(), name="to-cancel", overrides={"trials": 2})
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{site.url}/searches/{search.id}")
    page.fill("#cancel input[name=token]", "wrong")
    with page.expect_navigation() as nav:
        page.click("#cancel button")
    assert nav.value is not None and nav.value.status == 401
    assert "401" in page.inner_text(".error-page") and "token" in page.inner_text("#error-message")
    screenshot(page, "17-cancel-unauthorized")
    assert site.repo.get_search(search.id).status == "queued"  # type: ignore[union-attr]
    page.goto(f"{site.url}/searches/{search.id}")
    page.fill("#cancel input[name=token]", TOKEN)
    page.click("#cancel button")
    page.wait_for_url(f"**/searches/{search.id}")
    assert page.inner_text("#status") == "cancelled" and page.locator("#cancel").count() == 0
    assert site.repo.get_search(search.id).status == "cancelled"  # type: ignore[union-attr]
    r = httpx.post(
        f"{site.url}/ui/searches/{site.finished}/cancel", data={"token": TOKEN}, headers={"Accept": "text/html"}
    )
    assert r.status_code == 409 and r.headers["content-type"].startswith("text/html")
    assert "already completed" in r.text and "<html" in r.text


def test_error_pages_are_html_for_browsers_json_for_the_api(page: Page, site: Site) -> None:
    """Pass: an unknown search or trial in a browser is a 404 page in the site's layout with a link home; the same
    URL asked for JSON, and the API, answer JSON."""
    for path, message in (
        (f"/searches/{10**9}", f"no search {10**9}"),
        ("/trials/424242", "no trial 424242"),
    ):
        response = page.goto(site.url + path)
        assert response is not None and response.status == 404
        assert response.headers["content-type"].startswith("text/html")
        assert page.inner_text("#error-message") == message and page.locator("header.topbar").count() == 1
    screenshot(page, "18-error-404")
    page.click("#home")
    page.wait_for_url(site.url + "/")
    as_json = httpx.get(f"{site.url}/searches/{10**9}", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.json() == {"detail": f"no search {10**9}"}
    api = httpx.get(f"{site.url}/api/v1/searches/{10**9}", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")


def _request(path: str, accept: str | None) -> Request:
    headers = [(b"accept", accept.encode())] if accept is not None else []
    return Request({"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""})


@pytest.mark.parametrize(
    ("path", "accept", "expected"),
    [
        ("/searches/3", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("/", "text/html", True),
        ("/compare", "application/json, text/html;q=0.5", False),
        ("/searches/3", "*/*", False),
        ("/searches/3", None, False),
        ("/searches/3", "text/html;q=0", False),
        ("/api/v1/searches/3", "text/html", False),
        ("/api", "text/html", False),
        ("/static/plotly.min.js", "text/html", False),
        ("/docs", "text/html", False),
        ("/redoc", "text/html", False),
        ("/openapi.json", "text/html", False),
    ],
)
def test_wants_html(path: str, accept: str | None, expected: bool) -> None:
    """Pass: HTML error pages go to browsers on dashboard paths only."""
    assert dashboard.wants_html(_request(path, accept)) is expected


def test_error_page_renders_status_and_message() -> None:
    """Pass: the error page carries the status code, its phrase and the message (escaped), with a link home."""
    page = dashboard.error_page(_request("/x", "text/html"), 409, "search 3 already <completed>")
    body = bytes(page.body).decode()
    assert page.status_code == 409 and page.media_type == "text/html"
    assert "Conflict" in body and "search 3 already &lt;completed&gt;" in body and 'href="/"' in body
