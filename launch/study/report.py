"""The study's report stage: the paper's summary table, the findings checked against the
measured numbers, plots and a TensorBoard view, from fits.json and the finished stages.

`<out>/report/` gets:
- `summary.md`: the asymptotes (standard, regularized, ensemble, joint) with their intervals,
  data efficiency, losses per size, distillation and the share of the ensemble's benefit each
  student keeps, and the findings (a)-(e) of docs/study.md, each answered from the numbers;
- `report.json`: the same numbers;
- `loss_vs_n.png`, `loss_vs_k.png`, `data_efficiency.png`, `distill.png`;
- `tb/`: TensorBoard events (the tables as text, losses against N and K as scalars).
Nothing here decides a finding by a threshold tuned to the data: each check is the plain
comparison its sentence states, and what is missing to decide one is said.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ... import atomic

KINDS = ("plain", "logit", "sequence")


def _f(v) -> float:
    return math.nan if v is None else float(v)


def _g(v, digits: int = 4) -> str:
    v = _f(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return "-" if not math.isfinite(v) else f"{v:.{digits}g}"


def _interval(low, high) -> str:
    low, high = _f(low), _f(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval"
    return f"[{low:.4g}, {high:.4g}]"


# ---- the numbers ------------------------------------------------------------------------

def collect(spec, stages, fits: dict, size) -> dict:
    """Every number the report shows, from the plan's finished points and fits.json; `size`
    gives a model's non-embedding parameters."""
    by = {s.name: s for s in stages}
    d = spec.distill_tokens
    sizes = {m: size(m) / 1e6 for m in spec.models}
    rows = []
    for model in spec.models:
        std = [p for p in by["standard"].points if p.meta.get("model") == model
               and p.meta.get("D") == d and p.loss is not None and math.isfinite(p.loss)]
        best_std = min(std, key=lambda p: p.loss, default=None)
        opt = next((p for p in by["regularized"].points if p.meta.get("optimum")
                    and p.meta.get("model") == model and p.meta.get("D") == d), None)
        ens = _ensemble(by["ensemble_eval"], model, d)
        rows.append({"model": model, "N": sizes[model],
                     "standard_loss": best_std.loss if best_std else None,
                     "standard_run": _knobs(best_std.overrides) if best_std else {},
                     "regularized_loss": opt.loss if opt else None,
                     "regularized_run": _knobs(opt.overrides) if opt else {},
                     "ensemble_K": ens["K"], "ensemble_loss": ens["loss"]})
    for row in rows:
        k_fit = _k_fit(fits, row["N"], d)
        row["E_K"], row["E_K_low"], row["E_K_high"] = (
            (k_fit["E_K"], k_fit["low"], k_fit["high"]) if k_fit else (None, None, None))
        row["E_K_points"] = k_fit["n_points"] if k_fit else 0
    return {"study": spec.name, "D": d, "k_max": spec.ensemble.k_max,
            "standard_weight_decay": spec.standard.weight_decay, "sizes": rows,
            "asymptotes": _asymptotes(fits, d), "efficiency": _efficiency(fits),
            "distill": _distill(spec, by, rows), "notes": list(fits.get("notes", []))}


def _knobs(overrides: list[str]) -> dict:
    keys = {"optim.lr": "lr", "optim.weight_decay": "wd", "train.epochs": "epochs"}
    o = dict(x.split("=", 1) for x in overrides if "=" in x)
    return {short: float(o[k]) for k, short in keys.items() if k in o}


def _ensemble(stage, model: str, d: int) -> dict:
    for p in stage.points:
        if p.meta.get("model") == model and p.meta.get("D") == d and p.state == "DONE":
            result = json.loads((p.folder / "ensemble.json").read_text())
            return {"K": [int(k) for k in result["K"]],
                    "loss": [float(x) for x in result["logit_mean"]["loss"]]}
    return {"K": [], "loss": []}


def _k_fit(fits: dict, n: float, d: int) -> dict | None:
    for row in (fits.get("tiered") or {}).get("k_fits", []):
        if math.isclose(row["N"], n, rel_tol=1e-9) and int(row["D"]) == d:
            return row
    return None


def _asymptotes(fits: dict, d: int) -> dict:
    out = {}
    for recipe in ("standard", "regularized"):
        law = fits.get("laws_in_N", {}).get(recipe, {}).get(str(d))
        if law:
            out[recipe] = {"E": law["params"]["E"], "low": law["E_low"], "high": law["E_high"],
                           "A": law["params"]["A"], "alpha": law["params"]["alpha"],
                           "n_sizes": law["n_sizes"], "warnings": law["warnings"]}
    joint = next((r for r in (fits.get("tiered") or {}).get("n_fits", [])
                  if int(r["D"]) == d), None)
    if joint:
        out["joint"] = {"E": joint["E_NK"], "low": joint["low"], "high": joint["high"],
                        "A": joint["A"], "alpha": joint["alpha"], "n_sizes": joint["n_sizes"],
                        "warnings": (["exactly determined"] if joint["exactly_determined"]
                                     else [])}
    return out


def _efficiency(fits: dict) -> dict:
    eff = fits.get("efficiency") or {}
    baseline = eff.get("baseline") or {}
    return {"baseline": {k: baseline.get(k) for k in ("params", "n_points", "warnings")},
            "targets": eff.get("targets", [])}


def _distill(spec, by: dict, rows: list[dict]) -> dict:
    """Each student's losses by kind, the teacher ensemble's loss at K_max, and the share of
    the ensemble's benefit each distilled student keeps:
    (plain - distilled) / (plain - teacher ensemble)."""
    teacher = next((r for r in rows if r["model"] == spec.teacher), None)
    ensemble_loss = teacher["ensemble_loss"][-1] if teacher and teacher["ensemble_loss"] else None
    students = []
    for student in spec.distill.students:
        entry = {"student": student, "plain": None, "distilled": []}
        for p in by["distill"].points:
            if p.meta.get("student") != student or p.state != "DONE":
                continue
            if p.meta["kind"] == "plain":
                entry["plain"] = p.loss
            else:
                entry["distilled"].append({"label": p.label, "kind": p.meta["kind"],
                                           "loss": p.loss})
        gap = (entry["plain"] - ensemble_loss if entry["plain"] is not None
               and ensemble_loss is not None else None)
        for x in entry["distilled"]:
            x["retained"] = ((entry["plain"] - x["loss"]) / gap
                             if gap and x["loss"] is not None else None)
        students.append(entry)
    return {"teacher": spec.teacher, "teacher_ensemble_loss": ensemble_loss,
            "teacher_single_loss": teacher["regularized_loss"] if teacher else None,
            "students": students}


def _multiplier(target: dict, efficiency: dict) -> float:
    """A target's data-efficiency multiplier; infinite when its loss is below the asymptote
    of the standard recipe's L(D) (no amount of data gets the standard recipe there)."""
    if target.get("multiplier") is not None:
        return float(target["multiplier"])
    e = ((efficiency.get("baseline") or {}).get("params") or {}).get("E")
    return math.inf if e is not None and target["loss"] < e else math.nan


# ---- the findings -----------------------------------------------------------------------

def findings(numbers: dict) -> list[dict]:
    """The paper's findings (a)-(e), each {id, claim, verdict: yes / no / undecided, evidence}."""
    rows, asym, wd0 = numbers["sizes"], numbers["asymptotes"], numbers["standard_weight_decay"]
    out = []

    both = [r for r in rows if r["regularized_loss"] is not None and r["standard_loss"] is not None]
    evidence = [f"{r['model']}: best wd {_g(r['regularized_run'].get('wd'))} "
                f"({_g(r['regularized_run'].get('wd', math.nan) / wd0, 3)}x standard), "
                f"regularized {_g(r['regularized_loss'])} vs standard {_g(r['standard_loss'])}"
                for r in both]
    verdict = "undecided" if len(both) < len(rows) or not rows else (
        "yes" if all(r["regularized_run"]["wd"] >= 3 * wd0
                     and r["regularized_loss"] < r["standard_loss"] for r in both) else "no")
    out.append({"id": "a", "claim": "under heavy epoching the best weight decay is several "
                "(>= 3) times the standard one and the regularized recipe beats the standard "
                "recipe at every N", "verdict": verdict, "evidence": evidence})

    reg = sorted((r for r in rows if r["regularized_loss"] is not None), key=lambda r: r["N"])
    losses = [r["regularized_loss"] for r in reg]
    monotone = all(b < a for a, b in zip(losses, losses[1:]))
    law = asym.get("regularized")
    if law is None or len(reg) < 3:
        verdict, ev = "undecided", ["the regularized L(N) is not fitted (fewer than 3 sizes)"]
    else:
        at_bound = [w for w in law["warnings"] if w.startswith("E ") and "bound" in w]
        interval = math.isfinite(_f(law["low"])) and math.isfinite(_f(law["high"]))
        inside = not at_bound and law["E"] > 0 and law["E"] < min(losses)
        verdict = "yes" if monotone and inside and interval else "no"
        ev = [f"losses by N: {', '.join(_g(x) for x in losses)} "
              f"({'monotone' if monotone else 'NOT monotone'})",
              f"E = {_g(law['E'])} {_interval(law['low'], law['high'])}"
              + (f"; {'; '.join(at_bound)}" if at_bound else "")]
    out.append({"id": "b", "claim": "the regularized loss falls monotonically with N and the "
                "fitted asymptote E lies strictly inside its bounds with a finite bootstrap "
                "interval", "verdict": verdict, "evidence": ev})

    e_k = [r for r in rows if r["E_K"] is not None]
    if law is None or not e_k:
        verdict, ev = "undecided", ["needs the regularized asymptote and at least one L(K) fit"]
    else:
        below = [r for r in e_k if r["E_K"] < law["E"]]
        verdict = "yes" if below else "no"
        ev = [f"regularized asymptote (N -> inf) {_g(law['E'])}"] + [
            f"{r['model']}: ensemble asymptote (K -> inf) {_g(r['E_K'])} "
            f"{_interval(r['E_K_low'], r['E_K_high'])}" for r in e_k]
    out.append({"id": "c", "claim": "the ensemble asymptote (K -> infinity) is below the "
                "regularized asymptote (at some N)", "verdict": verdict, "evidence": ev})

    joint = asym.get("joint")
    joint_eff = next((t for t in numbers["efficiency"]["targets"]
                      if t["label"].startswith("joint")), None)
    if joint is None or law is None or not e_k:
        verdict, ev = "undecided", ["the joint N,K asymptote is not fitted"]
    else:
        lower = joint["E"] < law["E"] and all(joint["E"] < r["E_K"] for r in e_k)
        mult = _multiplier(joint_eff, numbers["efficiency"]) if joint_eff else math.nan
        verdict = "yes" if lower and mult > 1 else "no"
        ev = [f"joint {_g(joint['E'])} {_interval(joint['low'], joint['high'])} vs regularized "
              f"{_g(law['E'])} and ensemble asymptotes "
              f"{', '.join(_g(r['E_K']) for r in e_k)}",
              f"data-efficiency multiplier {_g(mult, 3)}"
              + (" (below the asymptote of the standard recipe's L(D): no amount of "
                 "standard-recipe data reaches it)" if mult == math.inf else "")]
    out.append({"id": "d", "claim": "the joint asymptote is below both, and its "
                "data-efficiency multiplier is > 1", "verdict": verdict, "evidence": ev})

    pairs = [(s["student"], s["plain"], x) for s in numbers["distill"]["students"]
             for x in s["distilled"] if s["plain"] is not None and x["loss"] is not None]
    if not pairs:
        verdict, ev = "undecided", ["no finished student pair (plain and distilled)"]
    else:
        verdict = "yes" if any(x["loss"] < plain for _, plain, x in pairs) else "no"
        ev = [f"{x['label']}: {_g(x['loss'])} vs plain {_g(plain)} "
              f"(keeps {_g(100 * _f(x['retained']), 3)}% of the ensemble's benefit)"
              for _, plain, x in pairs]
    out.append({"id": "e", "claim": "a distilled student beats its plainly trained counterpart",
                "verdict": verdict, "evidence": ev})
    return out


# ---- writing ----------------------------------------------------------------------------

def markdown(numbers: dict, found: list[dict]) -> str:
    """summary.md."""
    d, k_max = numbers["D"], numbers["k_max"]
    lines = [f"# Study {numbers['study']!r}: report", "",
             f"D = {d:,} seed tokens; N in millions of non-embedding parameters; losses are "
             "final validation losses (nats/token); intervals are bootstrap intervals of the "
             "fits.", "", "## Asymptotes", "",
             "| recipe | asymptote E | interval | A | alpha | sizes | caveats |",
             "|---|---|---|---|---|---|---|"]
    names = {"standard": "standard (L(N) of the best standard run)",
             "regularized": "regularized (L(N) of the certified optima)",
             "joint": "joint N,K -> inf (tiered)"}
    for key, name in names.items():
        a = numbers["asymptotes"].get(key)
        if a is None:
            lines.append(f"| {name} | - | not fitted | | | | |")
            continue
        lines.append(f"| {name} | {_g(a['E'])} | {_interval(a['low'], a['high'])} | "
                     f"{_g(a['A'])} | {_g(a['alpha'], 3)} | {a['n_sizes']} | "
                     f"{'; '.join(a['warnings']) or '-'} |")
    for r in numbers["sizes"]:
        if r["E_K"] is not None:
            caveat = ("exactly determined (3 sizes K for 3 parameters)"
                      if r["E_K_points"] <= 3 else "-")
            lines.append(f"| ensemble K -> inf at {r['model']} | {_g(r['E_K'])} | "
                         f"{_interval(r['E_K_low'], r['E_K_high'])} | | | | {caveat} |")
    lines += ["", "## Losses per size", "",
              "| model | N (M) | standard best (epochs) | regularized optimum (lr, wd, epochs) | "
              + " | ".join(f"K={k}" for k in range(1, k_max + 1)) + " |",
              "|---|---|---|---|" + "---|" * k_max]
    for r in numbers["sizes"]:
        s, g = r["standard_run"], r["regularized_run"]
        ens = dict(zip(r["ensemble_K"], r["ensemble_loss"]))
        lines.append(
            f"| {r['model']} | {_g(r['N'], 3)} | {_g(r['standard_loss'])} "
            f"({_g(s.get('epochs'))}) | {_g(r['regularized_loss'])} ({_g(g.get('lr'))}, "
            f"{_g(g.get('wd'))}, {_g(g.get('epochs'))}) | "
            + " | ".join(_g(ens.get(k)) for k in range(1, k_max + 1)) + " |")
    eff = numbers["efficiency"]
    lines += ["", "## Data efficiency", ""]
    if eff["targets"]:
        p = eff["baseline"]["params"] or {}
        lines += [f"Standard recipe L(D) = {_g(p.get('E'))} + {_g(p.get('A'))} / "
                  f"D^{_g(p.get('alpha'), 3)} over {eff['baseline']['n_points']} budgets "
                  "(best loss per D). The multiplier is the D the standard recipe would need "
                  "to reach a loss, over the D used.", "",
                  "| target | loss | effective D | multiplier | interval |", "|---|---|---|---|---|"]
        for t in eff["targets"]:
            mult = _multiplier(t, eff)
            lines.append(f"| {t['label']} | {_g(t['loss'])} | "
                         + ("below L(D)'s asymptote" if mult == math.inf
                            else _g(t["effective_D"])) + f" | {_g(mult, 3)} | "
                         f"{_interval(t['multiplier_low'], t['multiplier_high'])} |")
    else:
        lines.append("Not computed (see the notes).")
    dist = numbers["distill"]
    lines += ["", "## Distillation", "",
              f"Teacher: the {dist['teacher']} ensemble (K={k_max}, logit mean) "
              f"{_g(dist['teacher_ensemble_loss'])}; a single {dist['teacher']} "
              f"{_g(dist['teacher_single_loss'])}. Kept = (plain - distilled) / "
              "(plain - teacher ensemble).", "",
              "| student | plain | distilled | loss | kept of the ensemble's benefit |",
              "|---|---|---|---|---|"]
    for s in dist["students"]:
        for x in s["distilled"] or [{"label": "-", "loss": None, "retained": None}]:
            lines.append(f"| {s['student']} | {_g(s['plain'])} | {x['label']} | "
                         f"{_g(x['loss'])} | {_g(100 * _f(x['retained']), 3)}% |")
    lines += ["", "## The paper's findings, checked", ""]
    for f in found:
        lines.append(f"- ({f['id']}) {f['claim']}: **{f['verdict']}**")
        lines += [f"  - {e}" for e in f["evidence"]]
    if numbers["notes"]:
        lines += ["", "## Notes from the fits", ""] + [f"- {n}" for n in numbers["notes"]]
    lines += ["", "Plots: loss_vs_n.png, loss_vs_k.png, data_efficiency.png, distill.png; "
              "TensorBoard: `tensorboard --logdir tb`.", ""]
    return "\n".join(lines)


def inputs_of(stages, fits_path: Path) -> dict:
    """What a report is made from: the fits' inputs digest and every distillation point's
    folder and loss; report.json records it, and a report whose inputs changed is stale."""
    from .fits import stored_digest

    distill = next(s for s in stages if s.name == "distill")
    return {"fits": stored_digest(fits_path),
            "distill": sorted([p.folder.name if p.folder else p.label, p.state, p.loss]
                              for p in distill.points)}


def is_fresh(path: Path, stages, fits_path: Path) -> bool:
    """Whether the report beside `path` (summary.md) was made from today's inputs."""
    try:
        stored = json.loads((Path(path).parent / "report.json").read_text()).get("inputs")
    except (OSError, ValueError):
        return False
    return stored == json.loads(json.dumps(inputs_of(stages, fits_path), default=lambda v: None))


def write_report(spec, stages, fits_path: Path, out_dir: Path, size) -> Path:
    """The report stage: summary.md last (its existence marks the stage done)."""
    from . import report_plots

    fits = json.loads(Path(fits_path).read_text())
    numbers = collect(spec, stages, fits, size)
    found = findings(numbers)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_plots.plot_all(numbers, fits, out_dir)
    text = markdown(numbers, found)
    report_plots.tensorboard(numbers, text, out_dir / "tb")
    atomic.write_json(out_dir / "report.json", {"numbers": numbers, "findings": found,
                                                "inputs": inputs_of(stages, fits_path)},
                      indent=2, default=lambda v: None)
    atomic.write_text(out_dir / "summary.md", text)
    return out_dir / "summary.md"
