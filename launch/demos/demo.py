"""`asymptote demo`: the embedded default, end to end on a CPU with no cluster.

Runs a slice of the miniature study (the study preset `demo`: four sizes at D = 32,768 seed
tokens, the standard recipe and the regularized one, and a 4-member ensemble of one size, on
the shipped corpus) with the study's local runner, fits L(N) = E + A / N^alpha per recipe and
L(K) = E + A / K^alpha with bootstrap intervals and writes the study report; with --ensemble,
then a separate ensemble stage (members, L(K), a distilled student).
`--split` and `--cpt` run the domain recipes instead (demo_split.py, demo_cpt.py).
"""

from __future__ import annotations

import os
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
    parser.add_argument("--ensemble", action="store_true",
                        help="then run the ensemble stage too (3 members, L(K), a distilled "
                        "student; ~3 more minutes)")
    parser.add_argument("--study", action="append", metavar="KEY=VALUE",
                        help="an override of the `demo` study preset (launch/study/presets/"
                        "demo.yaml), e.g. --study 'models=[tiny_s,tiny,tiny_m]'; repeatable")
    parser.add_argument("--parallel", type=int, default=2,
                        help="training runs at once (default 2: one per core)")
    parser.add_argument("overrides", nargs="*", help="extra asymptote-train overrides (the "
                        "ensemble, --split and --cpt stages)")


# The study's stages the demo runs (the distilled students are left to `study run demo`).
DEMO_STAGES = ("standard", "regularized", "ensemble", "ensemble_eval")


def run_slice(out: Path, study_overrides: list[str], parallel: int) -> int:
    """The study preset `demo` (a slice of the miniature): its standard, regularized, ensemble
    and ensemble evaluation stages run locally, `parallel` points at once; then L(N) per recipe
    and L(K) with bootstrap intervals and the report (<out>/report/summary.md, plots). 0 when
    everything ran."""
    from ..errors import ConfigError
    from ..study.place import Placer
    from ..study.run import run_study, train_subprocess, write_study_fits
    from ..study.spec import load_spec
    from ..study.stages import format_plan, plan_study

    try:
        spec = load_spec("demo", [f"out={out}", *study_overrides])
    except ConfigError as exc:
        print(f"asymptote demo: {exc}")
        return 2
    print(f"$ asymptote study run demo out={out} --only {','.join(DEMO_STAGES)} "
          f"--parallel {parallel}", flush=True)
    with Placer() as placer:
        outcome = run_study(spec, placer, train_subprocess(out / "logs"),
                            only=set(DEMO_STAGES), parallel=parallel,
                            say=lambda line: print(line, flush=True))
        stages = plan_study(spec, placer)
    if outcome.failed or outcome.stopped:
        print(format_plan([s for s in stages if s.name in DEMO_STAGES], points=True))
        print(f"\nthe demo's runs did not all finish ({outcome.stopped}); logs in {out / 'logs'}")
        return 1
    write_study_fits(spec, stages)
    summary = write_demo_report(spec, stages, out)
    text = summary.read_text()
    # The two tables a reader wants first: the asymptotes and the losses per size.
    print("\n" + text[text.index("## Asymptotes"):text.index("## Data efficiency")].strip())
    print(f"\nreport: {summary} (plots beside it)")
    return 0


def write_demo_report(spec, stages, out: Path) -> Path:
    """The study report of the slice (fits.json must exist)."""
    from ..study.report import write_report
    from ..study.spec import model_size

    return write_report(spec, stages, out / "fits" / "fits.json", out / "report", model_size)


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
    code = run_slice(sweep, args.study or [], getattr(args, "parallel", 2))
    if code != 0:
        return code
    if not getattr(args, "ensemble", False):
        return 0
    from .demo_ensemble import run_stage

    # A sibling folder: the slice's folder holds the study's runs, fits and report only.
    print("\nEnsemble stage:", flush=True)
    return run_stage(sweep.parent / f"{sweep.name}_ensemble", env, args.overrides)
