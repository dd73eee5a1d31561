"""Dependency rules: the layers import downwards only, no module imports itself back through others,
and the spec layers and the CLI's spec commands never import torch; only the entry points read the settings.

Layers, lowest first: shared basics (errors, validation messages, formatting, settings) -> the architecture spec
and the search space over it -> the model and the data -> the run store -> the package's public facade -> training
and SQL storage -> the search and the exporters -> the HTTP client -> the service -> the CLI. Imports inside
functions count (a lazy import is still a dependency); imports only for type checking do not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS: dict[str, float] = {
    "errors": 0,
    "_validation": 0.5,
    "_format": 0.5,
    "settings": 0.5,
    "arch": 1,
    "space": 1.5,
    "model": 2,
    "data": 2,
    "store": 2.25,  # loads a weights file into a model
    "brainsearch": 2.5,  # the package's facade (build_model, load_space, ...)
    "train": 3,
    "storage": 3,
    "search": 4,
    "export": 4,
    "client": 4.5,
    "service": 5,
    "cli": 6,
    "__main__": 7,
}


def _modules() -> dict[str, Path]:
    found = {}
    for base in ("brainsearch", "service"):
        for path in (ROOT / base).rglob("*.py"):
            if "migrations" in path.parts:  # Alembic loads these by path; they import nothing of ours
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return "service" if parts[0] == "service" else (parts[1] if len(parts) > 1 else "brainsearch")


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, anywhere in it but under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:  # ``from pkg import submodule`` depends on the submodule, else on the module
            if name in modules:
                found.add(name)
                break
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    """The check above can fail: a planted circle is found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_every_package_has_a_layer() -> None:
    assert {_layer(m) for m in _graph()} <= set(LAYERS)


def test_imports_point_down_the_layers() -> None:
    against = defaultdict(list)
    for module, targets in _graph().items():
        for target in targets:
            mine, theirs = _layer(module), _layer(target)
            if mine != theirs and LAYERS[theirs] >= LAYERS[mine]:
                against[f"{mine} -> {theirs}"].append(f"{module} imports {target}")
    assert not against, dict(against)


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


@pytest.mark.parametrize("module", ["brainsearch.search.submission", "service.app"])
def test_submitting_and_reading_searches_do_not_import_optuna(module: str) -> None:
    code = f"import sys, {module}; heavy = {{'optuna', 'torch'}} & set(sys.modules); assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_spec_commands_do_not_import_torch() -> None:
    code = (
        "import sys\nfrom brainsearch.cli import main\n"
        "try:\n    main(['cost', '--preset', 'glam', '--json'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# The entry points read the process's settings (``BRAINSEARCH_*``) and pass what the library needs as arguments.
ENTRY_POINTS = ("brainsearch.cli", "service.app", "brainsearch.__main__")


def _settings_readers(modules: dict[str, Path]) -> list[str]:
    """Where a module calls ``get_settings()`` (as a name or an attribute), ``module:line``."""
    found = []
    for name, path in sorted(modules.items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if called == "get_settings":
                    found.append(f"{name}:{node.lineno}")
    return found


def test_only_the_entry_points_read_the_settings() -> None:
    below = [
        where
        for where in _settings_readers(_modules())
        if not where.split(":")[0].startswith(ENTRY_POINTS) and not where.startswith("brainsearch.settings:")
    ]
    assert below == []


def test_the_settings_finder_finds_a_call(tmp_path: Path) -> None:
    """The check above can fail: a library function that reads the settings is found, a mention is not."""
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import brainsearch.settings as s\nfrom brainsearch.settings import get_settings\n"
        "def f():\n    return get_settings().data_dir, s.get_settings()\n# get_settings()\n"
    )
    assert _settings_readers({"brainsearch.data.planted": planted}) == [
        "brainsearch.data.planted:4",
        "brainsearch.data.planted:4",
    ]


def _server_branches(path: Path) -> list[int]:
    """The lines of ``if`` statements (and conditional expressions) whose test reads a name ``server``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        tested = node.test if isinstance(node, ast.If | ast.IfExp) else None
        if tested is not None and any(isinstance(n, ast.Name) and n.id == "server" for n in ast.walk(tested)):
            found.append(node.lineno)
    return found


def test_no_command_branches_on_the_server_option() -> None:
    """Commands read a database or a service through one source (brainsearch/cli/source.py: the one place that
    looks at --server); the service commands (submit, status) only refuse to run without one."""
    cli = ROOT / "brainsearch" / "cli"
    branching = {
        path.name: lines
        for path in sorted(cli.glob("*.py"))
        if path.name not in ("source.py", "service.py") and (lines := _server_branches(path))
    }
    assert branching == {}
    assert _server_branches(cli / "source.py")  # the check can fail: the one place that branches is found
