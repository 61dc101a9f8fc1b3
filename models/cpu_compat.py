"""Let Megatron-Core run on a machine without CUDA (gloo, fp32), applied only when CUDA is absent.

Megatron-Core assumes a GPU in a handful of places (see docs/megatron-on-cpu.md). Each gap is
closed here, once per process, by ``enable()``; the GPU path never calls it, so Megatron runs
untouched there. Every gap has its own test in tests/models/test_cpu_compat.py.

1. ``torch.cuda.current_device()`` used as a buffer device      -> returns 0, mapped to cpu (3).
2. the model-parallel CUDA RNG tracker                           -> the CPU generator's state.
3. literal ``device="cuda"`` tensors and ``Tensor.cuda()``       -> a TorchFunctionMode maps them to cpu.
4. ``torch.cuda.synchronize()``                                  -> no-op.
5./6. ``param.type() == 'torch.cuda.FloatTensor'`` checks         -> ``Tensor.type()`` reports cuda names.
7. the distributed-optimizer ``step`` bug (not CPU specific)     -> asymptote.models.optimizer.
8. ``torch.cuda.Event`` for timing                               -> a wall-clock event.

Megatron-Core also announces, with a ``UserWarning`` at import, that the optional GPU kernels of
Apex and TransformerEngine are absent. Without CUDA they could never be used, so every CPU run
would print the same notices: :func:`quiet_megatron_warnings` ignores exactly those messages
(:data:`BENIGN_CPU_WARNINGS`), only without CUDA, before this package first imports Megatron.
"""

from __future__ import annotations

import time
import warnings

import torch
from torch.overrides import TorchFunctionMode

_ENABLED = False
_MODE: TorchFunctionMode | None = None
_QUIET = False

BENIGN_CPU_WARNINGS = (
    # megatron.core.optimizer, .optimizer.optimizer, .optimizer.clip_grads, megatron_fsdp
    r"Transformer Engine and Apex are not installed\. Falling back to ",
    # megatron.core.models.backends, .models.gpt.gpt_layer_specs
    r"Apex is not installed\. Falling back to Torch Norm",
)
"""Start of Megatron-Core's import-time notices that are benign on a machine without CUDA."""


def quiet_megatron_warnings() -> bool:
    """Ignore :data:`BENIGN_CPU_WARNINGS` from Megatron's modules (only those, only without
    CUDA: on a GPU they point at a missing speed-up). Idempotent; returns whether installed."""
    global _QUIET
    if _QUIET:
        return True
    if torch.cuda.is_available():
        return False
    for message in BENIGN_CPU_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module="megatron")
    _QUIET = True
    return True


def _is_cuda_device(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    # A bare integer means "CUDA device N" to torch factory functions.
    return isinstance(device, int) and not isinstance(device, bool)


class _CudaToCpu(TorchFunctionMode):
    """Rewrites every CUDA device argument to cpu and makes ``Tensor.cuda()`` a no-op."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            # Megatron asserts on 'torch.cuda.FloatTensor'-style names (gaps 5 and 6).
            name = func(*args)
            return name.replace("torch.", "torch.cuda.", 1) if "cuda" not in name else name
        if "device" in kwargs and _is_cuda_device(kwargs["device"]):
            kwargs["device"] = "cpu"
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


class _WallClockEvent:
    """Stands in for ``torch.cuda.Event(enable_timing=True)``: times on the host clock."""

    def __init__(self, *args, **kwargs):
        self._t = None

    def record(self, *args, **kwargs):
        self._t = time.perf_counter()

    def synchronize(self):
        pass

    def query(self):
        return True

    def wait(self, *args, **kwargs):
        pass

    def elapsed_time(self, end: "_WallClockEvent") -> float:
        return (end._t - self._t) * 1000.0


def _cpu_get_rng_state(*args, **kwargs) -> torch.Tensor:
    return torch.get_rng_state()


def _cpu_set_rng_state(new_state: torch.Tensor, *args, **kwargs) -> None:
    torch.set_rng_state(new_state)


def _cpu_manual_seed(seed: int) -> None:
    # The RNG tracker seeds "cuda", snapshots, then restores the previous state: mapping it to
    # the CPU generator keeps dropout inside ``tracker.fork()`` reproducible per TP rank.
    # (torch.manual_seed would call back into torch.cuda.manual_seed_all: recursion.)
    torch.default_generator.manual_seed(seed)


def enable() -> bool:
    """Close the CPU gaps for this process. No-op (returns False) when CUDA is available."""
    global _ENABLED, _MODE
    if torch.cuda.is_available():
        return False
    if _ENABLED:
        return True
    quiet_megatron_warnings()  # before the first Megatron import below
    torch.cuda.current_device = lambda: 0  # gap 1: then mapped to cpu by the mode
    torch.cuda.synchronize = lambda *a, **k: None  # gap 4
    torch.cuda.Event = _WallClockEvent  # gap 8
    torch.cuda.get_rng_state = _cpu_get_rng_state  # gap 2
    torch.cuda.set_rng_state = _cpu_set_rng_state
    torch.cuda.manual_seed = _cpu_manual_seed
    torch.cuda.random.get_rng_state = _cpu_get_rng_state

    from megatron.core.tensor_parallel import random as mp_random

    mp_random._get_cuda_rng_state = _cpu_get_rng_state
    mp_random._set_cuda_rng_state = _cpu_set_rng_state

    # The tracker warns when the CPU RNG moves inside a "CUDA" RNG context; here the two are the
    # same generator by design, so the warning is noise.
    import logging

    logging.getLogger(mp_random.__name__).addFilter(
        lambda record: "CPU RNG state changed" not in record.getMessage()
    )

    _MODE = _CudaToCpu()
    _MODE.__enter__()  # gap 3: stays active for the life of the process
    _ENABLED = True
    return True


def is_enabled() -> bool:
    """Whether ``enable()`` has patched this process."""
    return _ENABLED
