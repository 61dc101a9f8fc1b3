"""`asymptote demo --cpt`: the continued pre-training recipe end to end on a CPU, in minutes.

1. pretrain a tiny "general" model on the shipped domains except the target (job=pretrain);
2. `asymptote export` it to a Hugging Face folder and `asymptote import-hf` that folder back, so
   the recipe starts, as it would at scale, from a transformers model folder;
3. `asymptote data prepare job=cpt ... data.curate.enabled=true`: the target domain, curated
   (filters, exact and near dedup) and tokenized with the imported model's tokenizer;
4. one multirun of job=cpt on the target domain, one point per replay fraction (0 = no replay)
   of the general data;
5. job=evaluate (lm-eval, the offline task pack) on the imported model and on every CPT run;
6. `asymptote export` of the CPT run with the most replay (the artefact one would publish);
7. the report (demo_cpt_report): target-domain loss before and after, forgetting = change of
   the loss on the general domains, downstream scores before and after; cpt_report.md/.json/.png.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

TARGET = "code"  # default: curation filters 11 of its 77 documents, and holds out the task
#                 pack's own code documents (none is kept in training), so downstream stays clean
REPLAY = (0.0, 0.25, 0.5)
# The base: one pass over 5 domains would leave it too close to uniform for forgetting to mean
# much, so 2 epochs of 131,072 tokens at 8 sequences per step (256 updates, as tiny_sweep).
BASE = ["model=tiny", "data.seed_tokens=131072", "train.epochs=2", "train.global_batch=8",
        "train.micro_batch=8", "optim.lr=3e-3", "train.eval_every=0", "train.ckpt_every=0"]
# CPT: a quarter of the base's budget on the target, a lower peak lr with a short re-warmup.
CPT = ["data.seed_tokens=32768", "train.epochs=2", "train.global_batch=16", "train.micro_batch=8",
       "optim.lr=1e-3", "cpt.warmup_frac=0.05", "train.eval_every=0", "train.ckpt_every=0"]
TRAIN = [sys.executable, "-m", "asymptote.launch.app.main"]
CLI = [sys.executable, "-m", "asymptote.launch.app.cli"]


class DemoError(ValueError):
    """Bad demo arguments; the message says what to give instead."""


def parse_replay(text: str) -> tuple[float, ...]:
    """`0,0.25,0.5` -> (0.0, 0.25, 0.5); each in [0, 1), no duplicates."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DemoError(f"--replay {text!r}: give comma-separated fractions, e.g. 0,0.25") from None
    if not values or any(not 0.0 <= v < 1.0 for v in values) or len(set(values)) != len(values):
        raise DemoError(f"--replay {text!r}: give distinct fractions in [0, 1), e.g. 0,0.25,0.5")
    return values


def domain_files(target: str) -> tuple[Path, list[Path]]:
    """The target domain's shipped JSONL and the other (general) domains' files."""
    from ...data.shipped import shipped_corpus_files

    files = shipped_corpus_files()
    if target not in files:
        raise DemoError(f"--domain {target!r}: the shipped corpus has {', '.join(files)}")
    return files[target], [p for d, p in files.items() if d != target]


def check_arguments(target: str, replay: str, eval_limit: float | None) -> tuple[float, ...]:
    """All the demo's own arguments at once; returns the replay fractions."""
    domain_files(target)
    if eval_limit is not None and not eval_limit > 0:
        raise DemoError(f"--eval-limit {eval_limit:g}: give a positive number of documents")
    return parse_replay(replay)


def _call(cmd: list[str], env: dict, quiet: bool = False) -> int:
    shown = " ".join(cmd[2:]).replace("asymptote.launch.app.main", "asymptote-train").replace(
        "asymptote.launch.app.cli", "asymptote")
    print("$ " + shown, flush=True)
    return subprocess.call(cmd, env=env, stdout=subprocess.DEVNULL if quiet else None)


def _run_folders(folder: Path, job: str) -> list[Path]:
    """Finished runs of `job` under `folder` (a failed one is trained again, not reused)."""
    records = {p.parent: json.loads(p.read_text()) for p in folder.glob("*/run.json")}
    return sorted(f for f, r in records.items()
                  if r.get("job") == job and r.get("status") == "done")


def _listing(paths: list[Path]) -> str:
    return "[" + ",".join(str(p) for p in paths) + "]"


def run_stage(out: Path, env: dict, target: str = TARGET, replay: tuple[float, ...] = REPLAY,
              eval_limit: float | None = None, overrides: list[str] = ()) -> int:
    """Run the recipe under `out` (base/, hf/, imported/, cpt/, eval/); returns an exit code.
    `overrides` go to the base and every CPT run (the test shrinks the budgets with them);
    `eval_limit` caps lm-eval's documents per task. Finished steps are reused on a rerun."""
    from .demo_cpt_report import ReportError, build_report, write_report

    out = Path(out).resolve()
    target_file, general = domain_files(target)
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    # 1. the general base; the task pack's documents of these domains stay held out because
    # the split is the default one (data.split_seed, 16 validation sequences of 128 tokens)
    if not _run_folders(out / "base", "pretrain"):
        code = _call(TRAIN + [*BASE, f"out={out / 'base'}", f"data.corpus={_listing(general)}",
                              *overrides], env)
        if code:
            print(f"the base run failed (exit {code}); see {out / 'base'}")
            return code
    base = _run_folders(out / "base", "pretrain")[-1]
    lap("pretrain base")
    # 2. through the Hugging Face format and back: what import-hf writes is the CPT base
    hf, imported = out / "hf" / "general", out / "imported"
    if not (hf / "config.json").is_file() and _call(CLI + ["export", str(base), "--hf", str(hf)],
                                                    env):
        return 1
    if not (imported / "run.json").is_file() and _call(
            CLI + ["import-hf", str(hf), "--out", str(imported), "--name", "general"], env):
        return 1
    lap("export + import-hf")
    # 3. + 4. the curated target domain on the imported tokenizer, then CPT with and without
    # replay; cpt.replay.corpus is needed even at fraction 0: an import records no training
    # data, and the general validation sets (the forgetting) come from it
    cpt = [f"cpt.base={imported}", f"data.corpus=[{target_file}]", "data.curate.enabled=true",
           f"cpt.replay.corpus={_listing(general)}"]
    if _call(CLI + ["data", "prepare", "job=cpt", *cpt, *overrides], env):
        return 1
    lap("data prepare (curated)")
    fractions = ",".join(f"{f:g}" for f in replay)
    code = _call(TRAIN + ["-m", "job=cpt", *cpt, f"cpt.replay_fraction={fractions}", *CPT,
                          f"out={out / 'cpt'}", *overrides], env)
    runs = [r for r in _run_folders(out / "cpt", "cpt")
            if json.loads((r / "run.json").read_text())["replay_fraction"] in replay]
    if code or not runs:
        print(f"the CPT runs failed (exit {code}); see {out / 'cpt'}")
        return code or 1
    if len(runs) != len(replay):  # an earlier demo with other budgets left runs here
        print(f"{out / 'cpt'} holds {len(runs)} finished CPT runs for {len(replay)} replay "
              "fractions (from an earlier demo with other settings); give another --out")
        return 1
    lap("cpt")
    # 5. downstream before (the imported model) and after (each CPT run), one after another
    limit = [f"evaluate.limit={eval_limit:g}"] if eval_limit else []
    if _call(TRAIN + ["job=evaluate", f"evaluate.runs={_listing([imported, *runs])}",
                      "evaluate.each=true", f"out={out / 'eval'}", *limit], env, quiet=True):
        return 1
    lap("evaluate")
    try:
        report = build_report(imported, base, runs, target)
    except ReportError as exc:
        print(f"no report: {exc}")
        return 1
    # 6. export the run with the most replay
    chosen = max(report["runs"], key=lambda r: r["replay_fraction"])
    exported = out / "hf" / f"cpt-r{chosen['replay_fraction']:g}"
    if not (exported / "config.json").is_file() and _call(
            CLI + ["export", chosen["run"], "--hf", str(exported)], env, quiet=True):
        return 1
    report["exported"] = str(exported)
    lap("export cpt")
    report["seconds"] = seconds
    print(write_report(report, out))
    return 0
