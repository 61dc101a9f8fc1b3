"""The dense BF16 peak table used for MFU: exact model matching, unknown devices, overrides."""

import pytest

from asymptote.models.gpu_peaks import PEAKS, dense_bf16_peak


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),  # how an H100 SXM reports itself
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA H200 NVL", 835e12),
        ("NVIDIA H20", 148e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100-PCIE-40GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA GH200 480GB", 989e12),
        ("NVIDIA B200", 2250e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L40", 181e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA A10", 125e12),
    ],
)
def test_known_devices(name, peak):
    assert dense_bf16_peak(name) == peak


def test_h20_is_not_an_h100_or_h200():
    assert dense_bf16_peak("NVIDIA H20") == 148e12
    assert dense_bf16_peak("NVIDIA H20") not in (PEAKS["H100"][None], PEAKS["H200"][None])


def test_pcie_is_told_apart_from_sxm():
    assert dense_bf16_peak("NVIDIA H100 PCIe") < dense_bf16_peak("NVIDIA H100 80GB HBM3")


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA GeForce RTX 4090", "Tesla V100-SXM2-32GB",
                                  "NVIDIA H1000", "", "cpu"])
def test_unknown_device_is_none(name):
    assert dense_bf16_peak(name) is None


def test_override_wins():
    assert dense_bf16_peak("NVIDIA H100 80GB HBM3", override=500e12) == 500e12
    assert dense_bf16_peak("NVIDIA A10G", override=70e12) == 70e12
    with pytest.raises(ValueError):
        dense_bf16_peak("NVIDIA H100 80GB HBM3", override=0)
