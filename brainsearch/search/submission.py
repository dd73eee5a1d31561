"""Submitting and reading searches: what the API, the dashboard and the CLI need without Optuna or torch.

A search is stored queued with its space and two settings documents: ``search`` (the space's ``search`` section with
the request's overrides: trials, sampler, concurrency, seed, scale-up...) and ``run`` (:class:`RunOptions`: how its
jobs execute, which is not part of the space - the same space runs on a laptop or a cluster). A worker, or
``brainsearch search``/``resume``, then runs it with the driver (:mod:`brainsearch.search.driver`). :class:`Progress`
is the read model: where a stored search stands, as a reader sees it. Optuna is imported only to delete a study.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brainsearch._validation import problems_from_validation_error
from brainsearch.errors import ConflictError, Problem, SpaceError
from brainsearch.search.jobs import Resources
from brainsearch.search.noise import NoiseView, noise_view, other_seeds, reevaluation_pool
from brainsearch.search.scaleup import planned_runs
from brainsearch.search.scaleup_report import ScaleUpReport, scale_up_report
from brainsearch.search.standings import reference_trial
from brainsearch.search.verdict import Verdict, search_verdict
from brainsearch.space.baselines import baseline_architectures, trial_budget
from brainsearch.space.loader import validate_document
from brainsearch.space.schema import Quantity, SearchSettings, SearchSpace
from brainsearch.storage import Repository, Search
from brainsearch.store import RunStore
from brainsearch.train.settings import TrainSettings

__all__ = [
    "FAILED_STATES",
    "Progress",
    "RunOptions",
    "add_scale_up",
    "create_search",
    "delete_search",
    "reference_baseline",
    "repo_url",
    "search_noise_view",
    "search_scale_up_report",
    "search_verdict_of",
    "stored_space",
    "study_name",
    "trial_train_settings",
]

FAILED_STATES = frozenset({"diverged", "out_of_memory", "timed_out", "crashed"})


def study_name(search_id: int) -> str:
    """The Optuna study of a search."""
    return f"brainsearch-{search_id}"


class RunOptions(BaseModel):
    """How a search's trials execute (not part of the space: the same space runs on a laptop or a cluster)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    executor: Literal["local", "ray"] = "local"
    threads_per_trial: int | None = Field(default=None, ge=1, le=1024, description="default: cores / concurrency")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    ray_address: str | None = Field(default=None, max_length=1000, description="default: a local Ray on demand")
    gpus_per_trial: float = Field(default=0.0, ge=0, le=64)
    memory_per_trial: Quantity | None = Field(
        default=None, description="bytes a local trial may allocate (estimate refused first, then a hard cap)"
    )
    compile: bool | None = Field(
        default=None, description="torch.compile each run (default: on CUDA only; its time is never charged)"
    )

    def resources(self, concurrency: int) -> Resources:
        """What each of ``concurrency`` runs holds: ``threads_per_trial`` (default: the cores split evenly) and
        ``gpus_per_trial``."""
        return Resources.sharing(concurrency, self.threads_per_trial, self.gpus_per_trial)


def create_search(
    repo: Repository,
    space: SearchSpace,
    *,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    options: RunOptions | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    problem_prefix: tuple[str, ...] = ("search",),
) -> tuple[Search, bool]:
    """Store a queued search of ``space`` with its ``search`` settings overridden by ``overrides`` (trials, sampler,
    concurrency, seed, ...); bad overrides raise :class:`SpaceError` naming ``search.<field>`` (``problem_prefix``:
    the API names the request's own fields instead)."""
    settings = _settings_with(space.search, overrides or {}, problem_prefix)
    options = options or RunOptions()
    return repo.create_search(
        name=name or space.name,
        space_name=space.name,
        space=space.model_dump(mode="json"),
        settings={"search": settings.model_dump(mode="json"), "run": options.model_dump(mode="json")},
        trials_requested=settings.trials,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


def add_scale_up(
    repo: Repository,
    search: Search,
    scale_up: dict[str, Any],
    *,
    top_k: int | None = None,
    prefix: tuple[str, ...] = (),
) -> Search:
    """Queue a finished search again to run a scale-up stage (``scale_up``: a ``search.scale_up`` document; ``top_k``
    optional): its trials are kept and not trained again, a worker (or ``resume``) runs the stage. Bad settings
    raise :class:`SpaceError` naming the field (under ``prefix``); a search still queued or running is a
    ConflictError; one with no completed trial has nothing to scale up."""
    if search.status in ("queued", "running"):
        raise ConflictError(f"search {search.id} is {search.status}: wait for it to finish")
    overrides: dict[str, Any] = {"scale_up": scale_up, **({"top_k": top_k} if top_k is not None else {})}
    settings = _settings_with(stored_space(search).search, overrides, prefix)
    if not repo.count_trials(search.id, is_baseline=False).get("completed"):
        where = ".".join(prefix) or "search"
        raise SpaceError([Problem(where, f"search {search.id} has no completed trial to scale up")])
    return repo.reopen_search(search.id, {**search.settings, "search": settings.model_dump(mode="json")})


def delete_search(repo: Repository, search_id: int, store: RunStore) -> Search:
    """Delete a finished search: its rows (trials, curves, candidates), its Optuna study and its files in
    ``store``. A queued or running search is a ConflictError (cancel it first)."""
    deleted = repo.delete_search(search_id)
    import optuna

    from brainsearch.storage.optuna_storage import optuna_storage

    with contextlib.suppress(KeyError):  # a search deleted before it ran has no study
        optuna.delete_study(study_name=study_name(search_id), storage=optuna_storage(repo_url(repo)))
    store.remove_search(search_id)
    return deleted


def reference_baseline(search: Search) -> str:
    """The baseline a search's trials are compared with (its space's ``constraints.baseline``)."""
    return str(search.space.get("constraints", {}).get("baseline", "glam"))


def repo_url(repo: Repository) -> str:
    """The repository's database URL, password included (Optuna's storage connects with it)."""
    return repo.engine.url.render_as_string(hide_password=False)


def _settings_with(current: SearchSettings, overrides: dict[str, Any], prefix: tuple[str, ...]) -> SearchSettings:
    try:
        return SearchSettings.model_validate({**current.model_dump(), **overrides})
    except ValidationError as exc:
        raise SpaceError(problems_from_validation_error(exc, None, prefix=prefix)) from None


def stored_space(search: Search) -> SearchSpace:
    """A stored search's space with the search settings it was submitted with (overrides applied). The hard ceiling
    was checked when the search was submitted, under that process's setting: it is not checked again."""
    space = validate_document(search.space, f"search {search.id}", max_params=None)
    return space.model_copy(update={"search": SearchSettings.model_validate(search.settings.get("search", {}))})


def trial_train_settings(space: SearchSpace, seed: int = 0, device: str = "auto") -> TrainSettings:
    """How a trial of ``space`` trains: its proxy settings, budget (:func:`~brainsearch.space.baselines.trial_budget`:
    the reference baseline's compute under ``compute: match_baseline``) and memory limit per device. Validation runs
    at the end, and also four times along a token budget (the baseline's, under equal compute) when an Optuna pruner
    (median, successive halving) needs intermediate values; the paper's quarter-budget rule compares training losses
    and needs none."""
    proxy = space.proxy
    eval_interval = 1_000_000_000
    if space.search.pruner in ("median", "successive_halving"):
        eval_interval = 50
        if proxy.budget.tokens is not None:
            steps = math.ceil(proxy.budget.tokens / (proxy.batch_size * proxy.seq_len))
            eval_interval = max(1, steps // 4)
    return TrainSettings.model_validate(
        {
            "budget": trial_budget(space),
            "batch_size": proxy.batch_size,
            "data": proxy.data,
            "seed": seed,
            "eval_interval": eval_interval,
            "device": device,
            # The space's limit is memory per device: the trainer picks the micro-batch (and checkpointing) to fit it.
            "memory_limit_bytes": space.constraints.max_memory_bytes,
        }
    )


def _reevaluating(repo: Repository, search_id: int, space: SearchSpace) -> bool:
    """Whether some trial of the re-evaluation pool still lacks a final run of one of its ``top_k_seeds`` seeds."""
    pool = reevaluation_pool(repo, search_id, space)
    if not pool:
        return False
    reference = reference_trial(repo, search_id, space.constraints.baseline)
    if reference is not None and space.search.top_k_seeds > space.search.baseline_seeds:
        pool = [*pool, reference]  # it trains the seeds the re-evaluated trials do
    final = {
        (r.trial_id, r.seed)
        for r in repo.list_seed_runs(search_id, [t.id for t in pool])
        if r.state not in ("running", "crashed")
    }
    wanted = {(t.id, seed) for t in pool for seed in other_seeds(space.search.seed, space.search.top_k_seeds)}
    return not wanted <= final


@dataclass(frozen=True)
class Progress:
    """Where a search stands (baselines apart). ``failed`` counts diverged, out-of-memory and timed-out trials;
    ``crashed`` ones (their worker died) do not count towards the requested number: another trial takes the place."""

    requested: int
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    crashed: int = 0
    running: int = 0
    baselines: dict[str, float | None] = field(default_factory=dict)
    best_val_loss: float | None = None
    best_number: int | None = None
    stage: str | None = None  # after the trials: "scale-up 2/6" while the scale-up stage runs

    @classmethod
    def from_counts(cls, requested: int, counts: dict[str, int], **extra: Any) -> Progress:
        """Progress from trials per state (``Repository.count_trials`` of the non-baseline trials)."""
        return cls(
            requested=requested,
            completed=counts.get("completed", 0),
            pruned=counts.get("pruned", 0),
            failed=sum(counts.get(s, 0) for s in FAILED_STATES if s != "crashed"),
            crashed=counts.get("crashed", 0),
            running=counts.get("running", 0),
            **extra,
        )

    @property
    def done(self) -> int:
        """Trials that count towards the requested number (crashed ones are retried)."""
        return self.completed + self.pruned + self.failed

    @classmethod
    def of(cls, repo: Repository, search: Search) -> Progress:
        """A stored search's progress as a reader (the API, a dashboard) sees it, with the stage it is in:
        ``queued``, ``baselines``, ``trials``, ``scale-up i/n`` or its final status."""
        counts = repo.count_trials(search.id, is_baseline=False)
        base = repo.baselines(search.id)
        best = repo.list_trials(search.id, state="completed", is_baseline=False, limit=1).items
        progress = cls.from_counts(
            search.trials_requested,
            counts,
            baselines={t.baseline_name or "?": t.val_loss for t in base if t.state != "crashed"},
            best_val_loss=best[0].val_loss if best else None,
            best_number=best[0].number if best else None,
        )
        stage: str = search.status
        if search.status == "running":
            space = stored_space(search)
            settled = {t.baseline_name for t in base if t.state not in ("running", "crashed")}
            if len(settled) < len(baseline_architectures(space)):
                stage = "baselines"
            elif progress.done < search.trials_requested:
                stage = "trials"
            elif _reevaluating(repo, search.id, space):
                stage = "re-evaluation"
            elif space.search.scale_up is None:
                stage = "trials"
            else:
                runs, _ = planned_runs(repo, search.id, space)
                recorded = {(c.trial_id, c.rung) for c in repo.list_candidates(search.id) if c.state != "crashed"}
                stage = f"scale-up {len(recorded)}/{len(runs)}"
        return replace(progress, stage=stage)


def search_scale_up_report(
    repo: Repository,
    search: Search,
    space: SearchSpace | None = None,
    view: NoiseView | None = None,
    **params: Any,
) -> ScaleUpReport:
    """The stored search's scale-up report (:func:`~brainsearch.search.scaleup_report.scale_up_report`, ``params``:
    ``target``, ``law``, ``scale_by``, ``store``), its rungs' intervals from the seed noise the search measured on its
    proxies (``view``, when the caller has it)."""
    space = space or stored_space(search)
    view = view or search_noise_view(repo, search, space)
    return scale_up_report(repo, search.id, space, noise=view.noise, **params)


def search_verdict_of(
    repo: Repository, search: Search, space: SearchSpace | None = None, view: NoiseView | None = None
) -> Verdict:
    """The stored search's verdict (:mod:`brainsearch.search.verdict`): what every view shows as its result."""
    space = space or stored_space(search)
    view = view or search_noise_view(repo, search, space)
    report = None
    if space.search.scale_up is not None and repo.list_candidates(search.id):
        report = search_scale_up_report(repo, search, space, view)
    return search_verdict(search, view, space.constraints.baseline, report)


def search_noise_view(repo: Repository, search: Search, space: SearchSpace | None = None) -> NoiseView:
    """The stored search's measured noise and each trial's interval against its reference baseline (``space``: its
    stored space, when the caller has read it already)."""
    space = space or stored_space(search)
    return noise_view(
        repo,
        search.id,
        baseline_name=space.constraints.baseline,
        baseline_seeds=space.search.baseline_seeds,
        first_seed=space.search.seed,
    )
