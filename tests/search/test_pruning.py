"""A trial as its worker runs it: the pruning rules (the step-time constraint, judged by a timing probe before
training; the paper's quarter-budget rule, Optuna's pruners) and the outcome written to the database."""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest

from brainsearch.arch import Architecture, preset
from brainsearch.arch.scale import scale
from brainsearch.search.jobs import BaselineRef, TrialJob
from brainsearch.search.pruning import PruningJudge, budget_fraction, speed_verdict
from brainsearch.search.runner import run_job
from brainsearch.space.schema import Budget
from brainsearch.storage import Repository
from brainsearch.storage.optuna_storage import optuna_storage
from brainsearch.train import CurvePoint, TrainSettings, timing
from brainsearch.train.timing import OnStep, TimingProbe
from tests.factories import add_running_trial

BUDGET = Budget(tokens=100 * 512)


def _point(step: int, loss: float, elapsed: float | None = None, val: float | None = None) -> CurvePoint:
    return CurvePoint(
        step=step,
        tokens=step * 512,
        elapsed_s=elapsed if elapsed is not None else step * 0.01,
        train_loss=loss,
        val_loss=val,
        lr=1e-3,
    )


def _job(**changes: object) -> TrialJob:
    fields: dict[str, object] = {
        "search_id": 1,
        "trial_id": 1,
        "number": 0,
        "database_url": "sqlite://",
        "arch": scale(preset("glam"), "cpu-tiny").to_dict(),
        "settings": TrainSettings(budget=BUDGET, batch_size=8, timing_warmup_steps=2),
    }
    return TrialJob.model_validate({**fields, **changes})


def _reference(loss: float, step_time: float = 0.01) -> BaselineRef:
    return BaselineRef(name="glam", step_time_s=step_time, curve=[(s / 100, loss) for s in range(1, 101)])


def test_budget_fraction_per_budget_kind() -> None:
    p = _point(25, 3.0, elapsed=5.0)
    assert budget_fraction(BUDGET, p, 1000) == pytest.approx(0.25)
    assert budget_fraction(Budget(flops=25 * 512 * 1000 * 2), p, 1000) == pytest.approx(0.5)
    assert budget_fraction(Budget(seconds=10), p, 1000) == pytest.approx(0.5)


@pytest.mark.parametrize(("loss", "pruned"), [(3.1, True), (2.9, False)])
def test_quarter_budget_rule_compares_with_the_baseline_at_the_same_point(loss: float, pruned: bool) -> None:
    judge = PruningJudge(_job(pruner="baseline", reference=_reference(3.0)), flops_per_token=1)
    verdicts = [judge(_point(s, loss)) for s in range(1, 40)]
    decided = [v for v in verdicts if v]
    if pruned:
        assert len(decided) == 1 and verdicts.index(decided[0]) == 24  # step 25: a quarter of 100 steps
        assert "3.1000" in decided[0] and "glam baseline's 3.0000" in decided[0]
    else:
        assert decided == []


def test_quarter_rule_is_off_without_a_reference_or_with_another_pruner() -> None:
    for job in (_job(pruner="baseline"), _job(pruner="none", reference=_reference(1.0))):
        judge = PruningJudge(job, flops_per_token=1)
        assert not any(judge(_point(s, 9.0)) for s in range(1, 60))


def test_speed_verdict_prunes_a_certainly_slower_candidate_only() -> None:
    slow = TimingProbe.of([2.0, 2.1, 1.9], [1.0, 1.0, 1.0], steps=3, baseline="glam")
    verdict = speed_verdict(slow, 1.5)
    assert verdict is not None and "step time 2.00x the glam baseline's" in verdict
    assert "per-round ratios 1.90-2.10" in verdict and "spread 10%" in verdict and "max_step_time_ratio 1.5" in verdict
    assert speed_verdict(slow, 2.5) is None  # within the limit
    uncertain = TimingProbe.of([2.0, 1.0, 2.0], [1.0, 1.0, 1.0], steps=3, baseline="glam")
    assert uncertain.uncertain and uncertain.ratio == 2.0 and speed_verdict(uncertain, 1.5) is None


def test_the_judge_no_longer_compares_step_times_across_runs() -> None:
    """The in-training comparison with the baseline run's recorded step time is gone: load during either run faked
    it. The judge stays silent however slow the candidate's steps."""
    job = _job(reference=_reference(3.0, step_time=0.010), max_step_time_ratio=1.5)
    judge = PruningJudge(job, flops_per_token=1)
    assert not any(judge(_point(s, 3.0, elapsed=s * 1.0)) for s in range(1, 20))


def _slowed_probe(monkeypatch: pytest.MonkeyPatch, on_step: OnStep, **options: object) -> None:
    """The runner's timing probe, with ``on_step`` slowing the models' steps (the probe's own seam) and ``options``
    replacing its defaults."""
    real = timing.timing_probe

    def probe(*args: Any, **kwargs: Any) -> TimingProbe:
        return real(*args, **{**kwargs, "on_step": on_step, **options})

    monkeypatch.setattr(timing, "timing_probe", probe)


# A model whose training step takes milliseconds: the sleeps the probes below inject dominate its step time even on
# a loaded machine.
MICRO = Architecture.from_json(
    {
        "d_model": 16,
        "vocab_size": 256,
        "seq_len": 16,
        "num_blocks": 1,
        "block": [
            {"type": "attention", "heads": 2, "head_dim": 8},
            {"type": "ffn", "hidden": 32, "activation": "relu"},
        ],
    }
)


def _constrained_job(repo: Repository, database_url: str, **changes: object) -> TrialJob:
    """A running trial of :data:`MICRO` under ``max_step_time_ratio`` 1.5, with the same architecture as the
    reference baseline's (the tests slow one of them down)."""
    s, _ = repo.create_search(name="t", space_name="tiny", space={}, settings={}, trials_requested=1)
    arch = MICRO
    t = add_running_trial(repo, s.id, 0, arch)
    settings = TrainSettings(budget=Budget(tokens=6 * 2 * 16), batch_size=2, eval_interval=3, device="cpu")
    ref = BaselineRef(name="glam", step_time_s=1e-9, curve=[], arch=arch.to_dict())
    fields: dict[str, object] = {
        "trial_id": t.id,
        "search_id": s.id,
        "database_url": database_url,
        "arch": arch.to_dict(),
        "settings": settings,
        "reference": ref,
        "max_step_time_ratio": 1.5,
    }
    return _job(**{**fields, **changes})


@pytest.mark.slow
def test_a_certainly_slower_candidate_is_pruned_before_training(
    repo: Repository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both models sleep in every step, the candidate four times as long (sleeps far above a step's time, so that
    load on the test machine cannot make the ratio uncertain): about 4x the baseline, over the 1.5 limit."""
    _slowed_probe(
        monkeypatch,
        lambda model, _: time.sleep(0.6 if model == "candidate" else 0.15),
        rounds=3,
        steps=1,
        bound=1.0,
        attempts=3,
    )
    job = _constrained_job(repo, database_url)
    outcome = run_job(job, repo)
    stored = repo.get_trial(job.trial_id)
    assert stored is not None and outcome.state == stored.state == "pruned"
    assert stored.reason == outcome.reason and stored.reason is not None
    probe = TimingProbe.from_metrics(stored.metrics)
    assert probe is not None and not probe.uncertain and probe.ratio > 1.5 and probe.baseline == "glam"
    assert f"step time {probe.ratio:.2f}x the glam baseline's" in stored.reason
    assert f"spread {probe.spread:.0%}" in stored.reason and "max_step_time_ratio 1.5" in stored.reason
    assert repo.trial_curve(job.trial_id) == [] and "steps" not in stored.metrics  # never trained
    assert stored.val_loss is None and outcome.val_loss is None


@pytest.mark.slow
def test_an_uncertain_probe_trains_the_trial_and_says_why(
    repo: Repository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate's steps are slowed in three rounds of five (load that comes and goes): the median ratio is over
    the limit, but the spread says the machine made it, so the trial trains and is not pruned on speed."""
    _slowed_probe(
        monkeypatch, lambda model, r: time.sleep(0.2) if model == "candidate" and r % 5 % 2 == 0 else None, steps=1
    )
    job = _constrained_job(repo, database_url)
    outcome = run_job(job, repo)
    stored = repo.get_trial(job.trial_id)
    assert stored is not None and outcome.state == stored.state == "completed", stored
    probe = TimingProbe.from_metrics(stored.metrics)
    assert probe is not None and probe.uncertain and probe.ratio > 1.5 and probe.attempts == 2
    assert stored.metrics["steps"] == 6 and len(repo.trial_curve(job.trial_id)) == 6
    assert any(n.startswith("max_step_time_ratio 1.5 not applied: step-time ratio") for n in stored.metrics["notes"])


def test_a_reference_without_an_architecture_leaves_the_constraint_unchecked(
    repo: Repository, database_url: str
) -> None:
    job = _constrained_job(repo, database_url)
    assert job.reference is not None
    job = job.model_copy(update={"reference": job.reference.model_copy(update={"arch": None})})
    outcome = run_job(job, repo)
    stored = repo.get_trial(job.trial_id)
    assert stored is not None and outcome.state == stored.state == "completed"
    assert "timing_probe" not in stored.metrics
    assert any("max_step_time_ratio not checked" in n for n in stored.metrics["notes"])


def test_optuna_median_pruner_decides_from_reported_validation_losses(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=optuna_storage(url), pruner=optuna.pruners.MedianPruner())
    for _ in range(4):  # finished trials with a good curve
        t = study.ask()
        for step in (10, 20, 30):
            t.report(2.0, step)
        study.tell(t, 2.0)
    bad = study.ask()
    judge = PruningJudge(
        _job(database_url=url, pruner="median", study_name="s", optuna_number=bad.number), flops_per_token=1
    )
    assert judge(_point(5, 3.0)) is None  # no validation loss at this step: nothing reported
    verdict = judge(_point(10, 3.0, val=3.0))
    assert verdict is not None and "median pruner stopped it at step 10" in verdict
    assert study.trials[-1].intermediate_values == {10: 3.0}


def test_run_job_records_the_outcome_and_curve(repo: Repository, database_url: str) -> None:
    s, _ = repo.create_search(name="t", space_name="tiny", space={}, settings={}, trials_requested=1)
    arch = scale(preset("glam"), "cpu-tiny")
    t = add_running_trial(repo, s.id, 0, arch)
    settings = TrainSettings(budget=Budget(tokens=6 * 8 * 64), batch_size=8, eval_interval=3, device="cpu")
    job = _job(trial_id=t.id, search_id=s.id, database_url=database_url, arch=arch.to_dict(), settings=settings)
    outcome = run_job(job, repo)
    stored = repo.get_trial(t.id)
    assert stored is not None and outcome.state == stored.state == "completed"
    assert outcome.val_loss == stored.val_loss and stored.val_loss is not None
    assert [p.step for p in repo.trial_curve(t.id)] == [1, 2, 3, 4, 5, 6]
    assert stored.metrics["steps"] == 6 and 0 < outcome.steps_seconds <= outcome.train_seconds


def test_a_bug_inside_a_trial_is_recorded_as_crashed(repo: Repository, database_url: str) -> None:
    s, _ = repo.create_search(name="t", space_name="tiny", space={}, settings={}, trials_requested=1)
    t = repo.add_trial(
        search_id=s.id,
        number=0,
        arch={"d_model": "wide"},
        arch_digest="0" * 16,
        pattern="?",
        params={},
        cost={},
        params_activated=1,
    )
    outcome = run_job(_job(trial_id=t.id, database_url=database_url, arch={"d_model": "wide"}), repo)
    stored = repo.get_trial(t.id)
    assert outcome.state == "crashed" and stored is not None and stored.state == "crashed"
    assert stored.reason is not None and "ArchitectureError" in stored.reason
