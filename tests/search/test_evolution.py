"""Regularized evolution: aging population, tournament selection, one mutation; and a cheap synthetic objective
over the real tiny space on which evolution and TPE must beat random search (averaged over seeds)."""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable

import optuna
import pytest

from brainsearch.search.evolution import RegularizedEvolutionSampler
from brainsearch.space import load_space, sample

SPACE = load_space("tiny")
TARGET = "afgggfff"  # Brainformer-1's layer order


def synthetic_objective(trial: optuna.Trial) -> float:
    """Distance of the sampled block from Brainformer-1's layer order and from d_model 64 (test-only)."""
    arch = sample(SPACE, trial)
    return sum(a != b for a, b in zip(arch.pattern, TARGET, strict=True)) + abs(arch.d_model - 64) / 16


def _recording(sampler: RegularizedEvolutionSampler) -> Callable[[optuna.Trial], float]:
    """The synthetic objective, recording each trial's lineage as its user attributes (as the study bridge does)."""

    def objective(trial: optuna.Trial) -> float:
        value = synthetic_objective(trial)
        for key, lineage in sampler.lineage(trial.number).items():
            trial.set_user_attr(key, lineage)
        return value

    return objective


def _best(sampler: optuna.samplers.BaseSampler, trials: int = 120) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=sampler)
        study.optimize(synthetic_objective, n_trials=trials)
    return study.best_value


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.slow
def test_evolution_and_tpe_beat_random_search() -> None:
    seeds = range(3)
    random_best = statistics.mean(_best(optuna.samplers.RandomSampler(seed=s)) for s in seeds)
    evolution_best = statistics.mean(
        _best(RegularizedEvolutionSampler(population_size=10, tournament_size=3, seed=s)) for s in seeds
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        tpe_best = statistics.mean(
            _best(optuna.samplers.TPESampler(seed=s, multivariate=True, group=True, n_startup_trials=10)) for s in seeds
        )
    assert evolution_best < random_best, (evolution_best, random_best)
    assert tpe_best < random_best, (tpe_best, random_best)


def test_children_copy_a_tournament_winner_and_mutate_one_parameter() -> None:
    sampler = RegularizedEvolutionSampler(population_size=6, tournament_size=3, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_recording(sampler), n_trials=30)
    trials = study.trials
    for child in trials[6:]:
        parent_number = child.user_attrs["evolution:parent"]
        mutated = child.user_attrs["evolution:mutated"]
        assert len(mutated) == 1
        parent = trials[parent_number]
        # The parent was alive (among the 6 most recent finished trials) when the child was born.
        assert child.number - 6 <= parent_number < child.number
        shared = set(parent.params) & set(child.params) - set(mutated)
        assert all(child.params[n] == parent.params[n] for n in shared)
        if mutated[0] in child.params:
            assert child.params[mutated[0]] != parent.params[mutated[0]]


def test_first_trials_are_random_until_the_population_is_full() -> None:
    sampler = RegularizedEvolutionSampler(population_size=5, tournament_size=2, seed=1)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_recording(sampler), n_trials=8)
    assert all("evolution:parent" not in t.user_attrs for t in study.trials[:5])
    assert all("evolution:parent" in t.user_attrs for t in study.trials[5:])


def test_mutation_rate_mutates_several() -> None:
    sampler = RegularizedEvolutionSampler(population_size=4, tournament_size=2, mutation_rate=0.5, seed=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_recording(sampler), n_trials=20)
    assert max(len(t.user_attrs.get("evolution:mutated", [])) for t in study.trials) > 1


@pytest.mark.parametrize(("population", "tournament", "rate"), [(4, 5, 0.0), (4, 0, 0.0), (4, 2, 1.5)])
def test_bad_settings(population: int, tournament: int, rate: float) -> None:
    with pytest.raises(ValueError):
        RegularizedEvolutionSampler(population, tournament, rate)


def test_multi_objective_is_refused() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=RegularizedEvolutionSampler(2, 1))
    with pytest.raises(ValueError, match="single objective"):
        study.ask()


def test_a_space_with_nothing_to_mutate_does_not_crash() -> None:
    study = optuna.create_study(sampler=RegularizedEvolutionSampler(2, 1, seed=0))
    study.optimize(lambda trial: 1.0, n_trials=4)
    assert len(study.trials) == 4
