"""Search: Optuna samplers by name, including the paper's regularized evolution (the driver and executors are to
come)."""

from brainsearch.search.evolution import RegularizedEvolutionSampler
from brainsearch.search.samplers import SAMPLER_NAMES, make_sampler

__all__ = ["SAMPLER_NAMES", "RegularizedEvolutionSampler", "make_sampler"]
