"""Shared fixtures: small synthetic sweeps in the real on-disk format."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote.analysis.synthetic import SweepSpec, make_sweep


@pytest.fixture(scope="session")
def grid_sweep(tmp_path_factory):
    """4 sizes x 2 budgets x 3 lr x 3 wd x 3 epochs, 3 failed runs, one resumed run."""
    root = tmp_path_factory.mktemp("grid_sweep")
    spec = SweepSpec(seed_tokens=(100_000_000, 400_000_000), failed=3, steps=40, eval_every=10, seed=1)
    info = make_sweep(root, spec, resume=["N20000000_D100000000_lr0.003_wd0.8_ep8_s0"])
    return root, info


@pytest.fixture(scope="session")
def demo_sweep(tmp_path_factory):
    """Like the CPU demo: 3 sizes x 2 weight decays at fixed D, epochs and lr."""
    root = tmp_path_factory.mktemp("demo_sweep")
    spec = SweepSpec(sizes=(1_000_000, 3_000_000, 9_000_000), seed_tokens=(131_072,), lrs=(3e-3,),
                     weight_decays=(0.1, 0.8), epochs=(2,), steps=30, eval_every=10, A=30.0, alpha=0.3, B=0.0,
                     E=2.5, seed=2)
    info = make_sweep(root, spec)
    return root, info


def rng(seed: int = 0) -> np.random.Generator:
    """A seeded generator."""
    return np.random.default_rng(seed)
