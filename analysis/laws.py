"""Scaling-law forms and their registry.

A :class:`Law` is a vectorised function of some inputs (``x``; or ``N`` and ``D``...) and named
parameters, with bounds, starting values for the fitter's grid, and the name of its asymptote.
Built-in forms:

- ``power``: ``L = E + A / x^alpha`` (x = N, K or D; E is the asymptote);
- ``reciprocal``: ``L = E + A / x``;
- ``chinchilla``: ``L = E + A / N^alpha + B / D^beta``;
- ``data_constrained``: Chinchilla with Muennighoff et al.'s effective data and parameters under
  repetition (inputs ``N``, ``D`` unique tokens, ``epochs``);

User-defined forms are registered in a few lines with the :func:`law` decorator::

    from asymptote.analysis.laws import law

    @law("split", inputs=("N", "D", "Dp"), bounds={"rho": (0, 1)}, log_scale=("A", "B", "C"))
    def split(N, D, Dp, E, A, alpha, B, beta, C, gamma, rho):
        return E + A / N**alpha + B / (D + rho * Dp) ** beta + C / (1 + Dp / 1e6) ** gamma

The function must broadcast (numpy operations only): the fitter evaluates many parameter vectors
at once by passing parameters of shape (k, 1) and inputs of shape (1, n).
"""

from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import AnalysisError

Starts = Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class Law:
    """A parametric scaling-law form."""

    name: str
    """Registry name (``--law`` on the command line)."""
    inputs: tuple[str, ...]
    """Names of the input variables, in the order ``func`` takes them."""
    params: tuple[str, ...]
    """Names of the parameters, in the order ``func`` takes them after the inputs."""
    func: Callable[..., np.ndarray]
    """``func(*inputs, *params)``: the predicted loss; must broadcast."""
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """(low, high) per parameter; missing ones default to (0, inf)."""
    start: Starts | Callable[[tuple[np.ndarray, ...], np.ndarray], Starts] | None = None
    """Starting values per parameter for the grid (or a function of the data returning them);
    parameters with finite bounds also get values spread over the whole range (:meth:`grid`)."""
    log_scale: frozenset[str] = frozenset()
    """Parameters optimised as logarithms (positive scales spanning orders of magnitude)."""
    asymptote: str | None = None
    """Name of the parameter that is the irreducible loss (the figure of merit), if any."""
    jacobian: Callable[..., list[np.ndarray]] | None = None
    """Optional ``jacobian(*inputs, *params)``: d prediction / d parameter, one array (or scalar,
    broadcast to the inputs) per parameter, for scalar parameters. Finite differences otherwise."""
    formula: str = ""
    """Human-readable formula for reports."""
    input_scaling: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Conditioning hint ``{coefficient: (input, exponent)}`` for terms ``coef * input**-exponent``
    in which that input appears nowhere else: the fitter then works with the input divided by its
    geometric mean (and the matching coefficient), which decorrelates coefficient and exponent.
    Results are reported in the original units."""

    def bound(self, name: str) -> tuple[float, float]:
        """Bounds of a parameter (default (0, inf))."""
        return tuple(self.bounds.get(name, (0.0, np.inf)))

    def predict(self, X: Sequence[np.ndarray], params: Mapping[str, float]) -> np.ndarray:
        """Prediction at inputs ``X`` (one array per input) for a parameter dict."""
        return np.asarray(self.func(*X, *(params[p] for p in self.params)), dtype=float)

    def starts(self, X: tuple[np.ndarray, ...], y: np.ndarray, n_cover: int = 3) -> dict[str, list[float]]:
        """Starting values per parameter for data (X, y): the law's own values plus ``n_cover``
        values spread over each finite bounded range (see :func:`cover`)."""
        return self._with_cover(self._given(X, y), n_cover)

    def _given(self, X, y) -> dict:
        with np.errstate(all="ignore"):  # data-driven guesses may divide by zero on odd inputs
            return dict(self.start(X, y) if callable(self.start) else (self.start or {}))

    def _with_cover(self, given: Mapping, n_cover: int) -> dict[str, list[float]]:
        out = {}
        for p in self.params:
            lo, hi = self.bound(p)
            vals = [float(v) for v in np.atleast_1d(given[p])] if p in given else []
            if np.isfinite(lo) and np.isfinite(hi):
                vals += cover(lo, hi, n_cover, log=p in self.log_scale and lo > 0)
            elif not vals:
                vals = [lo + 0.5, lo + 1.0, lo + 2.0] if np.isfinite(lo) else [0.0, 1.0]
            out[p] = sorted({v for v in vals if np.isfinite(v)})
        return out

    def grid(self, X, y, fixed: Mapping[str, float] | None = None, limit: int = 4096, seed: int = 0) -> list[dict]:
        """Starting grid: the product of :meth:`starts` over free parameters, with as many values
        per bounded range as keep it within ``limit`` points (at least 3 each; a larger product
        is sub-sampled to ``limit`` points with a fixed seed, each value then appearing in about
        ``limit / (values of its parameter)`` of them)."""
        fixed = dict(fixed or {})
        free = [p for p in self.params if p not in fixed]
        given = self._given(X, y)
        values = self._with_cover(given, 3)
        for k in range(MAX_COVER, 3, -1):  # the densest coverage that fits the budget
            trial = self._with_cover(given, k)
            if math.prod(len(trial[p]) for p in free) <= limit:
                values = trial
                break
        axes = [values[p] for p in free]
        return [{**fixed, **dict(zip(free, c))} for c in _product_sample(axes, limit, seed)]


MAX_COVER = 64
"""Most values per bounded parameter in the starting grid (1.2x apart over 5 decades)."""


def cover(lo: float, hi: float, n: int, log: bool = False) -> list[float]:
    """``n`` values at the centres of equal slices of [lo, hi], in log space when ``log``.

    Centres, not ends: a bound is often a degenerate value (an exponent of 0) where the
    optimiser's gradient says nothing useful.
    """
    if n <= 0:
        return []
    t = (np.arange(n) + 0.5) / n
    if log:
        return [float(v) for v in np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo)))]
    return [float(v) for v in lo + t * (hi - lo)]


def _product_sample(axes: list[list[float]], limit: int, seed: int) -> list[tuple[float, ...]]:
    """The product of ``axes`` in itertools order, or ``limit`` points of it drawn without
    replacement (seeded) when larger; drawn by index so the product is never built."""
    sizes = [len(a) for a in axes]
    total = math.prod(sizes)
    if total <= limit:
        return list(itertools.product(*axes))
    rng = np.random.default_rng(seed)
    if total < 2**62:
        pick = np.sort(rng.choice(total, size=limit, replace=False))
        idx = np.unravel_index(pick, sizes)
    else:  # beyond int64: independent draws per axis (a repeat is then negligible)
        idx = [rng.integers(0, s, limit) for s in sizes]
    return [tuple(axes[d][int(i)] for d, i in enumerate(row)) for row in zip(*idx)]


LAWS: dict[str, Law] = {}
"""The registry: name -> law."""


def register(law_: Law, replace: bool = False) -> Law:
    """Add a law to the registry (``replace`` to overwrite an existing name)."""
    if law_.name in LAWS and not replace and LAWS[law_.name] is not law_:
        raise AnalysisError(f"a law named {law_.name!r} is already registered")
    LAWS[law_.name] = law_
    return law_


def law(name: str, inputs: Sequence[str], bounds: Mapping[str, tuple[float, float]] | None = None,
        start: Starts | Callable | None = None, log_scale: Sequence[str] = (), asymptote: str | None = None,
        jacobian: Callable | None = None, formula: str = "", replace: bool = True):
    """Decorator registering ``func(*inputs, *params)`` as a law; parameters are the function's
    arguments after the inputs. Returns the :class:`Law`."""

    def wrap(func: Callable) -> Law:
        names = list(inspect.signature(func).parameters)
        if names[: len(inputs)] != list(inputs):
            raise AnalysisError(f"law {name!r}: the function must take the inputs {tuple(inputs)} first")
        params = tuple(names[len(inputs):])
        unknown = set(bounds or {}) | set(log_scale) | ({asymptote} - {None})
        unknown -= set(params)
        if unknown:
            raise AnalysisError(f"law {name!r}: unknown parameter(s) {sorted(unknown)}")
        doc = (func.__doc__ or "").strip()
        return register(Law(name=name, inputs=tuple(inputs), params=params, func=func, bounds=dict(bounds or {}),
                            start=start, log_scale=frozenset(log_scale), asymptote=asymptote, jacobian=jacobian,
                            formula=formula or (doc.splitlines()[0] if doc else "")),
                        replace=replace)

    return wrap


def get_law(name: str | Law) -> Law:
    """A law by name (or the law itself)."""
    if isinstance(name, Law):
        return name
    if name not in LAWS:
        raise AnalysisError(f"unknown law {name!r}; registered: {', '.join(sorted(LAWS))}")
    return LAWS[name]


# ----------------------------------------------------------------------------- built-in forms

def _power_start(X, y):
    """Grid for E + A/x^alpha: E below the smallest loss, alpha over a decade; A solved per (E, alpha)."""
    x = np.asarray(X[0], dtype=float)
    ymin = float(np.min(y))
    E = [f * ymin for f in (0.0, 0.5, 0.8, 0.9, 0.97)] if ymin > 0 else [0.0]
    alphas = [0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0]
    A = set()
    for e in E:
        for a in alphas:
            t = x ** -a
            resid = np.asarray(y, dtype=float) - e
            coef = float(np.dot(t, resid) / np.dot(t, t)) if np.dot(t, t) > 0 else 1.0
            if np.isfinite(coef) and coef > 0:
                A.add(float(f"{coef:.3g}"))
    return {"E": E, "alpha": alphas, "A": sorted(A) or [1.0]}


def _power(x, E, A, alpha):
    """L = E + A / x^alpha"""
    return E + A * x ** (-alpha)


def _power_jac(x, E, A, alpha):
    t = x ** (-alpha)
    return [1.0, t, -A * t * np.log(x)]


register(Law("power", ("x",), ("E", "A", "alpha"), _power, bounds={"alpha": (0.0, 10.0)},
             start=_power_start, log_scale=frozenset({"A"}), asymptote="E", jacobian=_power_jac,
             formula="L = E + A / x^alpha", input_scaling={"A": ("x", "alpha")}))


def _recip_start(X, y):
    s = _power_start(X, y)
    x = np.asarray(X[0], dtype=float)
    A = []
    for e in s["E"]:
        t = 1 / x
        coef = float(np.dot(t, np.asarray(y) - e) / np.dot(t, t))
        if coef > 0:
            A.append(coef)
    return {"E": s["E"], "A": A or [1.0]}


def _reciprocal(x, E, A):
    """L = E + A / x"""
    return E + A / x


def _reciprocal_jac(x, E, A):
    return [1.0, 1 / x]


register(Law("reciprocal", ("x",), ("E", "A"), _reciprocal, start=_recip_start, log_scale=frozenset({"A"}),
             asymptote="E", jacobian=_reciprocal_jac, formula="L = E + A / x"))


def _chinchilla(N, D, E, A, alpha, B, beta):
    """L = E + A / N^alpha + B / D^beta"""
    return E + A * N ** (-alpha) + B * D ** (-beta)


def _chinchilla_jac(N, D, E, A, alpha, B, beta):
    tn = N ** (-alpha)
    td = D ** (-beta)
    return [1.0, tn, -A * tn * np.log(N), td, -B * td * np.log(D)]


def _chinchilla_start(X, y):
    N, D = (np.asarray(v, dtype=float) for v in X[:2])
    ymin = float(np.min(y))
    gn = float(np.exp(np.mean(np.log(N))))
    gd = float(np.exp(np.mean(np.log(D))))
    E = [f * ymin for f in (0.3, 0.6, 0.85)] if ymin > 0 else [0.0]
    exps = [0.1, 0.3, 0.6]
    spread = max(float(np.max(y) - np.min(y)), 1e-3 * max(abs(ymin), 1.0))
    # A and B scaled so each term is a fraction of the observed spread at the data's centre
    A = sorted({float(f"{f * spread * gn ** a:.3g}") for f in (0.3, 1.0, 3.0) for a in exps})
    B = sorted({float(f"{f * spread * gd ** b:.3g}") for f in (0.3, 1.0, 3.0) for b in exps})
    return {"E": E, "alpha": exps, "beta": exps, "A": A, "B": B}


register(Law("chinchilla", ("N", "D"), ("E", "A", "alpha", "B", "beta"), _chinchilla,
             bounds={"alpha": (0.0, 5.0), "beta": (0.0, 5.0)}, start=_chinchilla_start,
             log_scale=frozenset({"A", "B"}), asymptote="E", jacobian=_chinchilla_jac,
             formula="L = E + A / N^alpha + B / D^beta", input_scaling={"A": ("N", "alpha"), "B": ("D", "beta")}))


def effective_repeats(unique, repeats, r_star):
    """Muennighoff et al.'s effective count: U + U * R* * (1 - exp(-R / R*)), R = repetitions."""
    return unique + unique * r_star * (1.0 - np.exp(-repeats / r_star))


def _data_constrained(N, D, epochs, E, A, alpha, B, beta, rd_star, rn_star):
    """L = E + A / N'^alpha + B / D'^beta, with D' and N' discounted for repetition"""
    # D' : unique tokens D seen `epochs` times, i.e. repeated epochs - 1 times.
    d_eff = effective_repeats(D, np.maximum(epochs - 1.0, 0.0), rd_star)
    # N' : parameters beyond the compute-optimal size for D unique tokens count less.
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = g ** ((alpha + beta) / alpha) * D ** (beta / alpha)
    u_n = np.minimum(N, n_opt)
    n_eff = effective_repeats(u_n, np.maximum(N / u_n - 1.0, 0.0), rn_star)
    return E + A * n_eff ** (-alpha) + B * d_eff ** (-beta)


def _dc_start(X, y):
    s = _chinchilla_start(X[:2], y)
    s.update(rd_star=[5.0, 15.4, 40.0], rn_star=[1.0, 5.3, 20.0])
    return s


register(Law("data_constrained", ("N", "D", "epochs"), ("E", "A", "alpha", "B", "beta", "rd_star", "rn_star"),
             _data_constrained,
             bounds={"alpha": (0.01, 5.0), "beta": (0.01, 5.0), "rd_star": (0.1, 1e4), "rn_star": (0.1, 1e4)},
             start=_dc_start, log_scale=frozenset({"A", "B", "rd_star", "rn_star"}), asymptote="E",
             formula="L = E + A / N'^alpha + B / D'^beta, D' = U + U R_D* (1 - exp(-R_D / R_D*))"))
