"""Optuna samplers by the names a space's ``search.sampler`` uses (``brainsearch.space.schema.SAMPLER_NAMES``)."""

from __future__ import annotations

import warnings

import optuna

from brainsearch.search.evolution import RegularizedEvolutionSampler
from brainsearch.space.schema import SearchSettings

__all__ = ["make_sampler"]


def make_sampler(settings: SearchSettings) -> optuna.samplers.BaseSampler:
    """The sampler ``settings.sampler`` names, seeded with ``settings.seed``.

    ``tpe`` is multivariate and grouped (the space is conditional: a slot's MoE parameters exist only when the slot
    is MoE); ``nsga2`` is multi-objective; ``evolution`` takes ``settings.evolution``.
    """
    seed = settings.seed
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "tpe":
        with warnings.catch_warnings():  # multivariate / group are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    evo = settings.evolution
    return RegularizedEvolutionSampler(evo.population_size, evo.tournament_size, evo.mutation_rate, seed=seed)
