"""The search's verdict: one line that says which block to take, reconciling the proxies with the scale-up, the
same in the API's search document, the CLI, the dashboard and the quickstart.

The question a search answers is "which block is better than the reference baseline for the same compute". So:

1. **On the proxies**, a trial wins only if it beats the baseline beyond noise (its interval, simultaneous over the
   search's comparisons and on its held-out seeds, :mod:`brainsearch.search.noise`) *at equal compute* (training
   compute within ``EQUAL_COMPUTE`` of the baseline's). A block that is beyond noise only with more compute is named
   with its compute ratio ("#4 is beyond noise only at 1.86x compute") and never wins. Among the winners the best
   held-out mean is taken.
2. **At the scale-up**, when the stage ran: the proxy winners are trained again at every rung beside the baseline.
   At the largest rung where both ran, a difference that is not below zero (or a scaling law that predicts the
   baseline better at the target) means that winner's gain did not survive scale-up, and the next proxy winner is
   considered; when none survives, the baseline is the verdict. The rung has one seed: agreeing in sign is all it
   can confirm, and its interval (the proxies' seed noise) is quoted beside it. Where the search ran no scale-up,
   the proxy winner stands, marked "not scaled up"; where it did, a winner it left out (ranked below its top-k)
   was never put to that test and cannot win.
3. Otherwise the baseline is the verdict: no block was shown better for the same compute.

Every difference the verdict quotes is a paired mean with its interval, and every verdict states its compute ratio.
The exported "winner" (the quickstart's) is the verdict's, and it may be the baseline.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from brainsearch.search.noise import EQUAL_COMPUTE, Interval, NoiseView, TrialNoise, compute_label
from brainsearch.search.scaleup_report import CandidateReport, RungResult, ScaleUpReport
from brainsearch.storage import Search, Trial

__all__ = ["RungCheck", "Verdict", "fmt_interval", "search_verdict"]


def fmt_interval(interval: Interval) -> str:
    """``-0.051 [-0.090, -0.012]``: a difference with its interval, as every view prints it."""
    return f"{interval.difference:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


class RungCheck(BaseModel):
    """The proxy winner (or, without one, the best candidate) at the largest rung where it and the baseline both
    ran: its difference from the baseline there, its compute ratio, the rung's proxy fidelity (Kendall tau) and
    whether the scaling law predicts it better than the baseline at the target (None without both predictions)."""

    model_config = ConfigDict(frozen=True)
    rung: str
    trial_number: int
    vs_baseline: Interval | None
    compute_ratio: float | None
    fidelity: float | None
    predicted_better: bool | None
    target: str | None


class Verdict(BaseModel):
    """What the search found, in one line (``text``), with the numbers behind it.

    ``winner``: ``trial`` (a block beat the baseline at equal compute and the scale-up did not contradict it),
    ``baseline`` (no block did, or its gain did not survive the scale-up) or ``none`` (no reference baseline
    completed: nothing to compare with). ``winner_trial_id`` is what to export: the trial, or the baseline's own
    trial. ``candidate_*``: the best proxy winner considered (None when there was none) with its interval and compute
    ratio; ``scale_up``: how it (or the best candidate) fared at the largest rung; ``over_compute``: blocks beyond
    noise only with more compute than the baseline. ``final``: the search has ended (else the verdict is so far)."""

    model_config = ConfigDict(frozen=True)
    winner: Literal["trial", "baseline", "none"]
    winner_trial_id: int | None
    winner_number: int | None
    winner_pattern: str | None
    baseline: str
    candidate_trial_id: int | None = None
    candidate_number: int | None = None
    vs_baseline: Interval | None = None
    compute_ratio: float | None = None
    scale_up: RungCheck | None = None
    survived_scale_up: bool | None = None
    over_compute: list[str] = []
    compared: int = 0
    final: bool = True
    text: str


def _rung_check(
    number: int, candidate: CandidateReport, base: CandidateReport, report: ScaleUpReport
) -> RungCheck | None:
    """The candidate against the baseline at the largest rung of the ladder where both completed."""
    mine = {r.rung: r for r in candidate.rungs if r.state == "completed"}
    theirs = {r.rung for r in base.rungs if r.state == "completed"}
    rungs = [rung for rung in report.ladder if rung in mine and rung in theirs and not rung.endswith("+upcycle")]
    if not rungs:
        return None
    top: RungResult = mine[rungs[-1]]
    predicted = None
    if candidate.prediction is not None and base.prediction is not None:
        predicted = candidate.prediction.predicted_loss < base.prediction.predicted_loss
    return RungCheck(
        rung=top.rung,
        trial_number=number,
        vs_baseline=top.vs_baseline,
        compute_ratio=top.compute_ratio,
        fidelity=report.fidelity.get(top.rung),
        predicted_better=predicted,
        target=report.target,
    )


def _rung_text(check: RungCheck, name: str) -> str:
    """``#4 at cpu-small is -0.032 [-0.070, +0.006] vs glam (within noise) at 1.00x compute (tau +0.33)``."""
    tau = f" (tau {check.fidelity:+.2f})" if check.fidelity is not None else ""
    diff = "no loss"
    if check.vs_baseline is not None:
        diff = f"{fmt_interval(check.vs_baseline)} vs {name} ({compute_label(check.vs_baseline, None)})"
    compute = f" at {check.compute_ratio:.2f}x compute" if check.compute_ratio is not None else ""
    law = ""
    if check.predicted_better is not None:
        law = f"; the scaling law predicts it {'better' if check.predicted_better else 'worse'} at {check.target}"
    return f"#{check.trial_number} at {check.rung} is {diff}{compute}{tau}{law}"


def _survived(check: RungCheck) -> bool:
    """Whether the scale-up agrees with a proxy win: below the baseline at the largest rung, and not predicted
    worse at the target."""
    below = check.vs_baseline is not None and check.vs_baseline.difference < 0
    return below and check.predicted_better is not False


def search_verdict(
    search: Search,
    view: NoiseView,
    baseline: str,
    report: ScaleUpReport | None = None,
) -> Verdict:
    """The verdict of ``search`` from its noise ``view`` (the comparisons with the reference ``baseline``) and its
    scale-up ``report`` (None when it has no scale-up stage)."""
    final = search.status not in ("queued", "running")
    so_far = "" if final else "so far: "
    reference = view.reference
    ranked = list(view.ranking)  # the search's standings: completed trials, best first
    if reference is None:
        return Verdict(
            winner="none",
            winner_trial_id=None,
            winner_number=None,
            winner_pattern=None,
            baseline=baseline,
            compared=len(ranked),
            final=final,
            text=f"{so_far}no verdict: no {baseline} baseline completed to compare with",
        )
    comparisons: dict[int, TrialNoise] = {t.id: view.of(t) for t in ranked}
    winners = [t for t in ranked if comparisons[t.id].beats_baseline]
    over = [
        f"#{t.number} is beyond noise only at {comparisons[t.id].compute_ratio:.2f}x compute"
        for t in ranked
        if (c := comparisons[t.id]).comparison is not None
        and c.comparison.startswith("beyond noise at")
        and c.compute_ratio is not None
    ]
    m = view.noise.comparisons
    scope = f"{len(ranked)} trial(s), 95% simultaneous over {m} comparison(s)"
    base_row = next((c for c in report.candidates if c.is_baseline), None) if report is not None else None

    def check(trial: Trial) -> RungCheck | None:
        if report is None or base_row is None:
            return None
        row = next((c for c in report.candidates if c.trial_id == trial.id), None)
        return _rung_check(trial.number, row, base_row, report) if row is not None else None

    common = {"baseline": baseline, "over_compute": over, "compared": len(ranked), "final": final}
    tail = f"; {'; '.join(over)} (not a win: more compute than {baseline})" if over else ""

    def gain(trial: Trial) -> str:
        c = comparisons[trial.id]
        assert c.vs_baseline is not None
        seeds = f"{c.vs_baseline.seeds} {'held-out ' if c.vs_baseline.selection_seed_left_out else ''}seed(s)"
        ratio = c.compute_ratio or 1.0
        return f"by {fmt_interval(c.vs_baseline)} at {ratio:.2f}x compute on the proxies ({seeds}; {scope})"

    def fields(trial: Trial, rung: RungCheck | None) -> dict[str, Any]:
        c = comparisons[trial.id]
        return {
            "candidate_trial_id": trial.id,
            "candidate_number": trial.number,
            "vs_baseline": c.vs_baseline,
            "compute_ratio": c.compute_ratio,
            "scale_up": rung,
        }

    def baseline_wins(why: str, **extra: Any) -> Verdict:
        assert reference is not None
        return Verdict(
            winner="baseline",
            winner_trial_id=reference.id,
            winner_number=reference.number,
            winner_pattern=reference.pattern,
            text=f"{so_far}winner: the {baseline} baseline - {why}{tail}",
            **extra,
            **common,
        )

    # The proxy winners in rank order; one the scale-up contradicts gives way to the next. Where the search ran a
    # scale-up, a winner it did not scale up (ranked below its top-k) was never put to that test: it cannot win.
    scaled = report is not None and any(not c.is_baseline and c.rungs for c in report.candidates)
    fell: list[tuple[Trial, RungCheck]] = []
    untested: list[Trial] = []
    for best in winners:
        rung = check(best)
        if rung is None and scaled:
            untested.append(best)
            continue
        if rung is not None and not _survived(rung):
            fell.append((best, rung))
            continue
        held = f"; at the scale-up {_rung_text(rung, baseline)}" if rung is not None else "; not scaled up"
        before = ""
        if fell:
            names = ", ".join(f"#{t.number}" for t, _ in fell)
            before = f"; {names} beat {baseline} on the proxies too, but not at the scale-up"
        return Verdict(
            winner="trial",
            winner_trial_id=best.id,
            winner_number=best.number,
            winner_pattern=best.pattern,
            survived_scale_up=True if rung is not None else None,
            text=f"{so_far}winner: trial #{best.number} ({best.pattern}) - beats {baseline} {gain(best)}{held}"
            f"{before}{tail}",
            **fields(best, rung),
            **common,
        )
    if fell:
        first, rung = fell[0]
        others = [f"#{t.number}" for t, _ in fell[1:]]
        more = f"; nor did {', '.join(others)}" if others else ""
        if untested:
            more += f"; {len(untested)} more proxy winner(s) ranked below the scale-up's top-k were not scaled up"
        return baseline_wins(
            f"trial #{first.number} ({first.pattern}) beat it {gain(first)}, but at the scale-up "
            f"{_rung_text(rung, baseline)}: the proxy gain did not survive scale-up{more}",
            survived_scale_up=False,
            **fields(first, rung),
        )
    best_candidate = next((t for t in ranked if check(t) is not None), None)
    rung = check(best_candidate) if best_candidate is not None else None
    at_rung = f"; at the scale-up {_rung_text(rung, baseline)}" if rung is not None else ""
    claim = f"no block beats it beyond noise at equal compute (<= {EQUAL_COMPUTE:.2f}x) on the proxies ({scope})"
    if untested:
        names = ", ".join(f"#{t.number}" for t in untested)
        claim = f"{names} beat it on the proxies ({scope}) but the scale-up did not train them"
    return baseline_wins(f"{claim}{at_rung}", scale_up=rung)
