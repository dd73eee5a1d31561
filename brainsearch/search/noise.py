"""Seed noise: how far apart the same block's validation losses land across seeds, and what that makes of every
comparison with the baseline.

A trial's validation loss is one draw: another seed moves it. A seed fixes the initialisation, the order of the
training batches and the validation batches, so runs of different blocks with the same seed share a large part of
their noise (measured on the quickstart: every block's seed-2 run was 0.13-0.24 nats worse than its seed-0 run). A
search measures that noise: its reference baseline trains with ``search.baseline_seeds`` seeds and its best trials
are trained again with ``search.top_k_seeds`` (:class:`~brainsearch.storage.SeedRun` rows; the first seed of each
is the trial itself, the value the sampler saw, and every trial's first seed is the search's seed).

A comparison is paired by seed: a trial's difference from the baseline is the mean, over the seeds both trained
with, of ``x_trial(s) - x_baseline(s)``, so what a seed does to every block cancels.

**The selection seed is left out.** The best trials are re-evaluated *because* their first run (the search's seed)
came out well: that run is biased towards luck (the winner's curse), and averaging it in keeps the bias. So a
re-evaluated trial is compared, ranked and pooled on its other seeds only (``Seeds.selection_seed``: the seed it was
chosen on); a trial trained once is compared on that one run, which was not selected on anything else. The
baseline was not selected: all of its seeds count.

Its interval:

- **paired** (once some block other than the baseline has two or more held-out seeds in common with it): the
  spread of those per-seed differences around each block's mean difference, pooled over the blocks
  (``sum (n_a - 1)`` degrees of freedom), gives the variance of one seed's difference ``v``; the interval is
  ``mean +- t * sqrt(v / n)`` over the ``n`` common seeds;
- **unpaired bound** (only the baseline has several seeds, the search's first trials): ``v`` is bounded by twice the
  variance of the baseline's runs around their mean (a seed's difference varies at most as two independent runs do);
  wider, never narrower than it should be;
- **evaluation only** (no block trained twice yet): each side's evaluation error (``val_loss_stderr``); nothing is
  called beyond noise.

**Many comparisons at once.** A search compares every trial with the baseline; at 95% each, one in forty equal
blocks would be called better by chance, and a search of forty trials would almost always "find" one. The intervals
are Bonferroni-corrected, simultaneous over the search's ``comparisons`` (every completed trial and other baseline
compared with the reference): each is a ``1 - 0.05 / m`` interval, so the chance that *any* equal block is called
beyond noise stays under 2.5%. Bonferroni rather than Holm or Benjamini-Hochberg because the verdict must be
readable off the interval shown beside it (Holm's step-down decisions and the false discovery rate have no interval
that agrees with them) and because it holds whatever the dependence between comparisons (they share the
baseline's runs). It is conservative: the price is wider intervals as a search grows.

Student's t at the degrees of freedom of the spread used. A trial "beats the baseline beyond noise" when its whole
interval lies below zero. :class:`SearchNoise` also reports the seed standard deviation of single runs (the spread
within blocks, evaluation error removed): what one seed moves a loss by.

**Compute.** A bigger block trained on the same tokens is expected to win; that says nothing about which block is
better for the same compute. Every comparison carries its training compute as a ratio to the reference baseline's
(FLOPs per token x tokens trained, from the cost model and the run) and its FLOPs per token ratio. A comparison
above ``EQUAL_COMPUTE`` (1.05x) is never a win: it reads "beyond noise at 1.9x compute"
(:attr:`TrialNoise.comparison`), and only ``beats_baseline`` (beyond noise at equal compute) counts as one.

Trials rank by their held-out mean over seeds where they have several (:mod:`brainsearch.search.standings`, which
also decides the reference baseline); the sampler only ever sees the first value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.search.standings import ranks, reference_trial, standings
from brainsearch.space.schema import SearchSpace
from brainsearch.storage import Repository, SeedRun, Trial

__all__ = [
    "EQUAL_COMPUTE",
    "LEVEL",
    "Interval",
    "NoiseView",
    "SearchNoise",
    "Seeds",
    "TrialNoise",
    "compare",
    "compute_label",
    "export_comparison",
    "noise_from",
    "other_seeds",
    "reevaluation_pool",
    "search_noise",
    "seeds_of",
    "timing_fields",
    "training_compute",
]

LEVEL = 0.95
# A comparison within 5% of the reference baseline's training compute is at equal compute: a budget in FLOPs rounds
# to whole steps (at most one step over), so matched runs land within a step of 1.00x.
EQUAL_COMPUTE = 1.05


@dataclass(frozen=True)
class Seeds:
    """One architecture's completed runs: the validation losses, their evaluation errors and their seeds, in seed
    order (the first seed is the trial's own run)."""

    trial_id: int
    values: tuple[float, ...]
    stderrs: tuple[float | None, ...]
    seeds: tuple[int, ...] = ()  # empty: numbered 0, 1, ... in order
    # The seed the trial was selected on (its first run, the search's seed); None for the baseline, chosen on nothing.
    selection_seed: int | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def sd(self) -> float | None:
        """The spread of this architecture's own runs (None below two)."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    def by_seed(self) -> dict[int, float]:
        """The losses by seed."""
        return dict(zip(self.seeds or range(self.n), self.values, strict=True))

    def held_out(self) -> Seeds:
        """The runs a comparison uses: without the selection seed when other seeds were run (the first run is why the
        trial was re-evaluated, so it carries the winner's curse), else all of them."""
        if self.selection_seed is None:
            return self
        keep = [i for i, s in enumerate(self.seeds or range(self.n)) if s != self.selection_seed]
        if not keep or len(keep) == self.n:
            return self
        seeds = self.seeds or tuple(range(self.n))
        return Seeds(
            self.trial_id,
            tuple(self.values[i] for i in keep),
            tuple(self.stderrs[i] for i in keep),
            tuple(seeds[i] for i in keep),
        )

    @property
    def left_out_selection(self) -> bool:
        """Whether comparisons leave this block's selection seed out (it has other seeds)."""
        return self.held_out() is not self

    def eval_variance(self, default: float) -> float:
        """The mean squared evaluation error of these runs (``default`` where none was recorded)."""
        known = [e * e for e in self.stderrs if e is not None and math.isfinite(e)]
        return statistics.fmean(known) if known else default


def _differences(trial: Seeds, baseline: Seeds) -> list[float]:
    """``x_trial(s) - x_baseline(s)`` for every seed both trained with."""
    mine, theirs = trial.by_seed(), baseline.by_seed()
    return [mine[s] - theirs[s] for s in sorted(mine.keys() & theirs.keys())]


class SearchNoise(BaseModel):
    """A search's measured seed noise. ``seed_sd``: the standard deviation of a single run over seeds, pooled over
    every architecture trained with two or more seeds (``dof`` degrees of freedom, ``architectures`` of them),
    evaluation noise removed; ``run_sd`` the same spread with it; ``eval_stderr`` the runs' typical evaluation error.
    ``paired_sd``: the standard deviation of one seed's difference from the baseline, pooled over the architectures
    with two or more held-out seeds in common with it (``paired_architectures``; None before any), with
    ``paired_dof`` effective degrees of freedom (the baseline's share of the spread rests on the seeds in common,
    however many blocks are pooled: see ``_paired``). The baseline's own runs are listed apart: ``baseline_values``
    (by seed), their mean and spread. ``comparisons``: how many trials (and other baselines) are compared with the
    baseline at once; every interval is corrected for them (``correction``, see the module). Re-evaluated trials
    count with their held-out seeds only."""

    model_config = ConfigDict(frozen=True)
    baseline: str | None
    baseline_trial_id: int | None
    baseline_seeds: int  # seeds the search asks for
    baseline_values: list[float]
    baseline_mean: float | None
    baseline_sd: float | None
    seed_sd: float | None
    run_sd: float | None
    eval_stderr: float | None
    dof: int
    architectures: int  # how many architectures the pooled spread comes from
    paired_sd: float | None = None
    paired_dof: int = 0
    paired_architectures: int = 0
    level: float = LEVEL
    # How many comparisons with the baseline the intervals are simultaneous over (Bonferroni; see the module).
    comparisons: int = 1
    correction: Literal["bonferroni"] = "bonferroni"

    @property
    def measured(self) -> bool:
        return self.dof > 0

    @classmethod
    def unmeasured(cls) -> SearchNoise:
        """No seed noise measured: intervals hold the evaluation error only."""
        return cls(
            baseline=None,
            baseline_trial_id=None,
            baseline_seeds=1,
            baseline_values=[],
            baseline_mean=None,
            baseline_sd=None,
            seed_sd=None,
            run_sd=None,
            eval_stderr=None,
            dof=0,
            architectures=0,
        )


class Interval(BaseModel):
    """``difference`` = a trial's loss minus the baseline's, averaged over the seeds both trained with (``seeds`` of
    them; the trial's selection seed left out when it has others, ``selection_seed_left_out``), with its interval
    ``[low, high]``: simultaneous at ``level`` over ``comparisons`` comparisons (Bonferroni: each is a
    ``level_each`` interval). ``method``: ``paired`` (the measured spread of per-seed differences), ``unpaired
    bound`` (twice the baseline's run variance: wider than it should be) or ``evaluation only`` (no seed noise
    measured yet). ``beyond_noise``: the interval lies wholly below zero (True), or not (False); None when the seed
    noise is not measured."""

    model_config = ConfigDict(frozen=True)
    difference: float
    low: float
    high: float
    level: float
    method: Literal["paired", "unpaired bound", "evaluation only"]
    beyond_noise: bool | None
    noise_measured: bool
    seeds: int  # the seeds the difference averages over (both sides trained with them)
    baseline_seeds: int  # the baseline's runs
    comparisons: int = 1
    level_each: float = LEVEL
    selection_seed_left_out: bool = False


def _quantile(dof: int, level: float) -> float:
    from scipy import stats  # here only: the API process imports this module

    tail = (1 + level) / 2
    return float(stats.t.ppf(tail, dof)) if dof > 0 else float(stats.norm.ppf(tail))


def _pooled(groups: Iterable[Seeds]) -> tuple[float | None, float | None, int, int]:
    """(pooled variance of runs, their mean evaluation variance, degrees of freedom, architectures)."""
    squares, dof, archs = 0.0, 0, 0
    evals: list[float] = []
    for g in (group.held_out() for group in groups):
        if g.n < 2:
            continue
        mean = statistics.fmean(g.values)
        squares += sum((v - mean) ** 2 for v in g.values)
        dof += g.n - 1
        archs += 1
        evals += [e * e for e in g.stderrs if e is not None and math.isfinite(e)]
    if dof == 0:
        return None, (statistics.fmean(evals) if evals else None), 0, 0
    return squares / dof, (statistics.fmean(evals) if evals else 0.0), dof, archs


def _paired(groups: Iterable[Seeds], baseline: Seeds | None) -> tuple[float | None, int, int]:
    """(pooled variance of one seed's difference from the baseline, its effective degrees of freedom,
    architectures).

    Every block's differences share the baseline's runs: the part of the spread that comes from the baseline's own
    seed effects is measured on the few seeds in common, however many blocks are pooled. Counting ``sum (n_a - 1)``
    degrees of freedom would then claim more than the data hold (simulated: the coverage of a 95% interval fell to
    93% with eight re-evaluated blocks over three seeds). The two parts are taken as equal, so Satterthwaite's
    approximation gives ``4 / (1 / sum (n_a - 1) + 1 / (S - 1))`` for ``S`` distinct seeds, never more than the
    plain count."""
    if baseline is None:
        return None, 0, 0
    squares, dof, archs = 0.0, 0, 0
    seeds: set[int] = set()
    for g in groups:
        if g.trial_id == baseline.trial_id:
            continue
        held_out = g.held_out()
        d = _differences(held_out, baseline)
        if len(d) < 2:
            continue
        mean = statistics.fmean(d)
        squares += sum((x - mean) ** 2 for x in d)
        dof += len(d) - 1
        archs += 1
        seeds |= set(held_out.by_seed()) & set(baseline.by_seed())
    if not dof:
        return None, 0, 0
    effective = min(dof, math.floor(4 / (1 / dof + 1 / (len(seeds) - 1))))
    return squares / dof, effective, archs


def noise_from(
    groups: Sequence[Seeds],
    baseline: Seeds | None,
    *,
    baseline_name: str | None,
    baseline_seeds: int,
    comparisons: int = 1,
) -> SearchNoise:
    """The noise measured by ``groups`` (every architecture's runs; the baseline's among them); ``comparisons``: how
    many blocks the search compares with the baseline (the intervals' correction)."""
    run_var, eval_var, dof, archs = _pooled(groups)
    seed_sd = math.sqrt(max(0.0, run_var - (eval_var or 0.0))) if run_var is not None else None
    all_stderrs = [e for g in groups for e in g.stderrs if e is not None and math.isfinite(e)]
    paired_var, paired_dof, paired_archs = _paired(groups, baseline)
    return SearchNoise(
        baseline=baseline_name,
        baseline_trial_id=baseline.trial_id if baseline is not None else None,
        baseline_seeds=baseline_seeds,
        baseline_values=list(baseline.values) if baseline is not None else [],
        baseline_mean=baseline.mean if baseline is not None else None,
        baseline_sd=baseline.sd if baseline is not None else None,
        seed_sd=seed_sd,
        run_sd=math.sqrt(run_var) if run_var is not None else None,
        eval_stderr=math.sqrt(statistics.fmean(e * e for e in all_stderrs)) if all_stderrs else None,
        dof=dof,
        architectures=archs,
        paired_sd=math.sqrt(paired_var) if paired_var is not None else None,
        paired_dof=paired_dof,
        paired_architectures=paired_archs,
        comparisons=max(1, comparisons),
    )


def compare(trial: Seeds, baseline: Seeds, noise: SearchNoise, level: float = LEVEL) -> Interval | None:
    """The trial's loss minus the baseline's over their common seeds (its selection seed left out when it has
    others), with its interval, simultaneous over ``noise.comparisons`` (see the module docstring); None when
    either has no completed run. Without a common seed (a baseline re-run under another seed), the means are
    compared unpaired."""
    if trial.n == 0 or baseline.n == 0:
        return None
    used = trial.held_out()
    d = _differences(used, baseline)
    if d:
        difference, n_t, n_b = statistics.fmean(d), len(d), len(d)
    else:
        assert used.mean is not None and baseline.mean is not None
        difference, n_t, n_b = used.mean - baseline.mean, used.n, baseline.n
    method: Literal["paired", "unpaired bound", "evaluation only"]
    if d and noise.paired_sd is not None:
        method, variance, dof = "paired", noise.paired_sd**2 / len(d), noise.paired_dof
    elif noise.measured and noise.run_sd is not None:
        # One seed's difference varies at most as two independent runs do.
        method, dof = "unpaired bound", noise.dof
        variance = noise.run_sd**2 * (1 / n_t + 1 / n_b)
    else:
        default = (noise.eval_stderr or 0.0) ** 2
        method, dof = "evaluation only", 0
        variance = used.eval_variance(default) / n_t + baseline.eval_variance(default) / n_b
    comparisons = max(1, noise.comparisons)
    level_each = 1 - (1 - level) / comparisons
    half = _quantile(dof, level_each) * math.sqrt(variance)
    low, high = difference - half, difference + half
    measured = method != "evaluation only"
    return Interval(
        difference=difference,
        low=low,
        high=high,
        level=level,
        method=method,
        beyond_noise=(high < 0) if measured else None,
        noise_measured=measured,
        seeds=n_t,
        baseline_seeds=baseline.n,
        comparisons=comparisons,
        level_each=level_each,
        selection_seed_left_out=used is not trial,
    )


def seeds_of(trial: Trial, runs: Iterable[SeedRun], first_seed: int = 0) -> Seeds:
    """A trial's completed runs: its own (``first_seed``, the search's seed) and its completed seed runs, by seed; a
    trial that is not a baseline was selected on ``first_seed``."""
    found: dict[int, tuple[float, float | None]] = {}
    if trial.state == "completed" and trial.val_loss is not None and math.isfinite(trial.val_loss):
        found[first_seed] = (float(trial.val_loss), trial.metrics.get("val_loss_stderr"))
    for run in runs:
        if run.trial_id == trial.id and run.state == "completed" and run.val_loss is not None:
            found[run.seed] = (float(run.val_loss), run.val_loss_stderr)
    seeds = sorted(found)
    return Seeds(
        trial.id,
        tuple(found[s][0] for s in seeds),
        tuple(found[s][1] for s in seeds),
        tuple(seeds),
        selection_seed=None if trial.is_baseline else first_seed,
    )


def search_noise(
    repo: Repository,
    search_id: int,
    *,
    baseline_name: str | None,
    baseline_seeds: int,
    first_seed: int = 0,
    reference: Trial | None = None,
) -> tuple[SearchNoise, dict[int, Seeds]]:
    """The search's noise and every trial's runs that have seed runs (by trial id; the baseline's included). Its
    intervals are simultaneous over every completed trial and other baseline compared with the reference
    (``reference``: its trial, when the caller has read it; else read here)."""
    runs = repo.list_seed_runs(search_id)
    by_trial: dict[int, list[SeedRun]] = {}
    for run in runs:
        by_trial.setdefault(run.trial_id, []).append(run)
    reference = reference or reference_trial(repo, search_id, baseline_name)
    ids = set(by_trial) | ({reference.id} if reference is not None else set())
    groups: dict[int, Seeds] = {}
    for trial_id in sorted(ids):
        trial = reference if reference is not None and reference.id == trial_id else repo.get_trial(trial_id)
        if trial is not None:
            groups[trial_id] = seeds_of(trial, by_trial.get(trial_id, []), first_seed)
    base = groups.get(reference.id) if reference is not None else None
    compared = repo.count_trials(search_id).get("completed", 0) - (1 if reference is not None else 0)
    noise = noise_from(
        list(groups.values()),
        base,
        baseline_name=baseline_name,
        baseline_seeds=baseline_seeds,
        comparisons=compared,
    )
    return noise, groups


def training_compute(trial: Trial) -> float | None:
    """The training FLOPs a trial's own run spent: the cost model's FLOPs per token x the tokens it trained (None
    when it trained nothing or the cost is unknown)."""
    fpt, tokens = trial.cost.get("flops_per_token"), trial.metrics.get("tokens")
    return float(fpt) * float(tokens) if fpt and tokens else None


def compute_label(interval: Interval | None, compute_ratio: float | None) -> str | None:
    """What a comparison says, in words, the same everywhere: ``beyond noise`` (a win: the whole interval below 0 at
    equal compute), ``beyond noise at 1.86x compute`` (more compute bought it: not a win), ``worse beyond noise``,
    ``within noise``, or ``seed noise not measured``; None without a comparison."""
    if interval is None:
        return None
    if interval.beyond_noise is None:
        return "seed noise not measured"
    if interval.beyond_noise:
        if compute_ratio is not None and compute_ratio > EQUAL_COMPUTE:
            return f"beyond noise at {compute_ratio:.2f}x compute"
        return "beyond noise"
    return "worse beyond noise" if interval.low > 0 else "within noise"


class TrialNoise(BaseModel):
    """A leaderboard row's comparison with the reference baseline: its completed runs (``seeds``), their mean and
    spread, ``val_loss_held_out`` (the mean it is ranked and compared on: its seeds but the selection seed when it
    was re-evaluated), its difference from the baseline with the interval (None for the reference baseline itself
    and for trials that did not complete; another baseline has one), its training compute and FLOPs per token as
    ratios to the baseline's, the ``comparison`` in words every view shows and ``beats_baseline`` (beyond noise at equal
    compute: the only kind of win)."""

    model_config = ConfigDict(frozen=True)
    seeds: int
    val_loss_mean: float | None
    val_loss_seed_sd: float | None
    vs_baseline: Interval | None
    val_loss_held_out: float | None = None
    compute_ratio: float | None = None
    flops_per_token_ratio: float | None = None
    comparison: str | None = None
    beats_baseline: bool = False


@dataclass(frozen=True)
class NoiseView:
    """A search's noise and what it makes of each of its trials (:meth:`of`); ``reference``: the reference
    baseline's trial (its compute is every ratio's denominator); ``ranking``: its completed trials, best first
    (:func:`~brainsearch.search.standings.standings`)."""

    noise: SearchNoise
    groups: dict[int, Seeds]
    first_seed: int = 0
    reference: Trial | None = None
    ranking: tuple[Trial, ...] = ()

    def rank(self, trial: Trial) -> int | None:
        """The trial's rank among the search's completed trials (from 1; None for a baseline or an unfinished
        trial)."""
        return self._ranks.get(trial.id)

    @cached_property
    def _ranks(self) -> dict[int, int]:
        return ranks(self.ranking)

    def seeds(self, trial: Trial) -> Seeds:
        """The trial's completed runs over seeds."""
        return self.groups.get(trial.id) or seeds_of(trial, (), self.first_seed)

    def of(self, trial: Trial) -> TrialNoise:
        seeds = self.seeds(trial)
        base_id = self.noise.baseline_trial_id
        base = self.groups.get(base_id) if base_id is not None else None
        interval = None
        reference = trial.is_baseline and trial.baseline_name == self.noise.baseline
        if base is not None and trial.id != base_id and not reference:
            interval = compare(seeds, base, self.noise)
        compute, flops = self.ratios(trial)
        comparison = compute_label(interval, compute)
        return TrialNoise(
            seeds=seeds.n,
            val_loss_mean=seeds.mean,
            val_loss_seed_sd=seeds.sd,
            vs_baseline=interval,
            val_loss_held_out=seeds.held_out().mean,
            compute_ratio=compute,
            flops_per_token_ratio=flops,
            comparison=comparison,
            beats_baseline=comparison == "beyond noise" and not trial.is_baseline,
        )

    def ratios(self, trial: Trial) -> tuple[float | None, float | None]:
        """(training compute, FLOPs per token) over the reference baseline's (1.0 for the baseline itself)."""
        ref = self.reference
        if ref is None:
            return None, None
        mine, theirs = training_compute(trial), training_compute(ref)
        fpt, ref_fpt = trial.cost.get("flops_per_token"), ref.cost.get("flops_per_token")
        return (
            mine / theirs if mine and theirs else None,
            float(fpt) / float(ref_fpt) if fpt and ref_fpt else None,
        )


def noise_view(
    repo: Repository, search_id: int, *, baseline_name: str | None, baseline_seeds: int, first_seed: int = 0
) -> NoiseView:
    """The search's :class:`NoiseView` (reads its seed runs and reference baseline once); ``first_seed``: the
    search's seed, every trial's own run's."""
    reference = reference_trial(repo, search_id, baseline_name)
    noise, groups = search_noise(
        repo,
        search_id,
        baseline_name=baseline_name,
        baseline_seeds=baseline_seeds,
        first_seed=first_seed,
        reference=reference,
    )
    return NoiseView(noise, groups, first_seed, reference, tuple(standings(repo, search_id, groups)))


def other_seeds(first_seed: int, seeds: int) -> list[int]:
    """The seeds a trial trains with besides its own run's (``first_seed``, the search's) to have ``seeds`` in all:
    the next ones up."""
    return [first_seed + k for k in range(1, seeds)]


def reevaluation_pool(repo: Repository, search_id: int, space: SearchSpace) -> list[Trial]:
    """The trials re-evaluated with ``search.top_k_seeds`` seeds: the ``search.reevaluate`` (default twice
    ``top_k``) best completed trials by their first value; none when ``top_k_seeds`` is 1 or ``top_k`` 0."""
    settings = space.search
    if settings.top_k_seeds < 2 or settings.top_k == 0:
        return []
    size = settings.reevaluate or 2 * settings.top_k
    return repo.list_trials(search_id, state="completed", is_baseline=False, limit=size).items


def timing_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    """A trial's step time against the baseline's from its timing probe (:mod:`brainsearch.train.timing`, stored as
    ``metrics["timing_probe"]``): ``step_time_ratio`` (None when the probe was uncertain: its rounds disagreed
    beyond its bound, so there is no number to report) and ``step_time_uncertain``; nothing without a probe."""
    probe = metrics.get("timing_probe")
    if not isinstance(probe, dict):
        return {}
    uncertain = bool(probe.get("uncertain"))
    return {"step_time_ratio": None if uncertain else probe.get("ratio"), "step_time_uncertain": uncertain}


def export_comparison(trial: Trial, view: NoiseView) -> dict[str, Any]:
    """What an exported spec says of the trial against its search's reference baseline: the baseline, the
    difference with its interval, what it says, the held-out mean, and the compute and FLOPs-per-token ratios."""
    n = view.of(trial)
    return {"baseline": view.noise.baseline, **n.model_dump(mode="json")}
