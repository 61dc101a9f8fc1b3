"""Split-training sweeps: gather (N, D, D', loss) from `job=split` runs, fit a user-chosen
``L(N, D, D')``, report the optimal split of total budgets and the D where splitting starts to
pay, and plot loss against D' per D.

Reads only run.json files (a split run records ``cluster``, ``pretrain_tokens`` = D,
``split_tokens`` = D', its ``start`` losses = the base's losses after D tokens, i.e. the D' = 0
point, and its ``final`` losses). The loss of a specialist is its own cluster's validation loss;
by default the points are averaged over clusters per (N, D, D') (the mixture-level loss of the
set of specialists), or one cluster is analysed alone.

The law is the user's (the paper's form is not public): register one with
:func:`asymptote.analysis.laws.law` (in a ``--law-file``). ``split_example`` below is an
illustration of the interface, not a published law.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..atomic import write_json
from .errors import AnalysisError
from .laws import law


def _example_start(X, y):
    N, D, Dp = (np.asarray(x, float) for x in X)
    ymin, yrange = float(np.min(y)), float(np.ptp(y)) or 0.1
    pos = Dp[Dp > 0]
    k0 = float(np.median(pos)) if pos.size else 1e6
    dmin = float(np.min(D))
    return {"E": [0.6 * ymin, 0.9 * ymin], "A": [0.0], "alpha": [0.3],
            "B": [yrange * dmin ** b for b in (0.3,)] + [ymin * dmin ** 0.3],
            "beta": [0.15, 0.3, 0.6], "G": [0.3 * yrange, yrange], "K": [k0 / 4, k0, 4 * k0],
            "gamma": [0.5, 1.0]}


@law("split_example", inputs=("N", "D", "Dp"), bounds={"alpha": (0, 3), "beta": (0, 3), "gamma": (0, 5)},
     log_scale=("A", "B", "K"), start=_example_start, asymptote="E")
def split_example(N, D, Dp, E, A, alpha, B, beta, G, K, gamma):
    """L = E + A/N^alpha + B/D^beta - G (1 - (1 + D'/K)^-gamma)  (an example form)"""
    with np.errstate(divide="ignore"):  # D = 0 (all on specialization) is +inf, not an error
        return E + A / N ** alpha + B / D ** beta - G * (1 - (1 + Dp / K) ** (-gamma))


# ----------------------------------------------------------------------------- points
def split_points(sweep: str | os.PathLike, size: str = "params",
                 statuses: Sequence[str] = ("done",)) -> pd.DataFrame:
    """One row per split run (D' > 0, its final loss) and per (base, D, cluster) start (D' = 0):
    columns run, cluster, N, D, Dp, loss, kind (`final` / `start`)."""
    from .discover import discover

    try:
        runs = discover(sweep)
    except FileNotFoundError:
        raise AnalysisError(f"{sweep} is not a folder") from None
    rows, starts = [], {}
    for run in runs:
        meta = run.meta or {}
        if meta.get("job") != "split" or meta.get("status") not in statuses:
            continue
        missing = [k for k in ("cluster", "pretrain_tokens", "split_tokens", size) if meta.get(k) is None]
        if missing:
            raise AnalysisError(f"split run {run.run_id} lacks {missing} in run.json; was it written "
                                "by job=split?")
        c = meta["cluster"]
        tag = f"val/{c}/loss"
        N, D, Dp = float(meta[size]), float(meta["pretrain_tokens"]), float(meta["split_tokens"])
        final = (meta.get("final") or {}).get(tag)
        if final is not None:
            rows.append({"run": run.run_id, "cluster": c, "N": N, "D": D, "Dp": Dp,
                         "loss": float(final), "kind": "final"})
        start = (meta.get("start") or {}).get(tag)
        if start is not None:
            starts.setdefault((meta.get("base_run"), c, N, D), []).append((run.run_id, float(start)))
    for (_, c, N, D), vals in starts.items():
        rows.append({"run": vals[0][0], "cluster": c, "N": N, "D": D, "Dp": 0.0,
                     "loss": float(np.mean([v for _, v in vals])), "kind": "start"})
    if not rows:
        raise AnalysisError(f"no finished job=split runs under {sweep}")
    return pd.DataFrame(rows).sort_values(["N", "D", "Dp", "cluster"]).reset_index(drop=True)


def aggregate(points: pd.DataFrame, cluster: str = "mean") -> tuple[pd.DataFrame, list[str]]:
    """(N, D, Dp, loss, n_clusters) per point: the mean over all clusters (groups missing a
    cluster are dropped, listed in the notes), or one cluster's rows."""
    notes = []
    if cluster != "mean":
        one = points[points["cluster"] == cluster]
        if one.empty:
            raise AnalysisError(f"cluster {cluster!r} has no split runs; clusters: "
                                f"{', '.join(sorted(points['cluster'].unique()))}")
        out = one.groupby(["N", "D", "Dp"], as_index=False)["loss"].mean()
        out["n_clusters"] = 1
        return out, notes
    clusters = set(points["cluster"])
    groups = []
    for key, g in points.groupby(["N", "D", "Dp"]):
        have = set(g["cluster"])
        if have != clusters:
            notes.append(f"N={key[0]:g} D={key[1]:g} D'={key[2]:g}: missing clusters "
                         f"{sorted(clusters - have)}; left out of the mean")
            continue
        per_cluster = g.groupby("cluster")["loss"].mean()
        groups.append({"N": key[0], "D": key[1], "Dp": key[2], "loss": float(per_cluster.mean()),
                       "n_clusters": len(per_cluster)})
    if not groups:
        raise AnalysisError("no (N, D, D') point has runs for every cluster; analyse one cluster "
                            "(--cluster c0) or finish the sweep")
    return pd.DataFrame(groups), notes


# ----------------------------------------------------------------------------- analysis
@dataclass
class SplitAnalysis:
    """Result of :func:`analyze_split`."""

    points: pd.DataFrame
    """Every run's point (see :func:`split_points`)."""
    table: pd.DataFrame
    """The fitted points (aggregated)."""
    fit: object
    """The :class:`~asymptote.analysis.fit.FitResult`."""
    splits: list = field(default_factory=list)
    """:class:`~asymptote.analysis.split.SplitResult` per (N, total)."""
    break_even: dict = field(default_factory=dict)
    """N -> smallest total budget where splitting pays (None: never in range), with interval."""
    notes: list = field(default_factory=list)
    """What was left out, and why."""
    plot_path: Path | None = None
    """loss vs D' per D (PNG)."""
    out_dir: Path | None = None
    """Folder written."""

    def to_dict(self) -> dict:
        from .fit import _jsonable

        return _jsonable({"fit": self.fit.to_dict(), "splits": [s.to_dict() for s in self.splits],
                          "break_even": self.break_even, "notes": self.notes,
                          "points": len(self.points), "fitted_points": len(self.table)})

    def summary(self) -> str:
        f = self.fit
        lines = [f"split law {f.law.name}: {f.law.formula}",
                 f"  fitted on {f.n} points (R^2 {f.r2:.4f}); "
                 + ", ".join(f"{k}={v:.4g}" for k, v in f.params.items())]
        for s in self.splits:
            lines.append(f"  N={s.N:,.0f} total={s.total:,.0f}: D={s.D:,.0f} D'={s.Dp:,.0f} "
                         f"(D'/T {s.fraction:.3f}) loss {s.loss:.4f} vs {s.loss_no_split:.4f} unsplit")
        for N, be in self.break_even.items():
            where = "never in range" if be["total"] is None else f"from a total of {be['total']:,.0f} tokens"
            lines.append(f"  N={float(N):,.0f}: splitting pays {where}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def analyze_split(sweep: str | os.PathLike, law: str = "split_example", out_dir=None,
                  totals: Sequence[float] | None = None, sizes: Sequence[float] | None = None,
                  fixed: Mapping[str, float] | None = None, cluster: str = "mean",
                  size: str = "params", n_boot: int = 200, seed: int = 0, loss: str = "huber",
                  be_range: tuple[float, float] | None = None, write: bool = True) -> SplitAnalysis:
    """Fit ``law`` (three inputs N, D, Dp) to the split runs under ``sweep`` and report the
    optimal split of each total budget in ``totals`` (default: 5 budgets spanning the sweep's
    D + D' up to 10x beyond) for each model size (default: the sweep's), and the break-even
    budget. Writes split_points.csv, split_table.csv, split_fit.json and loss_vs_dprime.png."""
    from .bootstrap import bootstrap
    from .fit import fit
    from .laws import get_law
    from .split import break_even, break_even_interval, optimal_split

    form = get_law(law)
    if len(form.inputs) != 3:
        raise AnalysisError(f"law {form.name!r} has inputs {form.inputs}; a split law takes (N, D, Dp)")
    points = split_points(sweep, size=size)
    table, notes = aggregate(points, cluster)
    X = {name: table[col].to_numpy(float) for name, col in zip(form.inputs, ("N", "D", "Dp"))}
    result = fit(form, X, table["loss"].to_numpy(float), loss=loss, fixed=fixed)
    if n_boot and not result.exactly_determined:
        bootstrap(result, n=n_boot, seed=seed)
    budget = (table["D"] + table["Dp"]).to_numpy(float)
    totals = list(totals) if totals else list(np.geomspace(budget.min(), 10 * budget.max(), 5))
    sizes = list(sizes) if sizes else sorted(table["N"].unique())
    lo, hi = be_range or (budget.min() / 100, budget.max() * 1e4)
    splits, be = [], {}
    for N in sizes:
        splits += [optimal_split(result, float(N), float(T)) for T in totals]
        total = break_even(result, float(N), low=lo, high=hi)
        be[str(N)] = {"total": total, "interval": break_even_interval(result, float(N), low=lo, high=hi,
                                                                       max_samples=50)}
    out = SplitAnalysis(points, table, result, splits, be, notes + list(result.warnings))
    if write:
        out.out_dir = Path(out_dir) if out_dir else Path(sweep) / "analysis"
        out.out_dir.mkdir(parents=True, exist_ok=True)
        points.to_csv(out.out_dir / "split_points.csv", index=False)
        table.to_csv(out.out_dir / "split_table.csv", index=False)
        write_json(out.out_dir / "split_fit.json", out.to_dict(), indent=2)
        out.plot_path = plot_loss_vs_dprime(out.out_dir / "loss_vs_dprime.png", table, result)
    return out


def plot_loss_vs_dprime(path: Path, table: pd.DataFrame, result=None) -> Path:
    """Loss against D' (symmetric-log axis: D' = 0 is the base), one colour per D, one panel
    per N; the fitted law as lines when given."""
    from .plots import _colours, new_figure, _fmt_count, save_figure

    Ns = sorted(table["N"].unique())
    fig, axes = new_figure(width=5.5 * len(Ns), height=4.4, ncols=len(Ns))
    pos = table.loc[table["Dp"] > 0, "Dp"]
    linthresh = float(pos.min()) if len(pos) else 1.0
    for ax, N in zip(axes[0], Ns):
        sub = table[table["N"] == N]
        Ds = sorted(sub["D"].unique())
        for colour, D in zip(_colours(len(Ds)), Ds):
            pts = sub[sub["D"] == D].sort_values("Dp")
            ax.plot(pts["Dp"], pts["loss"], "o", color=colour, label=f"D = {_fmt_count(D)}")
            if result is not None:
                grid = np.concatenate([[0.0], np.geomspace(linthresh / 4, max(float(pos.max()) * 2, linthresh), 80)])
                ax.plot(grid, result.predict(np.full_like(grid, N), np.full_like(grid, D), grid), "-",
                        color=colour, lw=1.2)
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlabel("specialization tokens D'")
        ax.set_ylabel("loss (own cluster)")
        ax.set_title(f"N = {_fmt_count(N)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)
