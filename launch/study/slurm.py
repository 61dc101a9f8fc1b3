"""`asymptote study run` on SLURM: nothing stays alive on the login node.

One step (`advance`) plans the study from disk, submits the points still to run of the earliest
stage that has any as arrays (through `asymptote-train -m hydra/launcher=slurm` with
`hydra.sweeper.points_file`: the same launcher, checks, sweep.json, requeue and `asymptote
status` as any sweep), then submits a one-task controller job with
`--dependency=afterany:<those arrays>` that runs `asymptote study advance` when they have all
ended, however they ended, and exits. The controller takes the next step: the certificate's
extensions, members at the certified optima, evaluations, teacher text and students all depend
on results, so every transition goes through it. The fits and the report are computed inside
the controller job, on the cluster.

The chain stops, recorded in `<out>/slurm/chain.json` and shown by `study status`, when the
batch it waited for has failed points (their errors are in their run.json), when nothing can run
(refused points, or points still marked running), or when the study is done. `study run` again
submits what is missing or failed and starts a new chain; it refuses while a chain is in flight.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from ... import atomic
from .errors import StudyError
from .spec import StudySpec
from .stages import StudyPoint, plan_study
from .state import DONE, FAILED

LIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}


def chain_path(spec: StudySpec) -> Path:
    """<out>/slurm/chain.json: the batches submitted, the controllers, why the chain stopped."""
    return Path(spec.out).expanduser().resolve() / "slurm" / "chain.json"


def read_chain(spec: StudySpec) -> dict:
    """The chain record ({} when the study never ran on SLURM)."""
    try:
        return json.loads(chain_path(spec).read_text())
    except (OSError, ValueError):
        return {}


def _write_chain(spec: StudySpec, chain: dict) -> None:
    path = chain_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, chain, indent=2)


def in_flight(chain: dict) -> str | None:
    """The job that keeps the chain alive (the newest controller) when squeue lists it."""
    from ...slurm.scheduler import squeue

    controllers = chain.get("controllers") or []
    if not controllers or chain.get("stopped"):
        return None
    job = controllers[-1]["job_id"]
    live = squeue([job])
    if live is None:
        raise StudyError("squeue cannot be asked whether the study's controller job "
                         f"{job} still runs: check the cluster, then run again")
    task = live.get(job)
    return f"{job} ({task.state})" if task is not None and task.state in LIVE else None


def shared_and_own(points: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The overrides every point has (the sweep's base: its layout, out, corpus), and what is
    left of each point."""
    shared = [o for o in points[0] if all(o in p for p in points[1:])]
    return shared, [[o for o in p if o not in shared] for p in points]


def _launcher_overrides(spec: StudySpec, stage: str) -> list[str]:
    """hydra.launcher.* of the study's SLURM settings."""
    s = spec.launcher.slurm
    out = ["hydra/launcher=slurm", "hydra.launcher.detach=true",
           f"hydra.launcher.name={spec.name}-{stage}",
           f"hydra.launcher.timeout_min={s.timeout_min}", f"hydra.launcher.nodes={s.nodes}",
           f"hydra.launcher.array_parallelism={s.array_parallelism}"]
    for key in ("partition", "account", "qos", "gpus_per_node", "cpus_per_task", "mem_gb"):
        value = getattr(s, key)
        if value is not None:
            out.append(f"hydra.launcher.{key}={value}")
    if s.setup:
        out.append("hydra.launcher.setup=[" + ",".join(json.dumps(x) for x in s.setup) + "]")
    out += [f"++hydra.launcher.additional_parameters.{k}={v}"
            for k, v in s.additional_parameters.items()]
    return out


def submit_batch(spec: StudySpec, stage: str, points: list[StudyPoint], number: int) -> dict:
    """Submit `points` as arrays; the batch's record (arrays, sweep folder, the points)."""
    root = Path(spec.out).expanduser().resolve() / "slurm"
    sweep_dir = root / f"batch-{number:03d}-{stage}"
    shared, own = shared_and_own([p.overrides for p in points])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    points_file = sweep_dir / "points.json"
    atomic.write_json(points_file, own)
    command = [sys.executable, "-m", "asymptote.launch.app.main", "-m", *shared,
               *_launcher_overrides(spec, stage), f"hydra.sweeper.points_file={points_file}",
               f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(command, capture_output=True, text=True)
    (sweep_dir / "submit.log").write_text(shlex.join(command) + "\n\n" + proc.stdout
                                          + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StudyError(f"submitting stage {stage} failed (exit {proc.returncode}); "
                         f"{sweep_dir / 'submit.log'}:\n{tail}")
    record = json.loads((sweep_dir / "sweep.json").read_text())
    return {"number": number, "stage": stage, "sweep": str(sweep_dir),
            "arrays": [a["job_id"] for a in record["arrays"]],
            "points": [{"label": p.label, "folder": str(p.folder)} for p in points],
            "submitted": time.time()}


def submit_controller(spec: StudySpec, source: str, overrides: list[str], after: list[str],
                      number: int) -> str:
    """A one-task job running `asymptote study advance` once `after` have all ended."""
    from ...slurm.scheduler import Backoff, sbatch

    root = Path(spec.out).expanduser().resolve() / "slurm"
    s = spec.launcher.slurm
    lines = ["#!/bin/bash", f"#SBATCH --job-name={spec.name}-controller",
             f"#SBATCH --output={root}/controller-{number:03d}-%j.log",
             "#SBATCH --ntasks=1", "#SBATCH --cpus-per-task=1", "#SBATCH --time=30"]
    if after:
        lines.append(f"#SBATCH --dependency=afterany:{':'.join(after)}")
    for key, flag in (("partition", "partition"), ("account", "account"), ("qos", "qos")):
        if getattr(s, key) is not None:
            lines.append(f"#SBATCH --{flag}={getattr(s, key)}")
    lines += list(s.setup)
    # The controller plans, fits and submits: one thread is plenty.
    command = [sys.executable, "-m", "asymptote.launch.app.cli", "study", "advance", source,
               *overrides]
    lines += ["export OMP_NUM_THREADS=1", "exec " + shlex.join(command)]
    script = root / f"controller-{number:03d}.sh"
    atomic.write_text(script, "\n".join(lines) + "\n")
    output = sbatch(["sbatch", str(script)], Backoff())
    return output.strip().split()[-1]


def advance(spec: StudySpec, source: str, overrides: list[str], placer,
            only: set[str] | None = None, start: bool = False,
            say: Callable[[str], None] = print) -> dict:
    """One step of the chain (see the module docstring); `start`: a user's `study run`, which
    begins a new chain (refused while one is in flight), else the controller's step. Returns
    the chain record."""
    from .run import runnable, why_nothing_runs, write_next_own_output

    chain = read_chain(spec)
    if start:
        job = in_flight(chain)
        if job is not None:
            raise StudyError(f"the study is already running on SLURM: controller job {job}; "
                             "follow it with `asymptote study status`, or scancel it first")
        chain = {"source": source, "overrides": list(overrides),
                 "only": sorted(only) if only else None,
                 "batches": chain.get("batches", []),
                 "controllers": chain.get("controllers", []), "stopped": None}
    only = set(chain["only"]) if chain.get("only") else None
    while True:
        stages = plan_study(spec, placer)
        by_folder = {str(p.folder): p for s in stages for p in s.points if p.folder}
        if not start and chain["batches"]:
            # Every array of the batch has ended (afterany): a point not done failed, whether
            # its job recorded it (FAILED, with the error) or its task died first (killed,
            # out of memory): submitting it again would only fail again.
            last = chain["batches"][-1]
            unfinished = [by_folder.get(p["folder"]) for p in last["points"]]
            unfinished = [p for p in unfinished if p is not None and p.state != DONE]
            if unfinished:
                return _stop(spec, chain, say, (
                    f"{len(unfinished)} point(s) of batch {last['number']} ({last['stage']}) "
                    "failed: " + "; ".join(f"{p.label}: {_failure(p, last)}"
                                           for p in unfinished[:5])
                    + " (see `asymptote study status`; fix, then `asymptote study run` again)"))
        chosen = next(((s, runnable(s, set())) for s in stages
                       if (only is None or s.name in only) and runnable(s, set())), None)
        if chosen is None:
            if write_next_own_output(spec, stages, only, say):
                continue
            return _stop(spec, chain, say, why_nothing_runs(stages, only))
        stage, points = chosen
        number = len(chain["batches"]) + 1
        batch = submit_batch(spec, stage.name, points, number)
        chain["batches"].append(batch)
        _write_chain(spec, chain)  # on record before the controller, whatever happens next
        say(f"stage {stage.name}: {len(points)} point(s) submitted as array(s) "
            f"{', '.join(batch['arrays'])}")
        job = submit_controller(spec, chain["source"], chain["overrides"], batch["arrays"],
                                number)
        chain["controllers"].append({"job_id": job, "after": batch["arrays"],
                                     "batch": number})
        _write_chain(spec, chain)
        say(f"controller job {job} runs when they have ended (afterany) and submits what "
            "follows; nothing needs to stay alive here")
        return chain


def _failure(point: StudyPoint, batch: dict) -> str:
    if point.state == FAILED:
        return point.detail
    return f"its task ended without finishing (logs: {batch['sweep']}/.submitit/)"


def _stop(spec: StudySpec, chain: dict, say, reason: str) -> dict:
    chain["stopped"] = reason
    chain["stopped_at"] = time.time()
    _write_chain(spec, chain)
    say(f"chain stopped: {reason}")
    return chain


def describe(chain: dict) -> list[str]:
    """`study status` lines about the SLURM chain."""
    if not chain:
        return []
    lines = []
    if chain.get("batches"):
        b = chain["batches"][-1]
        lines.append(f"SLURM: {len(chain['batches'])} batch(es); the last, #{b['number']} "
                     f"({b['stage']}, {len(b['points'])} point(s)), arrays "
                     f"{', '.join(b['arrays'])}")
    if chain.get("stopped"):
        lines.append(f"SLURM chain stopped: {chain['stopped']}")
    elif chain.get("controllers"):
        c = chain["controllers"][-1]
        lines.append(f"SLURM chain in flight: controller job {c['job_id']} waits for "
                     f"{', '.join(c['after'])}")
    return lines

