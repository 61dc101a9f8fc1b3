"""Data efficiency: how much more data the baseline recipe would need to match another loss.

Fit ``L(D) = E + A / D^alpha`` to the baseline's best loss per seed-token budget D, invert it to
an effective data size ``D_eff(L) = (A / (L - E))^(1/alpha)`` (infinite when L <= E: the baseline
never gets there), and report the multiplier ``D_eff / D`` of a recipe's loss at budget D, or of
its asymptote. Intervals come from the baseline fit's bootstrap replicates (paired with the
target's own replicates when it has some, e.g. a fitted asymptote).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .bootstrap import bootstrap, percentile_interval
from .errors import AnalysisError
from .fit import FitResult, _jsonable, fit


def effective_data(params: dict, loss: float | np.ndarray) -> float | np.ndarray:
    """Baseline data size reaching ``loss`` under ``L(D) = E + A / D^alpha`` (inf if loss <= E)."""
    E, A, alpha = params["E"], params["A"], params["alpha"]
    loss = np.asarray(loss, dtype=float)
    with np.errstate(all="ignore"):
        gap = loss - E
        out = np.where(gap > 0, (A / np.where(gap > 0, gap, 1.0)) ** (1.0 / alpha), np.inf)
    return float(out) if out.ndim == 0 else out


@dataclass
class Target:
    """A loss to express as baseline data."""

    label: str
    """Name in the report (e.g. 'regularized, D=200M' or 'regularized asymptote')."""
    D: float
    """The data budget the target used."""
    loss: float
    """Its loss (or fitted asymptote)."""
    samples: np.ndarray | None = None
    """Bootstrap replicates of ``loss``, when it is itself a fitted quantity."""


@dataclass
class Efficiency:
    """Baseline fit and the multiplier of every target."""

    baseline: FitResult
    """``L(D)`` fitted to the baseline."""
    table: pd.DataFrame
    """label, D, loss, effective_D, multiplier, multiplier_low, multiplier_high."""
    notes: list[str] = field(default_factory=list)
    """Caveats (too few budgets for intervals, targets below the baseline asymptote...)."""

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return _jsonable({"baseline": self.baseline.to_dict(), "targets": self.table.to_dict(orient="records"),
                          "notes": self.notes})


def data_efficiency(baseline_D: Sequence[float], baseline_loss: Sequence[float], targets: Sequence[Target],
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95, loss: str = "huber") -> Efficiency:
    """Fit the baseline ``L(D)`` (power law in D) and compute each target's data multiplier."""
    D = np.asarray(baseline_D, dtype=float)
    if np.unique(D[np.isfinite(D)]).size < 3:
        raise AnalysisError(
            f"data efficiency needs the baseline at >= 3 distinct data budgets D to fit L(D); got "
            f"{np.unique(D[np.isfinite(D)]).size}")
    base = fit("power", D, baseline_loss, loss=loss)
    notes = list(base.warnings)
    boot = bootstrap(base, n=n_boot, seed=seed, level=level) if n_boot else None
    rng = np.random.default_rng(seed + 1)
    rows = []
    for t in targets:
        d_eff = effective_data(base.params, t.loss)
        row = {"label": t.label, "D": t.D, "loss": t.loss, "effective_D": d_eff, "multiplier": d_eff / t.D,
               "multiplier_low": float("nan"), "multiplier_high": float("nan")}
        if math.isinf(d_eff):
            notes.append(f"{t.label}: loss {t.loss:.4f} is below the baseline asymptote "
                         f"{base.params['E']:.4f}; the baseline never reaches it (infinite multiplier)")
        if boot is not None and boot.meaningful and boot.param_samples:
            losses = np.full(len(boot.param_samples), t.loss)
            if t.samples is not None and len(t.samples):
                losses = rng.choice(np.asarray(t.samples, dtype=float), size=len(boot.param_samples), replace=True)
            mult = np.array([effective_data(p, l) for p, l in zip(boot.param_samples, losses)]) / t.D
            row["multiplier_low"], row["multiplier_high"] = percentile_interval(mult, level)
        rows.append(row)
    if boot is not None and not boot.meaningful:
        notes.append(boot.note or "baseline intervals not meaningful")
    return Efficiency(baseline=base, table=pd.DataFrame(rows), notes=notes)
