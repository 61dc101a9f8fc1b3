"""``asymptote analyze-split <sweep>``: fit a split law L(N, D, D') to job=split runs, report the
optimal split of total budgets and where splitting starts to pay, plot loss vs D' per D."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", help="folder holding job=split runs (and anything else)")
    parser.add_argument("--law", default="split_example",
                        help="registered three-input law (N, D, Dp); default: split_example")
    parser.add_argument("--law-file", action="append", default=[],
                        help="Python file registering laws (may repeat)")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="hold a parameter fixed (may repeat)")
    parser.add_argument("--total", action="append", type=float, default=[],
                        help="total budget D + D' to split (may repeat; default: 5 spanning the sweep)")
    parser.add_argument("--size", action="append", type=float, default=[],
                        help="model size N to report (may repeat; default: the sweep's)")
    parser.add_argument("--cluster", default="mean",
                        help="`mean` over clusters (default) or one cluster's specialists")
    parser.add_argument("--param-count", default="params",
                        help="run.json field used as N (default params; or non_embedding_params)")
    parser.add_argument("--boot", type=int, default=200, help="bootstrap replicates (0: none)")
    parser.add_argument("--loss", choices=("huber", "ls"), default="huber")
    parser.add_argument("--out", default=None, help="report folder (default <sweep>/analysis)")


def run(args: argparse.Namespace) -> int:
    import sys

    from .errors import AnalysisError
    from .lawfile import load_law_files
    from .split_runs import analyze_split

    try:
        load_law_files(args.law_file)
        fixed = {}
        for item in args.fix:
            if "=" not in item:
                raise AnalysisError(f"--fix must look like NAME=VALUE, got {item!r}")
            k, v = item.split("=", 1)
            fixed[k.strip()] = float(v)
        out = analyze_split(args.sweep, args.law, out_dir=args.out, totals=args.total or None,
                            sizes=args.size or None, fixed=fixed or None, cluster=args.cluster,
                            size=args.param_count, n_boot=args.boot, loss=args.loss)
    except AnalysisError as exc:
        print(f"asymptote analyze-split: {exc}", file=sys.stderr)
        return 1
    print(out.summary())
    print(f"\nwrote {out.out_dir} (split_fit.json, split_points.csv, {out.plot_path.name})")
    return 0
