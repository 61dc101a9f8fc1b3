"""Per-rank RNG state of a checkpoint: rng_state() / restore_rng_state() round trip, including
every state of Megatron's RNG tracker (run in a fresh single-rank process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, random, sys, warnings
    from pathlib import Path

    import numpy as np
    import torch

    from asymptote.models import checkpoint, parallel
    from asymptote.models.config import ParallelConfig

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    parallel.initialize(ParallelConfig(tp=1, pp=1), seed=1234)  # before Megatron is imported
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    tracker = get_cuda_rng_tracker()
    names = sorted(tracker.get_states())
    assert "model-parallel-rng" in names, names
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def draws():
        out = {"cpu": torch.rand(4).tolist(), "numpy": np.random.rand(3).tolist(),
               "python": [random.random(), random.gauss(0, 1)]}
        if torch.cuda.is_available():
            out["cuda"] = torch.rand(4, device="cuda").tolist()
        for name in names:  # e.g. dropout inside tensor-parallel regions
            with tracker.fork(name):
                out[name] = torch.rand(4, device=device).tolist()
        return out

    def tracker_states():
        return {k: v.clone() for k, v in tracker.get_states().items()}

    draws()  # move every stream away from its seed
    np.random.randn(); random.gauss(0, 1)  # numpy/python cache a Gaussian: keep that too
    saved = checkpoint.rng_state()
    assert saved["layout"]["rank"] == 0 and saved["layout"]["world"] == 1, saved["layout"]
    assert sorted(saved["tracker"]) == names
    # What a checkpoint stores: plain values only (loads with weights_only=True).
    torch.save(saved, "state.pt")
    loaded = torch.load("state.pt", weights_only=True)
    states_then = tracker_states()
    want = draws()
    draws()

    checkpoint.reseed_rng(99)  # anything else
    assert draws() != want
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact restore is silent
        assert checkpoint.restore_rng_state(loaded) is True
    assert all(torch.equal(v, states_then[k]) for k, v in tracker_states().items())
    assert draws() == want, "streams after restore differ"
    # The restored tracker does not share tensors with the state it came from.
    assert checkpoint.restore_rng_state(loaded) is True and draws() == want

    # Another layout (here: another world size): re-seed, with a warning.
    other = dict(loaded, layout=dict(loaded["layout"], world=2))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert checkpoint.restore_rng_state(other, seed=7) is False
    assert any("another layout" in str(x.message) and "world=2" in str(x.message) for x in w), w
    after_fallback = draws()
    checkpoint.reseed_rng(7)
    assert draws() == after_fallback
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert checkpoint.restore_rng_state(None) is False
    assert any("no RNG state" in str(x.message) for x in w), w

    # Checkpoints written before per-rank states hold rank 0's CPU state only.
    legacy = {"cpu": loaded["cpu"]}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert checkpoint.restore_rng_state(legacy) is True
    assert any("predates" in str(x.message) for x in w), w
    assert torch.rand(4).tolist() == want["cpu"]

    # save()/load(): every rank's state in its own file of the step folder, and back.
    root = Path("ckpt")
    checkpoint.reseed_rng(5)
    draws()
    at_save = checkpoint.rng_state()
    want = draws()
    checkpoint.restore_rng_state(at_save)
    final = checkpoint.save(root, 3, [], None, {"step": 3, "rng": {"cpu": torch.get_rng_state()}},
                            keep=2)
    assert (final / checkpoint.rng_file(0)).is_file(), sorted(os.listdir(final))
    assert checkpoint.latest_step(root) == 3 and (root / "latest").read_text() == "3\\n"
    # (`checksummed`: the first step saved with checksums, models/checkpoint.py MARKER)
    assert sorted(p.name for p in root.iterdir()) == [checkpoint.MARKER, "latest", final.name], \
        list(root.iterdir())
    assert checkpoint.verify(final).intact and checkpoint.verify(final).checked
    draws()
    extra = checkpoint.load(root, 3, [], None)
    assert extra["step"] == 3 and "layout" in extra["rng"]
    assert checkpoint.restore_rng_state(extra["rng"]) is True
    assert draws() == want
    # The common state (equal on all ranks) holds no RNG state: it is per rank, in the files.
    common = torch.load(final / "common.pt", weights_only=False)
    assert common["extra"] == {"step": 3}, common["extra"]
    # A rank without a file (the job has more ranks than the one that saved): no state.
    os.remove(final / checkpoint.rng_file(0))
    assert "rng" not in checkpoint.load(root, 3, [], None)
    # A checkpoint from before per-rank states: its common extra["rng"] ({"cpu"}) is kept.
    from megatron.core import dist_checkpointing
    legacy = checkpoint.step_dir(root, 7)
    legacy.mkdir()
    dist_checkpointing.save({"model": {}, "extra": {"step": 7, "rng": {"cpu": at_save["cpu"]}}},
                            str(legacy))
    extra = checkpoint.load(root, 7, [], None)
    assert extra["step"] == 7 and set(extra["rng"]) == {"cpu"}
    assert torch.equal(extra["rng"]["cpu"], at_save["cpu"])
    parallel.shutdown()
    print("ok")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rng_state_round_trip_with_tracker_and_checkpoint_files(tmp_path):
    from conftest import train_env

    env = dict(train_env(tmp_path), MASTER_PORT=str(_free_port()))
    env.pop("PYTHONWARNINGS", None)  # the script checks its warnings itself
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.stdout[-2000:]
                                                                       + out.stderr[-4000:])
