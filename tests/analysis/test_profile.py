"""Objective profiles: flat over a parameter the data ignore, a clear dip over one they fix."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote.analysis.errors import AnalysisError
from asymptote.analysis.fit import fit
from asymptote.analysis.laws import get_law
from asymptote.analysis.profile import default_values, profile

FIXED = {"A": 520.82, "B": 1487.72, "E": 1.8691, "alpha": 0.3526596, "beta": 0.3526596}


@pytest.fixture(scope="module")
def small_runs():
    """Runs below the compute-optimal size for their data: R_N* never acts, R_D* does."""
    truth = {**FIXED, "rd_star": 15.4, "rn_star": 5.3}
    N = np.repeat(np.geomspace(5e6, 3e7, 4), 6)
    D = np.full(N.size, 1e9)
    ep = np.tile([1.0, 2.0, 4.0, 10.0, 20.0, 40.0], 4)
    y = get_law("data_constrained").predict([N, D, ep], truth)
    y = y * np.exp(np.random.default_rng(0).normal(0, 0.002, y.size))
    return fit("data_constrained", (N, D, ep), y, fixed=FIXED)


def test_profile_is_flat_over_an_ignored_parameter(small_runs):
    p = profile(small_runs, "rn_star", n=9)
    assert np.ptp(p.objective) <= 1e-9 * p.best
    lo, hi = p.tied()
    assert lo == p.values[0] and hi == p.values[-1]  # every value ties: the whole range
    assert p.values[0] < 0.2 and p.values[-1] > 5000  # default: the bounded range, log-spaced


def test_profile_dips_at_a_determined_parameter(small_runs):
    fitted = small_runs.params["rd_star"]
    p = profile(small_runs, "rd_star", values=np.append(np.geomspace(1, 1000, 13), fitted))
    i = int(np.argmin(p.objective))
    assert p.values[i] == fitted and p.objective[i] == pytest.approx(small_runs.objective, rel=1e-9)
    assert p.objective[0] > 2 * p.best and p.objective[-1] > 2 * p.best
    lo, hi = p.tied()
    assert 5 < lo <= fitted <= hi < 50
    # profiling never reports an objective below what it could reach from the fit itself
    assert p.best <= small_runs.objective
    d = p.to_dict()
    assert d["name"] == "rd_star" and len(d["values"]) == 14 and d["tied_range"] == [lo, hi]


def test_profile_with_other_free_parameters_and_unbounded_default():
    N = np.geomspace(1e8, 3e9, 10)
    r = fit("power", N, 3.0 + 900.0 / N**0.4)
    vals = default_values(r, "A", n=5)  # A has no upper bound: a decade either side
    assert vals[0] == pytest.approx(r.params["A"] / 10) and vals[-1] == pytest.approx(r.params["A"] * 10)
    p = profile(r, "alpha", values=[0.2, 0.4, 0.6])
    assert np.argmin(p.objective) == 1 and p.objective[1] <= 1e-6 * p.objective[0]


def test_profile_rejects_fixed_or_unknown_parameters(small_runs):
    for name in ("A", "nope"):
        with pytest.raises(AnalysisError, match="cannot profile"):
            profile(small_runs, name)
