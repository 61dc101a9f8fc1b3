"""The certificate-driven extension of one regularized (N, D) cell: a pure function over results.

Given the cell's axes, its initial grid, the points that finished (their final validation
loss), the points still running and those that failed, `decide` says what the cell is:

- `certified`: the best finished point passes the local-optimality certificate
  (analysis/best_runs.certify: every one-step grid neighbour finished and none is lower); a
  side where the axis sits on its hard bound (`min`/`max`, e.g. 1 epoch) has no neighbour to run
  and counts as passed, with a note;
- `extend`: the missing neighbours to run next, including values past the grid's edge in the
  axis's spacing when the best sits on the edge; failed neighbours are run again;
- `waiting`: the missing neighbours are all still running;
- `not_certified`: the run budget is spent (or nothing finished with a finite loss) and the
  certificate still fails; the reasons say why.

The grid of an axis is its initial values plus every value a started point uses, so the
decision needs no state of its own: run it again on the new results and it continues. A
finished run whose loss is not finite (it diverged) counts as worse than any finite loss: it
was run, and running it again would diverge again.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ...analysis.best_runs import certify, fmt, grid_neighbours

Point = tuple  # one value per axis, in the order of the axes


def norm(value: float) -> float:
    """A grid value rounded to 12 significant digits, so 3 x 1e-3 and 0.003 are one value."""
    return float(f"{float(value):.12g}")


@dataclass(frozen=True)
class Axis:
    """One hyper-parameter axis of the cell."""

    name: str
    """The run config key (e.g. `optim.lr`)."""
    grid: tuple
    """Initial values."""
    spacing: str = "double"
    """`half_decade` (1, 3, 10, 30 x a power of ten) or `double` (x2 / /2)."""
    min: float | None = None
    """Hard lower bound (inclusive); None: unbounded."""
    max: float | None = None
    """Hard upper bound (inclusive); None: unbounded."""
    integer: bool = False
    """Values are whole numbers (epochs)."""

    def beyond(self, value: float, step: int) -> float | None:
        """The next value past `value` (step +1 up, -1 down) in the axis's spacing, within its
        bounds; None when the bound is reached."""
        value = norm(value)
        if self.spacing == "half_decade":
            if value <= 0:
                return None
            k = math.floor(math.log10(value))
            ladder = sorted(norm(m * 10.0 ** e) for e in (k - 1, k, k + 1) for m in (1, 3))
            nxt = (next((v for v in ladder if v > value * (1 + 1e-9)), None) if step > 0
                   else next((v for v in reversed(ladder) if v < value * (1 - 1e-9)), None))
        elif self.spacing == "double":
            if value == 0:
                return None  # doubling never leaves 0; give a positive value on the grid
            nxt = norm(value * 2 if step > 0 else value / 2)
        else:
            raise ValueError(f"unknown spacing {self.spacing!r}")
        if self.integer and nxt is not None:
            nxt = float(math.floor(nxt)) if step > 0 else float(math.ceil(nxt))
            if nxt == value:
                return None
        if nxt is None:
            return None
        if step < 0 and self.min is not None and nxt < self.min:
            # Below the bound: the bound itself is the last value, if it is not there yet.
            return norm(self.min) if value > self.min else None
        if step > 0 and self.max is not None and nxt > self.max:
            return norm(self.max) if value < self.max else None
        return nxt


@dataclass
class Decision:
    """What one cell needs next."""

    state: str
    """`certified`, `extend`, `waiting` or `not_certified`."""
    best: dict | None
    """The best finished point (axis -> value), if any finished with a finite loss."""
    loss: float | None
    """Its loss."""
    to_run: list[dict] = field(default_factory=list)
    """Points to run now (new ones and failed ones again), axis -> value."""
    grids: dict[str, list] = field(default_factory=dict)
    """The grid of every axis, extensions included."""
    spent: int = 0
    """Distinct points started so far (the budget counts these)."""
    reasons: list[str] = field(default_factory=list)
    """Why the certificate fails (state other than certified)."""
    notes: list[str] = field(default_factory=list)
    """Sides certified by a hard bound, points cut by the budget."""


def _as_point(axes: Sequence[Axis], point) -> Point:
    if isinstance(point, Mapping):
        point = tuple(point[a.name] for a in axes)
    return tuple(norm(v) for v in point)


def decide(axes: Sequence[Axis], finished: Mapping, running: Iterable = (),
           failed: Iterable = (), budget: int | None = None) -> Decision:
    """The next step of one cell. `finished` maps a point (tuple in axis order, or a mapping
    axis -> value) to its final loss; `running` and `failed` are points started that have not
    finished; `budget` bounds the distinct points of the cell (None: no bound)."""
    names = [a.name for a in axes]
    done = {_as_point(axes, p): float(v) for p, v in finished.items()}
    live = {_as_point(axes, p) for p in running} - set(done)
    broken = {_as_point(axes, p) for p in failed} - set(done) - live
    started = set(done) | live | broken
    grids = {a.name: sorted({norm(v) for v in a.grid} | {p[i] for p in started})
             for i, a in enumerate(axes)}
    left = None if budget is None else budget - len(started)

    def named(p: Point) -> dict:
        return dict(zip(names, p))

    def ask(points: list[Point], reasons: list[str], notes: list[str], best=None, loss=None):
        """Run the new points within the budget, failed ones again, or wait for running ones."""
        again = [p for p in points if p in broken]
        new = [p for p in points if p not in started]
        notes = list(notes)
        if left is not None and len(new) > left:
            cut = new[max(left, 0):]
            notes.append(f"budget: {len(cut)} point(s) not run "
                         f"({', '.join(_label(names, p) for p in cut[:6])}"
                         f"{', ...' if len(cut) > 6 else ''})")
            new = new[:max(left, 0)]
        if again or new:
            for p in new:  # the grid grows by what is run
                for name, v in zip(names, p):
                    grids[name] = sorted(set(grids[name]) | {v})
            return Decision("extend", best, loss, [named(p) for p in again + new], grids,
                            len(started), reasons, notes)
        if any(p in live for p in points):
            return Decision("waiting", best, loss, [], grids, len(started), reasons, notes)
        reasons = reasons + [f"the run budget of {budget} points is spent ({len(started)} "
                             "started)"]
        return Decision("not_certified", best, loss, [], grids, len(started), reasons, notes)

    # The whole initial grid first (the paper sweeps it); failed points of it again.
    initial = list(itertools.product(*[sorted({norm(v) for v in a.grid}) for a in axes]))
    todo = [p for p in initial if p not in done and p not in live]
    if todo:
        return ask(todo, ["the initial grid is not complete"], [])
    finite = {p: v for p, v in done.items() if math.isfinite(v)}
    if not finite:
        if live:
            return Decision("waiting", None, None, [], grids, len(started), ["no finished run yet"])
        return Decision("not_certified", None, None, [], grids, len(started),
                        ["every finished run diverged (no finite loss)"])

    best = min(finite, key=lambda p: (finite[p], p))
    loss = finite[best]

    def loss_of(point: Mapping) -> float | None:
        value = done.get(_as_point(axes, point))
        return None if value is None else (value if math.isfinite(value) else math.inf)

    # The certificate on the grids as they stand; then what completing it takes.
    reasons, _ = certify(named(best), loss, grids, loss_of)
    if not reasons:
        if live:  # a point still running may beat the best
            return Decision("waiting", named(best), loss, [], grids, len(started),
                            [f"{len(live)} point(s) still running"])
        return Decision("certified", named(best), loss, [], grids, len(started))
    missing: list[Point] = []
    notes: list[str] = []
    for i, a in enumerate(axes):
        for step in (-1, 1):
            value = _neighbour_value(a, grids[a.name], best[i], step)
            if value is None:
                notes.append(f"{a.name}={fmt(best[i])} is at its bound "
                             f"({'min' if step < 0 else 'max'}); no neighbour "
                             f"{'below' if step < 0 else 'above'} exists")
                continue
            p = best[:i] + (value,) + best[i + 1:]
            if p not in done:
                missing.append(p)
    if not missing:
        if live:
            return Decision("waiting", named(best), loss, [], grids, len(started),
                            [f"{len(live)} point(s) still running"], notes)
        return Decision("certified", named(best), loss, [], grids, len(started), [], notes)
    return ask(missing, reasons, notes, named(best), loss)


def _neighbour_value(axis: Axis, grid: list, value: float, step: int) -> float | None:
    """The grid neighbour of `value` on one side, or the value past the edge in the axis's
    spacing (None at a hard bound)."""
    for name, s, v in grid_neighbours({axis.name: value}, {axis.name: grid}):
        if s == step and v is not None:
            return norm(v)
    return axis.beyond(value, step)


def _label(names: list[str], p: Point) -> str:
    return " ".join(f"{n}={fmt(v)}" for n, v in zip(names, p))
