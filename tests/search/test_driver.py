"""The search driver end to end on both executors, each on its database (local processes on SQLite, Ray actors on
PostgreSQL): baselines
first, trials to the requested number, the Optuna study in step with the leaderboard, constraint pruning before
training, no architecture trained twice, and a search that fails only past its consecutive-failure limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from brainsearch.arch import cost
from brainsearch.errors import SpaceError
from brainsearch.search.driver import SearchDriver
from brainsearch.search.executor import Executor, Finished
from brainsearch.search.jobs import Job
from brainsearch.search.submission import RunOptions, create_search, study_name
from brainsearch.settings import get_settings
from brainsearch.space import SearchSpace, sample
from brainsearch.space.sample import RandomSuggester
from brainsearch.storage import Repository
from brainsearch.storage.optuna_storage import optuna_storage
from tests.factories import fast_space

pytestmark = pytest.mark.slow  # every test trains a real search end to end


def _run(
    repo: Repository, url: str, space: SearchSpace, executor: Any = None, **overrides: Any
) -> tuple[Any, list[str]]:
    search, _ = create_search(repo, space, overrides=overrides)
    notes: list[str] = []
    done = SearchDriver(repo, search.id, url, on_note=notes.append, data_dir=get_settings().data_dir).run(executor)
    return done, notes


def test_search_trains_baselines_then_the_requested_trials(
    repo: Repository, database_url: str, executor_kind: str, tmp_path: Path
) -> None:
    """Pass: baselines first, then 5 distinct trials, the Optuna study agreeing with the leaderboard, and the
    scale-up stage (the best trial and GLaM at one rung) run by the same executor, which the driver starts itself
    from the search's run options."""
    search, _ = create_search(
        repo,
        fast_space(),
        overrides={
            "trials": 5,
            "concurrency": 2,
            "sampler": "random",
            "top_k": 1,
            "scale_up": {"ladder": [{"preset": "cpu-tiny", "budget_tokens": 2048}]},
        },
        options=RunOptions(executor=executor_kind, threads_per_trial=1),  # type: ignore[arg-type]
    )
    done = SearchDriver(repo, search.id, database_url, data_dir=tmp_path).run()
    assert done.status == "completed" and done.finished_at is not None
    trials = repo.list_trials(done.id, limit=100).items
    baselines = {t.baseline_name: t for t in trials if t.is_baseline}
    assert set(baselines) == {"glam", "dense"} and all(t.state == "completed" for t in baselines.values())
    assert min(t.number for t in baselines.values()) == 0  # baselines come first
    candidates = [t for t in trials if not t.is_baseline]
    assert len(candidates) == 5 and all(t.state in ("completed", "pruned") for t in candidates)
    assert len({t.arch_digest for t in candidates}) == 5
    for t in candidates:
        if t.state == "pruned":
            assert t.reason and "quarter of the budget" in t.reason
    best = repo.list_trials(done.id, state="completed", is_baseline=False, limit=1).items
    runs = {(c.trial_id, c.rung, c.state) for c in repo.list_candidates(done.id)}
    assert runs == {(t.id, "cpu-tiny", "completed") for t in [*best, baselines["glam"]]}
    # The Optuna study in the same database agrees with the leaderboard.
    study = optuna.load_study(study_name=study_name(done.id), storage=optuna_storage(database_url))
    by_id = {ot.user_attrs["bs_trial_id"]: ot for ot in study.trials if "bs_trial_id" in ot.user_attrs}
    assert set(by_id) == {t.id for t in candidates}
    for t in candidates:
        ot = by_id[t.id]
        if t.state == "completed":
            assert ot.state == optuna.trial.TrialState.COMPLETE and ot.value == t.val_loss
        else:
            assert ot.state == optuna.trial.TrialState.PRUNED
        assert ot.params == t.params
    # Two trials trained at the same time (concurrency 2): some pair of training intervals overlaps.
    spans = [
        (t.finished_at.timestamp() - t.metrics["elapsed_s"], t.finished_at.timestamp())
        for t in trials
        if t.finished_at is not None and t.metrics.get("steps")
    ]
    assert any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(spans) for b0, b1 in spans[i + 1 :])


def test_constraints_prune_before_training(repo: Repository, database_url: str, executor: Executor) -> None:
    space = fast_space()
    totals = sorted(cost(sample(space, RandomSuggester(seed)), batch_size=8).params_total for seed in range(40))
    limit = totals[len(totals) // 2]
    space = fast_space(constraints={"max_params_total": limit})
    done, _ = _run(repo, database_url, space, executor, trials=6, sampler="random", seed=3, pruner="none")
    trials = [t for t in repo.list_trials(done.id, limit=100).items if not t.is_baseline]
    assert len(trials) == 6
    ruled_out = [t for t in trials if t.reason and "constraints" in t.reason]
    assert ruled_out, "the median limit rules out some of the sampled architectures"
    for t in ruled_out:
        assert t.state == "pruned" and "params_total" in t.reason and "max_params_total" in t.reason
        assert t.cost["params_total"] > limit and repo.trial_curve(t.id) == [] and t.metrics == {}
    for t in trials:
        if t not in ruled_out:
            assert t.state == "completed" and t.cost["params_total"] <= limit


def test_an_architecture_is_never_trained_twice(repo: Repository, database_url: str, executor: Executor) -> None:
    # Two architectures in the whole space: d_model 32 or 48, everything else fixed.
    doc = fast_space().model_dump(mode="json")
    block = doc["block"]
    block["d_model"] = {"kind": "choice", "choices": [32, 48]}
    block["slot_types"] = ["attention", "moe", "attention", "ffn", "attention", "moe", "ffn", "ffn"]
    for section in ("attention", "ffn", "moe"):
        for name, p in block[section].items():
            if p["kind"] == "choice":
                block[section][name] = {"kind": "fixed", "value": p["choices"][0]}
    space = SearchSpace.model_validate(doc)
    search, _ = create_search(repo, space, overrides={"trials": 3, "sampler": "random", "pruner": "none"})
    notes: list[str] = []
    done = SearchDriver(
        repo, search.id, database_url, on_note=notes.append, max_fruitless_asks=40, data_dir=get_settings().data_dir
    ).run(executor)
    candidates = [t for t in repo.list_trials(done.id, limit=100).items if not t.is_baseline]
    assert sorted(t.arch["d_model"] for t in candidates) == [32, 48]
    assert done.status == "completed" and any("already tried" in n for n in notes)
    study = optuna.load_study(study_name=study_name(done.id), storage=optuna_storage(database_url))
    duplicates = [ot for ot in study.trials if "duplicate_of" in ot.user_attrs]
    assert len(duplicates) >= 40
    trained = {t.id: t for t in candidates}
    for ot in duplicates[:20]:
        assert ot.value == trained[ot.user_attrs["duplicate_of"]].val_loss


class _Killing:
    """An executor that runs one job at a time and kills its worker right after handing it the job (the executor's
    own ``cancel``): every job crashes for real."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    @property
    def free(self) -> int:
        return min(1, self.inner.free) if not self.inner.running else 0

    @property
    def running(self) -> int:
        return self.inner.running

    def prestart(self, data: str, vocab_size: int, data_dir: Path | None) -> None:
        self.inner.prestart(data, vocab_size, data_dir)

    def submit(self, job: Job) -> None:
        self.inner.submit(job)
        assert self.inner.cancel(job)

    def wait(self, timeout: float | None = None) -> list[Finished]:
        return self.inner.wait(timeout)

    def cancel(self, job: Job) -> bool:
        return self.inner.cancel(job)

    def close(self) -> None:
        self.inner.close()


def test_crashes_are_states_and_the_search_fails_past_the_failure_limit(
    repo: Repository, database_url: str, executor: Executor, executor_kind: str
) -> None:
    space = fast_space(search={"max_consecutive_failures": 3})
    done, notes = _run(repo, database_url, space, _Killing(executor), trials=6, sampler="random")
    assert done.status == "failed" and "3 trials failed in a row" in (done.error or "")
    trials = repo.list_trials(done.id, limit=100).items
    why = "killed by SIGKILL" if executor_kind == "local" else "Ray worker died"
    assert all(t.state == "crashed" and why in (t.reason or "") for t in trials)
    assert len([t for t in trials if not t.is_baseline]) == 3
    assert any("baseline glam ended crashed" in n for n in notes)
    assert any("pruning rules are off" in n for n in notes)


def test_bad_overrides_name_the_search_field(repo: Repository) -> None:
    with pytest.raises(SpaceError) as info:
        create_search(repo, fast_space(), overrides={"trials": 0, "sampler": "anneal"})
    paths = sorted(p.path for p in info.value.problems)
    assert paths == ["search.sampler", "search.trials"]


def test_multi_objective_search_tells_both_objectives(repo: Repository, database_url: str, executor: Executor) -> None:
    objectives = ["val_loss", "params_activated"]
    done, _ = _run(repo, database_url, fast_space(), executor, trials=4, sampler="nsga2", objectives=objectives)
    assert done.status == "completed"
    study = optuna.load_study(study_name=study_name(done.id), storage=optuna_storage(database_url))
    assert study.metric_names == ["val_loss", "params_activated"]
    trials = {t.id: t for t in repo.list_trials(done.id, limit=100).items}
    complete = [ot for ot in study.trials if ot.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for ot in complete:
        t = trials[ot.user_attrs["bs_trial_id"]]
        assert ot.values == [t.val_loss, float(t.params_activated)]
    assert len(study.trials) == 4


def test_median_pruner_sees_the_validation_losses_the_workers_report(
    repo: Repository, database_url: str, executor: Executor
) -> None:
    space = fast_space(tokens=8 * 512)
    done, _ = _run(repo, database_url, space, executor, trials=6, sampler="random", pruner="median")
    assert done.status == "completed"
    study = optuna.load_study(study_name=study_name(done.id), storage=optuna_storage(database_url))
    trials = {t.id: t for t in repo.list_trials(done.id, limit=100).items}
    for ot in study.trials:
        t = trials[ot.user_attrs["bs_trial_id"]]
        curve = {p.step: p.val_loss for p in repo.trial_curve(t.id) if p.val_loss is not None}
        assert ot.intermediate_values == curve and len(curve) >= 1  # reported at steps 2, 4, 6, 8 (or until pruned)
        if t.state == "pruned":
            assert t.reason and "median pruner stopped it at step" in t.reason
            assert ot.state == optuna.trial.TrialState.PRUNED
