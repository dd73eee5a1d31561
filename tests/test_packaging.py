"""The bundled search spaces are found from an installed (non-editable) wheel, not only from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_install_finds_bundled_spaces(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(wheels.glob("brainsearch-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import brainsearch, pathlib\n"
        "from brainsearch.space import bundled_spaces_dir, bundled_space_names, load_space\n"
        f"assert pathlib.Path(brainsearch.__file__).is_relative_to({str(target)!r}), brainsearch.__file__\n"
        f"assert bundled_spaces_dir().is_relative_to({str(target)!r}), bundled_spaces_dir()\n"
        "names = bundled_space_names()\n"
        "assert {'tiny', 'brainformer'} <= set(names), names\n"
        "print(load_space('tiny').name)\n"
    )
    # Run from an empty directory with only the installed copy on the path: no checkout to fall back on.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = [{str(target)!r}]\n" + code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 and "No module named" in proc.stderr:
        # -S hides site-packages, where pydantic and yaml live; run with them but the wheel first on the path.
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "tiny"
