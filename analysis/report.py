"""Analyse a sweep end to end: ingest, best runs, fits with intervals, tables, plots, summary.

:func:`analyze_sweep` is what ``asymptote analyze`` and the demo call. It never fails because
some runs are missing or broken: those are listed (``missing.csv``, the summary) and the rest is
analysed. It raises :class:`~.errors.AnalysisError` only when nothing can be analysed at all
(no runs, no finished run with the metric, unknown columns).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import plots as plotting
from .best_runs import DEFAULT_AXES, BestRuns, best_runs, heatmap
from .bootstrap import bootstrap
from .efficiency import Efficiency, Target, data_efficiency
from .errors import AnalysisError
from .fit import FitResult, _jsonable, extrapolation_check, fit
from .ingest import SweepData, load_sweep
from .laws import get_law
from .runs import resolve
from .tiered import Tiered, tiered_asymptote

ENSEMBLE_PREFIX = "ensemble/"


def _g(v, digits: int = 4) -> str:
    """Compact number for text output ('nan' for missing)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def _count(v) -> str:
    """1.5e8 -> '150M'."""
    return plotting._fmt_count(float(v))


@dataclass
class Report:
    """Everything :func:`analyze_sweep` produced."""

    sweep: Path
    """The sweep folder."""
    out_dir: Path | None
    """Where tables, plots and the summary were written (None: nothing written)."""
    x: str
    """Run column used as the scaling variable (e.g. params)."""
    group: str | None
    """Run column splitting the fits (e.g. seed_tokens), or None."""
    metric: str
    """Tag of the loss analysed (e.g. val/loss)."""
    data: SweepData
    """The ingested sweep."""
    runs: pd.DataFrame
    """Run table with the metric's final value in ``loss`` (and its ``loss_source``)."""
    best: BestRuns | None = None
    """Best run per cell, with certificates."""
    fits: dict = field(default_factory=dict)
    """Law fitted to the best loss per cell, per ``group`` value (key None without a group)."""
    main_key: object = None
    """Key of the headline fit in ``fits``."""
    chinchilla: FitResult | None = None
    """Joint fit over (N, D) when the sweep has several of both."""
    tiered: dict[str, Tiered] = field(default_factory=dict)
    """Tiered joint asymptote per ensemble combination rule."""
    efficiency: Efficiency | None = None
    """Data efficiency against the baseline recipe, when one was given."""
    efficiency_points: pd.DataFrame | None = None
    """Baseline best loss per D used by the data-efficiency fit."""
    missing: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Runs not analysed and why (failed, running, no metric, expected but absent...)."""
    notes: list[str] = field(default_factory=list)
    """Caveats of the analysis."""
    plots: dict[str, Path] = field(default_factory=dict)
    """Written figures by name."""
    files: list[Path] = field(default_factory=list)
    """Every file written."""

    @property
    def main_fit(self) -> FitResult | None:
        """The headline fit (the group with the most points), if any."""
        return self.fits.get(self.main_key)

    @property
    def law(self) -> str | None:
        """Formula of the headline fit."""
        return self.main_fit.law.formula if self.main_fit else None

    @property
    def asymptote(self) -> float | None:
        """Headline asymptote E (loss as x -> infinity)."""
        return self.main_fit.asymptote if self.main_fit else None

    @property
    def asymptote_interval(self) -> tuple[float, float] | None:
        """Bootstrap interval of the headline asymptote (None when not meaningful)."""
        return self.main_fit.interval("asymptote") if self.main_fit else None

    @property
    def plot_path(self) -> Path | None:
        """The main figure: loss against x with the fit and asymptote band."""
        return self.plots.get("loss_vs_x")

    def summary(self) -> str:
        """Short plain-text summary for a terminal."""
        lines = [f"asymptote analyze: {self.sweep}"]
        status = self.runs["status"].fillna("unknown").value_counts().to_dict() if len(self.runs) else {}
        lines.append(f"runs: {len(self.runs)} found (" + ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
                     + f"); {self.data.stats.points:,} scalar points; metric {self.metric}")
        if len(self.missing):
            lines.append(f"not analysed: {len(self.missing)} run(s), e.g. " + "; ".join(
                f"{r.name}: {r.reason}" for r in self.missing.head(3).itertuples()))
        if self.best is not None:
            t = self.best.table
            n_cert = int(t["certified"].sum())
            lines.append(f"best runs: {len(t)} cell(s) ({', '.join(self.best.cell)}), {n_cert} certified locally optimal")
            if n_cert < len(t):
                lines.append(f"  uncertified because: {t.loc[~t['certified'], 'reasons'].iloc[0]}")
        for key, r in self.fits.items():
            head = f"fit{'' if key is None else f' at {self.group}={_count(key)}'}: {r.law.formula} on {r.n} points (x = {self.x})"
            lines.append(head)
            parts = []
            for p, v in r.params.items():
                iv = r.interval(p)
                parts.append(f"{p} = {_g(v)}" + (f" [{_g(iv[0])}, {_g(iv[1])}]" if iv else ""))
            lines.append("  " + "   ".join(parts))
            quality = f"  R^2 = {_g(r.r2)}" if not r.exactly_determined else "  R^2: n/a (exactly determined)"
            ex = r.extrapolation
            if ex and ex.get("ok"):
                quality += (f"; extrapolation to {self.x}={_count(ex['held_out'])}: predicted {_g(ex['predicted'])}"
                            f" vs observed {_g(ex['observed'])} ({100 * ex['rel_error']:.2f}% off)")
            elif ex:
                quality += f"; extrapolation check skipped: {ex.get('reason')}"
            lines.append(quality)
            for w in r.warnings:
                lines.append(f"  note: {w}")
            if r.boot is not None and r.boot.note and not r.exactly_determined:
                lines.append(f"  note: {r.boot.note}")
        if self.main_fit is not None and self.asymptote is not None:
            iv = self.asymptote_interval
            lines.append(f"asymptote E = {_g(self.asymptote)}" + (
                f" ({int(round(100 * self.main_fit.boot.level))}% interval {_g(iv[0])} to {_g(iv[1])})" if iv
                else " (no meaningful interval with this few points)"))
        elif not self.fits:
            lines.append("no scaling law fitted (see notes)")
        if self.chinchilla is not None:
            c = self.chinchilla
            lines.append(f"chinchilla fit on {c.n} cells: " + ", ".join(f"{k}={_g(v)}" for k, v in c.params.items()))
        for combine, t in self.tiered.items():
            for row in t.n_fits.itertuples():
                lines.append(f"ensembles ({combine}) at D={_count(row.D)}: joint N,K -> inf asymptote {_g(row.E_NK)}"
                             + (f" [{_g(row.low)}, {_g(row.high)}]" if math.isfinite(row.low) else ""))
        if self.efficiency is not None:
            for row in self.efficiency.table.itertuples():
                iv = f" [{_g(row.multiplier_low)}, {_g(row.multiplier_high)}]" if math.isfinite(row.multiplier_low) else ""
                lines.append(f"data efficiency: {row.label}: {_g(row.multiplier)}x{iv}")
        for n in self.notes:
            lines.append(f"note: {n}")
        if self.data.issues:
            lines.append(f"input issues: {len(self.data.issues)} (first: {self.data.issues[0]})")
        if self.plot_path:
            lines.append(f"plot: {self.plot_path}")
        if self.out_dir:
            lines.append(f"report: {self.out_dir / 'summary.md'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready record of the analysis (written as fits.json)."""
        return _jsonable({
            "sweep": str(self.sweep), "x": self.x, "group": self.group, "metric": self.metric,
            "main": None if self.main_key is None and self.main_fit is None else {"group": self.main_key},
            "asymptote": self.asymptote, "asymptote_interval": self.asymptote_interval,
            "fits": [{"group": k, **r.to_dict()} for k, r in self.fits.items()],
            "chinchilla": self.chinchilla.to_dict() if self.chinchilla else None,
            "tiered": {k: t.to_dict() for k, t in self.tiered.items()},
            "efficiency": self.efficiency.to_dict() if self.efficiency else None,
            "missing": self.missing.to_dict(orient="records") if len(self.missing) else [],
            "issues": [str(i) for i in self.data.issues], "notes": self.notes,
            "plots": {k: str(v) for k, v in self.plots.items()},
        })


def _expected_runs(sweep: Path, expected: Sequence[str] | None) -> list[str]:
    """Run names that should exist: given, or listed in ``<sweep>/manifest.json`` ("runs")."""
    if expected is not None:
        return list(expected)
    path = sweep / "manifest.json"
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    runs = doc.get("runs", []) if isinstance(doc, dict) else doc
    names = []
    for r in runs if isinstance(runs, list) else []:
        if isinstance(r, str):
            names.append(r)
        elif isinstance(r, dict) and isinstance(r.get("name"), str):
            names.append(r["name"])
    return names


def _missing(runs: pd.DataFrame, metric: str, expected: list[str], statuses: Sequence[str] | None) -> pd.DataFrame:
    """Runs that cannot enter the analysis, with reasons."""
    rows = []
    for run_id, r in runs.iterrows():
        status = r.get("status")
        reason = None
        if status == "failed":
            err = str(r.get("error") or "").strip().splitlines()
            reason = "failed" + (f": {err[-1][:160]}" if err else "")
        elif status == "running":
            reason = f"still running (step {r.get('step')} of {r.get('steps')})"
        elif status == "unknown":
            reason = "no run.json"
        elif status == "unreadable":
            reason = str(r.get("meta_error"))
        elif statuses is not None and status not in statuses:
            reason = f"status {status!r}"
        elif not (isinstance(r["loss"], float) and math.isfinite(r["loss"])):
            reason = f"no finite {metric}" + (" (diverged)" if r.get("loss_source") is not None else " logged")
        if reason:
            rows.append({"run_id": run_id, "name": r.get("name") or run_id, "status": status, "reason": reason})
    found = set(runs["name"].astype(str)) | set(runs.index.astype(str))
    for name in expected:
        if name not in found:
            rows.append({"run_id": None, "name": name, "status": "absent", "reason": "expected but not found in the sweep"})
    return pd.DataFrame(rows, columns=["run_id", "name", "status", "reason"])


def analyze_sweep(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, x: str = "params",
                  metric: str = "val/loss", law: str = "power", group: str | None = "seed_tokens",
                  axes: Sequence[str] = DEFAULT_AXES, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                  loss: str = "huber", cache_dir=None, progress: bool = True, expected: Sequence[str] | None = None,
                  baseline: str | None = None, statuses: Sequence[str] | None = ("done",),
                  write: bool = True) -> Report:
    """Analyse the sweep at ``sweep_dir`` and (with ``write``) write the report to ``out_dir``
    (default ``<sweep>/analysis``).

    ``x``: run column of the scaling variable (aliases N, D, K...); ``group``: column whose values
    get separate fits (default the seed-token budget D); ``law``: a registered single-input law;
    ``axes``: hyper-parameters of the optimality certificate; ``baseline``: ``column=value``
    selecting the baseline recipe for data efficiency (e.g. ``wd=0.1``).
    """
    sweep = Path(sweep_dir).resolve()
    data = load_sweep(sweep, cache_dir=cache_dir, progress=progress)
    if len(data.runs) == 0:
        raise AnalysisError(f"no runs found under {sweep} (looked for run.json files and TensorBoard event files)")
    law_obj = get_law(law)
    if len(law_obj.inputs) != 1:
        raise AnalysisError(f"analyze fits one-input laws against {x!r}; {law!r} takes {law_obj.inputs} "
                            "(use `asymptote fit` on a table for multi-input laws)")
    runs = data.runs.copy()
    final = data.final(metric)
    runs["loss"] = final["value"].astype(float)
    runs["loss_source"] = final["source"]
    try:
        x_col = resolve(x, runs.columns)
    except KeyError as exc:
        raise AnalysisError(str(exc.args[0])) from None
    group_col = None
    if group:
        try:
            group_col = resolve(group, runs.columns)
        except KeyError:
            group_col = None
        if group_col == x_col:
            group_col = resolve("params", runs.columns) if x_col != "params" and "params" in runs.columns else None
    report = Report(sweep=sweep, out_dir=Path(out_dir).resolve() if out_dir else (sweep / "analysis"),
                    x=x_col, group=group_col, metric=metric, data=data, runs=runs)
    if not write:
        report.out_dir = None
    report.missing = _missing(runs, metric, _expected_runs(sweep, expected), statuses)
    usable = ~runs.index.isin(report.missing["run_id"].dropna())
    if not usable.any():
        raise AnalysisError(f"no finished run with a finite {metric} among {len(runs)} run(s); "
                            f"{len(report.missing)} listed as not analysable (first: "
                            f"{report.missing.iloc[0]['name']}: {report.missing.iloc[0]['reason']})")
    if data.tags() and metric not in data.tags() and runs.loc[usable, "loss_source"].eq("events").any():
        report.notes.append(f"metric {metric!r} not among logged tags")

    cell = (x_col,) + ((group_col,) if group_col else ())
    cert_axes = tuple(a for a in axes if _resolves(a, runs.columns) not in cell)
    # Finished runs that cannot be placed in a cell or on the grid are listed, not fatal.
    placed = [c for c in cell + tuple(filter(None, (_resolves(a, runs.columns) for a in cert_axes)))]
    unplaced = []
    for run_id in runs.index[usable]:
        gaps = [c for c in placed if pd.isna(runs.at[run_id, c])]
        if gaps:
            unplaced.append({"run_id": run_id, "name": runs.at[run_id, "name"], "status": runs.at[run_id, "status"],
                             "reason": f"no {', '.join(gaps)} in run.json"})
    if unplaced:
        report.missing = pd.concat([report.missing, pd.DataFrame(unplaced)], ignore_index=True)
        usable = ~runs.index.isin(report.missing["run_id"].dropna())
        if not usable.any():
            raise AnalysisError(f"no finished run has all of {', '.join(placed)}")
    # All runs (failed ones too) define the grids; unplaceable ones are left out.
    placeable = runs.drop(index=[u["run_id"] for u in unplaced])
    report.best = best_runs(placeable, "loss", cell=cell, axes=cert_axes, statuses=statuses)
    _fit_groups(report, law_obj, n_boot, level, seed, loss)
    _fit_chinchilla(report, n_boot, level, seed, loss)
    _fit_ensembles(report, n_boot, level, seed)
    if baseline:
        _efficiency(report, baseline, n_boot, level, seed, loss)
    if report.out_dir is not None:
        _write(report)
    return report


def _resolves(column: str, columns) -> str | None:
    """resolve() that returns None instead of raising."""
    try:
        return resolve(column, columns)
    except KeyError:
        return None


def _fit_groups(report: Report, law, n_boot, level, seed, loss) -> None:
    """Fit the law to the best loss per cell, one fit per group value."""
    table = report.best.table
    keys = sorted(table[report.group].unique()) if report.group else [None]
    n_free = len(law.params)
    sizes = {}
    for key in keys:
        sub = table if key is None else table[table[report.group] == key]
        label = "" if key is None else f" at {report.group}={_count(key)}"
        xs = pd.to_numeric(sub[report.x], errors="coerce").to_numpy(float)
        ys = sub["loss"].to_numpy(float)
        if np.unique(xs).size < n_free:
            report.notes.append(f"no {law.name} fit{label}: {np.unique(xs).size} distinct {report.x} value(s), "
                                f"the law has {n_free} parameters")
            continue
        try:
            r = fit(law, xs, ys, loss=loss)
        except AnalysisError as exc:
            report.notes.append(f"no fit{label}: {exc}")
            continue
        if n_boot:
            bootstrap(r, n=n_boot, level=level, seed=seed)
        extrapolation_check(r, label=report.x)
        report.fits[key] = r
        sizes[key] = r.n
    if sizes:
        report.main_key = max(sizes, key=lambda k: (sizes[k], -np.inf if k is None else k))


def _fit_chinchilla(report: Report, n_boot, level, seed, loss) -> None:
    """Joint E + A/N^alpha + B/D^beta over all best cells when N and D both vary."""
    if not report.group or "params" not in (report.x, report.group) or "seed_tokens" not in (report.x, report.group):
        return
    t = report.best.table
    N, D = t["params"].to_numpy(float), t["seed_tokens"].to_numpy(float)
    if np.unique(N).size < 2 or np.unique(D).size < 2:
        return
    if len(t) < 6:
        report.notes.append(f"no Chinchilla fit: {len(t)} cells for 5 parameters (need >= 6)")
        return
    try:
        r = fit("chinchilla", (N, D), t["loss"].to_numpy(float), loss=loss)
    except AnalysisError as exc:
        report.notes.append(f"no Chinchilla fit: {exc}")
        return
    if n_boot:
        bootstrap(r, n=min(n_boot, 500), level=level, seed=seed)
    report.chinchilla = r


def ensemble_points(data: SweepData, runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Ensemble losses per combination rule: rows (N, D, K, loss) from ``ensemble/<rule>/loss``
    tags (step = K), with N and D from each run's record."""
    tags = [t for t in data.tags() if t.startswith(ENSEMBLE_PREFIX) and t.endswith("/loss")]
    out = {}
    if not {"params", "seed_tokens"} <= set(runs.columns):
        return out
    for tag in tags:
        pts = data.scalars[data.scalars["tag"] == tag]
        if pts.empty:
            continue
        frame = pd.DataFrame({"run": pts["run"].astype(str).values, "K": pts["step"].values, "loss": pts["value"].values})
        meta = runs[["params", "seed_tokens"]].rename(columns={"params": "N", "seed_tokens": "D"})
        frame = frame.join(meta, on="run").dropna(subset=["N", "D"])
        out[tag[len(ENSEMBLE_PREFIX):-len("/loss")]] = frame[frame["K"] >= 1]
    return out


def _fit_ensembles(report: Report, n_boot, level, seed) -> None:
    """Tiered asymptote for every ensemble combination rule found."""
    for rule, pts in ensemble_points(report.data, report.runs).items():
        # Several ensemble runs of one (N, D) (e.g. different best configs): keep each K's minimum.
        pts = pts.groupby(["N", "D", "K"])["loss"].min().reset_index()
        try:
            report.tiered[rule] = tiered_asymptote(pts, n_boot=min(n_boot, 500), level=level, seed=seed)
        except AnalysisError as exc:
            report.notes.append(f"ensembles ({rule}): {exc}")


def _parse_filter(spec: str, columns) -> tuple[str, object]:
    """'wd=0.1' -> ('optim.weight_decay', 0.1)."""
    if "=" not in spec:
        raise AnalysisError(f"baseline must look like column=value (e.g. wd=0.1), got {spec!r}")
    col, val = spec.split("=", 1)
    try:
        col = resolve(col.strip(), columns)
    except KeyError as exc:
        raise AnalysisError(str(exc.args[0])) from None
    try:
        return col, float(val)
    except ValueError:
        return col, val.strip()


def _efficiency(report: Report, baseline: str, n_boot, level, seed, loss) -> None:
    """Data efficiency of the best non-baseline results against the baseline's L(D)."""
    runs = report.runs
    col, val = _parse_filter(baseline, runs.columns)
    if "seed_tokens" not in runs.columns:
        report.notes.append("data efficiency: runs have no seed_tokens (D)")
        return
    finished = runs[~runs.index.isin(report.missing["run_id"].dropna())]
    is_base = finished[col].map(lambda v: _matches(v, val))
    base, other = finished[is_base], finished[~is_base]
    if base.empty:
        report.notes.append(f"data efficiency: no finished baseline run with {col}={val}")
        return
    base_pts = base.groupby("seed_tokens")["loss"].min().reset_index().rename(columns={"seed_tokens": "D"})
    targets = []
    for d, g in other.groupby("seed_tokens"):
        targets.append(Target(label=f"best non-baseline run at D={_count(d)}", D=float(d), loss=float(g["loss"].min())))
    main = report.main_fit
    if main is not None and report.group == "seed_tokens" and report.main_key is not None:
        samples = main.boot.column("asymptote") if main.boot is not None and main.boot.meaningful else None
        targets.append(Target(label=f"fitted asymptote at D={_count(report.main_key)}", D=float(report.main_key),
                              loss=float(main.asymptote), samples=samples))
    try:
        report.efficiency = data_efficiency(base_pts["D"], base_pts["loss"], targets, n_boot=n_boot, seed=seed,
                                            level=level, loss=loss)
        report.efficiency_points = base_pts
    except AnalysisError as exc:
        report.notes.append(f"data efficiency: {exc}")


def _matches(v, target) -> bool:
    """Loose equality for filter values."""
    try:
        return math.isclose(float(v), float(target), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(v) == str(target)


def _write(report: Report) -> None:
    """Tables, JSON, plots and the Markdown summary."""
    out = report.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files = []
    cols = [c for c in ("name", "status", "job", "params", "non_embedding_params", "seed_tokens", "epochs",
                        "optim.lr", "optim.weight_decay", "seed.train", "steps", "step", "loss", "loss_source",
                        "n_points", "n_event_files", "error", "path") if c in report.runs.columns]
    report.runs[cols].to_csv(out / "runs.csv")
    files.append(out / "runs.csv")
    if report.best is not None:
        bt = report.best.table.copy()
        bt["runs"] = bt["runs"].map(lambda r: " ".join(map(str, r)))
        bt["neighbours"] = bt["neighbours"].map(lambda d: json.dumps(_jsonable(d)))
        bt.to_csv(out / "best_runs.csv", index=False)
        files.append(out / "best_runs.csv")
    report.missing.to_csv(out / "missing.csv", index=False)
    files.append(out / "missing.csv")
    pd.DataFrame([{"run_id": i.run_id, "kind": i.kind, "message": i.message} for i in report.data.issues],
                 columns=["run_id", "kind", "message"]).to_csv(out / "issues.csv", index=False)
    files.append(out / "issues.csv")
    for rule, t in report.tiered.items():
        t.k_fits.to_csv(out / f"ensemble_{rule.replace('/', '_')}_k_fits.csv", index=False)
        files.append(out / f"ensemble_{rule.replace('/', '_')}_k_fits.csv")
    if report.efficiency is not None:
        report.efficiency.table.to_csv(out / "data_efficiency.csv", index=False)
        files.append(out / "data_efficiency.csv")
    _plots(report)
    files += list(report.plots.values())
    (out / "fits.json").write_text(json.dumps(report.to_dict(), indent=1))
    files.append(out / "fits.json")
    (out / "summary.md").write_text(markdown(report))
    files.append(out / "summary.md")
    report.files = files


def downstream_columns(runs: pd.DataFrame) -> list[str]:
    """Final downstream accuracy columns (`final.downstream/<task>/acc...`, from job=evaluate)
    that at least one run has."""
    return [c for c in runs.columns if c.startswith("final.downstream/")
            and c.rsplit("/", 1)[-1].startswith("acc") and runs[c].notna().any()]


def _plots(report: Report) -> None:
    """All figures that the data support; a failing figure becomes a note, not a crash."""
    out = report.out_dir
    tasks = []
    if report.best is not None and len(report.best.table):
        tasks.append(("loss_vs_x", lambda: plotting.loss_vs_x(
            out / f"loss_vs_{report.x.replace('/', '_')}.png", report.runs, report.x, "loss",
            report.best.table, report.fits, report.group, ylabel=f"final {report.metric}")))
    for rule, t in report.tiered.items():
        pts = ensemble_points(report.data, report.runs)[rule]
        pts = pts.groupby(["N", "D", "K"])["loss"].min().reset_index()
        fits = {}
        for row in t.k_fits.itertuples():
            g = pts[(pts["N"] == row.N) & (pts["D"] == row.D)]
            fits[(row.N, row.D)] = fit("power", g["K"].to_numpy(float), g["loss"].to_numpy(float))
        tasks.append((f"loss_vs_k_{rule}", lambda pts=pts, fits=fits, rule=rule: plotting.loss_vs_k(
            out / f"loss_vs_k_{rule.replace('/', '_')}.png", pts, fits, title=f"ensembles ({rule})")))
    ep, wd = _resolves("epochs", report.runs.columns), _resolves("wd", report.runs.columns)
    if ep and wd and report.best is not None:
        tabs = []
        for row in report.best.table.itertuples(index=False):
            rd = row._asdict()
            sel = report.runs
            title = []
            for c in report.best.cell:
                sel = sel[sel[c] == rd[c]]
                title.append(f"{c}={_count(rd[c])}")
            over = [a for a in report.best.axes if a not in (ep, wd)]
            if sel["loss"].notna().any():
                tabs.append((", ".join(title), heatmap(sel, "loss", ep, wd, over)))
        if tabs:
            tasks.append(("heatmaps", lambda: plotting.heatmaps(out / "heatmaps_epochs_wd.png", tabs, ep, wd)))
    if report.best is not None:
        series = []
        sc = report.data.scalars
        for row in report.best.table.head(10).itertuples(index=False):
            rd = row._asdict()
            run_id = rd["runs"][0]
            val = sc[(sc["run"] == run_id) & (sc["tag"] == report.metric)].sort_values("step")
            train = sc[(sc["run"] == run_id) & (sc["tag"] == "train/loss")].sort_values("step")
            label = ", ".join(f"{c}={_count(rd[c])}" for c in report.best.cell)
            series.append((label, val, train))
        if any(len(v) for _, v, _ in series):
            tasks.append(("curves", lambda: plotting.curves(out / "loss_curves.png", series, ylabel=report.metric)))
    downstream = downstream_columns(report.runs)
    if downstream and "loss" in report.runs.columns:
        tasks.append(("accuracy_vs_loss", lambda: plotting.accuracy_vs_loss(
            out / "accuracy_vs_loss.png", report.runs, downstream)))
    if report.efficiency is not None:
        tasks.append(("data_efficiency", lambda: plotting.efficiency_plot(
            out / "data_efficiency.png", report.efficiency, report.efficiency_points)))
    for name, task in tasks:
        try:
            report.plots[name] = task()
        except Exception as exc:  # a figure must never sink the analysis
            report.notes.append(f"plot {name} failed: {exc.__class__.__name__}: {exc}")


def md_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (numbers compact, pipes escaped)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return _g(v, 5)
        if isinstance(v, (list, tuple)):
            v = " ".join(map(str, v))
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def markdown(report: Report) -> str:
    """The Markdown summary written as summary.md."""
    md = [f"# Sweep analysis: `{report.sweep.name}`", "", f"- sweep: `{report.sweep}`",
          f"- metric: `{report.metric}`; scaling variable: `{report.x}`" + (f"; fits per `{report.group}`" if report.group else ""),
          f"- runs: {len(report.runs)}; scalar points: {report.data.stats.points:,}; "
          f"ingest: {report.data.stats.seconds:.2f} s ({report.data.stats.files_read} files read, "
          f"{report.data.stats.files_appended} appended, {report.data.stats.files_cached} from cache)", ""]
    if report.plot_path:
        md += [f"![loss vs {report.x}]({report.plot_path.name})", ""]
    md += ["## Fits", ""]
    if not report.fits:
        md += ["No scaling law could be fitted (see notes).", ""]
    for key, r in report.fits.items():
        md += [f"### {r.law.formula}" + ("" if key is None else f" at {report.group} = {_count(key)}"), "",
               "| parameter | value | interval |", "|---|---|---|"]
        for p, v in r.params.items():
            iv = r.interval(p)
            md.append(f"| {p} | {_g(v, 6)} | {f'{_g(iv[0], 5)} to {_g(iv[1], 5)}' if iv else 'n/a'} |")
        md += ["", f"- points: {r.n}; objective: {r.loss}" + (f" (delta {r.delta:g})" if r.loss == 'huber' else "")
               + f"; R^2: {_g(r.r2) if not r.exactly_determined else 'n/a (exactly determined)'}"]
        if r.boot is not None:
            md.append(f"- bootstrap: {r.boot.samples.shape[0]} of {r.boot.n_requested} replicates ({r.boot.method}), "
                      f"{int(round(100 * r.boot.level))}% percentile intervals" + (f"; {r.boot.note}" if r.boot.note else ""))
        ex = r.extrapolation
        if ex and ex.get("ok"):
            md.append(f"- extrapolation check: fitted without {report.x} = {_count(ex['held_out'])}, predicted "
                      f"{_g(ex['predicted'])} vs observed {_g(ex['observed'])} (relative error {100 * ex['rel_error']:.2f}%)")
        elif ex:
            md.append(f"- extrapolation check skipped: {ex.get('reason')}")
        md += [f"- {w}" for w in r.warnings] + [""]
    if report.chinchilla is not None:
        c = report.chinchilla
        md += ["### Chinchilla form over (N, D)", "", "| parameter | value | interval |", "|---|---|---|"]
        for p, v in c.params.items():
            iv = c.interval(p)
            md.append(f"| {p} | {_g(v, 6)} | {f'{_g(iv[0], 5)} to {_g(iv[1], 5)}' if iv else 'n/a'} |")
        md.append("")
    for rule, t in report.tiered.items():
        md += [f"## Ensembles ({rule}): tiered asymptote", "", md_table(t.n_fits) if len(t.n_fits) else
               "No N tier (fewer than 3 sizes).", ""] + [f"- {n}" for n in t.notes] + [""]
    if report.efficiency is not None:
        md += ["## Data efficiency", "", md_table(report.efficiency.table), ""]
        md += [f"- {n}" for n in report.efficiency.notes] + [""]
    if report.best is not None:
        bt = report.best.table.drop(columns=["neighbours", "runs"])
        md += ["## Best run per cell", "", md_table(bt), ""]
    if len(report.missing):
        md += ["## Runs not analysed", "", md_table(report.missing), ""]
    if report.data.issues:
        md += ["## Input issues", ""] + [f"- {i}" for i in report.data.issues] + [""]
    if report.notes:
        md += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    others = [p for k, p in report.plots.items() if k != "loss_vs_x"]
    if others:
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in others] + [""]
    return "\n".join(md)


def print_summary(report: Report, stream=None) -> None:
    """Print :meth:`Report.summary` (default: stdout)."""
    print(report.summary(), file=stream or sys.stdout)
