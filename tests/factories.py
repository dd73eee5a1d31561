"""Rows and files the tests only need to exist, made the way the code under test would leave them: databases,
spaces, trials, scale-up runs, timing probes, checkpoints and weights. One place for every test module (no test
module imports another's helpers); nothing here trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainsearch.arch import Architecture, preset
from brainsearch.arch.scale import scale
from brainsearch.search.jobs import Resources, TrialJob
from brainsearch.space import SearchSpace, load_space
from brainsearch.space.schema import Budget
from brainsearch.storage import MetricPoint, Repository, Trial, make_engine, migrate
from brainsearch.train.settings import TrainSettings

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = [
    "FLOPS",
    "SHARDED_RUN",
    "TOKENS",
    "add_running_trial",
    "candidate_run",
    "completed_trials",
    "fast_space",
    "glam_tiny",
    "save_checkpoint",
    "screenshot",
    "seed_leaderboard",
    "seed_scaled_search",
    "seeded_trial",
    "sqlite_repository",
    "timing_probe",
    "trial_jobs",
]


def sqlite_repository(folder: Path, name: str = "brainsearch.db") -> tuple[Repository, str]:
    """A migrated SQLite database file in ``folder``: its repository and URL."""
    url = f"sqlite:///{folder / name}"
    engine = make_engine(url)
    migrate(engine)
    return Repository(engine), url


def fast_space(tokens: int = 4096, **changes: Any) -> SearchSpace:
    """The bundled tiny space with a budget of ``tokens`` (4096 = 8 steps: about a second a trial on the CPU);
    ``changes`` replace top-level sections' fields, e.g. ``constraints={"max_params_total": 1e5}``. One seed for
    the baseline and no re-evaluation, unless ``search`` changes say otherwise: the tests of seed noise ask for
    them; the rest count runs. One trial at a time: a trial of a few steps costs less than starting a second
    worker process (its torch import) beside it."""
    doc = load_space("tiny").model_dump(mode="json")
    doc["proxy"]["budget"] = {"tokens": tokens}
    doc["search"] |= {"baseline_seeds": 1, "top_k_seeds": 1, "concurrency": 1}
    for section, values in changes.items():
        doc[section] = {**doc[section], **values}
    return SearchSpace.model_validate(doc)


def glam_tiny() -> Architecture:
    """GLaM's block at the cpu-tiny preset."""
    return scale(preset("glam"), "cpu-tiny")


def add_running_trial(repo: Repository, search_id: int, number: int, arch: Architecture, **fields: Any) -> Trial:
    """A trial row as a driver adds it before training: ``arch``'s digest and pattern, its cost left empty unless
    ``fields`` (any of :meth:`Repository.add_trial`'s) say otherwise."""
    row: dict[str, Any] = {
        "arch_digest": arch.digest,
        "pattern": arch.pattern,
        "params": {},
        "cost": {},
        "params_activated": 1,
        **fields,
    }
    return repo.add_trial(search_id=search_id, number=number, arch=arch.to_dict(), **row)


def completed_trials(
    repo: Repository,
    search_id: int,
    specs: list[tuple[Architecture, float, str | None]],
    *,
    digest: bool = False,
    **fields: Any,
) -> list[int]:
    """Completed trials, one per ``(architecture, proxy loss, baseline name or None)``, numbered in order: each with a
    digest of its own (its architecture's with ``digest``) and ``fields``. Their ids."""
    ids = []
    for number, (arch, loss, baseline) in enumerate(specs):
        key = {} if digest else {"arch_digest": f"{number:016x}"}
        t = add_running_trial(
            repo, search_id, number, arch, is_baseline=baseline is not None, baseline_name=baseline, **key, **fields
        )
        ids.append(repo.finish_trial(t.id, state="completed", val_loss=loss, metrics={"val_loss": loss}).id)
    return ids


FLOPS, TOKENS = 1_000_000, 4096  # seeded_trial's default FLOPs per token and tokens trained


def seeded_trial(
    repo: Repository,
    search_id: int,
    number: int,
    losses: list[float],
    *,
    flops: int = FLOPS,
    tokens: int = TOKENS,
    baseline: str | None = None,
    arch: Architecture | None = None,
) -> int:
    """A completed trial of ``arch`` (GLaM's cpu-tiny block by default) whose run over seed ``s`` reached
    ``losses[s]`` (seed 0 is its own run, the rest seed runs), at ``flops`` per token on ``tokens`` tokens, its
    pattern ``p<number>``. Its id."""
    arch = arch or glam_tiny()
    fields = {"arch_digest": f"{number:016x}", "pattern": f"p{number}", "cost": {"flops_per_token": flops}}
    t = add_running_trial(
        repo, search_id, number, arch, is_baseline=baseline is not None, baseline_name=baseline, **fields
    )
    metrics = {"val_loss_stderr": 0.001, "tokens": tokens, "flops_per_token": flops}
    repo.finish_trial(t.id, state="completed", val_loss=losses[0], metrics=metrics)
    for seed, loss in enumerate(losses[1:], start=1):
        run = repo.add_seed_run(search_id=search_id, trial_id=t.id, seed=seed)
        repo.finish_seed_run(run.id, state="completed", val_loss=loss, val_loss_stderr=0.001)
    return t.id


def candidate_run(repo: Repository, search_id: int, trial_id: int, rung: str, loss: float, **metrics: object) -> None:
    """A completed scale-up run (GLaM's cpu-tiny block) of ``trial_id`` at ``rung`` with ``metrics``: an evaluation
    stderr of 0.01 and a one-point curve unless given; a metric given as None is left out."""
    arch = glam_tiny()
    stored = {k: v for k, v in {"val_loss_stderr": 0.01, "val_curve": [[4, loss]], **metrics}.items() if v is not None}
    repo.add_candidate(
        search_id=search_id,
        trial_id=trial_id,
        rung=rung,
        state="completed",
        arch=arch.to_dict(),
        arch_digest=arch.digest,
        metrics=stored,
        val_loss=loss,
    )


def timing_probe(
    ratio: float, low: float, high: float, *, uncertain: bool = False, **extra: object
) -> dict[str, object]:
    """A timing probe as the runner stores it: candidate step time / baseline step time over 3 rounds."""
    return {
        "ratio": ratio,
        "low": low,
        "high": high,
        "ratios": [low, ratio, high],
        "spread": (high - low) / ratio,
        "bound": 0.2,
        "uncertain": uncertain,
        "candidate_step_s": 0.1 * ratio,
        "baseline_step_s": 0.1,
        "rounds": 3,
        "steps": 4,
        "baseline": "glam",
        **extra,
    }


# What a two-device run reports (the fields of ProxyResult a scale-up report shows), as the runner stores it.
SHARDED_RUN = {
    "device": "cuda",
    "devices": 2,
    "sharding": "fsdp2",
    "recipe": "FSDP2 x 2, fp32 AdamW",
    "micro_batch": 4,
    "activation_checkpointing": True,
    "memory_estimate_bytes": 3 * 2**30,
    "memory_peak_bytes": 2 * 2**30,
    "tokens_per_s": 12_500.0,
    "mfu": 0.412,
    "peak_flops_label": "NVIDIA H200 bf16 dense",
    "checkpoints": [{"step": 4, "path": "/x/step-4", "saved_at": 1.8e9, "bytes": 100}],
    "checkpoint_count": 3,
    "resume_count": 1,
    "resumed_from": [4],
}


def save_checkpoint(folder: Path, step: int, saved_at: float, complete: bool = True) -> int:
    """A step-N checkpoint folder as the training loop leaves it: a shard file, then the COMPLETE marker. Returns its
    size in bytes."""
    path = folder / f"step-{step}"
    path.mkdir(parents=True)
    (path / "shard-0.distcp").write_bytes(b"\0" * 1000)
    if complete:
        (path / "COMPLETE").write_text(json.dumps({"step": step, "saved_at": saved_at}))
    return sum(f.stat().st_size for f in path.iterdir())


def seed_scaled_search(repo: Repository, data_dir: Path) -> tuple[int, list[int]]:
    """A stored search whose stage has run, without training: trials #0 (the GLaM baseline, loss 3.1), #1 (2.9,
    its random-init weights kept under ``data_dir``) and #2 (3.0), and candidates of all three at cpu-tiny and
    cpu-small, ranked as at the proxy. Returns the search id and the trial ids."""
    import torch

    from brainsearch import build_model
    from brainsearch.search.submission import create_search
    from brainsearch.store import RunStore, save_weights, weights_metadata

    space = fast_space(search={"top_k": 2, "scale_up": {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e"}})
    search, _ = create_search(repo, space)
    arch = glam_tiny()
    specs = [(arch, 3.1, "glam"), (arch, 2.9, None), (arch, 3.0, None)]
    ids = completed_trials(repo, search.id, specs, cost={"params_total": 1})
    torch.manual_seed(0)
    path = RunStore(data_dir, repo.database_id()).trial_weights(search.id, ids[1])
    save_weights(build_model(arch).state_dict(), arch, path, weights_metadata(repo.database_id(), search.id, ids[1]))
    for trial_id, losses in [(ids[1], (2.8, 2.5)), (ids[2], (2.85, 2.6)), (ids[0], (2.9, 2.7))]:
        for rung, loss, n in [("cpu-tiny", losses[0], 1e5), ("cpu-small", losses[1], 1e6)]:
            curve = [[4, loss + 0.3], [8, loss]]
            candidate_run(
                repo,
                search.id,
                trial_id,
                rung,
                loss,
                val_loss_stderr=None,
                params_activated=n,
                val_curve=curve,
                step_time_s=0.1,
            )
    repo.set_search_status(search.id, "completed")
    return search.id, ids


def seed_leaderboard(repo: Repository, search_id: int) -> list[int]:
    """Five trials of one search, as workers record them: the GLaM baseline (3.0), two completed trials (2.8 and
    2.9, one at twice GLaM's FLOPs per token, both with a timing probe), one pruned, one diverged. Their ids."""
    arch = glam_tiny()
    # state, val loss, wall-clock step time, activated params, FLOPs per token, a timing probe's step-time ratio
    rows = [
        ("completed", 3.0, 0.02, 100, 1000, None),
        ("completed", 2.8, 0.04, 200, 2000, 1.5),
        ("completed", 2.9, 0.01, 300, 1000, 0.8),
        ("pruned", None, 0.03, 150, 1500, None),
        ("diverged", None, None, 120, 1000, None),
    ]
    ids = []
    for n, (state, loss, step, activated, flops, probe) in enumerate(rows):
        t = add_running_trial(
            repo,
            search_id,
            n,
            arch,
            arch_digest=f"{n:016x}",
            params={"d_model": 48},
            cost={"params_total": 1, "flops_per_token": flops},
            params_activated=activated,
            is_baseline=n == 0,
            baseline_name="glam" if n == 0 else None,
        )
        curve = [MetricPoint(1, 512, 0.1, 5.0, None, 1e-3), MetricPoint(2, 1024, 0.2, 4.0, loss, 1e-3)]
        repo.finish_trial(
            t.id,
            state=state,  # type: ignore[arg-type]
            val_loss=loss,
            step_time_s=step,
            metrics={
                "steps": 2,
                "tokens": 1024,
                "moe": None,
                "val_bits_per_byte": loss / 0.7 if loss else None,
                **({"timing_probe": {"ratio": probe, "uncertain": False}} if probe else {}),
                **({"micro_batch": 4, "activation_checkpointing": n == 2} if loss else {}),
            },
            curve=curve,
            reason=None if state == "completed" else "why",
        )
        ids.append(t.id)
    return ids


def trial_jobs(tmp_path: Path, budgets: list[int], resources: Resources) -> tuple[Repository, list[TrialJob]]:
    """A SQLite database under ``tmp_path`` with one running trial (cpu-tiny GLaM) per budget, and their jobs."""
    repo, url = sqlite_repository(tmp_path, "b.db")
    s, _ = repo.create_search(name="t", space_name="tiny", space={}, settings={}, trials_requested=len(budgets))
    arch = glam_tiny()
    jobs = []
    for n, tokens in enumerate(budgets):
        t = add_running_trial(repo, s.id, n, arch)
        settings = TrainSettings(budget=Budget(tokens=tokens), batch_size=8, device="cpu")
        job = TrialJob(
            search_id=s.id,
            trial_id=t.id,
            number=n,
            database_url=url,
            arch=arch.to_dict(),
            settings=settings,
            resources=resources,
        )
        jobs.append(job)
    return repo, jobs


def screenshot(page: Page, name: str) -> None:
    """A full-page screenshot of a browser test in ``test-artifacts/`` (or ``$BRAINSEARCH_TEST_ARTIFACTS``)."""
    import os

    artifacts = Path(os.environ.get("BRAINSEARCH_TEST_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
