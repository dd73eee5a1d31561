"""The two rules every view of a search shares: which run is its **reference baseline**, and how its trials
**rank**. The driver, the noise statistics, the scale-up stage and its report, the verdict, the API, the dashboard,
the CLI and ``export --rank`` all ask here, so ``export --rank N``, the dashboard's and the API's rank N and the
scale-up stage's N-th candidate are the same trial.

- **The reference baseline** of a search is the newest *completed* run of the baseline its space names
  (``constraints.baseline``). A baseline whose training crashed (a killed worker, a lost lease) is trained again as
  a new row when the search resumes; the crashed row stays for the record and is never the reference.
- **The ranking** of a search's trials covers its completed trials, baselines left out. A trial trained with two or
  more seeds (the re-evaluated best, :mod:`brainsearch.search.noise`) ranks by its mean over its held-out seeds (the
  seed it was selected on left out); they come first, because they were the best first runs and then measured again.
  The rest follow by their own run's validation loss. Ties: the lower trial number first (the earlier trial).
  During the search, before any re-evaluation, that is simply the leaderboard's order by loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from brainsearch.errors import TrialNotFound
from brainsearch.storage import Repository, Trial

if TYPE_CHECKING:
    from brainsearch.search.noise import Seeds

__all__ = ["pick_trial", "rank_by_mean", "ranks", "reference_trial", "standings", "trial_at_rank"]


def reference_trial(repo: Repository, search_id: int, name: str | None) -> Trial | None:
    """The search's reference baseline: the newest completed run of the baseline named ``name`` (None when none has
    completed, or ``name`` is None)."""
    done = [t for t in repo.baselines(search_id) if t.baseline_name == name and t.state == "completed"]
    return done[-1] if done else None


def rank_by_mean(trials: Sequence[Trial], seeds: Mapping[int, Seeds]) -> list[Trial]:
    """``trials`` ranked: the re-evaluated ones (two or more seeds in ``seeds``) first by their held-out mean, then
    the rest by their own run's validation loss; ties by trial number."""

    def several(t: Trial) -> bool:
        return t.id in seeds and seeds[t.id].n >= 2

    def held_out(t: Trial) -> float:
        mean = seeds[t.id].held_out().mean
        return mean if mean is not None else math.inf

    multi = sorted((t for t in trials if several(t)), key=lambda t: (held_out(t), t.number))
    rest = sorted(
        (t for t in trials if not several(t)),
        key=lambda t: (t.val_loss if t.val_loss is not None else math.inf, t.number),
    )
    return multi + rest


def standings(repo: Repository, search_id: int, seeds: Mapping[int, Seeds]) -> list[Trial]:
    """Every completed trial of the search (baselines left out), best first (:func:`rank_by_mean`); ``seeds``: the
    search's runs over seeds by trial id (:attr:`NoiseView.groups <brainsearch.search.noise.NoiseView>`)."""
    done = repo.list_trials(search_id, state="completed", is_baseline=False, limit=1_000_000).items
    return rank_by_mean(done, seeds)


def ranks(ranked: Sequence[Trial]) -> dict[int, int]:
    """Rank (from 1) by trial id of :func:`standings`' list."""
    return {t.id: rank for rank, t in enumerate(ranked, start=1)}


def trial_at_rank(ranked: Sequence[Trial], search_id: int, rank: int) -> Trial:
    """The trial ranked ``rank`` (from 1) in :func:`standings`' list; :class:`TrialNotFound` when there are fewer."""
    if rank < 1:
        raise ValueError(f"ranks count from 1, got {rank}")
    if rank > len(ranked):
        raise TrialNotFound("rank", f"search {search_id} has {len(ranked)} completed trial(s), not {rank}")
    return ranked[rank - 1]


def pick_trial(
    repo: Repository,
    search_id: int,
    ranked: Sequence[Trial],
    *,
    trial_id: int | None = None,
    number: int | None = None,
    rank: int | None = None,
) -> Trial:
    """The trial that exactly one selector names: its id, its number, or its ``rank`` in ``ranked`` (the search's
    :func:`standings`): what ``export``, the API's pick and the dashboard's rank column mean by it. Nothing matching
    raises :class:`TrialNotFound` naming the selector; zero or several selectors are a caller's bug: ValueError."""
    given = [k for k, v in (("trial_id", trial_id), ("number", number), ("rank", rank)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"pick a trial by exactly one of trial_id, number and rank, got {given}")
    if rank is not None:
        return trial_at_rank(ranked, search_id, rank)
    return repo.pick_trial(search_id, trial_id=trial_id, number=number)
