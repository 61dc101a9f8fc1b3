"""`asymptote demo --split`: the split-training recipe end to end on a CPU, in a few minutes.

1. cluster the shipped corpus into 6 domains (`asymptote data cluster`, TF-IDF + k-means++);
2. pretrain a base on the mixture, keeping checkpoints at a grid of D values;
3. one specialist per cluster from the base at each D, through one Hydra multirun (one SLURM
   array with the slurm launcher), each continuing on its cluster for D' tokens, plus the
   control (`split.cluster=mixture`: the base continued on the mixture for D');
4. print the per-cluster loss table: the base's loss at D, the control's and the specialist's
   after D', and the specialist's mean change on the other clusters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

K = 6
BASE_D = 131072  # base budget (tokens seen; 1 epoch of 131,072 seed tokens)
D_GRID = (65536, 131072)  # specialists start after these many base tokens
D_PRIME = 16384  # specialization tokens per specialist
SPLIT_LR = 1e-3  # specialists re-warm to a lower peak than the base's 3e-3
TRAIN = ["model=tiny", "train.global_batch=16", "train.micro_batch=8", "optim.lr=3e-3"]


def _train(args: list[str], env: dict) -> int:
    cmd = [sys.executable, "-m", "asymptote.launch.app.main", *args]
    print("$ asymptote-train " + " ".join(args), flush=True)
    return subprocess.call(cmd, env=env)


def split_table(base: Path, specialists: Path) -> list[dict]:
    """One row per finished specialist: cluster, its majority source domain, D, D', the base's
    loss on the cluster at D, the specialist's after D', the control's (the base continued on
    the mixture for the same D', when run) and the specialist's mean change on the others."""
    from ..jobs.split import MIXTURE

    report = json.loads((Path(json.loads((base / "run.json").read_text())["config"]["data"]
                              ["prepared"]) / "report.json").read_text())
    records = [json.loads(p.read_text()) for p in sorted(specialists.glob("*/run.json"))]
    records = [r for r in records if r.get("job") == "split" and r.get("status") == "done"]
    controls = {(r["pretrain_tokens"], r["split_tokens"]): r["final"]
                for r in records if r["cluster"] == MIXTURE}
    rows = []
    for r in records:
        c, start, final = r["cluster"], r["start"], r["final"]
        if c == MIXTURE:
            continue
        tag = f"val/{c}/loss"
        others = [k for k in start if k.startswith("val/") and k != tag]
        control = controls.get((r["pretrain_tokens"], r["split_tokens"]), {})
        rows.append({
            "cluster": c, "majority": report["clusters"][c].get("majority", "-"),
            "D": r["pretrain_tokens"], "Dp": r["split_tokens"],
            "base": start[tag], "specialist": final[tag], "mixture": control.get(tag),
            "others": sum(final[k] - start[k] for k in others) / max(len(others), 1),
        })
    rows.sort(key=lambda row: (row["cluster"], row["D"]))
    return rows


def format_split_table(rows: list[dict]) -> str:
    """The per-cluster loss table as text."""
    lines = [f"{'cluster':<8}{'majority':<12}{'D':>8}{'Dp':>7}{'base@D':>9}{'mixture':>9}"
             f"{'special.':>9}{'gain':>8}{'others':>8}"]
    for r in rows:
        mix = f"{r['mixture']:>9.4f}" if r.get("mixture") is not None else f"{'-':>9}"
        lines.append(f"{r['cluster']:<8}{r['majority']:<12}{r['D']:>8}{r['Dp']:>7}{r['base']:>9.4f}"
                     f"{mix}{r['specialist']:>9.4f}{r['base'] - r['specialist']:>8.4f}"
                     f"{r['others']:>+8.4f}")
    return "\n".join(lines)


def run_stage(out: Path, env: dict) -> int:
    """Run the split demo under `out` (clusters/, base/, specialists/); returns an exit code."""
    from ..app.data_cli import format_report
    from ...data.cluster import ClusterConfig, cluster_corpus

    out = Path(out)
    clusters = out / "clusters"
    if (clusters / "manifest.json").is_file() and (clusters / "report.json").is_file():
        report = json.loads((clusters / "report.json").read_text())
        print(f"reusing the clusters in {clusters}")
    else:
        print(f"$ asymptote data cluster shipped --k {K} --out {clusters}", flush=True)
        report = cluster_corpus(ClusterConfig(k=K), clusters, progress=True)
    print(format_report(report), flush=True)

    grid = ",".join(str(d) for d in D_GRID)
    code = _train([*TRAIN, f"out={out / 'base'}", f"data.prepared={clusters}",
                   f"data.seed_tokens={BASE_D}", "train.eval_every=16", "train.ckpt_every=0",
                   f"train.keep_at_tokens=[{grid}]"], env)
    bases = sorted((out / "base").glob("*/run.json"))
    if code != 0 or not bases:
        print(f"the base run failed (exit {code}); see {out / 'base'}")
        return code or 1
    base = bases[-1].parent
    names = ",".join([*report["clusters"], "mixture"])  # + the control
    code = _train(["-m", "job=split", *TRAIN, f"out={out / 'specialists'}", f"split.base={base}",
                   f"split.cluster={names}", f"split.base_tokens={grid}",
                   f"data.seed_tokens={D_PRIME}", "train.eval_every=0", "train.ckpt_every=0",
                   f"optim.lr={SPLIT_LR}", "optim.warmup_frac=0.125"], env)
    rows = split_table(base, out / "specialists")
    print(f"\nPer-cluster validation loss: the base (on the mixture) after D tokens; then, "
          f"{D_PRIME} tokens later with a fresh schedule, the base continued on the mixture "
          f"(control) and the cluster's specialist; gain = base - specialist; others = the "
          f"specialist's mean change on the other clusters:")
    print(format_split_table(rows))
    if code != 0:
        print(f"\nsome specialists failed (exit {code}); see {out / 'specialists'}")
        return code
    print(f"\nFit a split law to a larger grid with: asymptote analyze-split {out / 'specialists'}")
    return 0
