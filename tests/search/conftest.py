"""Fixtures of the search tests: a repository per backend and a fast variant of the tiny space."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brainsearch.arch import Architecture
from brainsearch.space import SearchSpace, load_space
from brainsearch.storage import Repository, Trial


def fast_space(tokens: int = 4096, **changes: Any) -> SearchSpace:
    """The bundled tiny space with a budget of ``tokens`` (4096 = 8 steps: about a second a trial on the CPU);
    ``changes`` replace top-level sections' fields, e.g. ``constraints={"max_params_total": 1e5}``."""
    doc = load_space("tiny").model_dump(mode="json")
    doc["proxy"]["budget"] = {"tokens": tokens}
    for section, values in changes.items():
        doc[section] = {**doc[section], **values}
    return SearchSpace.model_validate(doc)


def add_running_trial(repo: Repository, search_id: int, number: int, arch: Architecture) -> Trial:
    """A trial row as a driver adds it before training (cost left empty)."""
    return repo.add_trial(
        search_id=search_id,
        number=number,
        arch=arch.to_dict(),
        arch_digest=arch.digest,
        pattern=arch.pattern,
        params={},
        cost={},
        params_activated=1,
    )


def seed_scaled_search(repo: Repository, data_dir: Path) -> tuple[int, list[int]]:
    """A stored search whose stage has run, without training: trials #0 (the GLaM baseline, loss 3.1), #1 (2.9,
    its random-init weights kept under ``data_dir``) and #2 (3.0), and candidates of all three at cpu-tiny and
    cpu-small, ranked as at the proxy. Returns the search id and the trial ids."""
    import torch

    from brainsearch import build_model
    from brainsearch.arch import preset, scale
    from brainsearch.export import save_weights
    from brainsearch.search.driver import create_search
    from brainsearch.store import RunStore, weights_metadata

    space = fast_space(search={"top_k": 2, "scale_up": {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e"}})
    search, _ = create_search(repo, space)
    arch = scale(preset("glam"), "cpu-tiny")
    ids = []
    for number, loss in enumerate([3.1, 2.9, 3.0]):
        t = repo.add_trial(
            search_id=search.id,
            number=number,
            arch=arch.to_dict(),
            arch_digest=f"{number:016x}",
            pattern=arch.pattern,
            params={},
            cost={"params_total": 1},
            params_activated=1,
            is_baseline=number == 0,
            baseline_name="glam" if number == 0 else None,
        )
        repo.finish_trial(t.id, state="completed", val_loss=loss, metrics={"val_loss": loss})
        ids.append(t.id)
    torch.manual_seed(0)
    path = RunStore(data_dir, repo.database_id()).trial_weights(search.id, ids[1])
    save_weights(build_model(arch).state_dict(), arch, path, weights_metadata(repo.database_id(), search.id, ids[1]))
    for trial_id, losses in [(ids[1], (2.8, 2.5)), (ids[2], (2.85, 2.6)), (ids[0], (2.9, 2.7))]:
        for rung, loss, n in [("cpu-tiny", losses[0], 1e5), ("cpu-small", losses[1], 1e6)]:
            repo.add_candidate(
                search_id=search.id,
                trial_id=trial_id,
                rung=rung,
                state="completed",
                arch=arch.to_dict(),
                arch_digest=arch.digest,
                metrics={"params_activated": n, "val_curve": [[4, loss + 0.3], [8, loss]], "step_time_s": 0.1},
                val_loss=loss,
            )
    repo.set_search_status(search.id, "completed")
    return search.id, ids
