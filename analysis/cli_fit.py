"""``asymptote fit <table.csv> --law power --x <col> --y <col>``: fit a law to any table.

Prints (or writes) a JSON record: parameters, bootstrap intervals, R^2, the extrapolation
check, warnings (also printed to stderr; among them parameters the data leave undetermined),
optional objective profiles, and for three-input laws the optimal split of requested budgets. This is how published
numbers are refitted without a sweep. Heavy imports happen inside :func:`run`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``asymptote fit``."""
    parser.add_argument("table", help="CSV file with a header row ('-' for stdin)")
    parser.add_argument("--law", default="power", help="registered law (power, reciprocal, chinchilla, data_constrained, or from --law-file)")
    parser.add_argument("--x", action="append", required=True, metavar="COL",
                        help="input column; repeat for multi-input laws, in the law's input order or as NAME=COL")
    parser.add_argument("--y", required=True, metavar="COL", help="target column (the loss)")
    parser.add_argument("--loss", choices=("huber", "ls"), default="huber", help="Huber on log residuals (default) or plain least squares")
    parser.add_argument("--delta", type=float, default=1e-3, help="Huber threshold (default 1e-3)")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE", help="hold a parameter fixed (may repeat)")
    parser.add_argument("--x-unit", type=float, default=1.0, help="divide every input by this (e.g. 1e9 for N in billions)")
    parser.add_argument("--where", action="append", default=[], metavar="COL=VALUE", help="keep only rows with this value (may repeat)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap replicates (0: none; default 1000)")
    parser.add_argument("--method", choices=("cases", "residuals"), default="cases", help="bootstrap resampling (default cases)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    parser.add_argument("--split", action="append", default=[], metavar="N:TOTAL",
                        help="three-input laws L(N, D, D'): optimal split of budget TOTAL for size N (may repeat)")
    parser.add_argument("--tie-rtol", type=float, default=1e-3,
                        help="objectives within this fraction of the best count as tied when testing whether the data "
                             "determine each parameter (default 1e-3)")
    parser.add_argument("--profile", action="append", default=[], metavar="PARAM",
                        help="profile the objective over this free parameter (may repeat)")
    parser.add_argument("--profile-points", type=int, default=25, help="values per profile (default 25)")
    parser.add_argument("--law-file", action="append", default=[], help="Python file registering extra laws (may repeat)")
    parser.add_argument("--out", default=None, help="write the JSON here instead of stdout")


def _pairs(items, what):
    from .errors import AnalysisError

    out = []
    for item in items:
        if "=" not in item:
            raise AnalysisError(f"{what} must look like NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def run(args: argparse.Namespace) -> int:
    """Fit and print the JSON result; 1 with a message on bad input."""
    import json
    import sys

    import numpy as np
    import pandas as pd

    from .bootstrap import bootstrap
    from .errors import AnalysisError
    from .fit import _jsonable, extrapolation_check, fit
    from .lawfile import load_law_files
    from .laws import get_law
    from .profile import profile
    from .split import break_even, break_even_interval, optimal_split

    try:
        load_law_files(args.law_file)
        law = get_law(args.law)
        try:
            table = pd.read_csv(sys.stdin if args.table == "-" else args.table)
        except (OSError, ValueError) as exc:
            raise AnalysisError(f"cannot read table {args.table}: {exc}") from None
        for col, val in _pairs(args.where, "--where"):
            if col not in table.columns:
                raise AnalysisError(f"--where column {col!r} not in the table (columns: {', '.join(table.columns)})")
            try:
                table = table[np.isclose(pd.to_numeric(table[col]), float(val))]
            except ValueError:
                table = table[table[col].astype(str) == val]
        named = [x.split("=", 1) for x in args.x]
        if all(len(n) == 2 for n in named):
            mapping = {k.strip(): c.strip() for k, c in named}
            if set(mapping) != set(law.inputs):
                raise AnalysisError(f"law {law.name!r} takes inputs {law.inputs}; --x gave {sorted(mapping)}")
            cols = [mapping[k] for k in law.inputs]
        elif all(len(n) == 1 for n in named):
            cols = [n[0].strip() for n in named]
        else:
            raise AnalysisError("use either plain --x COL for every input or NAME=COL for every input")
        if len(cols) != len(law.inputs):
            raise AnalysisError(f"law {law.name!r} takes {len(law.inputs)} input(s) {law.inputs}; got {len(cols)} --x")
        missing = [c for c in cols + [args.y] if c not in table.columns]
        if missing:
            raise AnalysisError(f"column(s) {missing} not in the table (columns: {', '.join(map(str, table.columns))})")
        X = tuple(pd.to_numeric(table[c], errors="coerce").to_numpy(float) / args.x_unit for c in cols)
        y = pd.to_numeric(table[args.y], errors="coerce").to_numpy(float)
        fixed = {k: float(v) for k, v in _pairs(args.fix, "--fix")}
        result = fit(law, X, y, loss=args.loss, delta=args.delta, fixed=fixed, tie_rtol=args.tie_rtol)
        if args.boot:
            bootstrap(result, n=args.boot, level=args.level, seed=args.seed, method=args.method)
        extrapolation_check(result)
        out = result.to_dict()
        out["columns"] = {"x": dict(zip(law.inputs, cols)), "y": args.y, "x_unit": args.x_unit}
        if args.profile:
            out["profiles"] = [profile(result, name, n=args.profile_points).to_dict(args.tie_rtol)
                               for name in args.profile]
        if args.split:
            splits = []
            for spec in args.split:
                try:
                    n_str, t_str = spec.split(":")
                    n_val, total = float(n_str) / args.x_unit, float(t_str) / args.x_unit
                except ValueError:
                    raise AnalysisError(f"--split must look like N:TOTAL, got {spec!r}") from None
                s = optimal_split(result, n_val, total, level=args.level).to_dict()
                s["break_even_total"] = break_even(result, n_val)
                s["break_even_interval"] = break_even_interval(result, n_val, level=args.level)
                splits.append(s)
            out["splits"] = splits
        text = json.dumps(_jsonable(out), indent=1)
    except AnalysisError as exc:
        print(f"asymptote fit: {exc}", file=sys.stderr)
        return 1
    for note in result.warnings:  # seen even when the JSON goes to a file
        print(f"asymptote fit: warning: {note}", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0
