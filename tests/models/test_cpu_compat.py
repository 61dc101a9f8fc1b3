"""One test per CPU gap closed by asymptote.models.cpu_compat (run in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU layer is off with CUDA")

SCRIPT = textwrap.dedent(
    """
    import torch
    from asymptote.models import cpu_compat
    assert cpu_compat.enable() is True
    # gap 1: current_device used as a buffer device
    t = torch.empty(3, device=torch.cuda.current_device()); assert t.device.type == "cpu"
    # gap 3: literal cuda devices and .cuda()
    assert torch.zeros(2, device="cuda").device.type == "cpu"
    assert torch.ones(2).cuda().device.type == "cpu"
    assert torch.ones(2).to("cuda:0").device.type == "cpu"
    # gap 4: synchronize is a no-op
    torch.cuda.synchronize()
    # gaps 5/6: type checks see cuda tensor names
    assert torch.ones(1).type() == "torch.cuda.FloatTensor"
    # gap 8: timing events
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); b.record(); assert b.elapsed_time(a) <= 0.0 <= a.elapsed_time(b)
    # gap 2: the model-parallel RNG tracker forks the CPU generator reproducibly
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
    tracker = get_cuda_rng_tracker(); tracker.reset(); tracker.add("model-parallel-rng", 123)
    torch.manual_seed(7); outside = torch.get_rng_state()
    with tracker.fork():
        x = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), outside)  # outer stream untouched
    tracker.reset(); tracker.add("model-parallel-rng", 123)
    with tracker.fork():
        y = torch.rand(4)
    assert torch.equal(x, y)
    print("ok")
    """
)


def test_every_gap_is_closed():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_untie_adam_steps_gives_each_parameter_its_own_step():
    """Gap 7: after a distributed-optimizer load all parameters shared one `step` tensor."""
    from asymptote.models.optimizer import untie_adam_steps

    params = [torch.nn.Parameter(torch.ones(2)) for _ in range(3)]
    inner = torch.optim.AdamW(params, lr=0.1)
    shared = torch.tensor(5.0)
    for p in params:
        inner.state[p] = {"step": shared, "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}

    class Wrapper:
        optimizer = inner

    assert untie_adam_steps(Wrapper()) == 2
    for p in params:
        p.grad = torch.ones(2)
    inner.step()
    assert [float(inner.state[p]["step"]) for p in params] == [6.0, 6.0, 6.0]


QUIET = textwrap.dedent(
    """
    import os, socket, warnings
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    from asymptote.models import gpt, optimizer, parallel  # noqa: F401
    from asymptote.models.config import ParallelConfig
    from asymptote.models.presets import load_preset
    parallel.initialize(ParallelConfig(), seed=1)  # imports Megatron (optimizer, fsdp, ...)
    gpt.build_model_chunks(load_preset("tiny"), ParallelConfig(), vocab_size=256)  # layer specs
    import megatron.core.optimizer, megatron.core.models.backends  # noqa: F401
    # only the known notices are filtered: another Megatron warning still shows
    warnings.warn_explicit("an unrelated megatron warning", UserWarning, "x.py", 1, module="megatron.core.x")
    parallel.shutdown()
    print("ok")
    """
)


def test_benign_megatron_warnings_are_not_printed_on_cpu():
    """Apex/TransformerEngine-missing notices and the deprecated CUDA-graph scope: not printed
    when asymptote imports Megatron and builds a model on CPU (they used to be, every run)."""
    import os

    env = dict(os.environ, PYTHONWARNINGS="default", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    for noise in ("Transformer Engine and Apex are not installed", "Apex is not installed",
                  "full scope is deprecated"):
        assert noise not in out.stderr, out.stderr[-3000:]
    assert "an unrelated megatron warning" in out.stderr
