"""Seed noise end to end: the session's real tiny search (tests/conftest.py: its baseline trained with three seeds,
interleaved with the first trials, its best trials re-evaluated) and the spread and the intervals it measured,
as the API, the CLI and the dashboard show them."""

from __future__ import annotations

import json

import optuna
import pytest
from playwright.sync_api import Browser

from brainsearch.cli import main
from brainsearch.search.submission import study_name
from brainsearch.settings import Settings
from brainsearch.storage.optuna_storage import optuna_storage
from tests.conftest import TrainedSearch
from tests.service.conftest import LiveServer

pytestmark = pytest.mark.slow  # it reads the session's trained search, in a browser too


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0), capsys.readouterr().out


def test_seed_noise_is_measured_and_shown_by_the_api_the_cli_and_the_dashboard(
    trained_copy: TrainedSearch, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: the baseline trains with seeds 0-2, the first seed run before the last trial (interleaved), the two
    best trials again with seeds 1 and 2; the sampler sees first values only; the API's search document has the
    baseline's losses, the pooled seed sd and the paired spread; every leaderboard row its interval (the mean
    difference from the baseline's run of the same seed, paired, a re-evaluated trial's selection seed left out;
    simultaneous over the search's five comparisons; beyond noise exactly when the interval is below 0); the CLI
    prints the same rows and says what the noise is; the dashboard's search page shows the baseline's seeds, the
    seed sd and an interval on every compared row, and a re-evaluated trial's page its other seeds. The headline
    numbers are the same everywhere: the verdict's sentence and every row's difference with its interval read alike
    in the API, the CLI and the dashboard."""
    from brainsearch.search.noise import Interval
    from brainsearch.search.verdict import fmt_interval

    repo, database_url, sid = trained_copy.repo, trained_copy.database_url, trained_copy.search_id
    glam = next(t for t in repo.baselines(sid) if t.baseline_name == "glam")
    runs = repo.list_seed_runs(sid)
    assert {(r.seed, r.state) for r in runs if r.trial_id == glam.id} == {(1, "completed"), (2, "completed")}
    trials = repo.list_trials(sid, state="completed", is_baseline=False, limit=100).items
    reevaluated = {r.trial_id for r in runs if r.trial_id != glam.id}
    assert reevaluated == {t.id for t in trials[:2]}  # the two best first values, two more seeds each
    assert {(r.trial_id, r.seed) for r in runs if r.trial_id != glam.id} == {
        (t, s) for t in reevaluated for s in (1, 2)
    }
    assert all(r.state == "completed" and r.val_loss is not None for r in runs)
    # Interleaved with the first trials, not after them: the baseline's seed runs started before the last trial.
    last_trial = max(t.created_at for t in repo.list_trials(sid, is_baseline=False, limit=100).items)
    assert min(r.created_at for r in runs if r.trial_id == glam.id) < last_trial
    # Another seed is another run: the losses differ.
    assert len({glam.val_loss, *(r.val_loss for r in runs if r.trial_id == glam.id)}) == 3
    # The sampler saw the first values only: one Optuna trial per sampled trial, each with the trial's own loss.
    study = optuna.load_study(study_name=study_name(sid), storage=optuna_storage(database_url))
    told = {ot.user_attrs["bs_trial_id"]: ot.value for ot in study.trials if "bs_trial_id" in ot.user_attrs}
    assert told == {t.id: t.val_loss for t in repo.list_trials(sid, is_baseline=False, limit=100).items}

    server = LiveServer(Settings(database_url=database_url, data_dir=trained_copy.data_dir))
    with server.client() as api:
        document = api.get(f"/searches/{sid}").json()
        board = api.get(f"/searches/{sid}/trials").json()["items"]
    noise, verdict = document["noise"], document["verdict"]
    assert noise["baseline"] == "glam" and noise["baseline_trial_id"] == glam.id
    assert noise["baseline_values"][0] == glam.val_loss and len(noise["baseline_values"]) == 3
    # Pooled over GLaM (two degrees of freedom) and the two re-evaluated trials' held-out seeds (one each).
    assert noise["dof"] == 4 and noise["architectures"] == 3 and noise["seed_sd"] is not None
    # Paired: the two re-evaluated trials' seeds 1 and 2 against GLaM's, one degree of freedom each.
    assert noise["paired_dof"] == 2 and noise["paired_architectures"] == 2 and noise["paired_sd"] is not None
    # Four trials and the dense baseline compared with GLaM at once: every interval is simultaneous over five.
    assert noise["comparisons"] == 5
    held_out = {(r.trial_id, r.seed): r.val_loss for r in runs}
    rows = {r["id"]: r for r in board}
    assert rows[glam.id]["seeds"] == 3 and rows[glam.id]["vs_baseline"] is None
    assert rows[glam.id]["compute_ratio"] == 1.0
    for r in board:
        if r["id"] == glam.id or r["state"] != "completed":
            continue
        vs = r["vs_baseline"]
        assert vs["noise_measured"] and vs["low"] < vs["difference"] < vs["high"] and vs["comparisons"] == 5
        if r["id"] in reevaluated:  # compared on seeds 1 and 2: the seed it was selected on is left out
            differences = [held_out[(r["id"], s)] - noise["baseline_values"][s] for s in (1, 2)]
            assert vs["selection_seed_left_out"] and r["seeds"] == 3
        else:
            differences = [r["val_loss"] - noise["baseline_values"][0]]
            assert not vs["selection_seed_left_out"] and r["seeds"] == 1
        assert vs["method"] == "paired" and vs["difference"] == pytest.approx(sum(differences) / len(differences))
        assert vs["beyond_noise"] == (vs["high"] < 0) and vs["seeds"] == len(differences) and vs["baseline_seeds"] == 3
        assert r["compute_ratio"] is not None and r["comparison"]
    # The CLI: the same rows as JSON, and a table that says what the noise is, from the database file itself.
    where = ["--db", database_url]
    code, out = _cli(["leaderboard", str(sid), *where, "--json"], capsys)
    assert code == 0
    cli_rows = {r["id"]: r for r in map(json.loads, out.splitlines())}
    for trial_id, row in rows.items():
        assert cli_rows[trial_id]["vs_baseline"] == row["vs_baseline"]
        assert cli_rows[trial_id]["comparison"] == row["comparison"]
    code, out = _cli(["leaderboard", str(sid), *where], capsys)
    assert code == 0
    assert "glam baseline over 3 of 3 seed(s)" in out and "seed sd" in out and "vs glam (95%)" in out
    assert f"{noise['baseline_values'][1]:.4f}" in out
    headline = {
        str(r["number"]): fmt_interval(Interval.model_validate(r["vs_baseline"])) for r in board if r["vs_baseline"]
    }
    table = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") > 5]
    assert {row[1]: row[6] for row in table if row[6]} == headline
    assert out.rstrip().splitlines()[-1] == f"verdict: {verdict['text']}"
    # The dashboard, in a browser.
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/searches/{sid}")
        assert page.locator("#baseline-seeds").inner_text().startswith("over 3 of 3 seeds: ")
        assert f"{noise['baseline_values'][2]:.4f}" in page.locator("#baseline-seeds").inner_text()
        assert page.locator("#seed-sd").inner_text() == f"sd {noise['seed_sd']:.4f}"
        assert page.locator("#verdict").inner_text() == verdict["text"]
        shown = {
            page.locator("td.num", has=page.locator("a")).nth(i).inner_text().lstrip("#"): cell
            for i, cell in enumerate(page.locator("#leaderboard td.vs").all_inner_texts())
        }
        cells = {n: cell.split(" ", 3)[:3] for n, cell in shown.items() if cell}
        assert {n: " ".join(parts) for n, parts in cells.items()} == headline
        compared = [r for r in board if r["vs_baseline"] is not None]
        beyond = sum(bool(r["beats_baseline"]) for r in compared)
        assert page.locator("#leaderboard .tag.beyond-noise").count() == beyond
        again = next(r for r in board if r["seeds"] == 3 and not r["is_baseline"])
        page.goto(f"{server.url}/trials/{again['id']}")
        assert (
            "seed 1" in page.locator("#seed-runs").inner_text() and "seed 2" in page.locator("#seed-runs").inner_text()
        )
        assert f"{again['val_loss_mean']:.4f}" in page.locator("#seed-runs").inner_text()
        assert page.locator("#trial-versus").inner_text() == headline[str(again["number"])]
        page.goto(f"{server.url}/")
        cell = page.locator(f"#searches tr[data-search='{sid}'] td.verdict-cell")
        assert cell.get_attribute("title") == verdict["text"]
    finally:
        page.close()
        server.stop()
