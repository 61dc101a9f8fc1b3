"""Bootstrap confidence intervals for fitted parameters and derived quantities.

Each replicate refits the law (same objective, bounds and fixed parameters) to resampled data,
starting from the full-data optimum and from the best point of the starting grid, and evaluates
the derived quantities (asymptote, data efficiency...) on the replicate's parameters. Intervals
are percentile intervals of the replicates.

Resampling: ``cases`` (default) draws points with replacement, redrawing a sample that has
fewer distinct points than free parameters; ``residuals`` keeps the inputs and adds resampled
leverage-corrected residuals (on the log scale for the Huber objective) to the fitted curve,
which keeps the design of small grids intact. With as many points as parameters, no interval is computed: the fit
is exactly determined (it interpolates when it can) and any spread would be an artefact (:attr:`Bootstrap.meaningful` is False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import AnalysisError
from .fit import FitResult, Problem, _jsonable, refit, start_pool
from .threads import single_blas_thread

Derived = Mapping[str, Callable[[dict], float]]


@dataclass
class Bootstrap:
    """Replicates and intervals."""

    names: list[str]
    """Column names of ``samples``: free parameters, then derived quantities."""
    samples: np.ndarray
    """One row per successful replicate."""
    level: float = 0.95
    """Confidence level of ``intervals``."""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Percentile interval per name."""
    n_requested: int = 0
    """Replicates asked for."""
    n_failed: int = 0
    """Replicates whose refit failed or whose resample was degenerate."""
    method: str = "cases"
    """Resampling scheme."""
    seed: int = 0
    """Random seed."""
    meaningful: bool = True
    """False when intervals cannot mean anything (exactly determined fits)."""
    note: str | None = None
    """Why intervals are missing or doubtful."""
    param_samples: list[dict] = field(default_factory=list, repr=False)
    """Full parameter dict of every successful replicate (for prediction bands)."""

    def to_dict(self) -> dict:
        """JSON-ready summary (no samples)."""
        return _jsonable({
            "level": self.level, "method": self.method, "n_requested": self.n_requested,
            "n_ok": int(self.samples.shape[0]), "n_failed": self.n_failed, "seed": self.seed,
            "meaningful": self.meaningful, "note": self.note,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
        })

    def column(self, name: str) -> np.ndarray:
        """Replicate values of one parameter or derived quantity."""
        return self.samples[:, self.names.index(name)]

    def band(self, law, X, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the law's prediction at inputs ``X`` (one array per input)."""
        level = self.level if level is None else level
        if not self.param_samples:
            nan = np.full(np.broadcast(*X).shape, np.nan)
            return nan, nan.copy()
        preds = np.array([law.predict(X, p) for p in self.param_samples])
        q = 100 * (1 - level) / 2
        return np.nanpercentile(preds, q, axis=0), np.nanpercentile(preds, 100 - q, axis=0)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of finite-or-infinite values (NaN ignored)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (float("nan"), float("nan"))
    q = 100 * (1 - level) / 2
    if np.isfinite(v).all():
        lo, hi = np.percentile(v, [q, 100 - q])
    else:
        # Infinite replicates (a loss the baseline never reaches) are legitimate: take order
        # statistics (no interpolation, so no inf - inf), rounding the interval outwards.
        lo = np.percentile(v, q, method="lower")
        hi = np.percentile(v, 100 - q, method="higher")
    return (float(lo), float(hi))


def bc_interval(values: np.ndarray, estimate: float, level: float = 0.95) -> tuple[float, float]:
    """Bias-corrected percentile interval (Efron): percentiles shifted by how far the estimate
    sits from the replicates' median, which matters for skewed, biased estimators such as a
    power law's asymptote."""
    from statistics import NormalDist

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0 or not math.isfinite(estimate):
        return (float("nan"), float("nan"))
    p = (np.sum(v < estimate) + 0.5 * np.sum(v == estimate)) / v.size
    p = min(max(p, 0.5 / v.size), 1 - 0.5 / v.size)
    nd = NormalDist()
    z0 = nd.inv_cdf(p)
    z = nd.inv_cdf(1 - (1 - level) / 2)
    lo_q, hi_q = nd.cdf(2 * z0 - z), nd.cdf(2 * z0 + z)
    lo = np.percentile(v, 100 * lo_q, method="lower" if not np.isfinite(v).all() else "linear")
    hi = np.percentile(v, 100 * hi_q, method="higher" if not np.isfinite(v).all() else "linear")
    return (float(lo), float(hi))


def default_derived(result: FitResult) -> dict[str, Callable[[dict], float]]:
    """The derived quantities every fit reports: its asymptote, when the law has one."""
    if result.law.asymptote:
        name = result.law.asymptote
        return {"asymptote": lambda p, name=name: p[name]}
    return {}


def modified_residuals(result: FitResult) -> np.ndarray:
    """Residuals for resampling: on the log scale for the Huber objective, divided by
    sqrt(1 - leverage) and centred (Davison & Hinkley, 1997), because raw residuals of a fit
    are smaller than the noise, most of all at high-leverage points and with few points."""
    pred = result.predict(*result.X)
    huber = result.loss == "huber"
    r = (np.log(result.y) - np.log(pred)) if huber else (result.y - pred)
    problem = Problem(result.law, result.X, result.y, result.loss, result.delta, result.fixed)
    if problem.free:
        J = problem.jacobian(problem.phi(result.params))
        if huber:
            J = J / pred[:, None]
        h = np.einsum("ij,ji->i", J, np.linalg.pinv(J))  # diagonal of the hat matrix
        r = r / np.sqrt(np.clip(1.0 - h, 1e-6, 1.0))
    return r - r.mean()


def bootstrap(result: FitResult, n: int = 1000, level: float = 0.95, seed: int = 0,
              derived: Derived | None = None, method: str = "cases", progress: bool = False) -> Bootstrap:
    """Bootstrap ``result``; stores and returns the :class:`Bootstrap` (``result.boot``)."""
    if method not in ("cases", "residuals"):
        raise AnalysisError(f"unknown bootstrap method {method!r}; use 'cases' or 'residuals'")
    derived = {**default_derived(result), **(derived or {})}
    free = [p for p in result.law.params if p not in result.fixed]
    names = free + [d for d in derived if d not in free]
    boot = Bootstrap(names=names, samples=np.zeros((0, len(names))), level=level, n_requested=n,
                     method=method, seed=seed)
    if result.exactly_determined:
        boot.meaningful = False
        boot.note = (f"{result.n} points for {result.n_free} parameters: exactly determined, so no "
                     "confidence interval is meaningful; add points (model sizes) for intervals")
        boot.intervals = {k: (float("nan"), float("nan")) for k in names}
        result.boot = boot
        return boot
    rng = np.random.default_rng(seed)
    X, y = result.X, result.y
    pool = start_pool(result)
    pred = result.predict(*X)
    resid = modified_residuals(result) if method == "residuals" else None
    keys = np.stack(X, axis=1)
    rows, full = [], []
    failed = 0
    bar = _bar(n, progress)
    with single_blas_thread():
        for _ in range(n):
            if bar is not None:
                bar.update(1)
            if method == "cases":
                idx = None
                for _attempt in range(50):
                    cand = rng.integers(0, y.size, y.size)
                    if np.unique(keys[cand], axis=0).shape[0] >= result.n_free:
                        idx = cand
                        break
                if idx is None:
                    failed += 1
                    continue
                Xb = tuple(x[idx] for x in X)
                yb = y[idx]
            else:
                e = resid[rng.integers(0, y.size, y.size)]
                Xb = X
                yb = pred * np.exp(e) if result.loss == "huber" else pred + e
            out = refit(result, Xb, yb, starts=[result.params], grid_phis=pool)
            if out is None:
                failed += 1
                continue
            params = out[0]
            vals = [params[p] for p in free]
            for d, fn in derived.items():
                if d in free:
                    continue
                try:
                    vals.append(float(fn(params)))
                except (ArithmeticError, ValueError):
                    vals.append(float("nan"))
            rows.append(vals)
            full.append(params)
    if bar is not None:
        bar.close()
    boot.samples = np.array(rows, dtype=float).reshape(-1, len(names))
    boot.param_samples = full
    boot.n_failed = failed
    boot.intervals = {name: percentile_interval(boot.samples[:, i], level) for i, name in enumerate(names)}
    if boot.samples.shape[0] < max(20, n // 2):
        boot.meaningful = boot.samples.shape[0] >= 20
        boot.note = f"only {boot.samples.shape[0]} of {n} replicates succeeded"
    elif result.n <= result.n_free + 2:
        boot.note = (f"{result.n} points for {result.n_free} parameters: intervals are rough "
                     "(few degrees of freedom)")
    result.boot = boot
    return boot


def _bar(total: int, enabled: bool):
    """A tqdm counter on stderr, or None."""
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="bootstrap", file=sys.stderr, leave=False)


def interval_contains(interval: tuple[float, float], value: float) -> bool:
    """Whether ``value`` lies in a closed interval (False for NaN bounds)."""
    lo, hi = interval
    return bool(lo <= value <= hi) if not (math.isnan(lo) or math.isnan(hi)) else False
