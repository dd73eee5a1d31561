"""Scaling-law fits, Kendall tau and the convergence speed-up on numbers whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brainsearch.errors import InputError
from brainsearch.search.scaling import (
    CHINCHILLA_ALPHA,
    FAR_EXTRAPOLATION,
    MAX_EXTRAPOLATION,
    TargetScale,
    convergence_speedup,
    fit_law,
    kendall_tau,
)


def kaplan(x: float, xc: float = 8.8e13, a: float = 0.076) -> float:
    return float((xc / x) ** a)


def test_kaplan_fit_recovers_the_law_and_predicts_the_target() -> None:
    xs = [1e5, 1e6, 1e7]
    fit = fit_law(xs, [kaplan(x) for x in xs], 1e10, law="kaplan")
    assert fit.coefficients["exponent"] == pytest.approx(0.076, rel=1e-9)
    assert fit.predicted_loss == pytest.approx(kaplan(1e10), rel=1e-9)
    assert fit.low < fit.predicted_loss < fit.high
    assert fit.predict(3e6) == pytest.approx(kaplan(3e6), rel=1e-9)
    assert fit.residual_rms == pytest.approx(0.0, abs=1e-12)


def test_chinchilla_fit_recovers_e_and_a_with_the_published_exponent() -> None:
    xs = [2e5, 1e6, 5e6, 2.5e7]
    losses = [1.69 + 406.4 / x**CHINCHILLA_ALPHA for x in xs]
    fit = fit_law(xs, losses, 1e9, law="chinchilla")
    assert fit.coefficients["E"] == pytest.approx(1.69, rel=1e-9)
    assert fit.coefficients["A"] == pytest.approx(406.4, rel=1e-9)
    assert fit.predicted_loss == pytest.approx(1.69 + 406.4 / 1e9**CHINCHILLA_ALPHA, rel=1e-9)
    # In compute, the compute-optimal exponent alpha * beta / (alpha + beta) is held instead.
    assert fit_law(xs, losses, 1e9, law="chinchilla", scale_by="compute").coefficients["alpha"] == pytest.approx(
        0.34 * 0.28 / 0.62
    )


def test_the_band_widens_with_extrapolation_distance_and_measurement_error() -> None:
    xs, losses = [1e5, 1e6], [4.0, 3.5]
    near = fit_law(xs, losses, 1e7)
    far = fit_law(xs, losses, 1e10)
    assert far.high - far.low > near.high - near.low > 0
    noisy = fit_law(xs, losses, 1e7, errors=[0.2, 0.2])
    assert noisy.high - noisy.low > near.high - near.low  # near used the 1% default


def test_scatter_around_the_law_widens_the_band_beyond_the_measurement_error() -> None:
    xs = [1e5, 3e5, 1e6, 3e6, 1e7]
    rng = np.random.default_rng(0)
    noisy = [kaplan(x) * math.exp(float(rng.normal(0, 0.05))) for x in xs]
    tiny_errors = [1e-6] * len(xs)
    scattered = fit_law(xs, noisy, 1e9, errors=tiny_errors)
    clean = fit_law(xs, [kaplan(x) for x in xs], 1e9, errors=tiny_errors)
    assert scattered.residual_rms is not None and scattered.residual_rms > 0.01
    assert scattered.high - scattered.low > 100 * (clean.high - clean.low)
    assert scattered.low < kaplan(1e9) < scattered.high  # the true law lies inside the 95% band


def test_one_point_or_one_size_is_refused_with_a_reason() -> None:
    with pytest.raises(InputError, match=r"two or more sizes.*nothing is extrapolated"):
        fit_law([1e6], [3.0], 1e9)
    with pytest.raises(InputError, match="two or more sizes"):
        fit_law([1e6, 1e6], [3.0, 3.1], 1e9)
    with pytest.raises(InputError, match="positive and finite"):
        fit_law([1e6, 1e7], [3.0, float("nan")], 1e9)
    with pytest.raises(InputError, match="2 sizes but 1 losses"):
        fit_law([1e6, 1e7], [3.0], 1e9)


def test_a_prediction_names_its_target_and_how_far_it_extrapolates() -> None:
    """Pass: a TargetScale target is named on the fit and gives the x of the fitted unit; the extrapolation factor is
    the target over the largest x fitted, flagged past 100x; past 10,000x the fit is refused with the reason (unless
    the caller lifts the limit), and the band of a flagged prediction is wider, as the fit's covariance says."""
    xs, losses = [1e5, 1e6], [kaplan(1e5), kaplan(1e6)]
    target = TargetScale(preset="8b-64e", reference="glam baseline", params_activated=5e7, compute_flops=3e19)
    fit = fit_law(xs, losses, target)
    assert fit.target == target and fit.target_x == 5e7
    assert fit.extrapolation == pytest.approx(50.0) and not fit.far_extrapolation
    assert fit_law(xs, losses, target, scale_by="compute", max_extrapolation=None).target_x == 3e19
    assert fit_law(xs, losses, 1e6).target is None and fit_law(xs, losses, 1e5).extrapolation == pytest.approx(0.1)
    far = fit_law(xs, losses, 1e6 * FAR_EXTRAPOLATION * 2)
    assert far.far_extrapolation and far.extrapolation == pytest.approx(200.0)
    assert far.high - far.low > fit.high - fit.low
    assert fit_law(xs, losses, 1e6 * FAR_EXTRAPOLATION).far_extrapolation is False  # 100x itself is not past it
    assert fit_law(xs, losses, 1e6 * MAX_EXTRAPOLATION).extrapolation == pytest.approx(MAX_EXTRAPOLATION)
    with pytest.raises(InputError, match=r"the target is 2e\+04x the largest run fitted in activated parameters"):
        fit_law(xs, losses, 2e10)
    with pytest.raises(InputError, match=r"in training compute .* beyond 10,000x a law fitted to these runs says"):
        fit_law(xs, losses, target, scale_by="compute")
    assert fit_law(xs, losses, 2e10, max_extrapolation=None).extrapolation == pytest.approx(2e4)
    with pytest.raises(InputError, match="must be params_activated or compute"):
        target.x("tokens")


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1.0], [2.0]) is None
    assert kendall_tau([1, 2], [5, 5]) is None  # a constant ranking has no correlation


def test_convergence_speedup_reads_the_step_the_baseline_loss_is_reached() -> None:
    baseline = [(10, 4.0), (20, 3.5), (40, 3.0)]
    # The candidate reaches 3.0 half-way between steps 10 (3.2) and 20 (2.8): step 15, so 40 / 15.
    assert convergence_speedup([(10, 3.2), (20, 2.8), (40, 2.5)], baseline) == pytest.approx(40 / 15)
    assert convergence_speedup([(10, 3.5), (20, 3.2), (40, 3.1)], baseline) is None  # never reached
    assert convergence_speedup(baseline, baseline) == pytest.approx(1.0)
    assert convergence_speedup([], baseline) is None
