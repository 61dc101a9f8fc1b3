"""`asymptote plan`: sweep expansion, validation of every point, arrays and compute estimate."""

from __future__ import annotations

import pytest

from asymptote.launch.app.plan import expand_sweep, format_plan, plan
from asymptote.launch.errors import ConfigError
from asymptote.models import size


def test_expand_sweep_is_the_cartesian_product():
    points = expand_sweep(["model=tiny", "optim.lr=1e-3,2e-3", "seed.train=0,1,2"])
    assert len(points) == 6
    assert ["model=tiny", "optim.lr=0.001", "seed.train=0"] in points


def test_plan_counts_compute_from_flops_per_token():
    overrides = ["model=tiny,tiny_m", "data.seed_tokens=65536", "train.epochs=2",
                 "train.global_batch=8", "train.micro_batch=4"]
    points, launcher, rows = plan(overrides, mfu=0.5, peak_flops=1e12)
    assert len(points) == len(rows) == 2
    for p, r in zip(points, rows):
        seq = p.config.model.seq_len
        assert r["steps"] == (65536 // seq) * 2 // 8
        vocab = size.padded_vocab_size(p.config.data.vocab_size, p.config.model.vocab_multiple)
        flops = size.flops_per_token(p.config.model, vocab) * r["steps"] * 8 * seq
        assert r["flops"] == pytest.approx(flops)
        assert r["gpu_hours"] == pytest.approx(flops / 0.5e12 / 3600)
    assert rows[1]["params"] > rows[0]["params"]
    text = format_plan(points, launcher, rows, 0.5, 1e12)
    assert "local launcher: 2 points" in text and "GPU-hours at MFU 0.5" in text


def test_plan_of_a_slurm_sweep_shows_chunked_arrays():
    overrides = ["model=tiny", "optim.weight_decay=0.1,0.2,0.3", "hydra/launcher=slurm",
                 "hydra.launcher.max_array_size=2", "parallel.tp=2"]
    points, launcher, rows = plan(overrides, mfu=0.4, peak_flops=989e12)
    text = format_plan(points, launcher, rows, 0.4, 989e12)
    assert "SLURM: 3 points -> 2 array(s) (MaxArraySize=2)" in text
    assert "array 2: points #2-#2 (1 tasks" in text
    assert "1 node(s) x 2 tasks" in text


def test_plan_refuses_a_sweep_with_invalid_points():
    with pytest.raises(ConfigError, match=r"sweep point #1 .*parallel.tp=3"):
        plan(["model=tiny", "parallel.tp=1,3"], mfu=0.4, peak_flops=989e12)
