"""Rank N is one trial everywhere (brainsearch.search.standings): ``export --rank N``, the API's pick and leaderboard
rows, the dashboard's rank column and the scale-up stage's N-th candidate, once re-evaluation has put a trial whose
first run was lucky below one measured better over its held-out seeds."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from brainsearch.arch import Architecture, preset, scale
from brainsearch.cli import main
from brainsearch.search import standings
from brainsearch.search.scaleup import candidate_trials
from brainsearch.search.submission import create_search, search_noise_view, search_scale_up_report
from brainsearch.storage import Repository, make_engine
from tests.factories import candidate_run, fast_space, seeded_trial
from tests.service.conftest import InProcessServer


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0), capsys.readouterr().err


def test_rank_n_is_the_same_trial_in_export_the_api_the_dashboard_and_the_scale_up(
    database_url: str,
    in_process: Callable[..., InProcessServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pass: with #1 best on its first run but worse over its held-out seeds than #2, every view ranks #2, #1, then
    the trials trained once by loss (#3, #4); ties and baselines as documented."""
    server = in_process()  # the app's start-up migrates the database
    repo = Repository(make_engine(database_url))
    up = {"ladder": ["cpu-tiny"], "target": "1b-64e"}
    space = fast_space(search={"top_k": 3, "top_k_seeds": 3, "baseline_seeds": 3, "scale_up": up})
    search, _ = create_search(repo, space)
    sid = search.id

    def block(name: str) -> Architecture:
        return scale(preset(name), "cpu-tiny")

    glam = seeded_trial(repo, sid, 0, [3.00, 3.10, 2.95], baseline="glam", arch=block("glam"))
    lucky = seeded_trial(repo, sid, 1, [2.70, 3.05, 3.04], arch=block("brainformer-1"))
    steady = seeded_trial(repo, sid, 2, [2.80, 2.85, 2.86], arch=block("brainformer-2"))
    once = seeded_trial(repo, sid, 3, [2.75], arch=block("dense"))
    last = seeded_trial(repo, sid, 4, [2.90], arch=block("glam-0.1b"))
    expected = [steady, lucky, once, last]

    view = search_noise_view(repo, search)
    assert [t.id for t in view.ranking] == expected
    for rank, trial_id in enumerate(expected, start=1):
        assert standings.pick_trial(repo, sid, view.ranking, rank=rank).id == trial_id
    with pytest.raises(standings.TrialNotFound, match="has 4 completed trial"):
        standings.pick_trial(repo, sid, view.ranking, rank=5)

    # The API: the pick by rank and the leaderboard rows' rank (the reference baseline unranked).
    api = server.client()
    for rank, trial_id in enumerate(expected, start=1):
        assert api.get(f"/searches/{sid}/trial", params={"rank": rank}).json()["id"] == trial_id
    rows = api.get(f"/searches/{sid}/trials").json()["items"]
    assert {r["id"]: r["rank"] for r in rows} == {glam: None, **{t: n for n, t in enumerate(expected, start=1)}}

    # The dashboard: its leaderboard's rank column, whatever the sort.
    for sort in ("val_loss", "number"):
        page = server.http().get(f"/searches/{sid}", params={"sort": sort}).text
        cells = re.findall(r'data-trial="(\d+)">.*?<td class="rank">(\d*)</td>', page, flags=re.S)
        assert {int(t): r for t, r in cells} == {glam: "", **{t: str(n) for n, t in enumerate(expected, start=1)}}

    # The CLI: export --rank N from the database.
    for rank, trial_id in enumerate(expected, start=1):
        out = tmp_path / f"rank{rank}.json"
        code, err = _cli(["export", str(sid), "--db", database_url, "--rank", str(rank), "-o", str(out)], capsys)
        assert code == 0, err
        assert json.loads(out.read_text())["trial_id"] == trial_id

    # The scale-up stage: its candidates in rank order (then the reference baseline), and its report's ranks.
    chosen = candidate_trials(repo, sid, 3, "cpu-tiny", "glam")
    assert [t.id for t in chosen] == [*expected[:3], glam]
    for trial_id, loss in zip([*expected[:3], glam], [2.6, 2.7, 2.65, 2.8], strict=True):
        candidate_run(repo, sid, trial_id, "cpu-tiny", loss)
    report = search_scale_up_report(repo, search, space, view)
    assert {c.trial_id: c.rank for c in report.candidates} == {glam: None, steady: 1, lucky: 2, once: 3}
