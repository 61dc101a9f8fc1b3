"""The study report's pictures: PNG plots (matplotlib, Agg) and a TensorBoard view (event files
written with tensorboard's own writer and summary protos, so no torch is needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...analysis.plots import new_figure, save_figure


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(float(v)) for v in values)


def loss_vs_n(numbers: dict, path: Path) -> Path:
    """Standard best, regularized optimum and ensemble (K_max) against N, with the L(N) fits,
    their asymptotes and the joint N,K asymptote."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    rows = sorted(numbers["sizes"], key=lambda r: r["N"])
    n = np.array([r["N"] for r in rows])
    grid = np.geomspace(n.min(), n.max() * 30, 200) if len(n) else np.array([])
    colours = {"standard": "tab:red", "regularized": "tab:blue", "joint": "tab:purple"}
    for key, label in (("standard", "standard recipe (best)"),
                       ("regularized", "regularized (certified optimum)")):
        y = [r[f"{key}_loss"] for r in rows]
        keep = [i for i, v in enumerate(y) if _finite(v)]
        ax.plot(n[keep], [y[i] for i in keep], "o", color=colours[key], label=label)
        law = numbers["asymptotes"].get(key)
        if law and len(grid):
            ax.plot(grid, law["E"] + law["A"] / grid ** law["alpha"], color=colours[key], lw=1)
            ax.axhline(law["E"], color=colours[key], ls="--", lw=0.8,
                       label=f"{key} asymptote {law['E']:.3f}")
    ens = [(r["N"], r["ensemble_loss"][-1]) for r in rows if r["ensemble_loss"]]
    if ens:
        ax.plot(*zip(*ens), "s", color="tab:green",
                label=f"ensemble K={numbers['k_max']} (logit mean)")
    e_k = [(r["N"], r["E_K"]) for r in rows if _finite(r["E_K"])]
    if e_k:
        ax.plot(*zip(*e_k), "^", color="tab:green", mfc="none", label="ensemble K -> inf")
    joint = numbers["asymptotes"].get("joint")
    if joint and len(grid):
        ax.plot(grid, joint["E"] + joint["A"] / grid ** joint["alpha"], color=colours["joint"],
                lw=1)
        ax.axhline(joint["E"], color=colours["joint"], ls="--", lw=0.8,
                   label=f"joint N,K asymptote {joint['E']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N (millions)")
    ax.set_ylabel("validation loss")
    ax.set_title(f"{numbers['study']}: D = {numbers['D']:,} seed tokens", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def loss_vs_k(numbers: dict, fits: dict, path: Path) -> Path:
    """Ensemble loss against K per size, with the L(K) fits and their asymptotes."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    k_fits = {round(r["N"], 9): r for r in (fits.get("tiered") or {}).get("k_fits", [])}
    for r in sorted(numbers["sizes"], key=lambda r: r["N"]):
        if not r["ensemble_K"]:
            continue
        line, = ax.plot(r["ensemble_K"], r["ensemble_loss"], "o", label=r["model"])
        f = k_fits.get(round(r["N"], 9))
        if f:
            k = np.geomspace(1, max(r["ensemble_K"]) * 8, 100)
            ax.plot(k, f["E_K"] + f["A"] / k ** f["alpha"], color=line.get_color(), lw=1)
            ax.axhline(f["E_K"], color=line.get_color(), ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("ensemble members K")
    ax.set_ylabel("validation loss (logit mean)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no ensemble evaluated yet: an empty frame
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def efficiency(numbers: dict, fits: dict, path: Path) -> Path:
    """The standard recipe's best loss against D with its L(D) fit, and each target's loss
    with the D the standard recipe would need for it."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    inputs = (fits.get("inputs") or {}).get("standard", [])
    by_d: dict[float, float] = {}
    for row in inputs:
        by_d[row["D"]] = min(by_d.get(row["D"], math.inf), row["loss"])
    if by_d:
        ds = sorted(by_d)
        ax.plot(ds, [by_d[d] for d in ds], "o", color="tab:red", label="standard recipe, best")
        p = numbers["efficiency"]["baseline"]["params"]
        if p:
            grid = np.geomspace(min(ds) / 2, max(ds) * 64, 200)
            ax.plot(grid, p["E"] + p["A"] / grid ** p["alpha"], color="tab:red", lw=1,
                    label=f"L(D), asymptote {p['E']:.3f}")
    for t in numbers["efficiency"]["targets"]:
        if t["label"].startswith("ensemble"):
            continue  # one line per recipe keeps the picture readable; the table has them all
        ax.axhline(t["loss"], ls="--", lw=0.8, label=f"{t['label']}: {t['loss']:.3f}")
        if _finite(t["effective_D"]):
            ax.plot([t["effective_D"]], [t["loss"]], "x", color="black")
    ax.set_xscale("log")
    ax.set_xlabel("seed tokens D")
    ax.set_ylabel("validation loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def distill(numbers: dict, path: Path) -> Path:
    """Each student's plain and distilled losses beside the teacher's single model and
    ensemble."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    d = numbers["distill"]
    labels, values = [], []
    for s in d["students"]:
        labels.append(f"{s['student']} plain")
        values.append(s["plain"])
        for x in s["distilled"]:
            labels.append(x["label"])
            values.append(x["loss"])
    labels += [f"{d['teacher']} single", f"{d['teacher']} ensemble"]
    values += [d["teacher_single_loss"], d["teacher_ensemble_loss"]]
    keep = [i for i, v in enumerate(values) if _finite(v)]
    ax.barh([labels[i] for i in keep], [values[i] for i in keep], color="tab:blue")
    if keep:
        lo = min(values[i] for i in keep)
        ax.set_xlim(lo - 0.2, max(values[i] for i in keep) + 0.1)
    ax.set_xlabel("validation loss")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_all(numbers: dict, fits: dict, out_dir: Path) -> list[Path]:
    """Every plot of the report."""
    return [loss_vs_n(numbers, out_dir / "loss_vs_n.png"),
            loss_vs_k(numbers, fits, out_dir / "loss_vs_k.png"),
            efficiency(numbers, fits, out_dir / "data_efficiency.png"),
            distill(numbers, out_dir / "distill.png")]


def tensorboard(numbers: dict, text: str, log_dir: Path) -> Path:
    """report/tb: the summary as text, and losses as scalars whose step is N in thousands of
    parameters (loss_vs_N/*) or K (loss_vs_K/<model>). Written anew each time."""
    import shutil
    import time

    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.plugins.text.summary_v2 import text_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    shutil.rmtree(log_dir, ignore_errors=True)
    writer = EventFileWriter(str(log_dir))
    now = time.time()

    def add(summary, step: int) -> None:
        writer.add_event(event_pb2.Event(wall_time=now, step=step, summary=summary))

    add(text_pb("study/summary", text), 0)
    for r in numbers["sizes"]:
        step = int(round(r["N"] * 1e3))
        for key in ("standard_loss", "regularized_loss", "E_K"):
            if _finite(r[key]):
                add(scalar_pb(f"loss_vs_N/{key}", float(r[key])), step)
        for k, loss in zip(r["ensemble_K"], r["ensemble_loss"]):
            add(scalar_pb(f"loss_vs_K/{r['model']}", float(loss)), int(k))
    writer.close()
    return log_dir
