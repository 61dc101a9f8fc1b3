"""``asymptote analyze <sweep>``: ingest a sweep, fit scaling laws, write tables, plots and a summary.

Heavy imports (pandas, scipy, matplotlib) happen inside :func:`run`; torch is never imported.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``asymptote analyze``."""
    parser.add_argument("sweep", help="sweep folder (runs are found recursively by run.json / event files)")
    parser.add_argument("--out", default=None, help="report folder (default: <sweep>/analysis)")
    parser.add_argument("--x", default="params", help="run column of the scaling variable: params (N), seed_tokens (D)... (default: params)")
    parser.add_argument("--metric", default="val/loss", help="loss tag analysed (default: val/loss)")
    parser.add_argument("--law", default="power", help="one-input law to fit against --x (default: power)")
    parser.add_argument("--group", default="seed_tokens", help="run column with one fit per value (default: seed_tokens; 'none' for a single fit)")
    parser.add_argument("--axes", default="optim.lr,optim.weight_decay,epochs",
                        help="comma-separated hyper-parameter axes of the optimality certificate")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap replicates per fit (0: no intervals; default 1000)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    parser.add_argument("--loss", choices=("huber", "ls"), default="huber", help="fit objective: Huber on log residuals (default) or least squares")
    parser.add_argument("--baseline", default=None, help="column=value selecting the baseline recipe for data efficiency (e.g. wd=0.1)")
    parser.add_argument("--expect", default=None, help="file listing expected run names (one per line), reported when absent")
    parser.add_argument("--law-file", action="append", default=[], help="Python file registering extra laws (may repeat)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    parser.add_argument("--cache-dir", default=None, help="ingest cache folder (default: <sweep>/.asymptote_cache)")
    parser.add_argument("--no-cache", action="store_true", help="read every event file again, write no cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the analysis and print the summary; 1 with a message when nothing can be analysed."""
    import sys

    from .errors import AnalysisError
    from .lawfile import load_law_files
    from .report import analyze_sweep

    try:
        load_law_files(args.law_file)
        expected = None
        if args.expect:
            with open(args.expect) as f:
                expected = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        report = analyze_sweep(
            args.sweep, out_dir=args.out, x=args.x, metric=args.metric, law=args.law,
            group=None if str(args.group).lower() == "none" else args.group,
            axes=tuple(a.strip() for a in args.axes.split(",") if a.strip()), n_boot=args.boot, level=args.level,
            seed=args.seed, loss=args.loss, cache_dir=False if args.no_cache else args.cache_dir,
            progress=not args.quiet and sys.stderr.isatty(), expected=expected, baseline=args.baseline,
        )
    except (AnalysisError, FileNotFoundError) as exc:
        print(f"asymptote analyze: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
