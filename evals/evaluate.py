"""job=evaluate: downstream accuracy of runs, checkpoints and ensembles through lm-eval.

One job evaluates one target (a run at a checkpoint, or an ensemble of runs), or, with
`evaluate.each=true`, every run of `evaluate.runs` one after another. A Hydra multirun over
`evaluate.runs` / `evaluate.step` is an array over runs, checkpoints and ensembles (one SLURM
array with `hydra/launcher=slurm`).

Where results go:
- a single run: its own folder. `downstream.json` keeps every evaluation (by checkpoint step and
  task), run.json gets `downstream` (the latest step's metrics per task) and the same values as
  `final["downstream/<task>/<metric>"]` (what the analysis reads as a run's final metric:
  `final.downstream/<task>/<metric>` columns, `analyze_sweep(metric="downstream/<task>/acc")`),
  and the run's TensorBoard gets `downstream/<task>/<metric>` at the checkpoint step.
- an ensemble: a folder `<out>/<name>` of its own, with a run.json (job evaluate, members,
  K, combined parameter count, D and E of its members, `downstream`), `downstream.json` and
  `tb/`, so the analysis reads ensembles as runs (accuracy vs N and K).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

from ..atomic import write_json

#: lm-eval metric names written out (others, e.g. stderr, are left out).
SKIP_SUFFIX = "_stderr"


def expand_runs(patterns) -> list[str]:
    """Run folders of `evaluate.runs`: entries are folders (optionally `DIR@STEP`) or globs."""
    out = []
    for pattern in patterns:
        pattern = str(pattern)
        base, at, step = pattern.partition("@") if "@" in Path(pattern).name else (pattern, "", "")
        matches = sorted(glob.glob(os.path.expanduser(base))) if glob.has_magic(base) else [base]
        matches = [m for m in matches if not glob.has_magic(base) or (Path(m) / "run.json").is_file()]
        if not matches:
            raise FileNotFoundError(f"evaluate.runs: {pattern!r} matches no run folder")
        out += [m + (f"@{step}" if at else "") for m in matches]
    return out


def flat_metrics(results: dict) -> dict[str, dict[str, float]]:
    """lm-eval `results` -> {task: {metric: value}} ("acc,none" -> "acc"; other filters are
    kept as "metric_filter"); stderr and non-numbers are dropped."""
    out: dict[str, dict[str, float]] = {}
    for task, metrics in results.items():
        row = {}
        for key, value in metrics.items():
            if "," not in key or SKIP_SUFFIX in key:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            row[metric if filt in ("none", "") else f"{metric}_{filt}"] = float(value)
        if row:
            out[task] = row
    return out


def _task_manager(tasks, include_path, snapshots, workdir: Path):
    from ..evals.tasks import PACK_TASKS, TASKS_DIR
    from .snapshots import BUILTIN, write_recipes

    paths = [str(TASKS_DIR), *map(str, include_path)]
    recipes = [t for t in tasks if t in BUILTIN or t.split("_")[0] == "mmlu"]
    if recipes:
        recipe_dir = workdir / "recipes"
        wanted = sorted({"mmlu" if t.startswith("mmlu") else t for t in recipes})
        write_recipes(recipe_dir, snapshots, wanted)
        paths.append(str(recipe_dir))
    from lm_eval.tasks import TaskManager

    known = set(PACK_TASKS) | set(BUILTIN)
    pack_only = all(t in known or t.startswith(("asymptote_", "mmlu")) for t in tasks)
    return TaskManager(include_path=paths, include_defaults=not pack_only or bool(include_path))


def _network_error(task: str, exc: BaseException) -> BaseException | None:
    """A NetworkTaskError for `exc` when it is a failed download (else None)."""
    from .snapshots import NetworkTaskError, SnapshotMissingError, advice

    chain, e = [], exc
    while e is not None and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, SnapshotMissingError):
            return e
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    network = names & {"ConnectionError", "OfflineModeIsEnabled", "DatasetNotFoundError",
                       "LocalEntryNotFoundError", "HfHubHTTPError", "MaxRetryError",
                       "NameResolutionError"}
    if network or "offline mode" in text.lower() or "couldn't reach" in text.lower():
        return NetworkTaskError(advice(task, "(see the task's dataset_path)", None) +
                                f" [lm-eval said: {type(exc).__name__}: {str(exc)[:300]}]")
    return None


def load_tasks(tasks, task_manager) -> dict:
    """lm-eval task objects, one task at a time so that a download failure names its task."""
    from lm_eval.tasks import get_task_dict

    out = {}
    for task in tasks:
        try:
            out.update(get_task_dict([task], task_manager))
        except Exception as exc:  # noqa: BLE001 - re-raised, reworded when it is the network
            err = _network_error(task, exc)
            if err is None:
                raise
            raise err from exc
    return out


def run_lm_eval(lm, tasks, *, include_path=(), snapshots=None, limit=None, num_fewshot=None,
                seed: int = 1234, log_samples: bool = False) -> dict:
    """lm-eval's `evaluate` on an already-built AsymptoteLM; returns lm-eval's result dict."""
    import lm_eval
    from lm_eval.evaluator import evaluate as lm_evaluate

    with tempfile.TemporaryDirectory(prefix="asymptote-eval-") as tmp:
        if snapshots:
            os.environ["ASYMPTOTE_EVAL_DATA"] = str(Path(snapshots).expanduser().resolve())
        tm = _task_manager(list(tasks), include_path, snapshots, Path(tmp))
        task_dict = load_tasks(list(tasks), tm)
        if num_fewshot is not None:
            for task in _leaf_tasks(task_dict):
                task.set_config(key="num_fewshot", value=int(num_fewshot))
        for task in _leaf_tasks(task_dict):
            task.set_fewshot_seed(seed=seed)
        del lm_eval  # imported for its side effects (registry set-up)
        return lm_evaluate(lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=0,
                           log_samples=log_samples)


def _leaf_tasks(task_dict):
    for value in task_dict.values():
        if isinstance(value, dict):
            yield from _leaf_tasks(value)
        else:
            yield value


# --------------------------------------------------------------------------- outputs
def record_results(folder: Path, step: int, metrics: dict, meta: dict) -> dict:
    """Merge one evaluation into `<folder>/downstream.json`, run.json (`downstream`) and
    TensorBoard (`downstream/<task>/<metric>` at `step`). Returns the downstream.json data."""
    from torch.utils.tensorboard import SummaryWriter

    from ..launch.run_dir import RunDir

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "downstream.json"
    data = json.loads(path.read_text()) if path.is_file() else {"evaluations": []}
    data["evaluations"] = [e for e in data["evaluations"]
                           if not (e["step"] == step and set(e["metrics"]) <= set(metrics))]
    data["evaluations"].append({"step": step, "metrics": metrics, **meta,
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    data["evaluations"].sort(key=lambda e: (e["step"], e["time"]))
    write_json(path, data, indent=2, default=str)
    latest = {}
    for e in data["evaluations"]:  # the latest step's value of every task
        for task, row in e["metrics"].items():
            latest[task] = {**row, "step": e["step"]}
    # also as `final.downstream/<task>/<metric>`: the analysis takes a metric's final value
    # from run.json's `final` (analyze_sweep(metric="downstream/arc_easy/acc"), runs.csv columns)
    run_dir = RunDir(folder)
    final = dict(run_dir.read().get("final") or {})
    final.update({f"downstream/{task}/{metric}": value for task, row in latest.items()
                  for metric, value in row.items() if metric != "step"})
    run_dir.update(downstream=latest, final=final)
    writer = SummaryWriter(str(folder / "tb"), filename_suffix=".downstream")
    for task, row in metrics.items():
        for metric, value in row.items():
            if math.isfinite(value):
                writer.add_scalar(f"downstream/{task}/{metric}", value, step)
    writer.close()
    return data


def ensemble_folder(cfg, members) -> Path:
    """`<out>/<evaluate.name>`, or a name from the members, their steps and the combination."""
    ev = cfg.evaluate
    ident = json.dumps([[str(m.run_dir.resolve()), m.step] for m in members] + [ev.combine])
    name = ev.name or (f"evaluate-ens{len(members)}-{ev.combine}-"
                       f"{hashlib.sha256(ident.encode()).hexdigest()[:8]}")
    return Path(cfg.out).expanduser() / name


def _ensemble_record(cfg, members) -> dict:
    recs = [m.record for m in members]

    def same(key):
        values = {json.dumps(r.get(key), sort_keys=True) for r in recs}
        return recs[0].get(key) if len(values) == 1 else None

    return dict(
        job="evaluate", status="running", error=None, kind="ensemble",
        members=[{"run": str(m.run_dir), "step": m.step, "name": m.run_dir.name} for m in members],
        ensemble_size=len(members), combine=cfg.evaluate.combine,
        params=sum(int(r.get("params") or 0) for r in recs),
        member_params=same("params"), seed_tokens=same("seed_tokens"), epochs=same("epochs"),
        config=same("config"), tags={"ensemble": True, "members": len(members)},
    )


def evaluate_target(cfg, specs: list[str], is_logger: bool = True) -> dict:
    """Evaluate one target (one run, or an ensemble of `specs`) and record the results."""
    from ..models.inference import load_run
    from .lm_model import AsymptoteLM, _precheck_tokenizers, parse_runs

    ev = cfg.evaluate
    runs = parse_runs(specs, ev.step)
    _precheck_tokenizers([r for r, _ in runs])
    members = [load_run(r, s, bf16=ev.bf16) for r, s in runs]
    lm = AsymptoteLM(members=members, combine=ev.combine, batch_size=ev.batch_size)
    folder = members[0].run_dir if len(members) == 1 else ensemble_folder(cfg, members)
    if len(members) > 1 and is_logger:
        from ..launch.run_dir import RunDir

        RunDir(folder).update(name=folder.name, **_ensemble_record(cfg, members))
    t0 = time.perf_counter()
    try:
        results = run_lm_eval(lm, ev.tasks, include_path=ev.include_path,
                              snapshots=ev.snapshots, limit=ev.limit, num_fewshot=ev.num_fewshot)
    except BaseException as exc:
        if len(members) > 1 and is_logger:
            from ..launch.run_dir import RunDir

            RunDir(folder).update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    metrics = flat_metrics(results["results"])
    steps = {m.step for m in members}
    step = steps.pop() if len(steps) == 1 else 0
    meta = {"members": [f"{m.run_dir}@{m.step}" for m in members], "combine": ev.combine,
            "limit": ev.limit, "num_fewshot": ev.num_fewshot,
            "n_samples": {t: v.get("effective", v.get("original"))
                          for t, v in results.get("n-samples", {}).items()},
            "seconds": round(time.perf_counter() - t0, 2)}
    if is_logger:
        record_results(folder, step, metrics, meta)
        if len(members) > 1:
            from ..launch.run_dir import RunDir

            RunDir(folder).update(status="done", step=step)
        print(f"[asymptote] evaluate {folder} step {step}: " + ", ".join(
            f"{t}/{k}={v:.4f}" for t, row in metrics.items() for k, v in row.items()), flush=True)
    return {"folder": str(folder), "step": step, "metrics": metrics}


def run_evaluate(cfg) -> dict:
    """Job function of job=evaluate (every rank runs it; rank 0 writes the results)."""
    import logging

    import torch.distributed as dist

    from ..models import parallel
    from ..models.config import ParallelConfig
    from ..models.inference import checkpoint_path, ensure_distributed

    logging.getLogger("megatron.core").setLevel(logging.WARNING)
    ev = cfg.evaluate
    if not ev.runs:  # checked before submission (launch/jobs/evaluate.py); a direct call
        raise ValueError("job=evaluate needs evaluate.runs: a run folder, several (an "
                          "ensemble), or globs with evaluate.each=true")
    if ev.offline:  # before datasets/lm-eval are imported: they read these at import
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ensure_distributed(ParallelConfig(tp=cfg.parallel.tp, pp=1))
    is_logger = not dist.is_initialized() or dist.get_rank() == 0
    try:
        specs = expand_runs(ev.runs)
        targets = [[s] for s in specs] if ev.each else [specs]
        if ev.all_checkpoints:
            from ..models import checkpoint

            expanded = []
            for target in targets:
                if len(target) != 1:
                    raise ValueError("evaluate.all_checkpoints evaluates single runs: use it "
                                     "with one run or with evaluate.each=true")
                run = target[0].partition("@")[0]
                checkpoint_path(run)  # a clear error when there is none
                steps = checkpoint.list_checkpoints(Path(run) / "checkpoints")
                expanded += [[f"{run}@{s}"] for s in steps]
            targets = expanded
        results = [evaluate_target(cfg, t, is_logger) for t in targets]
    finally:
        parallel.shutdown()
    out = {"evaluations": results}
    if len(results) == 1:
        for task, row in results[0]["metrics"].items():
            for metric, value in row.items():
                out[f"downstream/{task}/{metric}"] = value
    return out
