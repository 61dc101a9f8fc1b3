"""Best run per (N, D) cell, with the local optimality certificate.

Within a cell, runs are grouped by their hyper-parameters (lr, weight decay, epochs by default);
seeds of one configuration are averaged. The best configuration is certified when every one-step
neighbour on the hyper-parameter grid (one axis up or down, the others equal) was run, finished
with a finite loss, and none is lower. The grid of an axis is the sorted set of values that axis
takes anywhere in the sweep (or one given explicitly), so an optimum on the grid's edge, a
missing or failed neighbour, or an axis that was not swept leaves the cell uncertified, with the
reasons listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import AnalysisError
from .runs import resolve

DEFAULT_CELL = ("params", "seed_tokens")
DEFAULT_AXES = ("optim.lr", "optim.weight_decay", "epochs")


@dataclass
class BestRuns:
    """Best configuration of every cell and its certificate."""

    table: pd.DataFrame
    """One row per cell: cell columns, best axis values, loss, n_seeds, run ids, certified, reasons."""
    cell: tuple[str, ...]
    """Cell columns (e.g. params, seed_tokens)."""
    axes: tuple[str, ...]
    """Hyper-parameter axes of the certificate."""
    grids: dict[str, list] = field(default_factory=dict)
    """Grid of each axis."""

    @property
    def uncertified(self) -> pd.DataFrame:
        """Cells without a certificate."""
        return self.table[~self.table["certified"]]


def _same(a, b) -> bool:
    """Grid-value equality tolerant to float round-off."""
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return a == b


def fmt(value) -> str:
    """Compact text for a grid value."""
    return f"{value:g}" if isinstance(value, (int, float, np.integer, np.floating)) else str(value)


def _index(grid: list, value) -> int | None:
    """Position of ``value`` on ``grid``."""
    for i, g in enumerate(grid):
        if _same(g, value):
            return i
    return None


def grid_neighbours(point: Mapping[str, object], grids: Mapping[str, Sequence]) -> list[tuple]:
    """The one-step neighbours of ``point`` on ``grids`` (axis -> sorted values): one
    ``(axis, step, value)`` per swept axis and direction (step -1 below, +1 above), value None
    past the grid's edge (or when the point's own value is not on the grid). Axes with fewer
    than two values are not swept and have no neighbours."""
    out = []
    for a, grid in grids.items():
        if len(grid) < 2:
            continue
        i = _index(grid, point[a])
        for step in (-1, 1):
            j = None if i is None else i + step
            out.append((a, step, grid[j] if j is not None and 0 <= j < len(grid) else None))
    return out


def certify(point: Mapping[str, object], loss: float, grids: Mapping[str, Sequence],
            loss_of) -> tuple[list[str], dict[str, float | None]]:
    """The local optimality certificate of ``point`` (its loss ``loss``) on ``grids``:
    (reasons it fails, empty when certified; loss of every neighbour by label, None when not
    run). ``loss_of(point)`` gives a configuration's loss, None when it has no finished run."""
    reasons, neighbours = [], {}
    for a, grid in grids.items():
        if len(grid) < 2:
            reasons.append(f"{a} not swept (single value {grid[0]!r})" if grid else f"{a} has no values")
            continue
        for _, step, value in grid_neighbours(point, {a: grid}):
            if value is None:
                reasons.append(f"{a}={fmt(point[a])} is at the {'bottom' if step < 0 else 'top'} of the grid")
                continue
            label = f"{a}={fmt(value)}"
            nl = loss_of({b: value if b == a else point[b] for b in grids})
            neighbours[label] = nl
            if nl is None:
                reasons.append(f"neighbour {label} has no finished run")
            elif nl < loss:
                reasons.append(f"neighbour {label} is lower ({nl:.4f})")
    return reasons, neighbours


def best_runs(runs: pd.DataFrame, loss: str | pd.Series = "loss", cell: Sequence[str] = DEFAULT_CELL,
              axes: Sequence[str] = DEFAULT_AXES, grids: Mapping[str, Sequence] | None = None,
              statuses: Sequence[str] | None = ("done",)) -> BestRuns:
    """Pick the best configuration per cell and certify it.

    ``runs`` is the run table (index: run id); ``loss`` a column of it or a Series aligned with
    it. Runs whose status is not in ``statuses`` (None: any) or whose loss is not finite count as
    not run. Axes absent from the table are skipped with a reason on every cell.
    """
    if len(runs) == 0:
        raise AnalysisError("no runs to choose from")
    frame = runs.copy()
    frame["_loss"] = pd.to_numeric(frame[loss] if isinstance(loss, str) else loss.reindex(frame.index), errors="coerce")
    cell = tuple(resolve(c, frame.columns) for c in cell)
    present, absent = [], []
    for a in axes:
        try:
            present.append(resolve(a, frame.columns))
        except KeyError:
            absent.append(a)
    axes = tuple(present)
    usable = frame["_loss"].map(lambda v: v is not None and math.isfinite(v))
    if statuses is not None and "status" in frame.columns:
        usable &= frame["status"].isin(list(statuses))
    done = frame[usable].copy()
    if done.empty:
        raise AnalysisError("no finished run with a finite loss: nothing to select")
    for c in cell + axes:
        if done[c].isna().any():
            raise AnalysisError(f"column {c!r} is missing for {int(done[c].isna().sum())} finished run(s)")
    grids_out = {}
    for a in axes:
        if grids and a in grids:
            grids_out[a] = sorted(grids[a])
        else:
            grids_out[a] = sorted(frame[a].dropna().unique().tolist())
    keys = list(cell + axes)
    configs = (done.groupby(keys, dropna=False)
               .agg(loss=("_loss", "mean"), n_seeds=("_loss", "size"),
                    runs=("_loss", lambda s: tuple(s.index)))
               .reset_index())
    rows = []
    for cell_key, group in configs.groupby(list(cell), dropna=False):
        cell_key = cell_key if isinstance(cell_key, tuple) else (cell_key,)
        best = group.loc[group["loss"].idxmin()]

        def loss_of(point: dict, group=group) -> float | None:
            match = group
            for b, target in point.items():
                match = match[match[b].map(lambda v, t=target: _same(v, t))]
            return None if match.empty else float(match["loss"].iloc[0])

        reasons, neighbours = certify({a: best[a] for a in axes}, float(best["loss"]), grids_out,
                                      loss_of)
        reasons = [f"axis {a!r} not in the run table" for a in absent] + reasons
        row = dict(zip(cell, cell_key))
        row.update({a: best[a] for a in axes})
        row.update(loss=float(best["loss"]), n_seeds=int(best["n_seeds"]), runs=list(best["runs"]),
                   n_configs=len(group), certified=not reasons, reasons="; ".join(reasons),
                   neighbours=neighbours)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(list(cell)).reset_index(drop=True)
    return BestRuns(table=table, cell=cell, axes=axes, grids=grids_out)


def heatmap(runs: pd.DataFrame, loss: str | pd.Series, rows: str, cols: str, over: Sequence[str] = ()) -> pd.DataFrame:
    """Loss table ``rows`` x ``cols``, minimised over ``over`` columns and averaged over seeds
    (for the epochs x weight-decay plots)."""
    frame = runs.copy()
    frame["_loss"] = pd.to_numeric(frame[loss] if isinstance(loss, str) else loss.reindex(frame.index), errors="coerce")
    frame = frame[np.isfinite(frame["_loss"])]
    keys = [rows, cols, *over]
    mean = frame.groupby(keys)["_loss"].mean().reset_index()
    best = mean.groupby([rows, cols])["_loss"].min()
    return best.unstack(cols).sort_index().sort_index(axis=1)
