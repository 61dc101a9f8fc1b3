"""`asymptote study check | plan | status STUDY [key=value ...]`: a study's stages and points.

STUDY is a study YAML file or a preset name (`miniature`, `paper`); `key=value` overrides go on
top (e.g. `out=/scratch/study`). Nothing is run or submitted:

- check: load the study (every problem of the YAML listed at once) and compose every point
  known now as asymptote-train would; exit 2 on any problem;
- plan: every stage and point with its state, and the asymptote-train overrides of each point
  still to run;
- status: every stage and point with its state (DONE / RUNNING / MISSING / FAILED with its
  error / BLOCKED / WAITING), from the run folders on disk; `--json` for tools;
- run: (launcher.kind=local) run what is missing or failed, stage by stage, planning again
  after each batch (launch/study/run.py); a second run skips everything that finished.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("check", "validate the study and compose every point known now"),
                            ("plan", "every stage and point, with the overrides still to run"),
                            ("status", "every stage and point with its state"),
                            ("run", "run what is missing or failed, stage by stage (local "
                                    "launcher), or start the chain of SLURM jobs that does"),
                            ("advance", "one step of the SLURM chain (what its controller job "
                                        "runs)")):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("study", help="a study YAML file or a preset (miniature, paper)")
        sp.add_argument("overrides", nargs="*", help="key=value overrides of the study")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="print JSON instead of text")
        if name in ("run", "advance"):
            sp.add_argument("--only", default=None,
                            help="comma-separated stages to run (default: all that can run)")
            sp.add_argument("--max-runs", type=int, default=None,
                            help="stop after this many points")
            sp.add_argument("--parallel", type=int, default=1,
                            help="local points to run at once (one core each with "
                                 "OMP_NUM_THREADS=1; default 1)")


def _stages(args):
    from .place import Placer
    from .spec import load_spec
    from .stages import plan_study

    spec = load_spec(args.study, args.overrides)
    with Placer() as placer:
        return spec, plan_study(spec, placer)


def _as_json(spec, stages) -> dict:
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return {"study": spec.name, "out": spec.out, "stages": [
        {"name": s.name, "state": s.state, "notes": s.notes, "waiting": s.waiting,
         "points": [{"label": p.label, "job": p.job, "state": p.state, "detail": p.detail,
                     "loss": clean(p.loss), "folder": str(p.folder) if p.folder else None,
                     "overrides": p.overrides} for p in s.points]} for s in stages]}


def _run(args) -> int:
    from pathlib import Path

    from .place import Placer
    from .run import run_study, train_subprocess
    from .spec import load_spec
    from .stages import STAGE_NAMES, format_plan

    only = None
    if args.only:
        only = set(args.only.split(","))
        unknown = sorted(only - set(STAGE_NAMES))
        if unknown:
            print(f"asymptote study run: --only {','.join(unknown)}: stages are "
                  f"{', '.join(STAGE_NAMES)}")
            return 2
    if getattr(args, "parallel", 1) < 1:
        print(f"asymptote study run: --parallel {args.parallel}: run at least 1 point at a time")
        return 2
    spec = load_spec(args.study, args.overrides)
    if args.action == "advance" and spec.launcher.kind != "slurm":
        print("asymptote study advance: the study's launcher.kind is not slurm; "
              "`asymptote study run` runs it here")
        return 2
    if spec.launcher.kind == "slurm":
        return _advance(args, spec, only)
    logs = Path(spec.out).expanduser().resolve() / "logs"
    with Placer() as placer:
        outcome = run_study(spec, placer, train_subprocess(logs), only, args.max_runs,
                            parallel=args.parallel)
    print(format_plan(outcome.stages, points=False))
    print(f"ran {len(outcome.ran)} point(s), {len(outcome.failed)} failed; logs in {logs}")
    if outcome.stopped:
        print(f"stopped: {outcome.stopped}")
    return 1 if outcome.failed else 0


def _advance(args, spec, only) -> int:
    """`study run` on SLURM (start a chain) or `study advance` (the controller's step)."""
    from pathlib import Path

    from .place import Placer
    from .slurm import advance

    source = args.study
    if Path(source).expanduser().exists():  # the controller job may start elsewhere
        source = str(Path(source).expanduser().resolve())
    with Placer() as placer:
        chain = advance(spec, source, args.overrides, placer, only,
                        start=args.action == "run")
    stopped = chain.get("stopped")
    return 0 if not stopped or stopped == "done" else 1


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .stages import format_plan
    from .state import BLOCKED

    try:
        if args.action in ("run", "advance"):
            return _run(args)
        spec, stages = _stages(args)
    except ConfigError as exc:
        print(f"asymptote study {args.action}: {exc}")
        return 2
    if args.action == "status" and args.json:
        from .slurm import read_chain

        print(json.dumps(dict(_as_json(spec, stages), slurm=read_chain(spec)), indent=2))
        return 0
    if args.action == "check":
        blocked = [(s.name, p) for s in stages for p in s.points if p.state == BLOCKED]
        for name, p in blocked[:10]:
            print(f"{name}: {p.label}: {p.detail}")
        if len(blocked) > 10:
            print(f"... and {len(blocked) - 10} more refused point(s)")
        known = sum(len(s.points) for s in stages)
        waiting = sum(len(s.waiting) for s in stages)
        if len(spec.models) < 3:
            print(f"note: {len(spec.models)} model size(s): L(N) and the tiered asymptote need "
                  "at least 3")
        if len(spec.standard_tokens) < 3:
            print(f"note: the standard recipe runs at {len(spec.standard_tokens)} D value(s): "
                  "L(D) and data efficiency need at least 3 (standard.seed_tokens)")
        print(f"study {spec.name!r}: {known} point(s) known now, {waiting} part(s) waiting on "
              f"results; {len(blocked)} refused")
        return 2 if blocked else 0
    print(format_plan(stages))
    if args.action == "status":
        from .slurm import describe, read_chain

        for line in describe(read_chain(spec)):
            print(line)
    if args.action == "plan":
        todo = [p for s in stages for p in s.points if p.state in ("MISSING", "FAILED")]
        if todo:
            print(f"\nto run ({len(todo)}), each as `asymptote-train <overrides>`:")
            for p in todo:
                print("  " + " ".join(shlex.quote(o) for o in p.overrides))
    return 0
