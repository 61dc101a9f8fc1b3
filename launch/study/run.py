"""`asymptote study run` with the local launcher: plan, start the runnable points (earliest
stage first) on the free workers, plan again as each finishes, until nothing is left that a job
type can run.

Every point runs as `asymptote-train <its overrides>` would, in its content-addressed run folder,
so a second `study run` skips everything that finished and runs only what is missing or
failed. A point that fails is not retried within the same invocation: the points already
running are finished, then the run stops and says which points failed (fix, then run again).
When every input of the fits stage is done, it is computed here (fits.py: <out>/fits/fits.json), and
then the report (report.py: <out>/report/summary.md, plots, TensorBoard).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .spec import StudySpec
from .stages import Stage, StudyPoint, plan_study
from .state import BLOCKED, FAILED, MISSING, RUNNING


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
              say: Callable[[str], None] = print, parallel: int = 1) -> Outcome:
    """Run the study's points (`only`: of these stages; `max_runs`: at most this many points;
    `parallel`: this many at once), planning again each time a point finishes so that a free
    worker takes the next runnable point of any stage (earliest stage first) instead of
    waiting for the slowest point of a batch; `launch(point)` runs one, True on success.
    After a failure nothing new starts: the points already running finish, then the run stops
    and names the failures."""
    if parallel < 1:
        raise ValueError(f"parallel={parallel}: run at least one point at a time")
    if spec.launcher.kind != "local":
        raise NotImplementedError("study run submits nothing to SLURM yet: set "
                                  "launcher.kind=local, or submit the points `asymptote study "
                                  "plan` lists by hand")
    attempted: set = set()
    outcome = Outcome([])
    started: dict[tuple, int] = {}  # points started per (stage, model, D), for fair turns
    failed_stages: set[str] = set()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        # Threads only wait on child processes; results are reported as they finish.
        running: dict = {}  # future -> (stage name, point)
        while True:
            stages = outcome.stages = plan_study(spec, placer)
            budget = None if max_runs is None else max_runs - len(outcome.ran) - len(running)
            if not outcome.failed and (budget is None or budget > 0):
                for stage, point in next_points(stages, only, attempted,
                                                parallel - len(running), budget, started):
                    say(f"  start  {stage.name}: {point.label}")
                    attempted.add(tuple(point.overrides))
                    running[pool.submit(_timed, launch, point)] = (stage.name, point)
            if not running:
                if outcome.failed:
                    outcome.stopped = (f"{len(outcome.failed)} point(s) failed in stage "
                                       f"{', '.join(sorted(failed_stages))}; see "
                                       "`asymptote study status`, "
                                       "fix, and run again")
                    return outcome
                if max_runs is not None and len(outcome.ran) >= max_runs:
                    outcome.stopped = f"--max-runs {max_runs} reached"
                    return outcome
                if write_next_own_output(spec, stages, only, say):
                    continue
                why = why_nothing_runs(stages, only)
                outcome.stopped = "" if why == "done" else why
                return outcome
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name, point = running.pop(future)
                ok, seconds = future.result()
                outcome.ran.append(point)
                say(f"  {'done  ' if ok else 'FAILED'} {name}: {point.label} ({seconds:.0f} s)"
                    f"  [{point.folder.name}]")
                if not ok:
                    outcome.failed.append(point)
                    failed_stages.add(name)


def next_points(stages: list[Stage], only: set[str] | None, attempted: set, free: int,
                budget: int | None, started: dict) -> list[tuple[Stage, StudyPoint]]:
    """Up to `free` (and `budget`) points to start now: earliest stage first and, within a
    stage, the (model, D) cell with the fewest points started so far (`started`, updated), so
    that every cell's initial grid runs before any cell's extensions pile up."""
    picked: list[tuple[Stage, StudyPoint]] = []
    limit = free if budget is None else min(free, budget)
    for stage in stages:
        if only is not None and stage.name not in only:
            continue
        # A point two stages share (a standard run on the regularized grid) is started once.
        taken = set(attempted) | {tuple(p.overrides) for _, p in picked}
        waiting = runnable(stage, taken)
        while waiting and len(picked) < limit:
            point = min(waiting, key=lambda p: started.get(_cell(stage, p), 0))
            waiting.remove(point)
            started[_cell(stage, point)] = started.get(_cell(stage, point), 0) + 1
            picked.append((stage, point))
    return picked


def _cell(stage: Stage, point: StudyPoint) -> tuple:
    return stage.name, point.meta.get("model"), point.meta.get("D")


def write_next_own_output(spec: StudySpec, stages: list[Stage], only: set[str] | None,
                          say: Callable[[str], None]) -> bool:
    """Write the first of the study's own outputs (fits, report) that is due; False if none."""
    own = next((s for s in stages if s.name in OWN_OUTPUTS and s.points
                and s.points[0].state == MISSING and (only is None or s.name in only)), None)
    if own is None:
        return False
    say(f"stage {own.name}: writing {own.points[0].folder}")
    OWN_OUTPUTS[own.name](spec, stages)
    return True


def why_nothing_runs(stages: list[Stage], only: set[str] | None) -> str:
    """Why no point can run now: refused points, points still marked running, stages not
    done; `done` when every stage (of `only`) is."""
    blocked = [f"{s.name}: {p.label}: {p.detail}" for s in stages for p in s.points
               if p.state == BLOCKED]
    running = [f"{s.name}: {p.label}" for s in stages for p in s.points if p.state == RUNNING]
    left = [s.name for s in stages if s.state != "DONE" and (only is None or s.name in only)]
    if blocked:
        return "refused by their jobs' checks: " + "; ".join(blocked[:5])
    if running:
        return ("points still marked running (killed without a record?): "
                + "; ".join(running[:5]))
    if left:
        return "nothing more can run now; not done: " + ", ".join(left)
    return "done"


def _timed(launch: Callable[[StudyPoint], bool], point: StudyPoint) -> tuple[bool, float]:
    start = time.time()
    return launch(point), time.time() - start


def write_study_fits(spec: StudySpec, stages: list[Stage]) -> Path:
    """The fits stage: <out>/fits/fits.json from the finished stages (fits.py)."""
    from .fits import inputs_digest, study_fits, tables, write_fits
    from .spec import model_size

    standard, regularized, ensembles = tables(stages, model_size)
    result = study_fits(standard, regularized, ensembles, spec.fits.n_boot, spec.fits.level)
    result["inputs_digest"] = inputs_digest(standard, regularized, ensembles)
    return write_fits(Path(spec.out).expanduser().resolve() / "fits" / "fits.json", result)


def write_study_report(spec: StudySpec, stages: list[Stage]) -> Path:
    """The report stage: <out>/report/ from fits.json and the finished stages (report.py)."""
    from .report import write_report
    from .spec import model_size

    out = Path(spec.out).expanduser().resolve()
    return write_report(spec, stages, out / "fits" / "fits.json", out / "report", model_size)


# The stages the study computes itself, by name, in plan order.
OWN_OUTPUTS = {"fits": write_study_fits, "report": write_study_report}


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
