"""Optimal split of a token budget between pretraining (D) and specialization (D').

Works with any fitted law of three inputs ``L(N, D, D')`` (the functional form of Seto et al. is
not public, so the form is the user's: see :func:`.laws.law`). For a model size N and a total
budget T, :func:`optimal_split` finds the D' in [0, T] minimising ``L(N, T - D', D')``;
:func:`break_even` finds the smallest T at which spending any of it on specialization beats
pretraining on all of it (the D where splitting starts to pay). Both accept bootstrap parameter
replicates for intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bootstrap import percentile_interval
from .errors import AnalysisError
from .fit import FitResult, _jsonable

_FRACTIONS = np.unique(np.concatenate([[0.0], np.geomspace(1e-6, 1.0, 300), np.linspace(0.0, 1.0, 201)]))


def _loss_fn(result: FitResult, params: dict | None = None):
    """L(N, D, D') as a vectorised function of the fitted (or given) parameters."""
    law = result.law
    if len(law.inputs) != 3:
        raise AnalysisError(f"optimal split needs a law of three inputs (N, D, D'); {law.name!r} has {law.inputs}")
    p = params or result.params
    return lambda N, D, Dp: law.predict([np.asarray(N, float), np.asarray(D, float), np.asarray(Dp, float)], p)


def _best_fraction(loss, N: float, total: float) -> tuple[float, float, float]:
    """(fraction of T for D', loss at it, loss with no split)."""
    from scipy.optimize import minimize_scalar

    f = _FRACTIONS
    vals = loss(np.full(f.size, N), total * (1 - f), total * f)
    vals = np.where(np.isfinite(vals), vals, np.inf)
    i = int(np.argmin(vals))
    lo = f[max(i - 1, 0)]
    hi = f[min(i + 1, f.size - 1)]
    best_f, best_v = float(f[i]), float(vals[i])
    if hi > lo:
        res = minimize_scalar(lambda x: float(loss(N, total * (1 - x), total * x)), bounds=(lo, hi),
                              method="bounded", options={"xatol": 1e-10 * max(hi, 1e-12)})
        if res.success and res.fun < best_v:
            best_f, best_v = float(res.x), float(res.fun)
    return best_f, best_v, float(vals[0])


@dataclass
class SplitResult:
    """Optimal split for one (N, T)."""

    N: float
    """Model size."""
    total: float
    """Total token budget T = D + D'."""
    fraction: float
    """Optimal share of T spent on specialization (D'/T)."""
    loss: float
    """Predicted loss at the optimum."""
    loss_no_split: float
    """Predicted loss with all of T on pretraining."""
    fraction_interval: tuple[float, float] | None = None
    """Bootstrap interval of ``fraction``."""
    gain_interval: tuple[float, float] | None = None
    """Bootstrap interval of ``gain``."""

    @property
    def D(self) -> float:
        """Pretraining tokens at the optimum."""
        return self.total * (1 - self.fraction)

    @property
    def Dp(self) -> float:
        """Specialization tokens at the optimum."""
        return self.total * self.fraction

    @property
    def gain(self) -> float:
        """Loss reduction of the optimal split over pure pretraining."""
        return self.loss_no_split - self.loss

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return _jsonable({"N": self.N, "total": self.total, "D": self.D, "Dp": self.Dp, "fraction": self.fraction,
                          "loss": self.loss, "loss_no_split": self.loss_no_split, "gain": self.gain,
                          "fraction_interval": self.fraction_interval, "gain_interval": self.gain_interval})


def optimal_split(result: FitResult, N: float, total: float, level: float = 0.95) -> SplitResult:
    """Optimal D' for size N and budget T; intervals from ``result.boot`` replicates if present."""
    f, v, v0 = _best_fraction(_loss_fn(result), N, total)
    out = SplitResult(N=N, total=total, fraction=f, loss=v, loss_no_split=v0)
    boot = result.boot
    if boot is not None and boot.meaningful and boot.param_samples:
        fr, gains = [], []
        for p in boot.param_samples:
            bf, bv, bv0 = _best_fraction(_loss_fn(result, p), N, total)
            fr.append(bf)
            gains.append(bv0 - bv)
        out.fraction_interval = percentile_interval(np.array(fr), level)
        out.gain_interval = percentile_interval(np.array(gains), level)
    return out


def break_even(result: FitResult, N: float, low: float = 1e6, high: float = 1e14,
               params: dict | None = None, rel_tol: float = 1e-9) -> float | None:
    """Smallest total budget T in [low, high] where the optimal split beats pure pretraining by
    more than ``rel_tol`` (relative); None when it never does in that range."""
    loss = _loss_fn(result, params)

    def pays(T: float) -> bool:
        _, v, v0 = _best_fraction(loss, N, T)
        return v0 - v > rel_tol * abs(v0)

    grid = np.geomspace(low, high, 57)
    flags = [pays(float(T)) for T in grid]
    if not any(flags):
        return None
    k = flags.index(True)
    if k == 0:
        return float(grid[0])
    a, b = math.log(grid[k - 1]), math.log(grid[k])
    for _ in range(40):
        m = 0.5 * (a + b)
        if pays(math.exp(m)):
            b = m
        else:
            a = m
    return float(math.exp(b))


def break_even_interval(result: FitResult, N: float, level: float = 0.95, max_samples: int = 200,
                        **kw) -> tuple[float, float] | None:
    """Bootstrap interval of :func:`break_even` over at most ``max_samples`` replicates (None
    without meaningful replicates); replicates where splitting never pays count as +inf."""
    boot = result.boot
    if boot is None or not boot.meaningful or not boot.param_samples:
        return None
    vals = [break_even(result, N, params=p, **kw) for p in boot.param_samples[:max_samples]]
    return percentile_interval(np.array([np.inf if v is None else v for v in vals]), level)
