"""The tiered joint asymptote: K -> infinity for each N, then N -> infinity, then D.

Tier 1 fits ``L(K) = E_K + A / K^alpha`` to the ensemble losses of each (N, D); tier 2 fits a
power law in N to the tier-1 asymptotes of each D, whose asymptote is the joint N, K -> inf
loss at that D; tier 3 (with >= 3 budgets) does the same in D. Intervals come from a hierarchical
bootstrap: every replicate resamples the K-level data of every (N, D), refits all tiers, and
records each tier's asymptote. K grids are small, so K-level resampling defaults to residuals
(the K design is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .bootstrap import percentile_interval
from .errors import AnalysisError
from .fit import FitResult, _jsonable, fit, refit
from .threads import single_blas_thread


@dataclass
class Tiered:
    """All tiers' fits and asymptotes."""

    k_fits: pd.DataFrame
    """Per (N, D): E_K (the K -> inf loss), its interval, points used."""
    n_fits: pd.DataFrame
    """Per D: the joint N, K -> inf asymptote, its interval, and the N-law parameters."""
    d_fit: dict | None = None
    """Tier 3 (D -> inf) when >= 3 budgets: asymptote, interval, parameters."""
    notes: list[str] = field(default_factory=list)
    """Caveats (exactly determined tiers, skipped cells...)."""

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return _jsonable({"k_fits": self.k_fits.to_dict(orient="records"),
                          "n_fits": self.n_fits.to_dict(orient="records"), "d_fit": self.d_fit, "notes": self.notes})


def _perturb(result: FitResult, rng: np.random.Generator, method: str):
    """One resample of a fit's data: (X, y)."""
    y = result.y
    if method == "cases":
        idx = rng.integers(0, y.size, y.size)
        return tuple(x[idx] for x in result.X), y[idx]
    pred = result.predict(*result.X)
    e = (np.log(y) - np.log(pred)) if result.loss == "huber" else (y - pred)
    draw = e[rng.integers(0, y.size, y.size)]
    return result.X, (pred * np.exp(draw) if result.loss == "huber" else pred + draw)


def tiered_asymptote(data: pd.DataFrame, n_col: str = "N", d_col: str = "D", k_col: str = "K",
                     loss_col: str = "loss", n_boot: int = 500, seed: int = 0, level: float = 0.95,
                     method: str = "residuals") -> Tiered:
    """Fit the three tiers to a table of (N, D, K, loss) rows."""
    missing = [c for c in (n_col, d_col, k_col, loss_col) if c not in data.columns]
    if missing:
        raise AnalysisError(f"tiered asymptote needs columns {missing} (have {list(data.columns)})")
    data = data[np.isfinite(data[loss_col].astype(float))]
    notes: list[str] = []
    k_fits: dict[tuple, FitResult] = {}
    for (n, d), g in data.groupby([n_col, d_col]):
        g = g.groupby(k_col)[loss_col].mean().reset_index()
        if len(g) < 3:
            notes.append(f"N={n:g}, D={d:g}: only {len(g)} ensemble size(s); need >= 3 for L(K)")
            continue
        k_fits[(n, d)] = fit("power", g[k_col].to_numpy(float), g[loss_col].to_numpy(float))
        if k_fits[(n, d)].exactly_determined:
            notes.append(f"N={n:g}, D={d:g}: L(K) exactly determined by 3 points")
    if not k_fits:
        raise AnalysisError("no (N, D) cell has >= 3 ensemble sizes K: cannot fit L(K)")
    by_d: dict[float, list] = {}
    for (n, d) in k_fits:
        by_d.setdefault(d, []).append(n)

    def upper(e_k: dict[tuple, float]):
        """Tier 2 and 3 from tier-1 asymptotes: ({D: (fit or None)}, d-fit or None)."""
        n_res = {}
        for d, ns in by_d.items():
            ns = sorted(ns)
            if len(ns) < 3:
                n_res[d] = None
                continue
            n_res[d] = fit("power", np.array(ns, float), np.array([e_k[(n, d)] for n in ns]))
        ok = {d: r for d, r in n_res.items() if r is not None}
        d_res = None
        if len(ok) >= 3:
            ds = sorted(ok)
            d_res = fit("power", np.array(ds, float), np.array([ok[d].params["E"] for d in ds]))
        return n_res, d_res

    e_k = {key: r.params["E"] for key, r in k_fits.items()}
    n_res, d_res = upper(e_k)
    for d, r in n_res.items():
        if r is None:
            notes.append(f"D={d:g}: fewer than 3 model sizes with L(K) fits; no N -> inf tier")
        elif r.exactly_determined:
            notes.append(f"D={d:g}: the N tier is exactly determined by 3 sizes; its interval only reflects the K-level noise")

    # Hierarchical bootstrap.
    rng = np.random.default_rng(seed)
    boot_k = {key: [] for key in k_fits}
    boot_n = {d: [] for d in n_res}
    boot_d = []
    if n_boot:
        with single_blas_thread():
            for _ in range(n_boot):
                e_b = {}
                for key, r in k_fits.items():
                    if r.exactly_determined and method == "cases":
                        e_b[key] = r.params["E"]
                        continue
                    Xb, yb = _perturb(r, rng, method)
                    out = refit(r, Xb, yb, starts=[r.params])
                    e_b[key] = out[0]["E"] if out else np.nan
                    boot_k[key].append(e_b[key])
                if any(np.isnan(v) for v in e_b.values()):
                    continue
                for d, r in n_res.items():
                    if r is None:
                        continue
                    ns = sorted(by_d[d])
                    out = refit(r, (np.array(ns, float),), np.array([e_b[(n, d)] for n in ns]), starts=[r.params])
                    boot_n[d].append(out[0]["E"] if out else np.nan)
                if d_res is not None:
                    ds = sorted(d for d, r in n_res.items() if r is not None)
                    if boot_n[ds[0]]:
                        vals = np.array([boot_n[d][-1] for d in ds])
                        out = refit(d_res, (np.array(ds, float),), vals, starts=[d_res.params]) if np.all(np.isfinite(vals)) else None
                        boot_d.append(out[0]["E"] if out else np.nan)

    def iv(samples):
        return percentile_interval(np.array(samples), level) if len(samples) >= 20 else (np.nan, np.nan)

    k_rows = [{"N": n, "D": d, "E_K": r.params["E"], "low": iv(boot_k[(n, d)])[0], "high": iv(boot_k[(n, d)])[1],
               "A": r.params["A"], "alpha": r.params["alpha"], "n_points": r.n, "r2": r.r2}
              for (n, d), r in sorted(k_fits.items())]
    n_rows = []
    for d, r in sorted(n_res.items()):
        if r is None:
            continue
        lo, hi = iv(boot_n[d])
        n_rows.append({"D": d, "E_NK": r.params["E"], "low": lo, "high": hi, "A": r.params["A"],
                       "alpha": r.params["alpha"], "n_sizes": r.n, "exactly_determined": r.exactly_determined})
    d_fit = None
    if d_res is not None:
        lo, hi = iv(boot_d)
        d_fit = {"E_NKD": d_res.params["E"], "low": lo, "high": hi, "params": d_res.params, "n_budgets": d_res.n,
                 "exactly_determined": d_res.exactly_determined}
    return Tiered(k_fits=pd.DataFrame(k_rows), n_fits=pd.DataFrame(n_rows), d_fit=d_fit, notes=notes)
