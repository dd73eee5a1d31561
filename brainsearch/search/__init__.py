"""Search: Optuna samplers (including the paper's regularized evolution); the driver and executors are to come."""

from brainsearch.search.evolution import RegularizedEvolutionSampler

__all__ = ["RegularizedEvolutionSampler"]
