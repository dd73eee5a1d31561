"""Dependency rules of DESIGN.md: the spec layers and the CLI's spec commands never import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "brainsearch",
        "brainsearch.space",
        "brainsearch.arch",
        "brainsearch.cli",
        "brainsearch.storage",
        "brainsearch.search.driver",
        "service.app",  # the API and dashboard start without torch; a worker imports it when it trains
    ],
)
def test_spec_layers_do_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; heavy = {{'torch', 'ray'}} & set(sys.modules); assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_spec_commands_do_not_import_torch() -> None:
    code = (
        "import sys\nfrom brainsearch.cli import main\n"
        "try:\n    main(['cost', '--preset', 'glam', '--json'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
