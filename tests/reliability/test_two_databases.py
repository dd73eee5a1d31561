"""Two databases, one data directory: each search's trained weights and exports stay its own database's.

On main before the run store, weights lived at ``DATA_DIR/weights/search-S/trial-T`` whatever the database: a search
in a second database overwrote the first database's files, and the first database's export then served them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from brainsearch.cli import main
from brainsearch.storage import Repository, make_engine
from brainsearch.store import RunStore, read_metadata
from tests.factories import fast_space

pytestmark = pytest.mark.slow  # it trains two searches


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    assert info.value.code == 0, captured.err
    return captured.out


@pytest.mark.slow
def test_two_databases_in_one_data_dir_each_export_their_own_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: the same search and trial ids in two databases (trained with different seeds, so their weights
    differ) keep two files; each database's `export --format safetensors` gives its own bytes, whose metadata name
    its database; a file copied over the other database's place is refused, not served."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(fast_space().model_dump(mode="json")))
    data_dir = Path(os.environ["BRAINSEARCH_DATA_DIR"])
    exported: dict[str, bytes] = {}
    repos: dict[str, Repository] = {}
    for name, seed in (("a", 1), ("b", 2)):
        db = f"sqlite:///{tmp_path / f'{name}.db'}"
        _cli(["search", str(space), "--trials", "1", "--sampler", "random", "--seed", str(seed), "--db", db], capsys)
        out = tmp_path / f"{name}.safetensors"
        _cli(["export", "1", "--rank", "1", "--format", "safetensors", "-o", str(out), "--db", db], capsys)
        exported[name], repos[name] = out.read_bytes(), Repository(make_engine(db))
    assert exported["a"] != exported["b"]
    for name, repo in repos.items():
        store = RunStore(data_dir, repo.database_id())
        (trial,) = repo.list_trials(1, state="completed", is_baseline=False, limit=1).items
        assert store.trial_weights(1, trial.id).read_bytes() == exported[name]
        meta = read_metadata(store.trial_weights(1, trial.id))
        assert meta is not None and meta["database_id"] == repo.database_id()
    assert repos["a"].database_id() != repos["b"].database_id()

    # A's file copied to B's place is not B's: the export refuses it rather than serve A's bytes as B's trial.
    a_trial = repos["a"].list_trials(1, state="completed", is_baseline=False, limit=1).items[0]
    b_trial = repos["b"].list_trials(1, state="completed", is_baseline=False, limit=1).items[0]
    a_store, b_store = (RunStore(data_dir, r.database_id()) for r in (repos["a"], repos["b"]))
    b_store.trial_weights(1, b_trial.id).write_bytes(a_store.trial_weights(1, a_trial.id).read_bytes())
    with pytest.raises(SystemExit) as info:
        main(["export", "1", "--rank", "1", "--format", "safetensors", "--db", f"sqlite:///{tmp_path / 'b.db'}"])
    assert info.value.code == 2 and "no trained weights" in capsys.readouterr().err
    for repo in repos.values():
        repo.engine.dispose()
