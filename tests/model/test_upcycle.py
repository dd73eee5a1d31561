"""Sparse upcycling: every weight is copied, a top-2 MoE made from a dense model computes the dense model's logits,
and the cases where the function is not kept compute what the module docstring says instead."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from brainsearch.arch import Architecture
from brainsearch.arch.scale import dense_twin
from brainsearch.errors import ArchitectureError
from brainsearch.model import LanguageModel, MoE, build_model
from brainsearch.model.ffn import DenseFFN
from brainsearch.model.upcycle import upcycle
from tests.model.reference import ffn_one_group

D = 32


def _arch(moe: dict[str, Any] | None = None, ffn: dict[str, Any] | None = None, **top: Any) -> Architecture:
    """attention, ffn, attention, moe - twice; a small vocabulary and context."""
    moe_layer = {"type": "moe", "hidden": 48, "experts": 4, "gating": "top2", "capacity_factor": 2.0} | (moe or {})
    ffn_layer = {"type": "ffn", "hidden": 40, "activation": "swiglu"} | (ffn or {})
    doc = {
        "d_model": D,
        "vocab_size": 64,
        "seq_len": 16,
        "num_blocks": 2,
        "block": [{"type": "attention", "heads": 4}, ffn_layer, {"type": "attention", "heads": 4}, moe_layer],
    } | top
    return Architecture.from_json(doc)


def _trained_looking(model: LanguageModel, seed: int = 1) -> LanguageModel:
    """Move every weight off its initialisation (norm gains included), as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def _source(arch: Architecture) -> LanguageModel:
    torch.manual_seed(0)
    return _trained_looking(build_model(arch))


def _ids(batch: int = 4, seq: int = 16) -> torch.Tensor:
    return torch.randint(0, 64, (batch, seq), generator=torch.Generator().manual_seed(7))


def _moe_pairs(new: LanguageModel, old: LanguageModel) -> list[tuple[MoE, torch.nn.Module]]:
    return [(n, o) for n, o in zip(new.layers, old.layers, strict=True) if isinstance(n, MoE)]


@pytest.mark.parametrize("dispatch", ["padded", "grouped"])
@pytest.mark.parametrize(("activation", "rank"), [("gelu", None), ("swiglu", None), ("geglu", 8), ("relu", 8)])
@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_top2_moe_upcycled_from_dense_gives_the_dense_logits(
    dispatch: str, activation: str, rank: int | None, tie_embeddings: bool
) -> None:
    # capacity_factor E / k = 2: every expert has room for every token, so nothing is dropped.
    arch = _arch({"activation": activation, "rank": rank}, tie_embeddings=tie_embeddings)
    dense = _source(dense_twin(arch))
    sparse = upcycle(dense, arch, seed=3, dispatch=dispatch)  # type: ignore[arg-type]
    with torch.no_grad():
        want, got = dense(_ids()), sparse(_ids())
    assert len(got.moe) == 2 and all(float(s.dropped_fraction) == 0.0 for s in got.moe)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)


def test_copies_every_weight_and_leaves_the_source_alone() -> None:
    arch = _arch({"rank": 8})
    dense = _source(dense_twin(arch))
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    sparse = upcycle(dense, arch)
    assert all(torch.equal(v, before[k]) for k, v in dense.state_dict().items())
    state = sparse.state_dict()
    for key, value in before.items():
        if key in state:  # everything but the MoE layers' FFNs keeps its name
            assert torch.equal(state[key], value), key
    for new, old in _moe_pairs(sparse, dense):
        assert isinstance(old, DenseFFN)
        for name, p in new.experts.named_parameters():
            dim = name.rsplit("_", 1)[-1].index("G")
            source = dict(old.ffn.named_parameters())[name]
            for e in range(new.spec.experts):
                assert torch.equal(p.select(dim, e), source.select(dim, 0)), (name, e)


def test_fresh_router_is_the_targets_init_under_seed_and_the_global_rng_is_untouched() -> None:
    arch = _arch()
    dense = _source(dense_twin(arch))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b, c = upcycle(dense, arch, seed=5), upcycle(dense, arch, seed=5), upcycle(dense, arch, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    routers = [[m.router.weight_ED for m in model.layers if isinstance(m, MoE)] for model in (a, b, c)]
    assert all(torch.equal(x, y) for x, y in zip(routers[0], routers[1], strict=True))
    assert not any(torch.equal(x, z) for x, z in zip(routers[0], routers[2], strict=True))
    assert 0.015 < float(routers[0][0].detach().std()) < 0.025  # N(0, 0.02), build_model's router init


def test_dropping_assignments_breaks_the_identity() -> None:
    arch = _arch({"capacity_factor": 0.5})
    dense = _source(dense_twin(arch))
    with torch.no_grad():
        want, got = dense(_ids()), upcycle(dense, arch)(_ids())
    assert all(float(s.dropped_fraction) > 0 for s in got.moe)
    assert not torch.allclose(got.logits, want.logits, atol=1e-4)


def test_top1_is_not_preserved_it_scales_the_ffn_by_the_top_probability() -> None:
    # Top-1 keeps the raw softmax probability as its gate (Switch): the layer outputs p_max(x) * f(x).
    arch = _arch({"gating": "top1", "capacity_factor": 4.0})
    dense = _source(dense_twin(arch))
    sparse = upcycle(dense, arch)
    x_BSD = torch.randn(3, 16, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for new, old in _moe_pairs(sparse, dense):
            out_BSD, stats = new(x_BSD)
            assert float(stats.dropped_fraction) == 0.0
            p_max_BS = new.router.probabilities(x_BSD)[1].max(-1).values
            torch.testing.assert_close(out_BSD, p_max_BS.unsqueeze(-1) * old(x_BSD), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(sparse(_ids()).logits, dense(_ids()).logits, atol=1e-3)


def test_expert_choice_is_not_preserved_a_token_gets_its_gates_sum_times_the_ffn() -> None:
    arch = _arch({"gating": "expert_choice", "capacity_factor": 1.0})
    dense = _source(dense_twin(arch))
    sparse = upcycle(dense, arch)
    x_BSD = torch.randn(3, 16, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for new, old in _moe_pairs(sparse, dense):
            out_BSD, _ = new(x_BSD)
            r = new.router(x_BSD)
            gates_T = torch.zeros(3 * 16).index_add_(0, r.token_idx_N, r.gate_N)
            assert float(gates_T.min()) < 0.999 or float(gates_T.max()) > 1.001  # not a partition of 1
            torch.testing.assert_close(out_BSD, gates_T.view(3, 16, 1) * old(x_BSD), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(sparse(_ids()).logits, dense(_ids()).logits, atol=1e-3)


@pytest.mark.parametrize("rank", [None, 8])
def test_e_to_2e_copies_expert_and_router_row_j_mod_e(rank: int | None) -> None:
    small = _arch({"rank": rank, "gating": "top1"})
    big = _arch({"rank": rank, "experts": 8})
    source = _source(small)
    target = upcycle(source, big)
    for new, old in _moe_pairs(target, source):
        assert isinstance(old, MoE)
        torch.testing.assert_close(new.router.weight_ED, old.router.weight_ED.repeat(2, 1), rtol=0, atol=0)
        for name, p in new.experts.named_parameters():
            dim = name.rsplit("_", 1)[-1].index("G")
            source_p = dict(old.experts.named_parameters())[name]
            for j in range(8):
                assert torch.equal(p.select(dim, j), source_p.select(dim, j % 4)), (name, j)


def test_e_to_2e_top2_sends_each_token_to_copies_of_its_source_first_choice() -> None:
    """What holds for copied router rows: the probabilities halve, both top-2 choices are copies of the source's
    first expert, so the layer outputs that expert's f_a(x) (gates 1/2 + 1/2), not the source's mixture."""
    source = _source(_arch({"gating": "top2"}))
    target = upcycle(source, _arch({"experts": 8, "capacity_factor": 4.0}))
    x_BSD = torch.randn(2, 16, D, generator=torch.Generator().manual_seed(4))
    x_TD = x_BSD.reshape(-1, D)
    with torch.no_grad():
        for new, old in _moe_pairs(target, source):
            assert isinstance(old, MoE)
            p_old = old.router.probabilities(x_BSD)[1]
            torch.testing.assert_close(new.router.probabilities(x_BSD)[1], p_old.repeat(1, 1, 2) / 2)
            first_T = p_old.reshape(-1, 4).argmax(-1)
            want_TD = torch.stack(
                [ffn_one_group(old.experts, int(a), x_TD[t : t + 1])[0] for t, a in enumerate(first_T)]
            )
            out_BSD, stats = new(x_BSD)
            assert float(stats.dropped_fraction) == 0.0
            torch.testing.assert_close(out_BSD.reshape(-1, D), want_TD, rtol=1e-5, atol=1e-6)
            assert not torch.allclose(out_BSD, old(x_BSD)[0], atol=1e-4)  # not the source's top-2 mixture


def test_same_architecture_is_a_plain_copy() -> None:
    arch = _arch({"gating": "expert_choice"})
    source = _source(arch)
    with torch.no_grad():
        torch.testing.assert_close(upcycle(source, arch)(_ids()).logits, source(_ids()).logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (_arch(d_model=48), r"d_model: source has 32, target 48"),
        (_arch(num_blocks=3), r"num_blocks: source has 2, target 3"),
        (_arch(vocab_size=128, seq_len=8), r"vocab_size: source has 64, target 128(.|\n)*seq_len: source has 16"),
        (_arch(tie_embeddings=False), r"tie_embeddings: source has True, target False"),
        (_arch({"hidden": 64}), r"block\[3\]: ffn -> moe: hidden 48 != 64"),
        (_arch({"activation": "relu", "rank": 8}), r"block\[3\]: ffn -> moe: activation gelu != relu, rank None != 8"),
        (_arch(ffn={"hidden": 24}), r"block\[1\]: ffn differs"),
        (
            _arch(block=[{"type": "attention", "heads": 4}, {"type": "moe", "hidden": 40, "experts": 2}]),
            r"block: source has 4 sub-layers \(afaf\), target 2 \(ag\)",
        ),
    ],
)
def test_mismatches_are_architecture_errors_naming_the_field(target: Architecture, match: str) -> None:
    with pytest.raises(ArchitectureError, match=match):
        upcycle(build_model(dense_twin(_arch())), target)


def test_layer_kind_and_expert_count_mismatches() -> None:
    moe_source = build_model(_arch({"experts": 4}))
    with pytest.raises(ArchitectureError, match=r"block\[3\]: moe -> moe: target experts 6 is not a multiple of"):
        upcycle(moe_source, _arch({"experts": 6}))
    with pytest.raises(ArchitectureError, match=r"block\[3\]: source is moe, target ffn"):
        upcycle(moe_source, dense_twin(_arch()))
    swapped = _arch(
        block=[{"type": "ffn", "hidden": 40, "activation": "swiglu"}, {"type": "attention", "heads": 4}] * 2
    )
    with pytest.raises(ArchitectureError, match=r"block\[0\]: source is attention, target ffn"):
        upcycle(moe_source, swapped)
