"""`asymptote study run` with the local launcher: plan, run the points still to run of the
earliest stage that has any, plan again, until nothing is left that a job type can run.

Every point runs as `asymptote-train <its overrides>` would, in its content-addressed run folder,
so a second `study run` skips everything that finished and runs only what is missing or
failed. A point that fails is not retried within the same invocation: the batch it belongs to
is finished, then the run stops and says which points failed (fix, then run again). When every
input of the fits stage is done, it is computed here (fits.py: <out>/fits/fits.json); the
report stage has no runner yet, and the run stops before it and says so.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .spec import StudySpec
from .stages import Stage, StudyPoint, plan_study
from .state import BLOCKED, FAILED, MISSING


@dataclass
class Outcome:
    """What one `study run` did."""

    stages: list[Stage]
    """The plan after the last run."""
    ran: list[StudyPoint] = field(default_factory=list)
    """Points run, in order."""
    failed: list[StudyPoint] = field(default_factory=list)
    """Points whose run failed."""
    stopped: str = ""
    """Why the run stopped before every stage was done (empty when nothing is left)."""


def runnable(stage: Stage, attempted: set) -> list[StudyPoint]:
    """A stage's points a job type can run now and this invocation has not tried."""
    return [p for p in stage.points if p.state in (MISSING, FAILED) and p.job != "-"
            and tuple(p.overrides) not in attempted]


def run_study(spec: StudySpec, placer, launch: Callable[[StudyPoint], bool],
              only: set[str] | None = None, max_runs: int | None = None,
              say: Callable[[str], None] = print) -> Outcome:
    """Run the study's points stage by stage (`only`: these stages; `max_runs`: at most this
    many points), planning again after each batch; `launch(point)` runs one, True on success."""
    if spec.launcher.kind != "local":
        raise NotImplementedError("study run submits nothing to SLURM yet: set "
                                  "launcher.kind=local, or submit the points `asymptote study "
                                  "plan` lists by hand")
    attempted: set = set()
    outcome = Outcome([])
    while True:
        stages = outcome.stages = plan_study(spec, placer)
        batch, stage = [], None
        for stage in stages:
            if only is not None and stage.name not in only:
                continue
            batch = runnable(stage, attempted)
            if batch:
                break
        fits = next(s for s in stages if s.name == "fits")
        if not batch and fits.points and fits.points[0].state == MISSING and (
                only is None or "fits" in only):
            say("stage fits: fitting")
            write_study_fits(spec, stages)
            continue
        if not batch:
            blocked = [f"{s.name}: {p.label}" for s in stages for p in s.points
                       if p.state == BLOCKED]
            left = [s.name for s in stages if s.state != "DONE"
                    and (only is None or s.name in only)]
            if blocked:
                outcome.stopped = "refused by their jobs' checks: " + "; ".join(blocked)
            elif left:
                outcome.stopped = ("nothing more can run now; not done: " + ", ".join(left)
                                   + " (the report has no runner yet, docs/study.md)")
            return outcome
        say(f"stage {stage.name}: {len(batch)} point(s) to run")
        for point in batch:
            if max_runs is not None and len(outcome.ran) >= max_runs:
                outcome.stopped = f"--max-runs {max_runs} reached"
                return outcome
            attempted.add(tuple(point.overrides))
            start = time.time()
            ok = launch(point)
            outcome.ran.append(point)
            say(f"  {'done  ' if ok else 'FAILED'} {point.label} ({time.time() - start:.0f} s)"
                f"  [{point.folder.name}]")
            if not ok:
                outcome.failed.append(point)
        if outcome.failed:
            outcome.stopped = (f"{len(outcome.failed)} point(s) failed in stage {stage.name}; "
                               "see `asymptote study status`, fix, and run again")
            outcome.stages = plan_study(spec, placer)
            return outcome


def write_study_fits(spec: StudySpec, stages: list[Stage]) -> Path:
    """The fits stage: <out>/fits/fits.json from the finished stages (fits.py)."""
    from .fits import inputs_digest, study_fits, tables, write_fits
    from .spec import model_size

    standard, regularized, ensembles = tables(stages, model_size)
    result = study_fits(standard, regularized, ensembles, spec.fits.n_boot, spec.fits.level)
    result["inputs_digest"] = inputs_digest(standard, regularized, ensembles)
    return write_fits(Path(spec.out).expanduser().resolve() / "fits" / "fits.json", result)


def train_subprocess(log_dir: Path) -> Callable[[StudyPoint], bool]:
    """`launch` running `asymptote-train <overrides>` in a child process, its output in
    `<log_dir>/<run folder name>.log`."""
    def launch(point: StudyPoint) -> bool:
        log_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(" ".join(point.overrides).encode()).hexdigest()[:6]
        log = log_dir / f"{point.folder.name}-{digest}.log"  # generate shards share a folder
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        with open(log, "w") as out:
            proc = subprocess.run([sys.executable, "-m", "asymptote.launch.app.main",
                                   *point.overrides], stdout=out, stderr=subprocess.STDOUT,
                                  env=env)
        return proc.returncode == 0
    return launch
