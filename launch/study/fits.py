"""The study's fits stage: scaling laws over the finished stages, with bootstrap intervals.

Pure over three tables (built from the plan by `tables`):
- `standard`: N, D, loss of every finished standard-recipe run (the best per (N, D) is used);
- `regularized`: N, D, loss of every certified regularized optimum;
- `ensembles`: N, D, K, loss of every ensemble evaluation (logit mean).
It fits, with the analysis package's public functions:
- L(N) = E + A / N^alpha per recipe and D (>= 3 sizes), E with a bootstrap interval;
- the tiered joint asymptote (analysis/tiered.py): L(K) per (N, D), then N -> infinity per D;
- L(D) of the standard recipe's best loss per D (>= 3 budgets) and the data-efficiency
  multiplier (analysis/efficiency.py) of the regularized, ensemble and joint asymptotes.
What cannot be fitted (too few sizes or budgets, a fit that fails) is said in `notes`, never
filled in. N is in millions of non-embedding parameters throughout.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from ... import atomic


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return _clean(v.item())
    return v


def law_in_n(frame: pd.DataFrame, n_boot: int, level: float, seed: int = 0) -> dict:
    """L(N) = E + A / N^alpha over (N, loss) rows: parameters, E's interval and warnings."""
    from ...analysis.bootstrap import bootstrap
    from ...analysis.fit import fit

    result = fit("power", frame["N"].to_numpy(float), frame["loss"].to_numpy(float))
    out = {"params": dict(result.params), "n_sizes": int(len(frame)), "r2": result.r2,
           "warnings": list(result.warnings), "E_low": math.nan, "E_high": math.nan}
    if n_boot:
        boot = bootstrap(result, n=n_boot, level=level, seed=seed)
        if boot.meaningful and "E" in boot.intervals:
            out["E_low"], out["E_high"] = boot.intervals["E"]
        elif boot.note:
            out["warnings"].append(boot.note)
    return out


def study_fits(standard: pd.DataFrame, regularized: pd.DataFrame, ensembles: pd.DataFrame,
               n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Every fit the tables allow (see the module docstring), as a JSON-ready dict."""
    from ...analysis.efficiency import Target, data_efficiency
    from ...analysis.errors import AnalysisError
    from ...analysis.tiered import tiered_asymptote

    notes: list[str] = []
    best_standard = (standard.groupby(["N", "D"], as_index=False)["loss"].min()
                     if len(standard) else standard)
    laws: dict[str, dict] = {}
    for recipe, table in (("standard", best_standard), ("regularized", regularized)):
        for d, rows in (table.groupby("D") if len(table) else []):
            if rows["N"].nunique() < 3:
                notes.append(f"{recipe} D={d:g}: {rows['N'].nunique()} size(s); L(N) needs 3")
                continue
            try:
                laws.setdefault(recipe, {})[str(int(d))] = law_in_n(rows, n_boot, level, seed)
            except AnalysisError as exc:
                notes.append(f"{recipe} D={d:g}: L(N) not fitted: {exc}")
    tiered = None
    if len(ensembles):
        try:
            t = tiered_asymptote(ensembles, n_boot=n_boot, seed=seed, level=level)
            tiered = t.to_dict()
            notes += t.notes
        except AnalysisError as exc:
            notes.append(f"tiered asymptote not fitted: {exc}")
    efficiency = None
    by_d = best_standard.groupby("D")["loss"].min() if len(best_standard) else pd.Series(dtype=float)
    if len(by_d) >= 3:
        targets = [Target(f"regularized asymptote D={d}", float(d), law["params"]["E"])
                   for d, law in laws.get("regularized", {}).items()]
        for row in (tiered or {}).get("n_fits", []):
            targets.append(Target(f"joint N,K asymptote D={row['D']:g}", float(row["D"]),
                                  float(row["E_NK"])))
        for row in (tiered or {}).get("k_fits", []):
            targets.append(Target(f"ensemble asymptote N={row['N']:.3g}M D={row['D']:g}",
                                  float(row["D"]), float(row["E_K"])))
        if targets:
            try:
                eff = data_efficiency(by_d.index.to_numpy(float), by_d.to_numpy(float), targets,
                                      n_boot=n_boot, seed=seed, level=level)
                efficiency = eff.to_dict()
                notes += eff.notes
            except AnalysisError as exc:
                notes.append(f"data efficiency not computed: {exc}")
    else:
        notes.append(f"the standard recipe has {len(by_d)} budget(s) D; L(D) and data "
                     "efficiency need 3 (standard.seed_tokens)")
    return _clean({"unit_N": "millions of non-embedding parameters", "laws_in_N": laws,
                   "tiered": tiered, "efficiency": efficiency, "notes": notes,
                   "inputs": {"standard": best_standard.to_dict(orient="records"),
                              "regularized": regularized.to_dict(orient="records"),
                              "ensembles": ensembles.to_dict(orient="records")}})


def tables(stages, size) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(standard, regularized, ensembles) tables of a plan's finished points; `size(model)`
    gives the parameters, N is in millions of them (fits of power laws in N behave at that
    scale for every study from the miniature to the paper). Regularized rows are certified optima only; ensembles come from each finished
    evaluation's ensemble.json (logit mean)."""
    by_name = {s.name: s for s in stages}

    def millions(model: str) -> float:
        return size(model) / 1e6

    standard = [{"N": millions(p.meta["model"]), "D": p.meta["D"], "loss": p.loss}
                for p in by_name["standard"].points
                if p.state == "DONE" and p.loss is not None and math.isfinite(p.loss)]
    regularized = [{"N": millions(p.meta["model"]), "D": p.meta["D"], "loss": p.loss}
                   for p in by_name["regularized"].points if p.meta.get("optimum")]
    ensembles = []
    for p in by_name["ensemble_eval"].points:
        if p.state != "DONE":
            continue
        results = json.loads((p.folder / "ensemble.json").read_text())
        for k, loss in zip(results["K"], results["logit_mean"]["loss"]):
            ensembles.append({"N": millions(p.meta["model"]), "D": p.meta["D"], "K": int(k),
                              "loss": float(loss)})
    columns = ["N", "D", "loss"]
    return (pd.DataFrame(standard, columns=columns), pd.DataFrame(regularized, columns=columns),
            pd.DataFrame(ensembles, columns=["N", "D", "K", "loss"]))


def inputs_digest(standard: pd.DataFrame, regularized: pd.DataFrame,
                  ensembles: pd.DataFrame) -> str:
    """16 hex digits naming the fits' inputs: fits.json records it, and a plan whose tables
    differ (a run finished since, a cell certified) sees the file as stale."""
    blob = json.dumps([t.sort_values(list(t.columns)).to_dict(orient="records")
                       for t in (standard, regularized, ensembles)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stored_digest(path: Path) -> str | None:
    """The inputs digest a fits.json was computed from (None when absent or unreadable)."""
    try:
        return json.loads(Path(path).read_text()).get("inputs_digest")
    except (OSError, ValueError):
        return None


def write_fits(path: Path, result: dict) -> Path:
    """fits.json, written atomically (its existence marks the stage done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, result, indent=2)
    return path
