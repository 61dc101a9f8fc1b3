"""Laws and the fitter: recovery of known parameters, agreement with curve_fit, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote.analysis.bootstrap import bootstrap
from asymptote.analysis.errors import AnalysisError
from asymptote.analysis.fit import extrapolation_check, fit
from asymptote.analysis.laws import LAWS, get_law, law

rng = np.random.default_rng


def noisy(values, sd, seed):
    return np.asarray(values) * np.exp(rng(seed).normal(0, sd, np.size(values)))


def test_power_recovery_inside_intervals():
    truth = {"E": 3.43, "A": 2000.0, "alpha": 0.45}
    N = np.geomspace(1e8, 3e9, 12)
    y = noisy(get_law("power").predict([N], truth), 0.002, 0)
    r = fit("power", N, y)
    assert r.success and r.r2 > 0.99
    b = bootstrap(r, n=200, seed=1)
    for p, v in truth.items():
        lo, hi = b.intervals[p]
        assert lo <= v <= hi, (p, v, lo, hi)
        assert lo <= r.params[p] <= hi
    assert r.params["E"] == pytest.approx(3.43, abs=0.05)


def test_noise_free_fits_are_exact():
    N = np.geomspace(1e7, 1e10, 8)
    r = fit("power", N, 1.5 + 50.0 / N**0.3)
    assert r.params == pytest.approx({"E": 1.5, "A": 50.0, "alpha": 0.3}, rel=1e-5)
    K = np.arange(1, 9, dtype=float)
    r = fit("reciprocal", K, 3.2 + 0.4 / K)
    assert r.params == pytest.approx({"E": 3.2, "A": 0.4}, rel=1e-6)


def test_chinchilla_recovery():
    truth = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 8)
    D = np.tile(np.geomspace(1e8, 1e12, 8), 8)
    y = noisy(get_law("chinchilla").predict([N, D], truth), 0.002, 3)
    r = fit("chinchilla", {"N": N, "D": D}, y)
    assert r.params["E"] == pytest.approx(1.69, rel=0.03)
    assert r.params["alpha"] == pytest.approx(0.34, rel=0.05)
    assert r.params["beta"] == pytest.approx(0.28, rel=0.05)
    b = bootstrap(r, n=60, seed=0)
    for p, v in truth.items():
        lo, hi = b.intervals[p]
        assert lo <= v <= hi, (p, v, lo, hi)


def test_data_constrained_repetition_terms_with_fixed_chinchilla_params():
    base = {"E": 1.87, "A": 521.0, "alpha": 0.35, "B": 1488.0, "beta": 0.35}
    truth = {**base, "rd_star": 15.4, "rn_star": 5.3}
    N = np.repeat(np.geomspace(1e8, 9e9, 6), 6)
    D = np.full(N.size, 1e9)
    ep = np.tile([1.0, 2.0, 4.0, 8.0, 16.0, 64.0], 6)
    y = get_law("data_constrained").predict([N, D, ep], truth)
    r = fit("data_constrained", (N, D, ep), y, fixed=base)
    assert r.params["rd_star"] == pytest.approx(15.4, rel=1e-3)
    assert r.params["rn_star"] == pytest.approx(5.3, rel=1e-3)
    # repeating data helps less and less: 64 epochs of D is worth less than 64 x D fresh tokens
    fresh = get_law("chinchilla").predict([np.array([1e9]), np.array([64e9])], base)
    assert y[5] > fresh[0]


def test_least_squares_matches_curve_fit_as_published():
    from scipy.optimize import curve_fit

    N = np.array([0.15, 0.3, 0.6, 1.4])  # billions, like the paper's fits
    y = np.array([3.83752, 3.78538, 3.74974, 3.73432])
    p, _ = curve_fit(lambda x, A, a, E: A / x**a + E, N, y, p0=[1, 0.5, 2], bounds=(0, np.inf))
    r = fit("power", N, y, loss="ls")
    assert r.params["A"] == pytest.approx(p[0], rel=1e-4)
    assert r.params["alpha"] == pytest.approx(p[1], rel=1e-4)
    assert r.params["E"] == pytest.approx(p[2], rel=1e-6)


def test_huber_resists_an_outlier_that_least_squares_follows():
    N = np.geomspace(1e7, 1e10, 10)
    y = 2.0 + 30.0 / N**0.25
    y[3] *= 1.15  # one broken run
    huber = fit("power", N, y)
    ls = fit("power", N, y, loss="ls")
    assert abs(huber.params["E"] - 2.0) < 0.01
    assert abs(ls.params["E"] - 2.0) > 3 * abs(huber.params["E"] - 2.0)


def test_user_defined_law_in_a_few_lines():
    @law("tmp_offset_power", inputs=("x",), bounds={"c": (-10, 10)}, start={"c": [0.0, 1.0]}, asymptote="E")
    def offset(x, E, A, alpha, c):
        """L = E + A / (x + c)^alpha"""
        return E + A * (x + c) ** (-alpha)

    try:
        x = np.linspace(1, 30, 15)
        y = 2.0 + 5.0 * (x + 2.0) ** -0.7
        r = fit("tmp_offset_power", x, y)  # no Jacobian given: finite differences
        assert r.params == pytest.approx({"E": 2.0, "A": 5.0, "alpha": 0.7, "c": 2.0}, rel=1e-3)
        assert r.asymptote == pytest.approx(2.0, rel=1e-3)
        assert r.law.formula == "L = E + A / (x + c)^alpha"
    finally:
        LAWS.pop("tmp_offset_power")


def test_law_decorator_rejects_mistakes():
    with pytest.raises(AnalysisError, match="inputs"):
        law("bad1", inputs=("N", "D"))(lambda D, N, E: E)
    with pytest.raises(AnalysisError, match="unknown parameter"):
        law("bad2", inputs=("x",), bounds={"Z": (0, 1)})(lambda x, E: E)
    assert "bad1" not in LAWS and "bad2" not in LAWS


def test_extrapolation_check_predicts_the_held_out_size():
    N = np.geomspace(1e8, 3e9, 6)
    y = noisy(3.0 + 900.0 / N**0.4, 0.001, 5)
    r = fit("power", N, y)
    ex = extrapolation_check(r)
    assert ex["ok"] and ex["held_out"] == pytest.approx(3e9) and ex["n_train"] == 5
    assert ex["rel_error"] < 0.01
    # with 3 sizes there is nothing left to refit a 3-parameter law on
    ex3 = extrapolation_check(fit("power", N[:3], y[:3]))
    assert not ex3["ok"] and "needed" in ex3["reason"]


def test_exactly_determined_fit_is_flagged_and_has_no_intervals():
    N = np.array([1e6, 3e6, 9e6])
    r = fit("power", N, 2.5 + 30.0 / N**0.3)
    assert r.exactly_determined
    assert any("exactly determined" in w for w in r.warnings)
    b = bootstrap(r, n=100)
    assert not b.meaningful and "exactly determined" in b.note
    assert r.interval("E") is None
    assert r.params == pytest.approx({"E": 2.5, "A": 30.0, "alpha": 0.3}, rel=1e-4)
    assert not any("cannot pass" in w for w in r.warnings)


def test_three_points_the_law_cannot_follow_are_fitted_with_a_warning():
    """Tiny demo models can overfit: loss rising with size. Fit anyway, never crash, say so."""
    r = fit("power", np.array([1e6, 3e6, 9e6]), np.array([2.90, 2.95, 3.00]))
    assert r.exactly_determined
    assert any("cannot pass through these 3 points" in w for w in r.warnings)
    # the best a non-increasing curve can do is flat through the middle
    assert r.predict(np.array([1e6, 3e6, 9e6])) == pytest.approx([2.95] * 3, abs=0.06)


@pytest.mark.parametrize("x,y,fixed,match", [
    ([1e8, 2e8], [3.0, 2.9], None, "too few points.*3 free parameter"),
    ([1e8, 2e8, 3e8], [3.0, np.nan, 2.8], None, "too few points.*2 finite"),
    ([1e8, 2e8, 3e8, 4e8], [3.0, 2.9, 0.0, 2.8], None, "positive targets"),
    ([1e8, 2e8, 3e8], [3.0, 2.9, 2.8], {"Q": 1.0}, "cannot fix"),
    ([1e8, 2e8, 3e8], [3.0, 2.9], None, "differ in length"),
])
def test_bad_inputs_give_clear_messages(x, y, fixed, match):
    with pytest.raises(AnalysisError, match=match):
        fit("power", np.array(x), np.array(y), fixed=fixed)


def test_inputs_the_law_cannot_take():
    with pytest.raises(AnalysisError, match="non-finite predictions.*x in \\[0"):
        fit("power", np.array([0.0, 1.0, 2.0, 4.0]), np.array([5.0, 3.0, 2.5, 2.2]))


def test_non_finite_rows_are_dropped_with_a_note():
    N = np.geomspace(1e8, 1e9, 6)
    y = 3.0 + 500.0 / N**0.35
    y[2] = np.inf
    r = fit("power", N, y)
    assert r.n == 5 and any("non-finite" in w for w in r.warnings)


def test_unknown_law_and_missing_inputs():
    with pytest.raises(AnalysisError, match="unknown law"):
        get_law("nope")
    with pytest.raises(AnalysisError, match="missing"):
        fit("chinchilla", {"N": np.ones(6)}, np.ones(6))


def test_interval_helpers():
    from asymptote.analysis.bootstrap import bc_interval, percentile_interval

    v = np.random.default_rng(0).normal(0, 1, 4001)
    # estimate at the replicates' median: bias correction changes nothing
    assert bc_interval(v, float(np.median(v))) == pytest.approx(percentile_interval(v), abs=0.02)
    # estimate above most replicates: the interval moves up
    assert bc_interval(v, 1.0)[0] > percentile_interval(v)[0] + 0.5
    # infinite replicates (unreachable losses) give infinite bounds, never NaN
    w = np.concatenate([np.ones(50), np.full(50, np.inf)])
    assert percentile_interval(w) == (1.0, np.inf)
