"""The scale-up stage's planner (Brainformer, arXiv 2306.00008, section 4): which runs the stage trains, on how
many devices, with which training recipe.

After the proxy trials, the ``top_k`` best trials whose blocks stay distinct once scaled, and the reference baseline
(GLaM by default), are trained again at each rung of the search's ``scale_up.ladder`` (scale presets from
:mod:`brainsearch.arch.scale`, each with a token budget), every run recorded as a candidate row. The driver runs the
planned jobs on the search's executor like trials (:mod:`brainsearch.search.runner` trains and records them), and
the stage resumes from the database: a (trial, rung) pair already recorded is not trained again (one whose worker
died is, from its last checkpoint). What the stage reports is computed on read, in
:mod:`brainsearch.search.scaleup_report`.

Devices: every run of a rung shares one device count and training recipe, so the candidates and the baseline are
compared under the same optimiser and precision. They are those the device planner
(:func:`brainsearch.arch.devices.plan_devices_shared`) finds for the rung's most demanding architecture on the
search's hardware (:mod:`brainsearch.search.hardware`), or the rung's ``devices``: one device with the leanest
recipe that fits, else FSDP2 over the fewest devices that fit. A rung the hardware cannot hold is refused before
anything starts, with a note naming what it needs. A sharded run's memory plan is fixed here, for every rank alike.

``scale_up.init``: ``upcycle`` trains each run's dense twin first and upcycles it (:mod:`brainsearch.train.upcycle`);
``both`` trains each candidate both ways, the upcycled run recorded under the rung ``<preset>+upcycle``.
"""

from __future__ import annotations

import math
from pathlib import Path

from brainsearch.arch.cost import cost
from brainsearch.arch.devices import DevicePlan, NotEnoughDevices, plan_devices_shared
from brainsearch.arch.plan import NoPlanFits, plan_memory
from brainsearch.arch.scale import scale, scale_preset
from brainsearch.arch.spec import Architecture
from brainsearch.errors import ArchitectureError
from brainsearch.search.hardware import Hardware
from brainsearch.search.jobs import CandidateJob, Resources
from brainsearch.search.noise import seeds_of
from brainsearch.search.standings import reference_trial, standings
from brainsearch.space.baselines import reference_architecture
from brainsearch.space.schema import Rung, ScaleUpSettings, SearchSpace
from brainsearch.storage import Candidate, Repository, Trial
from brainsearch.store import RunStore, candidate_run_key
from brainsearch.train.settings import CheckpointSettings, TrainSettings

__all__ = [
    "UPCYCLE_SUFFIX",
    "candidate_trials",
    "planned_runs",
    "ranked_trials",
    "recorded_runs",
    "rung_budget",
    "rung_device_plan",
    "rung_train_settings",
    "same_training",
    "scale_up_jobs",
]

# The rung label of a candidate's upcycled run when ``scale_up.init`` is ``both``.
UPCYCLE_SUFFIX = "+upcycle"


def rung_budget(rung: Rung, space: SearchSpace) -> dict[str, float]:
    """A rung's token budget (the rung's own or its preset's), or, in a space of equal compute
    (``proxy.budget.compute: match_baseline``), the training FLOPs the reference baseline scaled to the rung spends
    on those tokens: every candidate of the rung then trains with the baseline's compute, as on the proxies."""
    preset = scale_preset(rung.preset)
    batch = rung.batch_size or preset.batch_size
    tokens = rung.budget_tokens or preset.budget_tokens
    reference = reference_architecture(space) if space.proxy.budget.matches_baseline else None
    if reference is None:
        return {"tokens": tokens}
    steps = max(1, math.ceil(tokens / (batch * preset.seq_len)))
    flops_per_token = cost(scale(reference, rung.preset), batch_size=batch).flops_per_token
    return {"flops": float(flops_per_token * steps * batch * preset.seq_len)}


def rung_train_settings(rung: Rung, space: SearchSpace, up: ScaleUpSettings, device: str = "auto") -> TrainSettings:
    """How a candidate trains at ``rung``: the preset's batch and budget (or the rung's own; the baseline's compute
    at the rung in a space of equal compute, :func:`rung_budget`), the search's data, validation at
    ``up.evaluations`` points along the run (the convergence speed-up reads them)."""
    preset = scale_preset(rung.preset)
    batch = rung.batch_size or preset.batch_size
    tokens = rung.budget_tokens or preset.budget_tokens
    steps = max(1, math.ceil(tokens / (batch * preset.seq_len)))
    return TrainSettings.model_validate(
        {
            "budget": rung_budget(rung, space),
            "batch_size": batch,
            "data": space.proxy.data,
            "seed": up.seed,
            "eval_interval": max(1, steps // up.evaluations),
            "device": device,
        }
    )


def ranked_trials(repo: Repository, search_id: int, first_seed: int) -> list[Trial]:
    """The search's standings (:func:`~brainsearch.search.standings.standings`: the re-evaluated trials by their mean
    over their held-out seeds, ``first_seed`` being the one they were selected on, then the rest by loss)."""
    runs = repo.list_seed_runs(search_id)
    seeded = (repo.get_trial(i) for i in sorted({r.trial_id for r in runs}))
    return standings(repo, search_id, {t.id: seeds_of(t, runs, first_seed) for t in seeded if t is not None})


def candidate_trials(
    repo: Repository, search_id: int, top_k: int, first_rung: str, baseline: str, first_seed: int = 0
) -> list[Trial]:
    """The ``top_k`` best completed trials (the re-evaluated ones by their held-out mean over seeds) whose blocks
    stay distinct when scaled to ``first_rung`` (two proxies that differ only in widths become one architecture at a
    fixed-width preset), then the completed reference ``baseline``, if any."""
    chosen: list[Trial] = []
    seen: set[str] = set()
    for trial in ranked_trials(repo, search_id, first_seed) if top_k > 0 else ():
        try:
            digest = scale(Architecture.from_json(trial.arch), first_rung).digest
        except ArchitectureError:
            continue
        if digest not in seen:
            seen.add(digest)
            chosen.append(trial)
            if len(chosen) == top_k:
                break
    base = reference_trial(repo, search_id, baseline)
    return chosen + ([base] if base is not None else [])


def planned_runs(
    repo: Repository, search_id: int, space: SearchSpace
) -> tuple[list[tuple[Trial, str, Architecture]], list[str]]:
    """Every (trial, rung, scaled architecture) the stage trains for ``space.search.scale_up``, and notes on what was
    left out and why."""
    up = space.search.scale_up
    if up is None:
        return [], []
    notes: list[str] = []
    trials = candidate_trials(
        repo, search_id, space.search.top_k, up.ladder[0].preset, space.constraints.baseline, space.search.seed
    )
    if not any(not t.is_baseline for t in trials):
        notes.append("no completed trial to scale up")
    labels = {"scratch": [""], "upcycle": [""], "both": ["", UPCYCLE_SUFFIX]}[up.init]
    runs: list[tuple[Trial, str, Architecture]] = []
    for rung in up.ladder:
        for trial in trials:
            try:
                arch = scale(Architecture.from_json(trial.arch), rung.preset)
            except ArchitectureError as exc:
                notes.append(f"trial {trial.number} cannot be scaled to {rung.preset}: {exc}")
                continue
            runs.extend((trial, rung.preset + suffix, arch) for suffix in labels)
    return runs, notes


def recorded_runs(candidates: list[Candidate]) -> set[tuple[int | None, str]]:
    """The (trial, rung) pairs with a run recorded in a final state (a crashed run is not: it is retried)."""
    return {(c.trial_id, c.rung) for c in candidates if c.state != "crashed"}


def rung_device_plan(rung: Rung, archs: list[Architecture], settings: TrainSettings, hardware: Hardware) -> DevicePlan:
    """The devices and recipe every run of ``rung`` uses (see the module docstring); raises
    :class:`~brainsearch.arch.devices.NotEnoughDevices` when the hardware cannot hold the rung."""
    return plan_devices_shared(
        archs,
        settings.batch_size,
        hardware.precision,
        hardware.memory_bytes,
        hardware.available,
        name=rung.preset,
        unit=hardware.unit,
        devices=rung.devices,
        checkpointing=settings.activation_checkpointing,
    )


# What a run's training depends on: two settings equal in everything else train the same model on the same batches
# to the same losses (evaluation points, device placement, memory plan and checkpoints change none of it).
_NOT_TRAINING = frozenset(
    {
        "data_dir",  # where the tokenised corpus is cached, not what it holds
        "eval_interval",
        "device",
        "compile",
        "micro_batch",
        "activation_checkpointing",
        "time_limit_s",
        "memory_limit_bytes",
        "checkpoint",
        "timing_warmup_steps",
    }
)


def same_training(a: TrainSettings, b: TrainSettings) -> bool:
    """Whether runs with settings ``a`` and ``b`` train alike: same budget, batch, data, seed, optimiser, schedule and
    loss weights (what differs only in evaluation points, placement or checkpoints does not count)."""
    return a.model_dump(exclude=set(_NOT_TRAINING)) == b.model_dump(exclude=set(_NOT_TRAINING))


def scale_up_jobs(
    repo: Repository,
    search_id: int,
    space: SearchSpace,
    database_url: str,
    device: str = "auto",
    resources: Resources | None = None,
    *,
    hardware: Hardware | None = None,
    store: RunStore | None = None,
    launcher: str = "torchrun",
    proxy_settings: TrainSettings | None = None,
    data_dir: Path | None = None,
) -> tuple[list[CandidateJob], list[str]]:
    """The candidate runs still to do, and notes on what was left out and why. ``hardware`` (default: one CPU
    process per core, the host's memory) sizes each rung; ``store`` gives every run a checkpoint folder (none
    without it); a sharded run is launched with ``launcher`` (``torchrun``, or ``ray`` on a Ray cluster). Given
    the trials' ``proxy_settings``, a run at a rung that is the proxy's own scale and training (the same
    architecture, :func:`same_training`) reuses the trial's proxy run (``reuse_proxy``) instead of training it
    again. Workers cache the tokenised corpus under ``data_dir`` (default: ``~/.brainsearch``)."""
    up = space.search.scale_up
    if up is None:
        return [], []
    from brainsearch.search.hardware import probe_hardware

    hardware = hardware or probe_hardware("cpu")
    runs, notes = planned_runs(repo, search_id, space)
    done = recorded_runs(repo.list_candidates(search_id))
    jobs = []
    for rung in up.ladder:
        base = rung_train_settings(rung, space, up, device).model_copy(update={"data_dir": data_dir})
        rung_runs = [
            (trial, label, arch) for trial, label, arch in runs if label.removesuffix(UPCYCLE_SUFFIX) == rung.preset
        ]
        todo = [(trial, label, arch) for trial, label, arch in rung_runs if (trial.id, label) not in done]
        if not todo:
            continue
        try:
            devices = rung_device_plan(rung, [arch for _, _, arch in rung_runs], base, hardware)
        except (NotEnoughDevices, NoPlanFits) as refusal:
            notes.append(f"{rung.preset} refused: {refusal}")
            continue
        recipe = devices.recipe
        settings = base.with_recipe(recipe)
        # The reference baseline scaled to this rung: a single-device run of another candidate is timed against it
        # after the run, back to back in its worker (brainsearch.train.timing), for a steps/s ratio that load during
        # either run cannot fake. A sharded rung is not probed (both models would need the process group).
        reference = next(((t, a) for t, _, a in rung_runs if t.is_baseline), None) if recipe.shards == 1 else None
        for trial, label, arch in todo:
            upcycle = up.init == "upcycle" or label.endswith(UPCYCLE_SUFFIX)
            if upcycle and recipe.shards > 1:
                notes.append(f"trial {trial.number} at {label}: upcycling a sharded run is not supported; skipped")
                continue
            plan = None
            if recipe.shards > 1:  # every rank follows the same plan: fixed here
                try:
                    plan = plan_memory(
                        arch,
                        settings.batch_size,
                        hardware.precision,
                        hardware.usable_bytes,
                        checkpointing=settings.activation_checkpointing,
                        recipe=recipe,
                    )
                except NoPlanFits as refusal:
                    notes.append(f"trial {trial.number} at {label} refused: {refusal}")
                    continue
            reuse = (
                proxy_settings is not None
                and not upcycle
                and recipe.shards == 1
                and arch.digest == trial.arch_digest
                and same_training(settings, proxy_settings)
            )
            run_settings = settings
            if store is not None and not reuse:
                folder = store.checkpoints_dir(search_id, candidate_run_key(trial.id, label))
                checkpoint = CheckpointSettings(
                    dir=str(folder), interval_s=up.checkpoint_minutes * 60, keep=up.checkpoint_keep
                )
                run_settings = settings.model_copy(update={"checkpoint": checkpoint})
            base_resources = resources or Resources()
            jobs.append(
                CandidateJob(
                    search_id=search_id,
                    trial_id=trial.id,
                    rung=label,
                    database_url=database_url,
                    arch=arch.to_dict(),
                    settings=run_settings,
                    resources=base_resources.model_copy(
                        update={"workers": recipe.shards, "gpus": 1.0 if hardware.use_gpu else base_resources.gpus}
                    ),
                    plan=plan,
                    init="upcycle" if upcycle else "scratch",
                    dense_fraction=up.dense_fraction,
                    launcher="ray" if launcher == "ray" else "torchrun",
                    baseline_arch=None if trial.is_baseline or reference is None else reference[1].to_dict(),
                    baseline_name=None if trial.is_baseline or reference is None else reference[0].baseline_name,
                    reuse_proxy=reuse,
                )
            )
    return jobs, notes
