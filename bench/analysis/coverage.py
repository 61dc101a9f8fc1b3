"""Do the bootstrap's 95% intervals cover the true parameters about 95% of the time?

Repeated synthetic trials: losses from a known law times log-normal noise -> fit (Huber on log
residuals) -> bootstrap intervals -> does each interval contain the true value? Coverage is the
fraction of trials that do, reported with its binomial standard error, for the percentile
intervals (``coverage_*``) and, from the same replicates, bias-corrected ones (``coverage_bc_*``).

    nice python bench/analysis/coverage.py --trials 200 --boot 200 --points 6 12 --methods cases residuals

Writes a JSON record (default bench/analysis/results/coverage.json) including the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

from asymptote.analysis.bootstrap import bc_interval, bootstrap, interval_contains
from asymptote.analysis.fit import fit

TRUTH = {
    "power": {"E": 3.43, "A": 2000.0, "alpha": 0.45},
    "chinchilla": {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28},
}


def design(law: str, n: int) -> tuple[np.ndarray, ...]:
    """Inputs of a trial: model sizes from 100M to 3B (and, for Chinchilla, a D grid)."""
    if law == "power":
        return (np.geomspace(1e8, 3e9, n),)
    side = int(round(math.sqrt(n)))
    N = np.repeat(np.geomspace(1e7, 1e9, side), side)
    D = np.tile(np.geomspace(1e8, 1e10, side), side)
    return (N, D)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--law", choices=sorted(TRUTH), default="power")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--points", type=int, nargs="+", default=[6, 12])
    ap.add_argument("--noise", type=float, default=0.005, help="sd of the log-normal noise")
    ap.add_argument("--methods", nargs="+", default=["cases", "residuals"])
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "coverage.json"))
    args = ap.parse_args(argv)
    truth = TRUTH[args.law]
    rng = np.random.default_rng(args.seed)
    results = []
    for n in args.points:
        X = design(args.law, n)
        from asymptote.analysis.laws import get_law

        clean = get_law(args.law).predict(X, truth)
        for method in args.methods:
            hits = {p: 0 for p in truth}
            hits_bc = {p: 0 for p in truth}
            widths = {p: [] for p in truth}
            t0 = time.perf_counter()
            done = 0
            for trial in range(args.trials):
                y = clean * np.exp(rng.normal(0.0, args.noise, clean.size))
                r = fit(args.law, X, y)
                b = bootstrap(r, n=args.boot, level=args.level, seed=int(rng.integers(1 << 31)), method=method)
                if not b.meaningful:
                    continue
                done += 1
                for p, v in truth.items():
                    iv = b.intervals[p]
                    hits[p] += interval_contains(iv, v)
                    hits_bc[p] += interval_contains(bc_interval(b.column(p), r.params[p], args.level), v)
                    widths[p].append(iv[1] - iv[0])
            secs = time.perf_counter() - t0
            row = {"law": args.law, "points": n, "method": method, "trials": done, "boot": args.boot,
                   "noise": args.noise, "seconds": round(secs, 1)}
            for p in truth:
                cov = hits[p] / done if done else float("nan")
                row[f"coverage_{p}"] = round(cov, 3)
                row[f"coverage_bc_{p}"] = round(hits_bc[p] / done, 3) if done else None
                row[f"se_{p}"] = round(math.sqrt(cov * (1 - cov) / done), 3) if done else None
                row[f"median_width_{p}"] = float(np.median(widths[p])) if widths[p] else None
            results.append(row)
            print(json.dumps(row), flush=True)
    record = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
        "level": args.level, "truth": truth, "machine": platform.platform(), "cpus": os.cpu_count(),
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
