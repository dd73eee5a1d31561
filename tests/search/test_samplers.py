"""Every named sampler drives sampling over every bundled space through Optuna's ask/tell."""

from __future__ import annotations

import optuna
import pytest

from brainsearch.arch import cost
from brainsearch.search.evolution import RegularizedEvolutionSampler
from brainsearch.search.samplers import make_sampler
from brainsearch.space import bundled_space_names, load_space, sample
from brainsearch.space.schema import SAMPLER_NAMES, SearchSettings


def _settings(name: str) -> SearchSettings:
    objectives = ["val_loss", "params_activated"] if name == "nsga2" else ["val_loss"]
    return SearchSettings(
        sampler=name,
        objectives=objectives,
        seed=3,  # type: ignore[arg-type]
        evolution={"population_size": 4, "tournament_size": 2},
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("space_name", bundled_space_names())
@pytest.mark.parametrize("sampler_name", SAMPLER_NAMES)
def test_named_sampler_drives_the_space(sampler_name: str, space_name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = _settings(sampler_name)
    space = load_space(space_name)
    study = optuna.create_study(sampler=make_sampler(settings), directions=["minimize"] * len(settings.objectives))
    digests = set()
    for _ in range(10):
        trial = study.ask()
        arch = sample(space, trial)
        digests.add(arch.digest)
        c = cost(arch)
        values = [c.flops_per_token / 1e6, c.params_activated / 1e6][: len(settings.objectives)]
        study.tell(trial, values)
    assert len(digests) > 1


def test_evolution_settings_are_passed_through() -> None:
    sampler = make_sampler(_settings("evolution"))
    assert isinstance(sampler, RegularizedEvolutionSampler)
    assert (sampler.population_size, sampler.tournament_size) == (4, 2)
