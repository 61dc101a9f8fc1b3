"""`asymptote ensemble-eval RUN_DIR... [--out DIR]`: an ensemble's validation loss for
K = 1..members in this process (job=ensemble_eval runs the same on a cluster)."""

from __future__ import annotations

import json
import os
import sys


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="member run folders")
    parser.add_argument("--out", default=None,
                        help="output folder (default: next to the first member, "
                             "ensemble_eval-<name>-<hash>)")
    parser.add_argument("--k-max", type=int, default=None,
                        help="largest ensemble size (default: all members)")
    parser.add_argument("--subsets", type=int, default=0,
                        help="also this many random member subsets per K")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random subsets")
    parser.add_argument("--batch", type=int, default=8, help="sequences per forward pass")
    parser.add_argument("--name", default="ensemble", help="ensemble label")


def run(args) -> int:
    """Evaluate and print the results JSON; exit 2 with a message on bad members."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "RANK" not in os.environ:  # a single process: its own rendezvous port, whatever is set
        from .spawn import free_port

        os.environ["MASTER_PORT"] = str(free_port())
    from ...evals.ensemble import EnsembleEvalError, check_members, evaluate_ensemble

    try:
        check_members(args.runs, args.k_max)
    except EnsembleEvalError as exc:
        print(f"asymptote ensemble-eval: {exc}", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("megatron.core").setLevel(logging.WARNING)
    results = evaluate_ensemble(args.runs, args.out, args.k_max, args.subsets, args.seed,
                                args.batch, args.name)
    print(json.dumps(results, indent=2))
    return 0
