"""Dense BF16 peak FLOP/s per accelerator model, the denominator of MFU.

Every figure is the vendor's *dense* BF16 tensor-core peak (datasheets usually print the
2:4-sparsity figure, twice as large, with the dense one beside it or in a footnote). Sources,
as published by the vendors:

* NVIDIA A100 datasheet (SXM4 and PCIe, 40 and 80 GB): 312 TFLOP/s.
* NVIDIA H100 datasheet: SXM 989 (1,979 sparse), PCIe 756 (1,513 sparse), NVL 835 (1,671 sparse).
  H800 is the export variant of H100 with the same tensor-core rate; GH200's GPU is an H100 SXM.
* NVIDIA H200 datasheet: SXM 989 (1,979 sparse), NVL 835 (1,671 sparse).
* NVIDIA H20 (export part): 148 TFLOP/s dense BF16.
* NVIDIA HGX B200: 36 PFLOP/s sparse per 8 GPUs -> 2,250 dense per GPU; GB200 NVL72: 360 PFLOP/s
  sparse per 72 GPUs -> 2,500 dense per GPU.
* NVIDIA L40S 362 (733 sparse), L40 181 (362 sparse), L4 121 (242 sparse), A40 150 (299 sparse),
  A10 125 (250 sparse) datasheets.
* AMD Instinct MI300X datasheet: 1,307 TFLOP/s dense BF16.

Device names (``torch.cuda.get_device_name()``) are matched by whole tokens, never substrings:
"NVIDIA H20" is an H20, not an H200 or H100; "NVIDIA A10G" is not an A10 (its peak is not
published, so it is unknown). A model with several form factors (H100 SXM / PCIe / NVL) is told
apart by a variant token in the name ("PCIe", "NVL"); without one it is the SXM part, which is
how the SXM boards report themselves ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB").
An unknown device gives None: the caller then logs no MFU (and says why) rather than a guess.
"""

from __future__ import annotations

import re

# model token -> {variant token or None (default / SXM): dense BF16 FLOP/s}
PEAKS: dict[str, dict[str | None, float]] = {
    "A100": {None: 312e12},
    "A800": {None: 312e12},
    "H100": {None: 989e12, "PCIE": 756e12, "NVL": 835e12},
    "H800": {None: 989e12, "PCIE": 756e12},
    "GH200": {None: 989e12},
    "H200": {None: 989e12, "NVL": 835e12},
    "H20": {None: 148e12},
    "B200": {None: 2250e12},
    "GB200": {None: 2500e12},
    "L40S": {None: 362e12},
    "L40": {None: 181e12},
    "L4": {None: 121e12},
    "A40": {None: 150e12},
    "A10": {None: 125e12},
    "MI300X": {None: 1307e12},
}
"""Dense BF16 peak FLOP/s by model token, then by form-factor token (None: SXM / the only one)."""

_VENDOR_WORDS = {"NVIDIA", "TESLA", "AMD", "INSTINCT"}


def _tokens(device_name: str) -> list[str]:
    """Upper-case tokens of a device name, split at spaces, dashes, underscores and slashes."""
    return [t for t in re.split(r"[\s\-_/]+", device_name.upper()) if t and t not in _VENDOR_WORDS]


def dense_bf16_peak(device_name: str, override: float | None = None) -> float | None:
    """Dense BF16 peak FLOP/s of one device called ``device_name``; None when unknown.

    ``override`` (e.g. from a config key or environment variable) wins when given, for a device
    missing from :data:`PEAKS` or a clock-limited part. Matching is by exact model token (see the
    module docstring), so "NVIDIA H20" never matches H100/H200.
    """
    if override is not None:
        override = float(override)
        if not override > 0:
            raise ValueError(f"peak FLOP/s override must be positive, got {override!r}")
        return override
    tokens = _tokens(device_name or "")
    models = [t for t in tokens if t in PEAKS]
    if len(models) != 1:
        return None  # unknown, or ambiguous (two model tokens in one name)
    variants = PEAKS[models[0]]
    found = [t for t in tokens if t in variants]
    if len(found) > 1:
        return None
    if found:
        return variants[found[0]]
    return variants.get(None)
