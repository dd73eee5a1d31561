"""The MFU denominator (brainsearch.train.peak): the datasheet's dense peak for known accelerators, a measured
matmul, labelled as such, for the others and the CPU."""

from __future__ import annotations

import pytest
import torch

from brainsearch.train import peak
from brainsearch.train.peak import datasheet_peak, device_peak


@pytest.mark.parametrize(
    ("name", "dtype", "flops", "product"),
    [
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989e12, "H100 SXM"),
        ("NVIDIA H100 PCIe", torch.bfloat16, 756e12, "H100 PCIe"),
        ("NVIDIA H200", torch.bfloat16, 989e12, "H200"),
        ("NVIDIA A100-SXM4-80GB", torch.bfloat16, 312e12, "A100"),
        ("NVIDIA A100 80GB PCIe", torch.float32, 19.5e12, "A100"),
        ("NVIDIA L40S", torch.bfloat16, 362e12, "L40S"),
        ("NVIDIA L4", torch.bfloat16, 121e12, "L4"),
        ("NVIDIA A10", torch.bfloat16, 125e12, "A10"),
    ],
)
def test_datasheet_peaks_of_known_devices(name: str, dtype: torch.dtype, flops: float, product: str) -> None:
    found = datasheet_peak(name, dtype)
    assert found is not None and found.flops_per_s == pytest.approx(flops)
    assert found.source == "datasheet" and product in found.label


def test_names_match_as_whole_words_and_unknown_dtypes_are_unknown() -> None:
    assert datasheet_peak("NVIDIA RTX A1000", torch.bfloat16) is None  # not an A100
    assert datasheet_peak("Some Future Accelerator", torch.bfloat16) is None
    assert datasheet_peak("NVIDIA A10G", torch.bfloat16) is None  # not the A10: no datasheet for its clocks
    assert datasheet_peak("Tesla V100-SXM2-16GB", torch.bfloat16) is None  # no bf16 on Volta


def test_cuda_device_reads_the_table_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    found = device_peak(torch.device("cuda"), torch.bfloat16)
    assert found.source == "datasheet" and found.flops_per_s == 989e12


def test_the_cpu_falls_back_to_a_measured_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []

    def fake_matmul(device: str, dtype: torch.dtype, n: int) -> float:
        sizes.append(n)
        return 1e11

    monkeypatch.setattr(peak, "matmul_peak_flops", fake_matmul)
    found = device_peak("cpu", torch.float32)
    assert found.source == "measured" and found.flops_per_s == 1e11 and sizes == [2048]
    assert found.label == "measured: 2048x2048 fp32 matmul on cpu"


def test_a_measured_matmul_is_a_positive_rate() -> None:
    assert peak.matmul_peak_flops("cpu", torch.float32, n=128, reps=2) > 0
