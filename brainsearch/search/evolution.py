"""Regularized (aging) evolution as an Optuna sampler: the search method of Brainformer (arXiv 2306.00008,
Algorithm 1), from Real et al. 2019 (arXiv 1802.01548).

The population is the ``population_size`` most recently *born* finished trials (aging: the oldest dies, however
good it was). Each new trial draws ``tournament_size`` members of the population at random, takes the best as its
parent, copies the parent's parameters and mutates them: one parameter chosen at random (``mutation_rate = 0``, the
default) or each parameter with probability ``mutation_rate`` (at least one). Mutating a slot's layer type changes
which conditional parameters exist; parameters the parent never had are drawn at random. Until the population is
full, trials are drawn at random. Single objective, minimised or maximised as the study says.

A child's lineage (its parent's number and the parameters mutated) is kept by the sampler (:meth:`lineage`) for
whoever asked for the trial to record: the search's study bridge writes it as the trial's ``evolution:parent`` and
``evolution:mutated`` user attributes. Only Optuna's public API is used.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["RegularizedEvolutionSampler"]


class RegularizedEvolutionSampler(BaseSampler):
    """Aging evolution with tournament selection and single-parameter mutation (defaults: 32, 8, one mutation)."""

    def __init__(
        self, population_size: int = 32, tournament_size: int = 8, mutation_rate: float = 0.0, seed: int | None = None
    ) -> None:
        if not 1 <= tournament_size <= population_size:
            raise ValueError("need 1 <= tournament_size <= population_size")
        if not 0.0 <= mutation_rate <= 1.0:
            raise ValueError("mutation_rate must be in [0, 1]")
        self.population_size, self.tournament_size, self.mutation_rate = population_size, tournament_size, mutation_rate
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed=seed)
        # trial number -> (parent number, parent params, names to mutate); kept in memory for the trial's lifetime.
        self._plans: dict[int, tuple[int, dict[str, Any], set[str]]] = {}

    def reseed_rng(self) -> None:
        """New random streams (Optuna calls this for samplers shared across processes)."""
        self._rng = random.Random()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Evolution samples parameter by parameter: no joint search space."""
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Nothing sampled jointly."""
        return {}

    def population(self, study: Study) -> list[FrozenTrial]:
        """The living population: the most recent ``population_size`` completed trials, by birth order."""
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done = [t for t in done if t.values is not None and len(t.values) == 1]
        return sorted(done, key=lambda t: t.number)[-self.population_size :]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Choose this trial's parent by tournament and the parameters to mutate."""
        if len(study.directions) != 1:
            raise ValueError("regularized evolution optimises a single objective")
        population = self.population(study)
        if len(population) < self.population_size:
            return
        contestants = self._rng.sample(population, self.tournament_size)
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        parent = min(contestants, key=lambda t: sign * float(t.values[0]))
        names = sorted(parent.params)
        if not names:  # nothing free to mutate: the trial is drawn at random (and has no parameters anyway)
            return
        if self.mutation_rate > 0:
            mutate = {n for n in names if self._rng.random() < self.mutation_rate} or {self._rng.choice(names)}
        else:
            mutate = {self._rng.choice(names)}
        self._plans[trial.number] = (parent.number, dict(parent.params), mutate)

    def lineage(self, number: int) -> dict[str, Any]:
        """Trial ``number``'s parent and mutated parameters (``evolution:parent``, ``evolution:mutated``), while it
        runs; empty for a trial drawn at random."""
        plan = self._plans.get(number)
        if plan is None:
            return {}
        parent_number, _, mutate = plan
        return {"evolution:parent": parent_number, "evolution:mutated": sorted(mutate)}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """The parent's value, except for mutated or new parameters, which are drawn at random."""
        plan = self._plans.get(trial.number)
        if plan is not None:
            _, parent, mutate = plan
            if param_name in parent and param_name not in mutate:
                value = parent[param_name]
                if _contains(param_distribution, value):
                    return value
            if param_name in mutate and param_name in parent:
                return self._different(study, trial, param_name, param_distribution, parent[param_name])
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def _different(self, study: Study, trial: FrozenTrial, name: str, dist: BaseDistribution, old: Any) -> Any:
        # A mutation that changes nothing wastes a trial: redraw a few times for a different value.
        value = old
        for _ in range(16):
            value = self._random.sample_independent(study, trial, name, dist)
            if value != old:
                break
        return value

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        """Forget the trial's plan."""
        self._plans.pop(trial.number, None)


def _contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``dist`` can draw ``value`` (a parent's value is kept only where the child's domain has it)."""
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(dist, IntDistribution | FloatDistribution) and isinstance(value, int | float):
        if not dist.low <= value <= dist.high:
            return False
        return dist.step is None or math.isclose((value - dist.low) / dist.step, round((value - dist.low) / dist.step))
    return False
