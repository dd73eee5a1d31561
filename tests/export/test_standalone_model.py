"""The model module the ``pytorch`` export copies: what it may import, what an export changes, its own copies of
brainsearch's rules.

The round trip against brainsearch's model (state_dicts, logits, weights files) is in test_standalone.py.
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path

from brainsearch.arch import preset, scale
from brainsearch.arch.spec import expert_choice_k
from brainsearch.export import standalone_model, standalone_source

MODULE_PATH = Path(standalone_model.__file__)


def _imported_packages(tree: ast.Module) -> set[str]:
    """The top-level packages ``tree`` imports (anywhere in it, not only at the top)."""
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None, "a relative import would need brainsearch"
            imported.add(node.module)
    return {name.split(".")[0] for name in imported}


def test_module_imports_only_stdlib_and_torch() -> None:
    packages = _imported_packages(ast.parse(MODULE_PATH.read_text()))
    assert "torch" in packages
    assert all(name == "torch" or name in sys.stdlib_module_names for name in packages), packages


def _kept_statements(tree: ast.Module) -> list[str]:
    """Every top-level statement but the docstring and the ``ARCHITECTURE`` / ``PROVENANCE`` assignments."""
    replaced = {"ARCHITECTURE", "PROVENANCE"}
    kept = [
        node
        for node in tree.body[1:]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in replaced)
    ]
    assert len(kept) == len(tree.body) - 3, "a docstring and both assignments"
    return [ast.dump(node) for node in kept]


def test_export_replaces_only_the_docstring_architecture_and_provenance() -> None:
    module = ast.parse(MODULE_PATH.read_text())
    arch = scale(preset("glam"), "cpu-tiny")
    exported = ast.parse(standalone_source(arch, provenance={"search_id": 3, "trial_id": 17}))
    assert _kept_statements(exported) == _kept_statements(module)
    assert "from search 3, trial 17" in (ast.get_docstring(exported) or "")


def test_expert_choice_k_agrees_with_the_spec() -> None:
    """The module restates brainsearch.arch.spec.expert_choice_k (it may not import brainsearch): same k for small
    batches (B * cf < E), large capacity factors (cf > E, so B * cf > E * B) and everything between."""
    grid = list(itertools.product([1, 2, 3, 8, 64], [0.01, 0.25, 1.0, 1.5, 2.0, 3.3, 64.0], [1, 2, 3, 8, 32, 4096]))
    assert any(b * cf < e for b, cf, e in grid) and any(b * cf > e * b for b, cf, e in grid)
    for b, cf, e in grid:
        assert standalone_model.expert_choice_k(b, cf, e) == expert_choice_k(b, cf, e), (b, cf, e)
