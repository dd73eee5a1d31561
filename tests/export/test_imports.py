"""Exporters load neither the storage layer nor torch: the API process imports them, and writing a spec or the
standalone file is text work."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = "{'sqlalchemy', 'alembic', 'torch'}"


def _run(code: str) -> None:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("module", ["brainsearch.export", "brainsearch.export.spec", "brainsearch.export.standalone"])
def test_importing_an_exporter_loads_neither_storage_nor_torch(module: str) -> None:
    _run(f"import sys, {module}\nheavy = {HEAVY} & set(sys.modules)\nassert not heavy, heavy")


def test_writing_the_pytorch_export_does_not_import_torch() -> None:
    _run(
        "import sys\n"
        "from brainsearch.arch import preset\n"
        "from brainsearch.export import standalone_source\n"
        "assert 'def build(' in standalone_source(preset('brainformer-1'))\n"
        f"heavy = {HEAVY} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
