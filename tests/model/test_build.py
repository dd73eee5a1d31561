"""build_model: parameter counts equal the cost model's, and every bundled space's architectures train a step;
load_model: a saved weights file is the same model again."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import brainsearch
from brainsearch.arch import Architecture, cost, preset, preset_names
from brainsearch.errors import DataError
from brainsearch.model import build_model
from brainsearch.space import RandomSuggester, bundled_space_names, load_space, sample
from brainsearch.store import save_weights


def _count(arch: Architecture) -> int:
    with torch.device("meta"):  # no memory: the 8B/64E preset has 143B parameters
        return build_model(arch).num_params()


@pytest.mark.parametrize("name", preset_names())
def test_preset_param_count_equals_cost_model(name: str) -> None:
    arch = preset(name)
    c = cost(arch)
    assert _count(arch) == c.params_total + c.params_embedding


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("name", bundled_space_names())
def test_sampled_param_count_equals_cost_model(name: str, tied: bool) -> None:
    space = load_space(name)
    suggester = RandomSuggester(11)
    for _ in range(6):
        arch = sample(space, suggester).model_copy(update={"tie_embeddings": tied})
        c = cost(arch)
        assert _count(arch) == c.params_total + c.params_embedding, arch.to_json()


def shrink(arch: Architecture) -> Architecture:
    """The same block structure (types, gating, activation, capacity, low rank) at a CPU-test size."""
    block = []
    for layer in arch.block:
        doc = layer.model_dump(exclude_none=True)
        if layer.type == "attention":
            doc.update(heads=2, head_dim=8)
        else:
            doc["hidden"] = 32
            if "rank" in doc:
                doc["rank"] = 4
        if layer.type == "moe":
            doc["experts"] = min(layer.experts, 4)
        block.append(doc)
    return Architecture.model_validate(
        {"d_model": 16, "vocab_size": 256, "seq_len": 16, "num_blocks": min(arch.num_blocks, 2), "block": block}
    )


@pytest.mark.parametrize("name", bundled_space_names())
def test_every_bundled_space_builds_and_trains_a_step(name: str) -> None:
    space = load_space(name)
    suggester = RandomSuggester(5)
    for _ in range(4):
        arch = sample(space, suggester)
        cpu_sized = space.proxy.seq_len <= 256 and cost(arch).params_all < 5e6
        arch = arch if cpu_sized else shrink(arch)
        torch.manual_seed(0)
        model = build_model(arch)
        ids = torch.randint(0, arch.vocab_size, (4, min(arch.seq_len, 32)))
        out = model(ids)
        assert out.logits.shape == (*ids.shape, arch.vocab_size)
        loss = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        (loss + out.aux_loss).backward()
        assert torch.isfinite(loss)
        assert len(out.moe) == sum(layer.type == "moe" for layer in arch.layers)
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_public_api_builds_from_json_and_top_level_name() -> None:
    arch = preset("glam")
    small = shrink(arch)
    model = brainsearch.build_model(small.to_json())
    assert isinstance(model, torch.nn.Module)
    logits = model(torch.randint(0, 256, (2, 8))).logits
    assert logits.shape == (2, 8, 256)


def test_public_api_loads_saved_weights_into_the_same_model(tmp_path: Path) -> None:
    model = build_model(shrink(preset("glam")))
    path = save_weights(model.state_dict(), model.arch, tmp_path / "m.safetensors")
    loaded = brainsearch.load_model(path)
    assert loaded.arch == model.arch
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )
    other = save_weights(model.state_dict(), shrink(preset("dense")), tmp_path / "other.safetensors")
    with pytest.raises(DataError, match="weights: the weights do not fit the stored architecture") as exc:
        brainsearch.load_model(other)
    assert exc.value.problems[0].source == str(other)


def test_too_long_input_is_a_clear_error() -> None:
    model = build_model(shrink(preset("dense")))
    with pytest.raises(ValueError, match="exceeds the architecture's seq_len 16"):
        model(torch.randint(0, 256, (1, 17)))


def test_initial_loss_is_near_uniform() -> None:
    torch.manual_seed(0)
    model = build_model(shrink(preset("brainformer-2")))
    ids = torch.randint(0, 256, (4, 16))
    logits = model(ids).logits[:, :-1]
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    assert abs(loss.item() - torch.log(torch.tensor(256.0)).item()) < 0.1


@pytest.mark.parametrize("gating", ["top1", "top2", "expert_choice"])
def test_bf16_autocast_forward_backward(gating: str) -> None:
    """The dtype handling CUDA bf16 training relies on, exercised with CPU autocast."""
    arch = Architecture.model_validate(
        {
            "d_model": 32,
            "vocab_size": 64,
            "seq_len": 16,
            "num_blocks": 1,
            "block": [
                {"type": "attention", "heads": 2},
                {"type": "moe", "hidden": 32, "experts": 4, "gating": gating},
                {"type": "ffn", "hidden": 32, "activation": "geglu"},
            ],
        }
    )
    torch.manual_seed(0)
    model = build_model(arch)
    ids = torch.randint(0, 64, (4, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids)
        loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids.flatten()) + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
