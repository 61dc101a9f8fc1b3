"""`asymptote demo`: the embedded default, end to end on a CPU with no cluster.

Trains the `tiny_sweep` experiment (3 model sizes x 2 weight decays at fixed D and E, on the
shipped multi-domain corpus) through Hydra multirun with the local launcher, prints the final
validation losses, and fits the scaling law of the sweep when the analysis module is present.
`--split` and `--cpt` run the domain recipes instead (demo_split.py, demo_cpt.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="sweep folder (default: runs/demo)")
    parser.add_argument("--split", action="store_true",
                        help="run only the split-training stage (cluster the corpus, a base on the "
                        "mixture, one specialist per cluster, per-cluster loss table) in <out>_split")
    parser.add_argument("--cpt", action="store_true",
                        help="run only the continued pre-training recipe (a general base through "
                        "Hugging Face export/import, curated domain data, CPT with and without "
                        "replay, lm-eval before/after, forgetting) in <out>_cpt")
    parser.add_argument("--domain", default="code",
                        help="--cpt: the shipped domain to continue on (default: code)")
    parser.add_argument("--replay", default="0,0.25,0.5",
                        help="--cpt: replay fractions, one CPT run each (default: 0,0.25,0.5)")
    parser.add_argument("--eval-limit", type=float, default=None,
                        help="--cpt: at most this many lm-eval documents per task (default: all)")
    parser.add_argument("--no-ensemble", action="store_true",
                        help="skip the ensemble stage (3 members, L(K), a distilled student)")
    parser.add_argument("overrides", nargs="*", help="extra asymptote-train overrides")


def results_table(sweep: Path) -> list[dict]:
    """One row per run folder under `sweep`: model, params, weight decay, status, val loss."""
    rows = []
    for record_path in sorted(sweep.glob("*/run.json")):
        r = json.loads(record_path.read_text())
        cfg = r.get("config", {})
        rows.append(
            {
                "model": cfg.get("model", {}).get("name"),
                "params": r.get("params"),
                "weight_decay": cfg.get("optim", {}).get("weight_decay"),
                "status": r.get("status"),
                "val_loss": (r.get("final") or {}).get("val_loss"),
            }
        )
    rows.sort(key=lambda row: (row["params"] or 0, row["weight_decay"] or 0))
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of `results_table` rows."""
    lines = [f"{'model':<8} {'params':>10} {'wd':>5} {'status':<7} {'val loss':>9}"]
    for row in rows:
        loss = f"{row['val_loss']:.4f}" if row["val_loss"] is not None else "-"
        lines.append(f"{row['model']:<8} {row['params'] or 0:>10,} {row['weight_decay']:>5} "
                     f"{row['status']:<7} {loss:>9}")
    return "\n".join(lines)


def run(args) -> int:
    sweep = Path(args.out)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    if getattr(args, "split", False):
        from .demo_split import run_stage as run_split_stage

        return run_split_stage(sweep.parent / f"{sweep.name}_split", env)
    if getattr(args, "cpt", False):
        from .demo_cpt import DemoError, check_arguments, run_stage as run_cpt_stage

        try:  # bad arguments fail here, before anything trains
            replay = check_arguments(args.domain, args.replay, args.eval_limit)
        except DemoError as exc:
            print(f"asymptote demo --cpt: {exc}")
            return 2
        return run_cpt_stage(sweep.parent / f"{sweep.name}_cpt", env, args.domain, replay,
                             args.eval_limit, args.overrides)
    cmd = [sys.executable, "-m", "asymptote.launch.app.main", "-m", "experiment=tiny_sweep",
           f"out={sweep}", *args.overrides]
    print("$ " + " ".join(cmd[2:]).replace("asymptote.launch.app.main", "asymptote-train"), flush=True)
    code = subprocess.call(cmd, env=env)
    rows = results_table(sweep)
    print("\nFinal validation loss per run (D and E fixed):")
    print(format_table(rows))
    if code != 0:
        print(f"\nthe sweep failed (exit {code}); see the run folders under {sweep}")
        return code
    try:
        from ...analysis.report import analyze_sweep
    except ImportError:
        return 0
    from ...analysis.errors import AnalysisError

    try:
        report = analyze_sweep(sweep, sweep / "analysis", x="params", n_boot=200, progress=False)
    except AnalysisError as exc:  # nothing analysable (e.g. no finished run)
        print(f"\nanalysis skipped: {exc}")
        return 1
    print("\n" + report.summary())
    if getattr(args, "no_ensemble", False):
        return 0
    from .demo_ensemble import run_stage

    # A sibling folder, so `asymptote analyze <sweep>` keeps analysing the size sweep alone.
    print("\nEnsemble stage:", flush=True)
    return run_stage(sweep.parent / f"{sweep.name}_ensemble", env, args.overrides)
