"""The demo's ensemble stage: 3 tiny members, their L(K) curve, and a smaller distilled student.

1. `asymptote-train -m experiment=tiny_ensemble` (3 `tiny` members, seeds varied, paper rule);
2. `asymptote ensemble-eval` on them (K = 1..3, logit mean and probability mean);
3. a `tiny_s` student trained on the same D and E twice: plain (job=pretrain) and distilled
   from the 3-member ensemble (job=distill, logit level, online teacher);
4. a table and `ensemble.png` (loss against K, students as horizontal lines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

STUDENT = ["model=tiny_s", "data.seed_tokens=65536", "train.epochs=2", "train.global_batch=16",
           "train.micro_batch=8", "train.eval_every=0", "train.ckpt_every=0", "optim.lr=3e-3"]


def _call(args: list[str], env: dict) -> int:
    shown = " ".join(args[2:]).replace("asymptote.launch.app.main", "asymptote-train").replace(
        "asymptote.launch.app.cli", "asymptote")
    print("$ " + shown, flush=True)
    return subprocess.call(args, env=env,
                           stdout=subprocess.DEVNULL if "ensemble-eval" in args else None)


def _final(folder: Path) -> dict:
    runs = [json.loads(p.read_text()) for p in folder.glob("*/run.json")]
    return runs[0] if len(runs) == 1 else {}


def run_stage(root: Path, env: dict | None = None, overrides: list[str] = ()) -> int:
    """Run the stage under `root` (e.g. runs/demo/ensemble); returns an exit code. `overrides`
    are applied to every training command (the smoke test shrinks D and E with them)."""
    env = dict(env or os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    root = Path(root)
    train = [sys.executable, "-m", "asymptote.launch.app.main"]
    extra = list(overrides)
    code = _call(train + ["-m", "experiment=tiny_ensemble", f"out={root / 'members'}", *extra],
                 env)
    members = sorted((p.parent for p in (root / "members").glob("*/run.json")),
                     key=lambda p: json.loads((p / "run.json").read_text())["tags"]["member"])
    if code or len(members) != 3:
        print(f"ensemble members failed (exit {code}); see {root / 'members'}")
        return code or 1
    code = _call([sys.executable, "-m", "asymptote.launch.app.cli", "ensemble-eval",
                  *map(str, members), "--out", str(root / "eval"), "--name", "tiny"], env)
    if code:
        return code
    code = _call(train + [*STUDENT, f"out={root / 'student_plain'}", *extra], env)
    code = code or _call(train + [*STUDENT, "job=distill", "distill.mode=logit",
                                  f"distill.teacher=[{','.join(map(str, members))}]",
                                  "distill.alpha=0.5", "distill.temperature=1.0",
                                  f"out={root / 'student_distilled'}", *extra], env)
    if code:
        return code
    results = json.loads((root / "eval" / "ensemble.json").read_text())
    plain = _final(root / "student_plain")
    distilled = _final(root / "student_distilled")
    member = json.loads((members[0] / "run.json").read_text())
    print(f"\nEnsemble of tiny members ({member['params']:,} params each; D={member['seed_tokens']:,}, "
          f"E={member['epochs']}, paper rule):")
    print(format_table(results, plain, distilled))
    png = plot(results, plain, distilled, root / "ensemble.png")
    if png:
        print(f"plot: {png}")
    csv = root / "eval" / "ensemble.csv"
    print(f"L(K) table: {csv} (fit: asymptote fit {csv} --x K --y loss "
          "--where combine=logit_mean; TensorBoard ensemble/<combine>/loss for asymptote analyze)")
    return 0


def format_table(results: dict, plain: dict, distilled: dict) -> str:
    lines = [f"{'model':<26} {'params':>9} {'logit mean':>10} {'prob mean':>10}"]
    for i, k in enumerate(results["K"]):
        lines.append(f"{f'ensemble K={k}':<26} {'':>9} {results['logit_mean']['loss'][i]:>10.4f} "
                     f"{results['prob_mean']['loss'][i]:>10.4f}")
    for label, r in (("student tiny_s (plain)", plain), ("student tiny_s (distilled)", distilled)):
        loss = (r.get("final") or {}).get("val_loss")
        lines.append(f"{label:<26} {r.get('params', 0):>9,} "
                     f"{(f'{loss:.4f}' if loss is not None else '-'):>10}")
    return "\n".join(lines)


def plot(results: dict, plain: dict, distilled: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for c, marker in (("logit_mean", "o"), ("prob_mean", "s")):
        ax.plot(results["K"], results[c]["loss"], marker=marker, label=f"ensemble ({c})")
    for label, r, style in (("student plain", plain, ":"), ("student distilled", distilled, "--")):
        loss = (r.get("final") or {}).get("val_loss")
        if loss is not None:
            ax.axhline(loss, linestyle=style, color="gray" if "plain" in label else "black",
                       label=f"{label} (tiny_s)")
    ax.set_xlabel("ensemble members K")
    ax.set_ylabel("validation loss")
    ax.set_xticks(results["K"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
