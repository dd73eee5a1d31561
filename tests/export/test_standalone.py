"""The ``pytorch`` export: one file, standard library and torch only, that rebuilds brainsearch's model exactly.

Each architecture below is built by brainsearch with random weights, saved with ``save_weights``, written out with
``standalone_source``, imported as a fresh module and loaded with its own ``build(weights)``: the state_dicts and
the logits must agree.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from brainsearch.arch import Architecture, cost, preset, preset_names, scale
from brainsearch.export import standalone_source
from brainsearch.model import LanguageModel, build_model
from brainsearch.store import save_weights

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _small(block: list[dict[str, Any]], *, tie_embeddings: bool = True) -> Architecture:
    return Architecture.from_json(
        {
            "d_model": 24,
            "vocab_size": 64,
            "seq_len": 16,
            "num_blocks": 2,
            "block": block,
            "tie_embeddings": tie_embeddings,
        }
    )


def _moe(gating: str, capacity_factor: float, activation: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "moe",
        "hidden": 16,
        "experts": 4,
        "gating": gating,
        "capacity_factor": capacity_factor,
        "activation": activation,
        **extra,
    }


ATTENTION = {"type": "attention", "heads": 2}
# Names with "dropping" have capacity small enough that brainsearch drops tokens on the test batch.
ARCHS: dict[str, Architecture] = {
    "glam-cpu-tiny": scale(preset("glam"), "cpu-tiny"),  # top-2, capacity 2, geglu FFNs, gelu experts
    "brainformer-1-cpu-tiny-dropping": scale(preset("brainformer-1"), "cpu-tiny"),  # expert choice, capacity 1
    "brainformer-2-cpu-tiny-untied": scale(preset("brainformer-2"), "cpu-tiny").model_copy(
        update={"tie_embeddings": False}
    ),
    "top1-dropping-untied": _small(
        [ATTENTION, {"type": "ffn", "hidden": 32, "activation": "relu"}, _moe("top1", 0.25, "silu")],
        tie_embeddings=False,
    ),
    "top2-dropping": _small([ATTENTION, _moe("top2", 0.5, "gelu"), _moe("top1", 1.0, "relu")]),
    "low-rank": _small(
        [
            ATTENTION,
            {"type": "ffn", "hidden": 32, "activation": "swiglu", "rank": 4},
            _moe("top2", 1.0, "reglu", rank=4),
            {"type": "ffn", "hidden": 32, "activation": "gelu", "rank": 8},
        ]
    ),
    # odd head_dim (partial rotary) and heads * head_dim != d_model
    "expert-choice-dropping-odd-heads": _small(
        [{"type": "attention", "heads": 3, "head_dim": 5}, _moe("expert_choice", 0.5, "geglu")]
    ),
    "expert-choice-full": _small([ATTENTION, _moe("expert_choice", 2.0, "silu", rank=6)]),
}


def test_the_architectures_cover_every_layer_option() -> None:
    moe = [layer for arch in ARCHS.values() for layer in arch.block if layer.type == "moe"]
    ffn = [layer for arch in ARCHS.values() for layer in arch.block if layer.type != "attention"]
    assert {layer.gating for layer in moe} == {"top1", "top2", "expert_choice"}
    assert {layer.activation for layer in ffn} == {"relu", "gelu", "silu", "reglu", "geglu", "swiglu"}
    assert {layer.type for layer in ffn if layer.rank is not None} == {"ffn", "moe"}
    assert {arch.tie_embeddings for arch in ARCHS.values()} == {True, False}
    assert len({layer.capacity_factor for layer in moe}) >= 4


def _random_model(arch: Architecture, seed: int = 0) -> LanguageModel:
    """brainsearch's model with random weights: norms away from 1 and routers sharp enough to decide routing."""
    torch.manual_seed(seed)
    model = build_model(arch).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
            elif "router" in name:
                param.normal_(0.0, 1.0)
    return model


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"standalone_{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_module(arch: Architecture, directory: Path, provenance: dict[str, object] | None = None) -> ModuleType:
    path = directory / "model.py"
    path.write_text(standalone_source(arch, provenance=provenance))
    return _load_module(path)


@pytest.mark.parametrize("name", ARCHS)
def test_standalone_model_matches_brainsearch(name: str, tmp_path: Path) -> None:
    arch = ARCHS[name]
    reference = _random_model(arch)
    weights = save_weights(reference.state_dict(), arch, tmp_path / "weights.safetensors")
    module = _write_module(arch, tmp_path)
    assert Architecture.from_json(module.ARCHITECTURE) == arch
    model = module.build(weights)

    assert not model.training
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    ids = torch.randint(arch.vocab_size, (4, arch.seq_len), generator=torch.Generator().manual_seed(1))
    for ids_BS in (ids, ids[:3, :5]):  # full context, and a shorter batch and sequence
        with torch.no_grad():
            expected = reference(ids_BS)
            logits = model(ids_BS)
        assert logits.shape == (*ids_BS.shape, arch.vocab_size)
        torch.testing.assert_close(logits, expected.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.aux_loss, expected.aux_loss, atol=1e-6, rtol=1e-5)
    if "dropping" in name:
        with torch.no_grad():
            assert max(float(stats.dropped_fraction) for stats in reference(ids).moe) > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_load(dtype: torch.dtype, tmp_path: Path) -> None:
    arch = ARCHS["top2-dropping"]
    state = {k: v.to(dtype) for k, v in _random_model(arch).state_dict().items()}
    weights = save_weights(state, arch, tmp_path / "weights.safetensors")
    model = _write_module(arch, tmp_path).build(weights)
    reference = build_model(arch).eval()
    reference.load_state_dict({k: v.float() for k, v in state.items()})
    ids = torch.randint(arch.vocab_size, (2, arch.seq_len), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids).logits, atol=1e-5, rtol=1e-5)


def test_reader_agrees_with_safetensors(tmp_path: Path) -> None:
    tensors = {
        "f64": torch.randn(2, 3, dtype=torch.float64),
        "f32": torch.randn(4),
        "f16": torch.randn(3, 1).half(),
        "bf16": torch.randn(5).bfloat16(),
        "i64": torch.arange(-3, 9).view(3, 4),
        "i32": torch.arange(6, dtype=torch.int32),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 3),
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path), metadata={"note": "hello"})
    module = _write_module(ARCHS["top2-dropping"], tmp_path)
    read, metadata = module.read_safetensors(path)
    assert metadata == {"note": "hello"}
    assert read.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert read[name].dtype == tensor.dtype, name
        assert torch.equal(read[name], tensor), name


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _truncate_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _tiny_file(path: Path) -> None:
    path.write_bytes(b"\x01\x02")


def _garbage_header(path: Path) -> None:
    path.write_bytes((12).to_bytes(8, "little") + b"not json at!" + b"\x00" * 64)


def _missing_tensor(path: Path) -> None:
    arch = ARCHS["top2-dropping"]
    state = _random_model(arch).state_dict()
    del state["final_norm.weight"]
    save_weights(state, arch, path)


def _wrong_shape(path: Path) -> None:
    arch = ARCHS["top2-dropping"]
    state = _random_model(arch).state_dict()
    state["embed.weight"] = torch.zeros(arch.vocab_size, arch.d_model + 1)
    save_weights(state, arch, path)


def _other_architecture(path: Path) -> None:
    arch = ARCHS["low-rank"]
    save_weights(_random_model(arch).state_dict(), arch, path)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_truncate, "truncated"),
        (_truncate_header, "truncated"),
        (_tiny_file, "truncated"),
        (_garbage_header, "not a safetensors file"),
        (_missing_tensor, "missing tensor(s) final_norm.weight"),
        (_wrong_shape, "tensor 'embed.weight' has shape [64, 25], the model needs [64, 24]"),
        (_other_architecture, "another architecture"),
    ],
)
def test_bad_weights_file_raises_value_error_naming_it(
    corrupt: Callable[[Path], None], message: str, tmp_path: Path
) -> None:
    arch = ARCHS["top2-dropping"]
    path = tmp_path / "weights.safetensors"
    save_weights(_random_model(arch).state_dict(), arch, path)
    corrupt(path)
    module = _write_module(arch, tmp_path)
    with pytest.raises(ValueError) as excinfo:
        module.build(path)
    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)


def test_build_without_weights_initialises_a_working_model(tmp_path: Path) -> None:
    arch = ARCHS["glam-cpu-tiny"]
    module = _write_module(arch, tmp_path)
    model = module.build()
    c = cost(arch)
    assert sum(p.numel() for p in model.parameters()) == c.params_total + c.params_embedding
    with torch.no_grad():
        logits = model(torch.randint(arch.vocab_size, (2, arch.seq_len)))
    assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="exceeds the architecture's seq_len"):
        model(torch.zeros(1, arch.seq_len + 1, dtype=torch.long))


PROVENANCE: dict[str, object] = {
    "search_id": 3,
    "trial_id": 17,
    "metrics": {"val_loss": 2.25, "train_loss": float("nan"), "tokens": 65536},
    "note": 'a "quoted" \\ note\nwith a newline',
    "pattern": "afag",
}


def test_provenance_round_trips(tmp_path: Path) -> None:
    module = _write_module(ARCHS["glam-cpu-tiny"], tmp_path, PROVENANCE)
    assert "from search 3, trial 17" in module.__doc__
    embedded = module.PROVENANCE
    assert math.isnan(embedded["metrics"].pop("train_loss"))
    assert embedded == {**PROVENANCE, "metrics": {"val_loss": 2.25, "tokens": 65536}}
    assert _write_module(ARCHS["glam-cpu-tiny"], tmp_path).PROVENANCE is None


def test_generated_file_imports_only_stdlib_and_torch() -> None:
    for arch in ARCHS.values():
        tree = ast.parse(standalone_source(arch, provenance=PROVENANCE))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module is not None
                imported.add(node.module)
        assert "torch" in imported
        top_level = {name.split(".")[0] for name in imported}
        assert all(name == "torch" or name in sys.stdlib_module_names for name in top_level), top_level


def test_file_runs_as_a_script_without_brainsearch(tmp_path: Path) -> None:
    arch = ARCHS["top1-dropping-untied"]
    model = _random_model(arch)
    weights = save_weights(model.state_dict(), arch, tmp_path / "weights.safetensors")
    script = tmp_path / "model.py"
    script.write_text(standalone_source(arch))
    # brainsearch is installed in this environment, so make importing it (or safetensors) fail outright.
    code = (
        "import runpy, sys\n"
        "sys.modules['brainsearch'] = sys.modules['safetensors'] = None\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-c", code, str(script), str(weights)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"{model.num_params():,} parameters, weights from {weights}" in run.stdout
    assert f"logits [2, {arch.seq_len}, {arch.vocab_size}]" in run.stdout


def test_generated_files_pass_ruff(tmp_path: Path) -> None:
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff is not None, "ruff is a dev dependency: install brainsearch[dev]"
    for name, arch in [*ARCHS.items(), *((name, preset(name)) for name in preset_names())]:
        (tmp_path / f"{name.replace('-', '_').replace('.', '_')}.py").write_text(
            standalone_source(arch, provenance=PROVENANCE)
        )
    for command in (["check"], ["format", "--check"]):
        run = subprocess.run(
            [ruff, *command, "--no-cache", "--config", str(PYPROJECT), str(tmp_path)], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stdout + run.stderr
