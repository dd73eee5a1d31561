"""The bridge between a search and its Optuna study, through Optuna's public API only.

One Optuna study per search lives in the search's own database (``brainsearch-{id}``, Optuna's RDB storage), so the
sampler sees every finished trial after a restart and optuna-dashboard can open the study. The bridge opens it (the
sampler re-seeded past the trials it has, so a resumed random or evolutionary search does not replay the proposals
it made), asks it for proposals, tells it how the brainsearch trial behind a proposal went, and settles what a dead
process left running. It keeps the proposals this process asked for (``optuna.Trial`` objects) until they are told,
and which proposals wait for a duplicate architecture in flight.

Optuna states: completed -> COMPLETE with one value per objective; pruned -> PRUNED; diverged, out of memory, timed
out and crashed -> FAIL. A worker reports validation losses to the study itself for Optuna's pruners
(:mod:`brainsearch.search.pruning`: it finds the trial by its number, :func:`running_trial`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import TrialState as OptunaState

from brainsearch.search.evolution import RegularizedEvolutionSampler
from brainsearch.search.samplers import make_sampler
from brainsearch.space.schema import SearchSettings
from brainsearch.storage import Trial
from brainsearch.storage.optuna_storage import optuna_storage

__all__ = ["StudyBridge", "objective_values", "running_trial"]


def objective_values(trial: Trial, objectives: Sequence[str]) -> list[float] | None:
    """The trial's objective values, in the order of ``objectives`` (None when one is missing or not finite)."""
    found = {
        "val_loss": trial.val_loss,
        "step_time": trial.step_time_s,
        "params_activated": trial.params_activated,
        "flops_per_token": trial.cost.get("flops_per_token"),
    }
    values = [found[name] for name in objectives]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return [float(v) for v in values if v is not None]


def running_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int) -> optuna.Trial:
    """The proposal numbered ``number`` of ``study`` (opened on ``storage``), as a trial a worker reports to."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    return optuna.Trial(study, trial_id)


class StudyBridge:
    """A search's Optuna study, as the driver uses it."""

    def __init__(self, database_url: str, study_name: str, settings: SearchSettings) -> None:
        self.settings = settings
        self.study = optuna.create_study(
            study_name=study_name,
            storage=optuna_storage(database_url),
            sampler=optuna.samplers.RandomSampler(),
            directions=["minimize"] * len(settings.objectives),
            load_if_exists=True,
        )
        with warnings.catch_warnings():  # metric names are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.set_metric_names(list(settings.objectives))
        seen = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = make_sampler(settings.model_copy(update={"seed": settings.seed + seen}))
        self._asked: dict[int, optuna.Trial] = {}  # Optuna number -> proposal not yet told
        self._waiting: dict[str, list[int]] = {}  # digest -> numbers of duplicates of a trial in flight

    def ask(self) -> optuna.Trial:
        """A new proposal (its parameters are drawn as the space's sampler asks for them)."""
        trial = self.study.ask()
        self._asked[trial.number] = trial
        return trial

    def record_lineage(self, trial: optuna.Trial) -> None:
        """After sampling: an evolved proposal's parent and mutated parameters, as its user attributes."""
        sampler = self.study.sampler
        if isinstance(sampler, RegularizedEvolutionSampler):
            for key, value in sampler.lineage(trial.number).items():
                trial.set_user_attr(key, value)

    def tell(self, number: int, trial: Trial) -> None:
        """Tell the sampler how the brainsearch trial behind proposal ``number`` (or the trial it duplicates) went."""
        values = objective_values(trial, self.settings.objectives) if trial.state == "completed" else None
        target: optuna.Trial | int = self._asked.pop(number, number)
        if values is not None:
            self.study.tell(target, values, skip_if_finished=True)
        elif trial.state == "pruned":
            self.study.tell(target, state=OptunaState.PRUNED, skip_if_finished=True)
        else:
            self.study.tell(target, state=OptunaState.FAIL, skip_if_finished=True)

    def fail(self, number: int) -> None:
        """Proposal ``number`` produced nothing to train or to compare (an invalid architecture, say)."""
        self._asked.pop(number, None)
        self.study.tell(number, state=OptunaState.FAIL, skip_if_finished=True)

    def wait_for(self, digest: str, number: int) -> None:
        """Proposal ``number`` duplicates the architecture ``digest`` in flight: told when that trial finishes."""
        self._waiting.setdefault(digest, []).append(number)

    def settle(self, number: int | None, trial: Trial) -> None:
        """A trained trial finished: tell its proposal, and the proposals waiting for it."""
        if number is not None:
            self.tell(number, trial)
        for dup in self._waiting.pop(trial.arch_digest, []):
            self.tell(dup, trial)

    def fail_waiting(self, note: Callable[[str], None]) -> None:
        """Fail the proposals that wait for a trial that never finished."""
        for digest, dups in self._waiting.items():
            for number in dups:
                self.fail(number)
            note(f"{len(dups)} duplicate proposal(s) of {digest} were failed: the original did not finish")
        self._waiting.clear()

    def reconcile(self, recorded: Callable[[int], Trial | None]) -> None:
        """Settle the proposals a dead (or interrupted) process left running: told the result a worker recorded
        (``recorded``: the brainsearch trial of a brainsearch trial id), failed otherwise."""
        for ot in self.study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
            ref = ot.user_attrs.get("bs_trial_id", ot.user_attrs.get("duplicate_of"))
            trial = recorded(int(ref)) if ref is not None else None
            if trial is not None and trial.state not in ("running", "crashed"):
                self.tell(ot.number, trial)
            else:
                self.fail(ot.number)
        self._asked.clear()
        self._waiting.clear()

    def retry(self, params: dict[str, object], number: int) -> None:
        """Propose ``params`` again next (a trial that crashed with its worker: ``number`` is its brainsearch
        number)."""
        self.study.enqueue_trial(params, user_attrs={"retry_of": number})
