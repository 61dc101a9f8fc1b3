"""PNG figures of a sweep analysis (matplotlib's object API: no global backend is changed).

- :func:`loss_vs_x`: every finished run, the best run per cell, the fitted law with its bootstrap
  band, and the asymptote with its interval as a horizontal band;
- :func:`loss_vs_k`: ensemble loss against the number of members K, with the L(K) fits;
- :func:`heatmaps`: loss over epochs x weight decay (best over the other axes) per cell;
- :func:`curves`: validation (and training) loss against step for the best runs;
- :func:`efficiency_plot`: the baseline L(D) fit and each target's effective data size;
- :func:`accuracy_vs_loss`: downstream accuracy (lm-eval, `job=evaluate`) against final loss,
  coloured by parameter count, ensembles marked by their K.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd


def new_figure(width: float = 7.0, height: float = 4.8, ncols: int = 1, nrows: int = 1):
    """A new figure with an Agg canvas and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path: Path) -> Path:
    """Write the figure as PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _fmt_count(x: float) -> str:
    """1.5e8 -> '150M', 2e9 -> '2B'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def loss_vs_x(path: Path, runs: pd.DataFrame, x: str, loss: str, best: pd.DataFrame, fits: Mapping,
              group: str | None, xlabel: str | None = None, ylabel: str = "loss") -> Path:
    """Loss against ``x`` with fits, bands and asymptotes; one colour per ``group`` value."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    finite = runs[np.isfinite(pd.to_numeric(runs[loss], errors="coerce"))]
    ax.scatter(finite[x], finite[loss], s=10, color="0.75", label="all finished runs", zorder=1)
    keys = sorted(best[group].unique()) if group else [None]
    colours = _colours(len(keys))
    xs_all = pd.to_numeric(best[x], errors="coerce")
    xmin, xmax = float(xs_all.min()), float(xs_all.max())
    for colour, key in zip(colours, keys):
        sub = best if key is None else best[best[group] == key]
        label_key = "" if key is None else f"{group}={_fmt_count(key)}"
        ax.scatter(sub[x], sub["loss"], s=36, color=colour, edgecolor="k", zorder=3,
                   label=f"best per cell {label_key}".strip())
        result = fits.get(key)
        if result is None:
            continue
        grid = np.geomspace(xmin / 1.5, xmax * 20, 200)
        ax.plot(grid, result.predict(grid), color=colour, lw=1.6, zorder=2,
                label=f"fit {label_key}: {result.law.formula}".strip())
        boot = result.boot
        if boot is not None and boot.meaningful and boot.param_samples:
            lo, hi = boot.band(result.law, [grid])
            ax.fill_between(grid, lo, hi, color=colour, alpha=0.15, lw=0)
        E = result.asymptote
        if E is not None and math.isfinite(E):
            ax.axhline(E, color=colour, ls="--", lw=1.0)
            iv = result.interval("asymptote")
            if iv and all(math.isfinite(v) for v in iv):
                ax.axhspan(iv[0], iv[1], color=colour, alpha=0.12, lw=0)
                txt = f"E = {E:.4g} [{iv[0]:.4g}, {iv[1]:.4g}]"
            else:
                txt = f"E = {E:.4g} (no interval)"
            ax.annotate(txt, xy=(grid[-1], E), xytext=(-4, 4), textcoords="offset points", ha="right",
                        va="bottom", fontsize=8, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return save_figure(fig, path)


def accuracy_vs_loss(path: Path, runs: pd.DataFrame, columns: Sequence[str], loss: str = "loss",
                     size: str = "params") -> Path:
    """One panel per downstream metric column: accuracy against final loss of every run that has
    both, coloured by log parameter count; runs that are ensembles are labelled K=<members>."""
    fig, axes = new_figure(width=4.2 * len(columns), height=4.0, ncols=len(columns))
    k = "ensemble_size" if "ensemble_size" in runs.columns else None
    for ax, column in zip(axes[0], columns):
        rows = runs[[loss, column, size] + ([k] if k else [])].apply(
            pd.to_numeric, errors="coerce").dropna(subset=[loss, column])
        sizes = rows[size].to_numpy(float)
        colour = np.log10(np.where(np.isfinite(sizes) & (sizes > 0), sizes, 1.0))
        points = ax.scatter(rows[loss], rows[column], c=colour, cmap="viridis", s=28)
        if k:
            for _, r in rows[rows[k].fillna(1) > 1].iterrows():
                ax.annotate(f"K={int(r[k])}", (r[loss], r[column]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"final {loss}")
        ax.set_ylabel(column.replace("final.downstream/", ""))
        ax.grid(True, alpha=0.3)
        fig.colorbar(points, ax=ax, label=f"log10 {size}")
    return save_figure(fig, path)


def loss_vs_k(path: Path, points: pd.DataFrame, fits: Mapping[tuple, object], title: str = "") -> Path:
    """Ensemble loss against K per (N, D), with the L(K) fits and their asymptotes."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    groups = list(points.groupby(["N", "D"]))
    for colour, ((n, d), g) in zip(_colours(len(groups)), groups):
        g = g.sort_values("K")
        ax.plot(g["K"], g["loss"], "o", color=colour, label=f"N={_fmt_count(n)} D={_fmt_count(d)}")
        r = fits.get((n, d))
        if r is not None:
            k = np.linspace(1, max(g["K"].max() * 4, 8), 200)
            ax.plot(k, r.predict(k), color=colour, lw=1.2)
            ax.axhline(r.params["E"], color=colour, ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("ensemble members K")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def heatmaps(path: Path, tables: Sequence[tuple[str, pd.DataFrame]], row_label: str, col_label: str,
             max_panels: int = 12) -> Path:
    """One loss heatmap per cell (``tables``: (title, rows x cols table)); the best cell is starred."""
    tables = list(tables)[:max_panels]
    ncols = min(3, len(tables))
    nrows = math.ceil(len(tables) / ncols)
    fig, axes = new_figure(4.2 * ncols, 3.4 * nrows, ncols=ncols, nrows=nrows)
    for ax in axes.flat[len(tables):]:
        ax.set_visible(False)
    for ax, (title, tab) in zip(axes.flat, tables):
        vals = tab.to_numpy(dtype=float)
        im = ax.imshow(vals, cmap="viridis_r", aspect="auto", origin="lower")
        ax.set_xticks(range(tab.shape[1]), [f"{c:g}" for c in tab.columns], fontsize=7)
        ax.set_yticks(range(tab.shape[0]), [f"{r:g}" for r in tab.index], fontsize=7)
        ax.set_xlabel(col_label, fontsize=8)
        ax.set_ylabel(row_label, fontsize=8)
        ax.set_title(title, fontsize=8)
        if np.isfinite(vals).any():
            best = np.unravel_index(np.nanargmin(vals), vals.shape)
            lo, hi = np.nanmin(vals), np.nanmax(vals)
            for (i, j), v in np.ndenumerate(vals):
                if np.isfinite(v):
                    light = hi == lo or (v - lo) / (hi - lo) < 0.5  # viridis_r: low losses are light
                    ax.text(j, i, f"{v:.3f}" + (" *" if (i, j) == best else ""), ha="center", va="center",
                            fontsize=6, color="k" if light else "w", fontweight="bold" if (i, j) == best else None)
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path)


def curves(path: Path, series: Sequence[tuple[str, pd.DataFrame, pd.DataFrame | None]], ylabel: str = "loss") -> Path:
    """Loss curves: ``series`` of (label, validation points, training points or None)."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    for colour, (label, val, train) in zip(_colours(len(series)), series):
        if train is not None and len(train):
            ax.plot(train["step"], train["value"], color=colour, alpha=0.3, lw=0.8)
        if val is not None and len(val):
            ax.plot(val["step"], val["value"], color=colour, lw=1.6, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("validation (bold) and training (faint) loss of the best runs", fontsize=9)
    return save_figure(fig, path)


def efficiency_plot(path: Path, eff, baseline_points: pd.DataFrame) -> Path:
    """Baseline loss vs D with its fit; targets placed at their effective data size."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    base = eff.baseline
    ax.plot(baseline_points["D"], baseline_points["loss"], "o", color="C0", label="baseline best loss per D")
    finite_eff = eff.table["effective_D"].replace(np.inf, np.nan)
    hi = np.nanmax([baseline_points["D"].max() * 10, finite_eff.max() * 2 if finite_eff.notna().any() else 0])
    grid = np.geomspace(baseline_points["D"].min() / 2, hi, 200)
    ax.plot(grid, base.predict(grid), color="C0", lw=1.4, label=f"baseline fit: {base.law.formula}")
    ax.axhline(base.params["E"], color="C0", ls="--", lw=0.8)
    for colour, row in zip(_colours(len(eff.table), offset=1), eff.table.itertuples()):
        ax.plot([row.D], [row.loss], "s", color=colour, label=f"{row.label}: {row.multiplier:.3g}x data")
        if math.isfinite(row.effective_D):
            ax.annotate("", xy=(row.effective_D, row.loss), xytext=(row.D, row.loss),
                        arrowprops={"arrowstyle": "->", "color": colour})
    ax.set_xscale("log")
    ax.set_xlabel("seed tokens D (baseline data needed)")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if len(eff.table):
        ref = float(eff.table["D"].iloc[0])
        sec = ax.secondary_xaxis("top", functions=(lambda d: d / ref, lambda m: m * ref))
        sec.set_xlabel(f"data multiplier relative to D = {_fmt_count(ref)} (arrows: effective data)", fontsize=8)
    return save_figure(fig, path)


def _colours(n: int, offset: int = 0) -> list[str]:
    """Distinct matplotlib colour names."""
    return [f"C{(i + offset) % 10}" for i in range(max(n, 1))]
