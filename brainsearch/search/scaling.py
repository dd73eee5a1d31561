"""Scaling-law fits over a candidate's own runs at several sizes, and the figures the paper compares blocks by.

Laws (fitted by linear least squares after a change of variables, so a fit is exact and deterministic):

- ``kaplan`` (arXiv 2001.08361): ``L(x) = (x_c / x) ** a``, i.e. ``log L`` linear in ``log x``;
- ``chinchilla`` (arXiv 2203.15556): ``L(x) = E + A / x ** alpha`` with the published exponent held fixed
  (``alpha = 0.34`` for parameters; for compute the compute-optimal exponent ``alpha * beta / (alpha + beta)``) and
  ``E``, ``A`` fitted, since a handful of points cannot pin three parameters.

``x`` is activated non-embedding parameters or training compute (FLOPs per token x tokens). The fit is weighted
least squares with each loss's own measurement error (the standard error of its validation mean over the evaluation
batches). The band is a 95% confidence band of the fitted law at the target: the weighted fit's covariance,
propagated to the target (it widens with the distance of the extrapolation), scaled up by the reduced chi-square
when the points scatter around the law more than their errors explain (with more points than parameters; Student's
t quantile then, the normal one otherwise). A law is never fitted to one point (or to points at one size): that is
an error that says so.

A prediction names the scale it is at (:class:`TargetScale`: the preset, activated parameters and training compute,
whichever of the two ``x`` is) and how far it reaches: ``extrapolation`` is the target's ``x`` over the largest ``x``
fitted. Beyond ``FAR_EXTRAPOLATION`` (100x) the prediction is flagged ``far_extrapolation``; beyond
``MAX_EXTRAPOLATION`` (10,000x) it is refused. Why refuse rather than only widen the band: the band is the fit's
statistical error (its covariance, propagated to the target: it does widen with the log-distance), but it assumes
the law's form holds all the way out; nothing in a few small rungs measures that, and four decades past the data the
form's error (a bend in the curve, a change of regime) is what dominates, so a number there would look precise and be
unsupported. Both limits are in the fitted unit: in compute the factor grows about as the square of the size factor
(tokens grow with the model), so a compute law reaches its limits sooner, as it should: it extrapolates in model
size and data at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from brainsearch.errors import InputError, Problem

__all__ = [
    "CHINCHILLA_ALPHA",
    "CHINCHILLA_BETA",
    "FAR_EXTRAPOLATION",
    "MAX_EXTRAPOLATION",
    "Law",
    "ScalingFit",
    "TargetScale",
    "convergence_speedup",
    "fit_law",
    "kendall_tau",
]

Law = Literal["kaplan", "chinchilla"]
CHINCHILLA_ALPHA, CHINCHILLA_BETA = 0.34, 0.28
# A measured loss with no error estimate is taken as known to this relative precision.
DEFAULT_RELATIVE_ERROR = 0.01
# How far past the largest fitted x a prediction is flagged, and refused (see the module's docstring).
FAR_EXTRAPOLATION = 100.0
MAX_EXTRAPOLATION = 10_000.0
_Z95 = 1.959963984540054


class TargetScale(BaseModel):
    """The scale a prediction is at, in both units a law can be fitted in: activated (non-embedding) parameters and
    training compute in FLOPs (FLOPs per token x the budget's tokens). ``preset`` names the scale preset it comes
    from and ``reference`` whose architecture was scaled to it (None when not known)."""

    model_config = ConfigDict(frozen=True)
    preset: str | None = None
    reference: str | None = None
    params_activated: float
    compute_flops: float

    def x(self, scale_by: str) -> float:
        """The target in the unit a law is fitted in: ``"compute"`` or ``"params_activated"``."""
        if scale_by == "compute":
            return self.compute_flops
        if scale_by == "params_activated":
            return self.params_activated
        raise InputError([Problem("scale_by", f"must be params_activated or compute, not {scale_by!r}")])


class ScalingFit(BaseModel):
    """A fitted law and its prediction at ``target_x`` with a 95% band ``[low, high]``.

    ``target`` names that scale in activated parameters and compute (None when the caller gave a bare ``x``);
    ``extrapolation`` is ``target_x`` over the largest ``x`` fitted (below 1: inside the fitted range) and
    ``far_extrapolation`` whether it exceeds ``FAR_EXTRAPOLATION``. The band is the fit's (see the module's
    docstring): wider the farther the target, but silent on whether the law's form holds that far."""

    model_config = ConfigDict(frozen=True)
    law: Law
    scale_by: str
    points: list[tuple[float, float]]  # (x, loss) the law was fitted to
    coefficients: dict[str, float]
    target_x: float
    predicted_loss: float
    low: float
    high: float
    residual_rms: float | None  # None with as many points as parameters (the fit passes through them)
    target: TargetScale | None = None
    extrapolation: float = 1.0
    far_extrapolation: bool = False

    def predict(self, x: float) -> float:
        """The law's loss at ``x``."""
        c = self.coefficients
        if self.law == "kaplan":
            return math.exp(c["log_scale"] - c["exponent"] * math.log(x))
        return float(c["E"] + c["A"] * x ** -c["alpha"])


def _chinchilla_alpha(scale_by: str) -> float:
    if scale_by == "compute":
        return CHINCHILLA_ALPHA * CHINCHILLA_BETA / (CHINCHILLA_ALPHA + CHINCHILLA_BETA)
    return CHINCHILLA_ALPHA


def fit_law(
    xs: Sequence[float],
    losses: Sequence[float],
    target: float | TargetScale,
    *,
    law: Law = "kaplan",
    scale_by: str = "params_activated",
    errors: Sequence[float | None] | None = None,
    max_extrapolation: float | None = MAX_EXTRAPOLATION,
) -> ScalingFit:
    """Fit ``law`` to ``(xs, losses)`` and predict the loss at ``target``: an ``x`` in the ``scale_by`` unit, or a
    :class:`TargetScale` (its ``scale_by`` value is the ``x``, and the fit names it).

    ``errors`` are the losses' standard errors (None: 1% of the loss). Raises :class:`InputError` with fewer than two
    distinct sizes, a non-positive value, or a target more than ``max_extrapolation`` times the largest size (None:
    no limit; the prediction is still flagged past ``FAR_EXTRAPOLATION``).
    """
    if isinstance(target, TargetScale):
        scale: TargetScale | None = target
        target_x = target.x(scale_by)
    else:
        scale, target_x = None, float(target)
    if len(xs) != len(losses):
        raise InputError([Problem("points", f"{len(xs)} sizes but {len(losses)} losses")])
    if len({float(x) for x in xs}) < 2:
        raise InputError(
            [
                Problem(
                    "points",
                    f"a scaling law needs runs at two or more sizes; got {len(xs)} run(s) at "
                    f"{len(set(xs))} size(s), so nothing is extrapolated",
                )
            ]
        )
    bad = [v for v in (*xs, *losses, target_x) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise InputError([Problem("points", f"sizes and losses must be positive and finite (got {bad[0]})")])
    extrapolation = target_x / max(xs)
    if max_extrapolation is not None and extrapolation > max_extrapolation:
        unit = "training compute" if scale_by == "compute" else "activated parameters"
        raise InputError(
            [
                Problem(
                    "target",
                    f"the target is {extrapolation:.3g}x the largest run fitted in {unit} ({target_x:.3g} vs "
                    f"{max(xs):.3g}); beyond {max_extrapolation:,.0f}x a law fitted to these runs says nothing "
                    "(its band holds the fit's error, not whether the law's form holds that far): run a larger rung "
                    "or predict at a nearer target",
                )
            ]
        )
    x = np.asarray(xs, dtype=np.float64)
    y_loss = np.asarray(losses, dtype=np.float64)
    sigma = np.asarray(
        [
            e if e is not None and e > 0 else DEFAULT_RELATIVE_ERROR * loss
            for e, loss in zip(errors or [None] * len(x), y_loss, strict=True)
        ]
    )
    alpha = _chinchilla_alpha(scale_by)
    if law == "kaplan":
        design = np.column_stack([np.ones_like(x), -np.log(x)])
        target_row = np.array([1.0, -math.log(target_x)])
        y, y_sigma = np.log(y_loss), sigma / y_loss  # d log L = dL / L
    else:
        design = np.column_stack([np.ones_like(x), x**-alpha])
        target_row = np.array([1.0, target_x**-alpha])
        y, y_sigma = y_loss, sigma
    # Weighted least squares by the measurement errors, and the covariance of its estimate.
    w = 1.0 / y_sigma
    weighted = design * w[:, None]
    beta, *_ = np.linalg.lstsq(weighted, y * w, rcond=None)
    cov = np.linalg.pinv(weighted.T @ weighted)
    dof = len(x) - 2
    quantile = _Z95
    residual_rms: float | None = None
    if dof > 0:
        from scipy import stats  # only here: the API process imports this module

        chi2 = float(np.sum(((y - design @ beta) * w) ** 2))
        cov = cov * max(1.0, chi2 / dof)  # scatter beyond the measurement errors widens the band
        quantile = float(stats.t.ppf(0.975, dof))
        fitted = np.exp(design @ beta) if law == "kaplan" else design @ beta
        residual_rms = float(np.sqrt(np.mean((fitted - y_loss) ** 2)))
    half = quantile * math.sqrt(max(0.0, float(target_row @ cov @ target_row)))
    centre = float(target_row @ beta)
    if law == "kaplan":
        predicted, low, high = math.exp(centre), math.exp(centre - half), math.exp(centre + half)
        coefficients = {"log_scale": float(beta[0]), "exponent": float(beta[1])}
    else:
        predicted, low, high = centre, max(0.0, centre - half), centre + half  # a loss is not negative
        coefficients = {"E": float(beta[0]), "A": float(beta[1]), "alpha": alpha}
    return ScalingFit(
        law=law,
        scale_by=scale_by,
        points=[(float(a), float(b)) for a, b in zip(x, y_loss, strict=True)],
        coefficients=coefficients,
        target_x=float(target_x),
        predicted_loss=predicted,
        low=low,
        high=high,
        residual_rms=residual_rms,
        target=scale,
        extrapolation=extrapolation,
        far_extrapolation=extrapolation > FAR_EXTRAPOLATION,
    )


def kendall_tau(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Kendall's tau-b between two scorings of the same items (None with fewer than two items, or when either
    scoring is constant)."""
    if len(first) != len(second) or len(first) < 2:
        return None
    from scipy import stats

    tau = stats.kendalltau(first, second).statistic
    return None if tau is None or not math.isfinite(tau) else float(tau)


def _steps_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The (linearly interpolated) point (step, or compute) at which a validation curve first reaches ``target``."""
    prev: tuple[float, float] | None = None
    for step, loss in curve:
        if loss <= target:
            if prev is None or prev[1] == loss:
                return float(step)
            (s0, l0) = prev
            return s0 + (step - s0) * (l0 - target) / (l0 - loss)
        prev = (step, loss)
    return None


def convergence_speedup(
    candidate: Sequence[tuple[float, float]], baseline: Sequence[tuple[float, float]]
) -> float | None:
    """The paper's convergence speed-up: what the baseline spent to reach its final validation loss over what the
    candidate spent to reach that loss (curves of ``(x, val_loss)``, ``x`` in steps or in training compute; the
    scale-up report uses compute). None when the candidate never reached it (read it as below ``1``; the ratio would
    be a bound, not a measurement) or a curve is empty."""
    if not candidate or not baseline:
        return None
    target_step, target = baseline[-1]
    reached = _steps_to_reach(candidate, target)
    if reached is None or reached <= 0:
        return None
    return target_step / reached
