"""The GPU check (``benchmarks/gpu_check.py``) runs end to end: ``--smoke`` runs every section at tiny sizes on the
CPU, so the script a GPU machine will run is known to work before one is lent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_section_without_failure(tmp_path: Path) -> None:
    """Pass: exit 0, the report printed and written by ``--out`` is the same, it has all seven sections, and none
    of them failed."""
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = out.read_text() if out.exists() else ""
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert report == proc.stdout
    from benchmarks.gpu_check import SECTIONS

    for number, (title, _) in enumerate(SECTIONS, start=1):
        assert f"## {number}. {title}" in report
    assert "failed:" not in report
    assert "FAILED" not in report
    assert "**pruned for memory: 0**" in report
