"""The reference baseline and the ranking rule (brainsearch.search.standings) from stored rows: the newest completed
baseline run is the reference, a crashed one never is; re-evaluated trials first by their held-out mean, then the
rest by loss, ties by number. (Rank N across export, API, dashboard and scale-up: tests/service/test_ranks.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from brainsearch.errors import TrialNotFound
from brainsearch.search.noise import seeds_of
from brainsearch.search.standings import pick_trial, rank_by_mean, reference_trial, standings, trial_at_rank
from brainsearch.search.submission import create_search
from tests.factories import add_running_trial, fast_space, glam_tiny, seeded_trial, sqlite_repository


def test_the_reference_is_the_newest_completed_run_of_the_named_baseline(tmp_path: Path) -> None:
    repo, _ = sqlite_repository(tmp_path)
    sid = create_search(repo, fast_space())[0].id
    assert reference_trial(repo, sid, "glam") is None
    first = add_running_trial(repo, sid, 0, glam_tiny(), is_baseline=True, baseline_name="glam")
    repo.finish_trial(first.id, state="crashed", reason="worker stopped while the trial ran")
    assert reference_trial(repo, sid, "glam") is None  # a crashed run is never the reference
    retry = seeded_trial(repo, sid, 1, [3.0], baseline="glam")
    seeded_trial(repo, sid, 2, [3.3], baseline="dense")
    assert reference_trial(repo, sid, "glam").id == retry  # type: ignore[union-attr]
    again = seeded_trial(repo, sid, 3, [3.1], baseline="glam")
    assert reference_trial(repo, sid, "glam").id == again  # type: ignore[union-attr]
    assert reference_trial(repo, sid, None) is None


def test_ranking_puts_the_reevaluated_first_by_held_out_mean_then_loss_with_ties_by_number(tmp_path: Path) -> None:
    repo, _ = sqlite_repository(tmp_path)
    sid = create_search(repo, fast_space())[0].id
    seeded_trial(repo, sid, 0, [3.0, 3.0], baseline="glam")
    tie_late = seeded_trial(repo, sid, 5, [2.5, 2.9])  # held out 2.9, same as #2: the earlier number first
    tie_early = seeded_trial(repo, sid, 2, [2.8, 2.9])
    best_mean = seeded_trial(repo, sid, 3, [2.9, 2.7])  # a worse first run, the best held-out mean
    once_tie_late = seeded_trial(repo, sid, 6, [2.6])
    once_tie_early = seeded_trial(repo, sid, 4, [2.6])
    once_worse = seeded_trial(repo, sid, 1, [2.95])
    runs = repo.list_seed_runs(sid)
    trials = repo.list_trials(sid, state="completed", is_baseline=False, limit=100).items
    groups = {t.id: seeds_of(t, runs) for t in trials}
    expected = [best_mean, tie_early, tie_late, once_tie_early, once_tie_late, once_worse]
    assert [t.id for t in rank_by_mean(trials, groups)] == expected
    assert [t.id for t in standings(repo, sid, groups)] == expected
    # Without runs over seeds (during the search) the ranking is the leaderboard's: by loss, ties by number.
    by_loss = [tie_late, once_tie_early, once_tie_late, tie_early, best_mean, once_worse]
    assert [t.id for t in standings(repo, sid, {})] == by_loss


def test_a_pick_names_exactly_one_selector_and_ranks_count_from_one(tmp_path: Path) -> None:
    repo, _ = sqlite_repository(tmp_path)
    sid = create_search(repo, fast_space())[0].id
    only = seeded_trial(repo, sid, 0, [3.0])
    ranked = standings(repo, sid, {})
    assert pick_trial(repo, sid, ranked, rank=1).id == only == pick_trial(repo, sid, ranked, number=0).id
    for selectors in ({}, {"number": 0, "rank": 1}):
        with pytest.raises(ValueError, match="exactly one of trial_id, number and rank"):
            pick_trial(repo, sid, ranked, **selectors)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ranks count from 1"):
        trial_at_rank(ranked, sid, 0)
    with pytest.raises(TrialNotFound, match="has 1 completed trial"):
        pick_trial(repo, sid, ranked, rank=2)
