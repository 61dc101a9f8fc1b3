"""Fit a :class:`~.laws.Law` to data.

Default objective: Huber loss (``delta`` 1e-3) on log residuals ``log(prediction) - log(y)``,
minimised with bounded L-BFGS-B. The objective is evaluated at every point of a starting grid at
once (vectorised; the grid spans each bounded parameter's whole range, see ``Law.grid``), and
L-BFGS-B runs from the best few grid points; positive scale parameters (``A``, ``B``...) are
optimised as logarithms. Points tied with the optimum (objective within ``TIE_RTOL``) but far
from it in some parameter make that parameter *undetermined*: a warning with the tied range. ``loss="ls"`` instead minimises plain squared
residuals with ``scipy.optimize.least_squares`` (what ``curve_fit`` with bounds does), to compare
with published fits. Quality: R^2 on the loss scale and an extrapolation check (fit without the
largest x, predict it). Intervals: :mod:`.bootstrap`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .errors import AnalysisError
from .laws import Law, get_law
from .threads import single_blas_thread

HUBER_DELTA = 1e-3
"""Default Huber threshold on log residuals (Hoffmann et al.; Besiroglu et al.)."""

TIE_RTOL = 1e-3
"""Objectives within this fraction of the best one count as tied (see :func:`undetermined`)."""

TIE_FACTOR = 1.5
"""Tied parameter values further apart than this factor leave the parameter undetermined."""


def _as_inputs(law: Law, X) -> tuple[np.ndarray, ...]:
    """Normalise inputs to a tuple of float arrays in the law's input order."""
    if isinstance(X, Mapping):
        missing = [k for k in law.inputs if k not in X]
        if missing:
            raise AnalysisError(f"law {law.name!r} needs inputs {law.inputs}; missing {missing}")
        X = [X[k] for k in law.inputs]
    elif isinstance(X, np.ndarray) and X.ndim == 1:
        X = [X]
    X = [np.asarray(x, dtype=float).reshape(-1) for x in X]
    if len(X) != len(law.inputs):
        raise AnalysisError(f"law {law.name!r} takes {len(law.inputs)} input(s) {law.inputs}, got {len(X)}")
    return tuple(X)


class Problem:
    """A law, data and objective settings; objective and gradient in the optimiser's coordinates.

    Optimiser coordinates ``phi``: free parameters, with ``log_scale`` ones as logarithms.
    """

    def __init__(self, law: Law, X: tuple[np.ndarray, ...], y: np.ndarray, loss: str = "huber",
                 delta: float = HUBER_DELTA, fixed: Mapping[str, float] | None = None):
        """Bind ``law`` to inputs ``X`` and targets ``y`` (already validated)."""
        self.law, self.y = law, np.asarray(y, dtype=float)
        self.loss, self.delta = loss, float(delta)
        self.fixed = {k: float(v) for k, v in (fixed or {}).items()}
        # Conditioning (see Law.input_scaling): inputs divided by their geometric mean.
        self.scaling: dict[str, tuple[float, str]] = {}
        self.X_orig = tuple(X)
        X = list(X)
        for coef, (inp, expo) in law.input_scaling.items():
            i = law.inputs.index(inp)
            if coef in self.fixed or expo in self.fixed or not np.all(X[i] > 0):
                continue
            x0 = float(np.exp(np.mean(np.log(X[i]))))
            X[i] = X[i] / x0
            self.scaling[coef] = (x0, expo)
        self.X = tuple(X)
        self.free = [p for p in law.params if p not in self.fixed]
        self.is_log = np.array([p in law.log_scale for p in self.free], dtype=bool)
        lo, hi = [], []
        for p, lg in zip(self.free, self.is_log):
            a, b = law.bound(p)
            if lg:
                lo.append(math.log(a) if a > 0 else -np.inf)
                hi.append(math.log(b) if np.isfinite(b) and b > 0 else np.inf)
            else:
                lo.append(a)
                hi.append(b)
        self.lo, self.hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
        self.log_y = np.log(self.y) if loss == "huber" else None
        self._base = [self.fixed.get(p, 0.0) for p in law.params]
        self._slots = [law.params.index(p) for p in self.free]
        self._log_idx = np.flatnonzero(self.is_log)

    # -- coordinates
    def theta(self, phi: np.ndarray) -> np.ndarray:
        """Free parameter values from optimiser coordinates."""
        return np.where(self.is_log, np.exp(np.clip(phi, -700, 700)), phi)

    def params(self, phi: np.ndarray) -> dict[str, float]:
        """Full parameter dict in the original units (fixed ones included) from optimiser
        coordinates."""
        out = dict(self.fixed)
        out.update(zip(self.free, (float(v) for v in self.theta(phi))))
        for coef, (x0, expo) in self.scaling.items():
            out[coef] = out[coef] * x0 ** out[expo]
        return {p: out[p] for p in self.law.params}

    def phi(self, params: Mapping[str, float]) -> np.ndarray:
        """Optimiser coordinates of a parameter dict (original units), clipped into the bounds."""
        params = dict(params)
        for coef, (x0, expo) in self.scaling.items():
            params[coef] = float(params[coef]) * x0 ** (-float(params[expo]))
        v = []
        for p, lg in zip(self.free, self.is_log):
            x = float(params[p])
            v.append(math.log(max(x, 1e-300)) if lg else x)
        return np.clip(np.array(v), self.lo, self.hi)

    def phi_many(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """:meth:`phi` of many parameter dicts at once (rows of the result)."""
        if not rows:
            return np.zeros((0, len(self.free)))
        cols = {p: np.array([float(r[p]) for r in rows]) for p in self.free}
        for coef, (x0, expo) in self.scaling.items():
            cols[coef] = cols[coef] * x0 ** (-cols[expo])
        v = np.column_stack([cols[p] for p in self.free])
        v[:, self.is_log] = np.log(np.maximum(v[:, self.is_log], 1e-300))
        return np.clip(v, self.lo, self.hi)

    def _args(self, theta: np.ndarray) -> list:
        args = list(self._base)
        for slot, v in zip(self._slots, theta.tolist()):
            args[slot] = v
        return args

    def predict(self, phi: np.ndarray) -> np.ndarray:
        """Predictions at the data's inputs."""
        out = self.law.func(*self.X, *self._args(self.theta(phi)))
        return out if isinstance(out, np.ndarray) and out.shape == self.y.shape else np.broadcast_to(
            np.asarray(out, dtype=float), self.y.shape)

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """d prediction / d phi, shape (n, n_free): analytic when the law has one, else central
        differences."""
        theta = self.theta(phi)
        n = self.y.size
        if self.law.jacobian is not None:
            cols = self.law.jacobian(*self.X, *self._args(theta))
            J = np.empty((n, len(self.free)))
            for k, slot in enumerate(self._slots):
                J[:, k] = cols[slot]
            if self._log_idx.size:
                J[:, self._log_idx] *= theta[self._log_idx]
            return J
        J = np.empty((n, len(self.free)))
        for k in range(len(self.free)):
            h = 1e-6 * max(1.0, abs(phi[k]))
            up, dn = phi.copy(), phi.copy()
            up[k] += h
            dn[k] -= h
            J[:, k] = (self.predict(up) - self.predict(dn)) / (2 * h)
        return J

    # -- objective
    def value_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient (for L-BFGS-B); call under ``np.errstate(all="ignore")``.

        Written for speed on tiny problems (it runs ~10^5 times per bootstrap): few numpy calls.
        """
        theta = phi.tolist()
        for i in self._log_idx.tolist():
            theta[i] = math.exp(min(theta[i], 700.0))
        args = list(self._base)
        for slot, v in zip(self._slots, theta):
            args[slot] = v
        pred = self.law.func(*self.X, *args)
        if not isinstance(pred, np.ndarray) or pred.shape != self.y.shape:
            pred = np.broadcast_to(np.asarray(pred, dtype=float), self.y.shape)
        if self.loss == "huber":
            if not pred.min() > 0:  # also catches NaN
                return self._value_grad_guarded(phi, pred)
            r = np.log(pred) - self.log_y
            d = self.delta
            amax = float(np.abs(r).max())
            if amax <= d:
                value = 0.5 * float(r @ r) / (d * d)
                w = r / (d * d * pred)
            else:
                a = np.abs(r)
                value = float(np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d)).sum()) / (d * d)
                w = np.clip(r, -d, d) / (d * d * pred)
        else:
            r = pred - self.y
            value = 0.5 * float(r @ r)
            w = r
        if self.law.jacobian is not None:
            cols = self.law.jacobian(*self.X, *args)
            grad = np.empty(len(self._slots))
            for k, slot in enumerate(self._slots):
                c = cols[slot]
                grad[k] = float(w @ c) if isinstance(c, np.ndarray) and c.shape == w.shape else float(w.sum() * c)
                if self.is_log[k]:
                    grad[k] *= theta[k]
        else:
            grad = w @ self.jacobian(phi)
        if not math.isfinite(value) or not np.isfinite(grad).all():
            return 1e30, np.zeros_like(phi)
        return value, grad

    def _value_grad_guarded(self, phi, pred):
        """Huber objective when some predictions are not positive: they get a large linear penalty."""
        if not np.isfinite(pred).all():
            return 1e30, np.zeros_like(phi)
        safe = np.maximum(pred, 1e-300)
        r = np.log(safe) - self.log_y
        d = self.delta
        a = np.abs(r)
        value = float(np.sum(np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d)))) / (d * d)
        grad = (np.clip(r, -d, d) / (d * d) * (pred > 0) / safe) @ self.jacobian(phi)
        if not np.isfinite(value) or not np.isfinite(grad).all():
            return 1e30, np.zeros_like(phi)
        return value, grad

    def values_many(self, phis: np.ndarray) -> np.ndarray:
        """Objective at many coordinate vectors (rows), vectorised when the law broadcasts; in
        chunks of about 2^20 predictions so a large grid on many points stays small in memory."""
        rows = max(1, (1 << 20) // max(1, self.y.size))
        if phis.shape[0] > rows:
            return np.concatenate([self._values_chunk(phis[i:i + rows]) for i in range(0, phis.shape[0], rows)])
        return self._values_chunk(phis)

    def _values_chunk(self, phis: np.ndarray) -> np.ndarray:
        thetas = np.where(self.is_log[None, :], np.exp(np.clip(phis, -700, 700)), phis)
        k = phis.shape[0]
        cols = {p: thetas[:, i][:, None] for i, p in enumerate(self.free)}
        args = [cols.get(p, self.fixed.get(p)) for p in self.law.params]
        pred = None
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(self.law.func(*(x[None, :] for x in self.X), *args), dtype=float)
            if out.shape == (k, self.y.size):
                pred = out
        except Exception:  # a law that does not broadcast: evaluate one start at a time
            pred = None
        if pred is None:
            with np.errstate(all="ignore"):
                return np.array([self.value_grad(p)[0] for p in phis])
        with np.errstate(all="ignore"):
            if self.loss == "huber":
                r = np.log(np.maximum(pred, 1e-300)) - self.log_y[None, :]
                a = np.abs(r)
                d = self.delta
                v = np.sum(np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d)), axis=1) / (d * d)
            else:
                v = 0.5 * np.sum((pred - self.y[None, :]) ** 2, axis=1)
        return np.where(np.isfinite(v) & np.all(np.isfinite(pred), axis=1), v, np.inf)

    # -- solvers
    def solve(self, starts: Sequence[Mapping[str, float]], maxiter: int = 2000):
        """Best local optimum over the given starts: (phi, objective, success, message)."""
        return min(self.solve_all(starts, maxiter), key=lambda c: c[1])

    def solve_all(self, starts: Sequence[Mapping[str, float]], maxiter: int = 2000) -> list[tuple]:
        """The local optimum reached from each start, in order: (phi, objective, success, message)."""
        from scipy.optimize import least_squares, minimize

        if not self.free:  # everything fixed: evaluate only
            phi = np.zeros(0)
            with np.errstate(all="ignore"):
                return [(phi, self.value_grad(phi)[0], True, "all parameters fixed")]
        with single_blas_thread(), np.errstate(all="ignore"):
            return [self._local(self.phi(s), maxiter, least_squares, minimize) for s in starts]

    def _local(self, phi0, maxiter, least_squares, minimize):
        if self.loss != "huber":
            return self._solve_ls(phi0, least_squares)
        bounds = list(zip(np.where(np.isfinite(self.lo), self.lo, None), np.where(np.isfinite(self.hi), self.hi, None)))
        res = minimize(self.value_grad, phi0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": maxiter, "ftol": 1e-14, "gtol": 1e-10})
        success, message = bool(res.success), str(res.message)
        if not success and "ABNORMAL" in message and self._stationary(res.x, res.jac, float(res.fun)):
            success, message = True, "converged (line search stopped at machine precision)"
        return res.x, float(res.fun), success, message

    def _stationary(self, phi: np.ndarray, grad: np.ndarray, value: float, tol: float = 1e-3) -> bool:
        """Projected gradient small: components pushing against an active bound do not count.

        The objective is scaled by 1/delta^2, so its curvature is large (~n / delta^2): a gradient
        of 1e-3 relative to the objective means a parameter distance far below any reported digit.
        """
        g = np.asarray(grad, dtype=float).copy()
        g[(phi <= self.lo) & (g > 0)] = 0.0
        g[(phi >= self.hi) & (g < 0)] = 0.0
        return bool(np.all(np.isfinite(g)) and np.max(np.abs(g), initial=0.0) <= tol * max(1.0, abs(value)))

    def _solve_ls(self, phi0, least_squares):
        """Plain least squares in natural coordinates (like ``curve_fit`` with bounds: 'trf')."""
        lo = np.where(self.is_log, np.exp(self.lo), self.lo)
        hi = np.where(self.is_log, np.exp(self.hi), self.hi)
        theta0 = self.theta(phi0)
        # 'trf' needs a strictly interior start
        eps = 1e-9 * np.maximum(1.0, np.abs(theta0))
        theta0 = np.maximum(theta0, np.where(np.isfinite(lo), lo + eps, -np.inf))
        theta0 = np.minimum(theta0, np.where(np.isfinite(hi), hi - eps, np.inf))

        def resid(theta):
            with np.errstate(all="ignore"):
                r = np.asarray(self.law.func(*self.X, *self._args(theta)), dtype=float) - self.y
            return np.where(np.isfinite(r), r, 1e10)

        def jac(theta):
            phi = np.where(self.is_log, np.log(np.maximum(theta, 1e-300)), theta)
            return self.jacobian(phi) / np.where(self.is_log, np.maximum(theta, 1e-300), 1.0)

        res = least_squares(resid, theta0, jac=jac if self.law.jacobian is not None else "2-point",
                            bounds=(lo, hi), method="trf")
        phi = np.where(self.is_log, np.log(np.maximum(res.x, 1e-300)), res.x)
        return phi, float(0.5 * res.fun @ res.fun), bool(res.success), str(res.message)


@dataclass
class FitResult:
    """A fitted law."""

    law: Law
    """The form fitted."""
    params: dict[str, float]
    """Best-fit parameter values (fixed ones included)."""
    X: tuple[np.ndarray, ...]
    """Inputs used (non-finite rows removed)."""
    y: np.ndarray
    """Targets used."""
    loss: str = "huber"
    """Objective: 'huber' (on log residuals) or 'ls' (squared residuals)."""
    delta: float = HUBER_DELTA
    """Huber threshold."""
    fixed: dict[str, float] = field(default_factory=dict)
    """Parameters held fixed."""
    objective: float = float("nan")
    """Objective value at the optimum."""
    r2: float = float("nan")
    """Coefficient of determination on the loss scale."""
    rmse: float = float("nan")
    """Root-mean-square residual on the loss scale."""
    success: bool = True
    """Whether the optimiser reported convergence."""
    message: str = ""
    """Optimiser message."""
    n_starts: int = 0
    """Grid points evaluated for starting values."""
    warnings: list[str] = field(default_factory=list)
    """Caveats (dropped rows, exactly determined, parameters at bounds, undetermined...)."""
    tie_rtol: float = TIE_RTOL
    """Relative objective gap under which other evaluated points count as tied with the optimum."""
    undetermined: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Free parameters the data leave undetermined: (lowest, highest) value among tied points."""
    boot: object | None = None
    """:class:`.bootstrap.Bootstrap` once intervals were computed."""
    extrapolation: dict | None = None
    """Result of :func:`extrapolation_check`, when run."""

    @property
    def n(self) -> int:
        """Number of data points."""
        return int(self.y.size)

    @property
    def n_free(self) -> int:
        """Number of fitted (non-fixed) parameters."""
        return len(self.law.params) - len(self.fixed)

    @property
    def exactly_determined(self) -> bool:
        """As many points as free parameters (or fewer): intervals and R^2 mean nothing."""
        return self.n <= self.n_free

    @property
    def asymptote(self) -> float | None:
        """Value of the law's asymptote parameter, if it has one."""
        return self.params.get(self.law.asymptote) if self.law.asymptote else None

    def predict(self, *X) -> np.ndarray:
        """Prediction at new inputs (one array per law input, or one dict)."""
        if len(X) == 1 and isinstance(X[0], Mapping):
            X = _as_inputs(self.law, X[0])
        return self.law.predict([np.asarray(x, dtype=float) for x in X], self.params)

    def interval(self, name: str) -> tuple[float, float] | None:
        """Bootstrap interval of a parameter or derived quantity, if computed and meaningful."""
        if self.boot is None or not self.boot.meaningful:
            return None
        return self.boot.intervals.get(name)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        out = {
            "law": self.law.name, "formula": self.law.formula, "inputs": list(self.law.inputs),
            "params": self.params, "fixed": sorted(self.fixed), "loss": self.loss,
            "delta": self.delta if self.loss == "huber" else None, "n_points": self.n, "n_free": self.n_free,
            "objective": self.objective, "r2": self.r2, "rmse": self.rmse, "success": self.success,
            "message": self.message, "exactly_determined": self.exactly_determined,
            "asymptote": self.asymptote, "warnings": list(self.warnings), "tie_rtol": self.tie_rtol,
            "undetermined": {k: list(v) for k, v in self.undetermined.items()},
        }
        if self.boot is not None:
            out["bootstrap"] = self.boot.to_dict()
        if self.extrapolation is not None:
            out["extrapolation"] = self.extrapolation
        return _jsonable(out)


def _jsonable(obj):
    """Replace non-finite floats by None and numpy scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def prepare(law: Law | str, X, y, loss: str = "huber", fixed: Mapping[str, float] | None = None):
    """Validate and clean data for a fit: (law, X, y, warnings). Raises :class:`AnalysisError`."""
    law = get_law(law)
    if loss not in ("huber", "ls"):
        raise AnalysisError(f"unknown loss {loss!r}; use 'huber' or 'ls'")
    unknown = set(fixed or {}) - set(law.params)
    if unknown:
        raise AnalysisError(f"cannot fix {sorted(unknown)}: law {law.name!r} has parameters {law.params}")
    X = _as_inputs(law, X)
    y = np.asarray(y, dtype=float).reshape(-1)
    if any(x.size != y.size for x in X):
        raise AnalysisError(f"inputs and targets differ in length: {[x.size for x in X]} vs {y.size}")
    notes = []
    ok = np.isfinite(y)
    for x in X:
        ok &= np.isfinite(x)
    if not ok.all():
        notes.append(f"dropped {int((~ok).sum())} of {y.size} points with non-finite values")
        X = tuple(x[ok] for x in X)
        y = y[ok]
    if loss == "huber" and np.any(y <= 0):
        raise AnalysisError(
            f"the Huber objective works on log residuals and needs positive targets; "
            f"{int(np.sum(y <= 0))} value(s) are <= 0 (use loss='ls' for such data)")
    n_free = len(law.params) - len(fixed or {})
    if y.size < n_free:
        raise AnalysisError(
            f"too few points for the {law.name!r} law: it has {n_free} free parameter(s) "
            f"({', '.join(p for p in law.params if p not in (fixed or {}))}) but only {y.size} "
            f"finite point(s) were given; need at least {n_free}")
    if y.size == n_free:
        notes.append(f"exactly determined: {y.size} points for {n_free} parameters; R^2 and intervals are "
                     "not meaningful")
    return law, X, y, notes


def fit(law: Law | str, X, y, loss: str = "huber", delta: float = HUBER_DELTA,
        fixed: Mapping[str, float] | None = None, starts: Sequence[Mapping[str, float]] | None = None,
        n_local: int = 6, grid_limit: int = 4096, tie_rtol: float = TIE_RTOL,
        tie_factor: float = TIE_FACTOR) -> FitResult:
    """Fit ``law`` to inputs ``X`` (array, tuple of arrays, or {input: array}) and targets ``y``.

    The starting grid (``law.grid``: the law's values plus values covering each bounded range,
    plus any ``starts`` given) is evaluated at once; local optimisation runs from the ``n_local``
    best grid points (and from every explicit start). Every evaluated point whose objective is
    within ``tie_rtol`` of the best then tests whether the data determine each parameter
    (:func:`undetermined`).
    """
    law, X, y, notes = prepare(law, X, y, loss, fixed)
    problem = Problem(law, X, y, loss, delta, fixed)
    grid = law.grid(X, y, fixed, limit=grid_limit) if problem.free else []
    chosen = list(starts or []) or ([dict(problem.fixed)] if not problem.free else [])
    phis, vals = np.zeros((0, len(problem.free))), np.zeros(0)
    if grid:
        phis = problem.phi_many(grid)
        vals = problem.values_many(phis)
        order = np.argsort(vals, kind="stable")[:n_local]
        chosen += [grid[i] for i in order if np.isfinite(vals[i])] or [grid[int(order[0])]]
    optima = problem.solve_all(chosen)
    phi, obj, success, message = min(optima, key=lambda c: c[1])
    out = _result(problem, phi, obj, success, message, notes, len(grid))
    if problem.free:
        found = optima + _probe_extremes(problem, phis, vals, tie_rtol, tie_factor)
        points = np.vstack([phis] + [o[0][None, :] for o in found])
        values = np.concatenate([vals, [o[1] for o in found]])
        _flag_undetermined(out, problem, points, values, tie_rtol, tie_factor)
    return out


def _probe_extremes(problem: Problem, phis: np.ndarray, vals: np.ndarray, rtol: float, factor: float) -> list[tuple]:
    """Local optima with one parameter held at the lowest or highest value it takes among the
    grid points tied with the best grid point, for parameters whose tied grid values lie far
    apart: grid points are unpolished, so a parameter the data ignore would otherwise look
    determined wherever the polished optimum beats every grid point. Returns (phi, objective)
    pairs in ``problem``'s coordinates."""
    ok = np.isfinite(vals)
    if not ok.any():
        return []
    best = float(vals[ok].min())
    near = phis[ok & (vals <= best + rtol * abs(best))]
    if len(near) < 2:
        return []
    rows = [problem.params(p) for p in near]
    out = []
    for name in problem.free:
        v = np.array([r[name] for r in rows])
        if not _far_apart(v, factor):
            continue
        for i in {int(v.argmin()), int(v.argmax())}:
            sub = Problem(problem.law, problem.X_orig, problem.y, problem.loss, problem.delta,
                          {**problem.fixed, name: float(v[i])})
            phi, obj, _, _ = sub.solve([rows[i]])
            out.append((problem.phi(sub.params(phi)), obj))
    return out


def undetermined(problem: Problem, points: np.ndarray, values: np.ndarray, best: float,
                 rtol: float = TIE_RTOL, factor: float = TIE_FACTOR) -> dict[str, tuple[float, float]]:
    """Free parameters whose values among the tied points (objective <= best * (1 + rtol);
    ``points`` in optimiser coordinates) lie further apart than ``factor``: {name: (low, high)}.

    Every tied point was evaluated, so each reported value is attained within the tolerance;
    the true range can only be wider.
    """
    tied = points[np.isfinite(values) & (values <= best + rtol * abs(best))]
    if len(tied) < 2:
        return {}
    table = [problem.params(p) for p in tied]
    out = {}
    for name in problem.free:
        v = np.array([row[name] for row in table])
        if _far_apart(v, factor):
            out[name] = (float(v.min()), float(v.max()))
    return out


def _far_apart(v: np.ndarray, factor: float) -> bool:
    """Positive values: a ratio above ``factor``; otherwise a spread above (factor - 1) times
    the largest magnitude (the same idea for parameters that may be zero or negative)."""
    lo, hi = float(v.min()), float(v.max())
    if lo > 0:
        return hi > factor * lo
    scale = float(np.max(np.abs(v)))
    return hi - lo > max((factor - 1.0) * scale, 1e-12)


def _flag_undetermined(out: FitResult, problem: Problem, points, values, rtol: float, factor: float) -> None:
    """Record undetermined parameters on ``out`` with one warning each."""
    out.tie_rtol = float(rtol)
    out.undetermined = undetermined(problem, points, values, out.objective, rtol, factor)
    for name, (lo, hi) in out.undetermined.items():
        out.warnings.append(
            f"{name} is not determined by these data: values from {lo:.4g} to {hi:.4g} fit within "
            f"{100 * rtol:g}% of the best objective (best fit {out.params[name]:.4g}); quote that range, "
            "not the single value")


def _result(problem: Problem, phi, obj, success, message, notes, n_starts) -> FitResult:
    """Assemble a :class:`FitResult` with quality measures and bound warnings."""
    law, X, y = problem.law, problem.X_orig, problem.y
    params = problem.params(phi)
    with np.errstate(all="ignore"):
        pred = problem.predict(phi)
    if not np.all(np.isfinite(pred)):
        bad = [f"{name} in [{np.min(x):.3g}, {np.max(x):.3g}]" for name, x in zip(law.inputs, X)]
        raise AnalysisError(f"the {law.name!r} law gives non-finite predictions for these inputs ({'; '.join(bad)}); "
                            "check for zero or negative values where the law divides or takes powers")
    resid = y - pred
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else float("nan")
    out = FitResult(law=law, params=params, X=X, y=y, loss=problem.loss, delta=problem.delta,
                    fixed=dict(problem.fixed), objective=obj, r2=r2, rmse=float(np.sqrt(np.mean(resid**2))),
                    success=success, message=message, n_starts=n_starts, warnings=list(notes))
    for p in problem.free:
        lo, hi = law.bound(p)
        v = params[p]
        tol = 1e-6 * max(1.0, abs(v))
        if np.isfinite(lo) and abs(v - lo) <= tol and lo != 0 or np.isfinite(hi) and abs(v - hi) <= tol:
            out.warnings.append(f"{p} = {v:.4g} is at its bound [{lo:g}, {hi:g}]")
        elif lo == 0 and abs(v) <= 1e-9:
            out.warnings.append(f"{p} is at its lower bound 0")
    if not success:
        out.warnings.append(f"optimiser did not report convergence: {message}")
    if out.exactly_determined and np.max(np.abs(resid) / np.abs(y)) > 1e-6:
        out.warnings.append(
            f"the law cannot pass through these {out.n} points within its bounds (largest residual "
            f"{np.max(np.abs(resid)):.3g}): the data do not follow its shape (e.g. loss not decreasing with x)")
    return out


def refit(result: FitResult, X, y, starts: Sequence[Mapping[str, float]], n_local: int = 1,
          grid_phis: np.ndarray | None = None) -> tuple[dict[str, float], float] | None:
    """Refit the same law and settings to new data (used by the bootstrap).

    Local optimisation runs from ``starts`` (normally the full-data optimum). ``grid_phis`` are
    extra candidates in optimiser coordinates (see :func:`start_pool`): the ``n_local`` best of
    them on the new data are also optimised from, when they already beat that first optimum or
    it failed. Returns (params, objective) or None when nothing finite was found.
    """
    problem = Problem(result.law, X, y, result.loss, result.delta, result.fixed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = problem.solve(list(starts)) if starts else None
        if grid_phis is not None and len(grid_phis):
            vals = problem.values_many(grid_phis)
            for i in np.argsort(vals, kind="stable")[:n_local]:
                if np.isfinite(vals[i]) and (best is None or not best[2] or vals[i] < best[1]):
                    cand = problem.solve([problem.params(grid_phis[i])])
                    if best is None or cand[1] < best[1]:
                        best = cand
    if best is None or not np.isfinite(best[1]) or best[1] >= 1e29:
        return None
    return problem.params(best[0]), best[1]


def start_pool(result: FitResult, size: int = 64) -> np.ndarray:
    """The ``size`` best starting-grid points on the full data, in optimiser coordinates: a
    cheap, diverse pool of starts for refits of resampled data."""
    problem = Problem(result.law, result.X, result.y, result.loss, result.delta, result.fixed)
    grid = result.law.grid(result.X, result.y, result.fixed)
    if not grid:
        return np.zeros((0, len(problem.free)))
    phis = problem.phi_many(grid)
    vals = problem.values_many(phis)
    return phis[np.argsort(vals, kind="stable")[:size]]


def extrapolation_check(result: FitResult, input: str | None = None, label: str | None = None) -> dict:
    """Refit without the points at the largest value of ``input`` (default: the law's first
    input) and predict them. Returns a dict (``ok`` False with a ``reason`` when impossible);
    ``label`` names the input in messages (e.g. the table column)."""
    law = result.law
    name = input or law.inputs[0]
    label = label or name
    if name not in law.inputs:
        raise AnalysisError(f"law {law.name!r} has no input {name!r}")
    x = result.X[law.inputs.index(name)]
    top = float(np.max(x))
    hold = x == top
    train = ~hold
    n_train = int(train.sum())
    out = {"input": name, "held_out": top, "n_train": n_train, "n_held_out": int(hold.sum())}
    if n_train < result.n_free:
        out.update(ok=False, reason=f"only {n_train} point(s) below the largest {label}; "
                                    f"{result.n_free} are needed to refit")
        result.extrapolation = _jsonable(out)
        return result.extrapolation
    # Starting values come from the grid only: nothing from the held-out points leaks in.
    sub = fit(law, tuple(v[train] for v in result.X), result.y[train], loss=result.loss, delta=result.delta,
              fixed=result.fixed)
    pred = sub.predict(*(v[hold] for v in result.X))
    obs = result.y[hold]
    out.update(ok=True, predicted=float(np.mean(pred)), observed=float(np.mean(obs)),
               abs_error=float(np.mean(np.abs(pred - obs))),
               rel_error=float(np.mean(np.abs(pred - obs) / np.abs(obs))),
               exactly_determined=sub.exactly_determined, params=sub.params)
    result.extrapolation = _jsonable(out)
    return result.extrapolation
