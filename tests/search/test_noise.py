"""Seed noise and the intervals built on it (brainsearch.search.noise), checked by simulation against a fake trainer
whose noise is known, then end to end on a real tiny search."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime

import numpy as np
import pytest

from brainsearch.search.noise import Interval, Seeds, compare, noise_from
from brainsearch.search.standings import rank_by_mean
from brainsearch.storage import Trial

# The fake trainer's noise: a seed's effect on every block alike (its data order and validation batches), its
# effect on one block alone, and the evaluation error.
COMMON_SD, OWN_SD, EVAL_SE = 0.1, 0.04, 0.02
SEED_SD = math.hypot(COMMON_SD, OWN_SD)


class FakeTrainer:
    """A deterministic trainer of known noise: block ``a`` trained with seed ``s`` in simulated search ``world``
    reaches ``true[a] + COMMON_SD * c[s] + OWN_SD * z[a, s] + EVAL_SE * e[a, s]`` (standard normals; ``c`` shared by
    every block of the search) and reports ``EVAL_SE`` as its evaluation error."""

    def __init__(self, true: dict[int, float], world: int) -> None:
        self.true, self.world = true, world

    def run(self, arch: int, seed: int) -> tuple[float, float]:
        common = np.random.default_rng([self.world, seed]).normal()
        own, evaluation = np.random.default_rng([self.world, seed, arch + 1]).normal(size=2)
        return float(self.true[arch] + COMMON_SD * common + OWN_SD * own + EVAL_SE * evaluation), EVAL_SE

    def seeds(self, arch: int, n: int, *, selected: bool = True) -> Seeds:
        """Block ``arch``'s runs with seeds 0..n-1; a trial (``selected``) was chosen on its seed-0 run."""
        runs = [self.run(arch, s) for s in range(n)]
        return Seeds(
            arch,
            tuple(v for v, _ in runs),
            tuple(e for _, e in runs),
            tuple(range(n)),
            selection_seed=0 if selected else None,
        )


def _searches(delta: float, n: int, *, baseline_seeds: int = 3, others: int = 0) -> list[Interval]:
    """``n`` simulated searches with a trial ``delta`` from the baseline (one run of it, the search's first seed):
    its interval in each. ``others`` more blocks trained with four seeds each (a re-evaluated top-k: three held out
    besides the selection seed, the baseline trained with the same four) make the comparison paired."""
    out = []
    for world in range(n):
        fake = FakeTrainer({0: 3.0, 1: 3.0 + delta, **{2 + i: 2.9 + 0.05 * i for i in range(others)}}, world)
        base = fake.seeds(0, max(baseline_seeds, 4) if others else baseline_seeds, selected=False)
        trial = fake.seeds(1, 1)
        groups = [base, trial] + [fake.seeds(2 + i, 4) for i in range(others)]
        noise = noise_from(groups, base, baseline_name="glam", baseline_seeds=baseline_seeds)
        interval = compare(trial, base, noise)
        assert interval is not None
        out.append(interval)
    return out


def _coverage(intervals: list[Interval], delta: float) -> float:
    return sum(i.low <= delta <= i.high for i in intervals) / len(intervals)


def test_paired_intervals_cover_the_true_difference_at_their_nominal_rate() -> None:
    """With re-evaluated blocks the comparison is paired by seed: 95% nominal (the binomial standard error of 3000
    searches is 0.004)."""
    for others in (2, 4):
        intervals = _searches(-0.08, 3000, others=others)
        assert {i.method for i in intervals} == {"paired"}
        assert 0.94 <= _coverage(intervals, -0.08) <= 0.965, (others, _coverage(intervals, -0.08))


def test_before_re_evaluation_the_interval_is_a_conservative_bound() -> None:
    """With only the baseline trained on several seeds, the unpaired bound covers at least its nominal rate."""
    for seeds in (3, 5):
        intervals = _searches(-0.08, 3000, baseline_seeds=seeds)
        assert {i.method for i in intervals} == {"unpaired bound"}
        assert _coverage(intervals, -0.08) >= 0.95, (seeds, _coverage(intervals, -0.08))


def test_pairing_by_seed_narrows_the_interval_when_seeds_move_every_block_alike() -> None:
    paired = _searches(-0.08, 500, others=4)
    unpaired = _searches(-0.08, 500)
    width = statistics.fmean(i.high - i.low for i in paired)
    assert width < 0.5 * statistics.fmean(i.high - i.low for i in unpaired)
    # Paired by seed: the difference is the one seed both have, whatever the baseline's other seeds did.
    assert all(i.seeds == 1 and i.baseline_seeds == 4 for i in paired)


def test_a_trial_equal_to_the_baseline_is_rarely_beyond_noise() -> None:
    for others in (0, 4):
        intervals = _searches(0.0, 3000, others=others)
        false_positive = sum(bool(i.beyond_noise) for i in intervals) / len(intervals)
        # One side of a 95% interval: 2.5% nominal (standard error 0.003).
        assert false_positive <= 0.035, (others, false_positive)


def test_a_trial_far_better_than_the_noise_is_beyond_noise() -> None:
    """A trial 0.3 better (under three seed sds of about 0.11): beyond noise nearly always once the comparison is
    paired (a seed's difference varies by about 0.063, the interval's half-width is about 0.14). With the unpaired
    bound of three baseline seeds it takes about 1.5: t at two degrees of freedom is 4.3, and two degrees of freedom
    often underestimate the spread."""
    assert sum(bool(i.beyond_noise) for i in _searches(-0.3, 400, others=4)) / 400 >= 0.95
    assert sum(bool(i.beyond_noise) for i in _searches(-1.5, 400)) / 400 >= 0.95


def _equal_search(world: int, trials: int, comparisons: int) -> list[Interval]:
    """One simulated search of ``trials`` blocks all equal to the baseline, every one re-evaluated (selected on seed
    0, three seeds held out), the baseline trained with the same four seeds: each block's interval."""
    fake = FakeTrainer({a: 3.0 for a in range(trials + 1)}, world)
    base = fake.seeds(0, 4, selected=False)
    blocks = [fake.seeds(a, 4) for a in range(1, trials + 1)]
    noise = noise_from([base, *blocks], base, baseline_name="glam", baseline_seeds=4, comparisons=comparisons)
    return [i for i in (compare(b, base, noise) for b in blocks) if i is not None]


def test_many_equal_blocks_rarely_yield_a_single_false_win() -> None:
    """The intervals are simultaneous over the search's comparisons (Bonferroni): in a search of ten blocks that are
    all as good as the baseline, the chance that any one of them is called beyond noise stays near the one-sided
    2.5% (it is at most that, for any dependence between the comparisons). Uncorrected, about one search in seven
    (measured: 14% of 600) would crown a block that is no better."""
    searches = 600
    corrected = sum(any(i.beyond_noise for i in _equal_search(w, 10, 10)) for w in range(searches)) / searches
    naive = sum(any(i.beyond_noise for i in _equal_search(w, 10, 1)) for w in range(searches)) / searches
    assert corrected <= 0.035, corrected
    assert naive >= 4 * max(corrected, 0.02), (naive, corrected)
    interval = _equal_search(0, 10, 10)[0]
    assert interval.comparisons == 10 and interval.level == 0.95 and interval.level_each == pytest.approx(0.995)


def test_the_held_out_seeds_carry_no_winners_curse() -> None:
    """Thirty blocks as good as the baseline, the best by its first run re-evaluated with three more seeds: its
    first run looks better than the baseline by luck alone; compared on its held-out seeds it is not (the mean
    difference over many searches is 0 within its standard error), while averaging the selection seed in keeps
    a quarter of the lucky margin."""
    held_out, with_selection = [], []
    for world in range(400):
        fake = FakeTrainer({a: 3.0 for a in range(31)}, world)
        base = fake.seeds(0, 4, selected=False)
        best = min(range(1, 31), key=lambda a: fake.run(a, 0)[0] - fake.run(0, 0)[0])
        block = fake.seeds(best, 4)
        noise = noise_from([base, block], base, baseline_name="glam", baseline_seeds=4)
        interval = compare(block, base, noise)
        assert interval is not None and interval.selection_seed_left_out and interval.seeds == 3
        held_out.append(interval.difference)
        with_selection.append(statistics.fmean(block.values) - statistics.fmean(base.values))
    se = statistics.stdev(held_out) / math.sqrt(len(held_out))
    assert abs(statistics.fmean(held_out)) < 3 * se, (statistics.fmean(held_out), se)
    assert statistics.fmean(with_selection) < -0.01, statistics.fmean(with_selection)


def test_without_a_second_seed_nothing_is_called_beyond_noise() -> None:
    fake = FakeTrainer({0: 3.0, 1: 2.0}, 0)
    base, trial = fake.seeds(0, 1), fake.seeds(1, 1)
    noise = noise_from([base, trial], base, baseline_name="glam", baseline_seeds=1)
    interval = compare(trial, base, noise)
    assert not noise.measured and noise.seed_sd is None and noise.paired_sd is None
    assert interval is not None and interval.beyond_noise is None and interval.method == "evaluation only"
    # The evaluation errors alone: 1.96 * sqrt(2) * EVAL_SE either side.
    assert interval.high - interval.low == pytest.approx(2 * 1.959964 * math.sqrt(2) * EVAL_SE, rel=1e-4)


def test_the_noise_is_measured_as_the_fake_trainer_makes_it() -> None:
    """Over 60 blocks of 20 seeds each: the seed sd of a single run comes out at the fake trainer's
    sqrt(COMMON_SD**2 + OWN_SD**2) (evaluation error removed), and one seed's difference from the baseline varies by
    sqrt(2 * (OWN_SD**2 + EVAL_SE**2)) (what every block shares cancels)."""
    fake = FakeTrainer({a: 3.0 + 0.01 * a for a in range(60)}, 7)
    groups = [fake.seeds(0, 20, selected=False)] + [fake.seeds(a, 20) for a in range(1, 60)]
    noise = noise_from(groups, groups[0], baseline_name="glam", baseline_seeds=20)
    # The trials' selection seed is left out: 19 held-out seeds each; the baseline keeps its 20.
    assert noise.dof == 19 + 59 * 18 and noise.architectures == 60
    # 59 * 18 degrees of freedom pooled, but the baseline's share of the spread rests on 19 seeds (Satterthwaite).
    assert noise.paired_dof == math.floor(4 / (1 / (59 * 18) + 1 / 18)) and noise.paired_architectures == 59
    assert noise.eval_stderr == pytest.approx(EVAL_SE)
    # The 20 seeds' common effects are 20 draws shared by every block: measured up to their sampling (about 16%).
    assert noise.seed_sd == pytest.approx(SEED_SD, rel=0.35)
    assert noise.paired_sd == pytest.approx(math.sqrt(2 * (OWN_SD**2 + EVAL_SE**2)), rel=0.2)


def _trial(trial_id: int, val_loss: float) -> Trial:
    now = datetime.now(UTC)
    return Trial(
        id=trial_id,
        search_id=1,
        number=trial_id,
        state="completed",
        reason=None,
        is_baseline=False,
        baseline_name=None,
        arch={},
        arch_digest=str(trial_id),
        pattern="",
        params={},
        cost={},
        metrics={"val_loss_stderr": EVAL_SE},
        val_loss=val_loss,
        step_time_s=None,
        params_activated=1,
        worker=None,
        created_at=now,
        started_at=now,
        finished_at=now,
    )


def test_the_top_k_chosen_on_means_beats_the_top_k_chosen_on_single_runs() -> None:
    """Simulated searches of 30 architectures whose true losses are spread like the noise that moves their ranking
    (a seed's own effect and the evaluation error; the common effect moves all alike): the top 3 chosen on
    the mean of 3 seeds over a pool of the 6 best first runs (what the driver does) is truly better, on average and
    in most searches, than the top 3 of the first runs."""
    k, pool, seeds, gains = 3, 6, 3, []
    for world in range(300):
        rng = np.random.default_rng(world)
        true = {a: float(3.0 + rng.normal(0, math.hypot(OWN_SD, EVAL_SE))) for a in range(30)}
        fake = FakeTrainer(true, world)
        first = {a: fake.run(a, 0)[0] for a in true}
        trials = sorted((_trial(a, v) for a, v in first.items()), key=lambda t: t.val_loss or math.inf)
        single = [t.id for t in trials[:k]]
        reevaluated = {t.id: fake.seeds(t.id, seeds) for t in trials[:pool]}
        by_mean = [t.id for t in rank_by_mean(trials, reevaluated)[:k]]
        assert all(reevaluated[t].left_out_selection for t in by_mean)
        gains.append(np.mean([true[a] for a in single]) - np.mean([true[a] for a in by_mean]))
    assert np.mean(gains) > 0.004, np.mean(gains)  # about a tenth of the noise that moves the ranking
    assert np.mean(np.asarray(gains) > 0) > np.mean(np.asarray(gains) < 0)
