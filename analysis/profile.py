"""Profile of the objective over one parameter: how well the data pin it down.

For each value of the parameter, the objective is minimised over the other free parameters
(grid plus local optimisation, warm-started from the neighbouring value). A flat profile, or one
with several nearly equal dips, means the data do not determine the parameter; the values whose
profile lies within ``rtol`` of the best objective are the range the data allow (the same
tolerance as the fit's undetermined-parameter warning, :data:`~.fit.TIE_RTOL`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AnalysisError
from .fit import TIE_RTOL, FitResult, Problem, _jsonable
from .laws import cover


@dataclass
class Profile:
    """Objective minimised over the other free parameters, at each value of one parameter."""

    name: str
    """The profiled parameter."""
    values: np.ndarray
    """Values at which it was held fixed (ascending)."""
    objective: np.ndarray
    """Best objective found with the parameter at each value (inf where none was finite)."""
    best: float
    """Lowest objective: the fit's or the profile's, whichever is lower."""

    def tied(self, rtol: float = TIE_RTOL) -> tuple[float, float] | None:
        """(lowest, highest) profiled value whose objective is within ``rtol`` of the best."""
        ok = self.objective <= self.best + rtol * abs(self.best)
        return (float(self.values[ok].min()), float(self.values[ok].max())) if ok.any() else None

    def to_dict(self, rtol: float = TIE_RTOL) -> dict:
        """JSON-ready summary."""
        return _jsonable({"name": self.name, "values": self.values.tolist(), "objective": self.objective.tolist(),
                          "best": self.best, "rtol": rtol, "tied_range": self.tied(rtol)})


def default_values(result: FitResult, name: str, n: int = 25) -> np.ndarray:
    """The whole bounded range (log-spaced for positive scale parameters), else a factor of 10
    either side of a positive fitted value, else +-1 around it."""
    lo, hi = result.law.bound(name)
    v = result.params[name]
    if np.isfinite(lo) and np.isfinite(hi):
        return np.array(cover(lo, hi, n, log=name in result.law.log_scale and lo > 0))
    if v > 0:
        return np.clip(np.geomspace(v / 10, v * 10, n), lo, hi)
    return np.clip(np.linspace(v - 1, v + 1, n), lo, hi)


def profile(result: FitResult, name: str, values=None, n: int = 25, n_local: int = 3,
            grid_limit: int = 1024) -> Profile:
    """Profile ``result``'s objective over parameter ``name`` (see the module docstring)."""
    law = result.law
    if name not in law.params or name in result.fixed:
        raise AnalysisError(f"cannot profile {name!r}: free parameters are "
                            f"{[p for p in law.params if p not in result.fixed]}")
    values = np.sort(np.asarray(default_values(result, name, n) if values is None else values, dtype=float))
    objective = np.full(values.size, np.inf)
    warm = dict(result.params)
    for i, v in enumerate(values):
        fixed = {**result.fixed, name: float(v)}
        problem = Problem(law, result.X, result.y, result.loss, result.delta, fixed)
        starts = [{**warm, name: float(v)}, {**result.params, name: float(v)}]
        if problem.free:
            grid = law.grid(result.X, result.y, fixed, limit=grid_limit)
            vals = problem.values_many(problem.phi_many(grid))
            starts += [grid[j] for j in np.argsort(vals, kind="stable")[:n_local] if np.isfinite(vals[j])]
        phi, obj, _, _ = problem.solve(starts)
        if np.isfinite(obj) and obj < 1e29:
            objective[i] = obj
            warm = problem.params(phi)  # continuation: the next value starts from this optimum
    best = float(min(result.objective, np.min(objective)))
    return Profile(name=name, values=values, objective=objective, best=best)
