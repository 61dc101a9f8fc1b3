"""Data efficiency, optimal split and the tiered joint asymptote on known truths."""

import numpy as np
import pandas as pd
import pytest

from asymptote.analysis.bootstrap import bootstrap
from asymptote.analysis.efficiency import Target, data_efficiency, effective_data
from asymptote.analysis.errors import AnalysisError
from asymptote.analysis.fit import fit
from asymptote.analysis.laws import LAWS, law
from asymptote.analysis.split import break_even, optimal_split
from asymptote.analysis.tiered import tiered_asymptote

BASE = {"E": 3.3, "A": 250.0, "alpha": 0.3}


def base_loss(D):
    return BASE["E"] + BASE["A"] / np.asarray(D, float) ** BASE["alpha"]


def test_effective_data_inverts_the_law():
    D = np.array([1e8, 5e8, 3e9])
    assert effective_data(BASE, base_loss(D)) == pytest.approx(D, rel=1e-9)
    assert effective_data(BASE, 3.2) == np.inf


def test_multiplier_of_a_recipe_worth_five_times_the_data():
    D = np.geomspace(2e8, 1.6e9, 6)
    y = base_loss(D) * np.exp(np.random.default_rng(0).normal(0, 0.001, D.size))
    target = Target("recipe at 200M", 2e8, float(base_loss(5 * 2e8)))
    eff = data_efficiency(D, y, [target, Target("asymptote", 2e8, 3.25)], n_boot=150, seed=1)
    row = eff.table.iloc[0]
    assert row["multiplier"] == pytest.approx(5.0, rel=0.15)
    assert row["multiplier_low"] <= 5.0 <= row["multiplier_high"]
    assert np.isinf(eff.table.iloc[1]["multiplier"])
    assert any("never reaches" in n for n in eff.notes)


def test_efficiency_needs_three_budgets():
    with pytest.raises(AnalysisError, match=">= 3 distinct data budgets"):
        data_efficiency([1e8, 2e8, 2e8], [4.0, 3.9, 3.9], [])


@pytest.fixture
def split_law():
    """A user law where specialization reduces a domain-mismatch term but counts less for the
    general term: L = E + A/N^a + B/(D + r*Dp)^b + C/(1 + Dp/S)^g."""
    @law("tmp_split", inputs=("N", "D", "Dp"), bounds={"r": (0, 1), "S": (1e6, 1e12)},
         log_scale=("A", "B", "C", "S"), start={"r": [0.3, 0.7], "S": [1e8, 1e9]})
    def split(N, D, Dp, E, A, alpha, B, beta, C, gamma, r, S):
        return E + A / N**alpha + B / (D + r * Dp) ** beta + C / (1 + Dp / S) ** gamma

    yield split
    LAWS.pop("tmp_split")


TRUE_SPLIT = {"E": 2.0, "A": 400.0, "alpha": 0.34, "B": 800.0, "beta": 0.3, "C": 0.3, "gamma": 0.5, "r": 0.5, "S": 1e9}


def test_optimal_split_matches_brute_force(split_law):
    X = [np.repeat([1e8, 4e8], 3), np.tile([1e9, 1e10, 1e11], 2), np.zeros(6)]
    r = fit(split_law, X, split_law.predict(X, TRUE_SPLIT), fixed=TRUE_SPLIT)  # everything fixed: evaluate only
    for N, T in [(1e8, 1e9), (1e8, 1e11), (4e8, 3e10)]:
        res = optimal_split(r, N, T)
        f = np.linspace(0, 1, 200_001)
        brute = split_law.predict([np.full(f.size, N), T * (1 - f), T * f], TRUE_SPLIT)
        assert res.loss == pytest.approx(brute.min(), abs=1e-9)
        assert res.fraction == pytest.approx(f[brute.argmin()], abs=2e-5)
        assert res.gain >= 0


def test_break_even_is_where_a_specialization_token_beats_a_pretraining_token(split_law):
    X = [np.ones(3), np.ones(3), np.ones(3)]
    r = fit(split_law, X, np.full(3, 3.0), fixed=TRUE_SPLIT)
    N = 1e8
    T = break_even(r, N)
    # at D' = 0: dL/dD = -beta B (1-r)... the marginal condition for the split to start paying:
    # beta B (1 - r) T^-(beta+1) = C gamma / S
    p = TRUE_SPLIT
    analytic = (p["beta"] * p["B"] * (1 - p["r"]) * p["S"] / (p["C"] * p["gamma"])) ** (1 / (p["beta"] + 1))
    assert T == pytest.approx(analytic, rel=1e-3)
    assert optimal_split(r, N, 0.5 * T).fraction == 0.0
    assert optimal_split(r, N, 2 * T).fraction > 0.0


def test_split_law_fitted_from_noisy_runs_gives_split_intervals(split_law):
    g = np.random.default_rng(4)
    N = np.repeat([5e7, 1e8, 2e8, 4e8], 12)
    D = np.tile(np.repeat([3e9, 1e10, 3e10, 1e11], 3), 4)
    Dp = np.tile([0.0, 3e9, 3e10], 16)
    y = split_law.predict([N, D, Dp], TRUE_SPLIT) * np.exp(g.normal(0, 0.001, N.size))
    fixed = {"E": 2.0, "A": 400.0, "alpha": 0.34}
    r = fit(split_law, (N, D, Dp), y, fixed=fixed)
    assert r.r2 > 0.99
    bootstrap(r, n=40, seed=0)
    res = optimal_split(r, 1e8, 1e11)
    truth = optimal_split(fit(split_law, (N, D, Dp), y, fixed=TRUE_SPLIT), 1e8, 1e11)
    assert res.fraction_interval[0] <= truth.fraction + 0.05 and truth.fraction - 0.05 <= res.fraction_interval[1]


def test_split_needs_three_inputs():
    r = fit("power", np.geomspace(1, 100, 5), 2 + 1 / np.geomspace(1, 100, 5) ** 0.5)
    with pytest.raises(AnalysisError, match="three inputs"):
        optimal_split(r, 1.0, 10.0)


def test_tiered_asymptote_recovers_the_joint_limit():
    rows = []
    g = np.random.default_rng(7)
    for D in (2e8,):
        for N in (1.5e8, 3e8, 6e8, 1.4e9):
            e_k = 3.17 + 120.0 / N**0.3  # K -> inf loss of each size
            for K in (1, 2, 3, 4, 6, 8):
                rows.append({"N": N, "D": D, "K": K, "loss": (e_k + 0.25 / K**0.8) * np.exp(g.normal(0, 5e-4))})
    t = tiered_asymptote(pd.DataFrame(rows), n_boot=60, seed=0)
    assert len(t.k_fits) == 4 and len(t.n_fits) == 1
    row = t.n_fits.iloc[0]
    assert row["E_NK"] == pytest.approx(3.17, abs=0.05)
    assert row["low"] <= row["E_NK"] <= row["high"]
    assert t.d_fit is None


def test_tiered_needs_three_k_values():
    frame = pd.DataFrame({"N": [1e8, 1e8], "D": [1e9, 1e9], "K": [1, 2], "loss": [3.0, 2.9]})
    with pytest.raises(AnalysisError, match=">= 3 ensemble sizes"):
        tiered_asymptote(frame, n_boot=0)
