"""Ensemble jobs: members (job=ensemble_member), evaluation (job=ensemble_eval), and the
`asymptote ensemble-eval RUN_DIR... [--out DIR]` subcommand.

A member is a pretrain run whose seeds are derived from its index (`ensemble.vary`: train
seed, data seed or both get + member), tagged with its ensemble, optionally under the seed
paper's rule (2x epochs, 1/2 weight decay of the single-model optimum given). A sweep over
`ensemble.member=0,1,2,...` is one array.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VARY = ("train", "data", "both")


def prepare_config(cfg):
    """Derive a member's seeds, tags and (when asked) the paper's rule, once (DictConfig)."""
    from omegaconf import open_dict

    from .validate import ConfigError

    if cfg.job != "ensemble_member" or cfg.ensemble.derived:
        return cfg
    e = cfg.ensemble
    if e.vary not in VARY:
        raise ConfigError(f"ensemble.vary={e.vary!r}: use one of {', '.join(VARY)}")
    if e.member < 0:
        raise ConfigError(f"ensemble.member={e.member} must be >= 0")
    with open_dict(cfg):
        if e.vary in ("train", "both"):
            cfg.seed.train = int(cfg.seed.train) + int(e.member)
        if e.vary in ("data", "both"):
            cfg.seed.data = int(cfg.seed.data) + int(e.member)
        if e.paper_rule:
            cfg.train.epochs = int(cfg.train.epochs) * 2
            cfg.optim.weight_decay = float(cfg.optim.weight_decay) / 2
        cfg.tags.ensemble = e.name
        cfg.tags.member = int(e.member)
        cfg.tags.vary = e.vary
        cfg.tags.paper_rule = bool(e.paper_rule)
        e.derived = True
    return cfg


def member_config(cfg):
    """The derived RunConfig of a member (for callers that hold a RunConfig, not a DictConfig)."""
    from omegaconf import OmegaConf

    from .config import RunConfig

    node = prepare_config(OmegaConf.structured(cfg))
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), node))


def run_member(cfg) -> dict:
    """job=ensemble_member: train one member (the pretrain loop on derived seeds)."""
    from .loop import run_training

    if not cfg.ensemble.derived:
        cfg = member_config(cfg)
    return run_training(cfg)


def run_eval(cfg) -> dict:
    """job=ensemble_eval: evaluate `ensemble.members` under this job's tensor-parallel size."""
    from ..evals.ensemble import check_members, default_out, evaluate_ensemble
    from ..models import parallel
    from ..models.config import ParallelConfig
    from ..models.inference import ensure_distributed
    from .validate import ConfigError

    e = cfg.ensemble
    if cfg.parallel.pp != 1:
        raise ConfigError("job=ensemble_eval runs without pipeline stages: set parallel.pp=1")
    check_members(e.members, e.k_max)  # before any process group or model
    out = e.eval_out or str(Path(cfg.out).expanduser() / default_out(e.members, e.name).name)
    ensure_distributed(ParallelConfig(tp=cfg.parallel.tp, pp=1, backend=cfg.parallel.backend))
    try:
        results = evaluate_ensemble(e.members, out, e.k_max, e.subsets, e.subset_seed, e.batch,
                                    e.name)
    finally:
        parallel.shutdown()
    return {"ensemble_loss": {c: results[c]["loss"] for c in ("logit_mean", "prob_mean")},
            "out": results.get("out")}


# ---------------------------------------------------------------- asymptote ensemble-eval
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
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "RANK" not in os.environ:  # a single process: its own rendezvous port, whatever is set
        from .train import free_port

        os.environ["MASTER_PORT"] = str(free_port())
    from ..evals.ensemble import EnsembleEvalError, check_members, evaluate_ensemble

    try:
        check_members(args.runs, args.k_max)
    except EnsembleEvalError as exc:
        print(f"asymptote ensemble-eval: {exc}", file=sys.stderr)
        return 2
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("megatron.core").setLevel(logging.WARNING)
    results = evaluate_ensemble(args.runs, args.out, args.k_max, args.subsets, args.seed,
                                args.batch, args.name)
    print(json.dumps(results, indent=2))
    return 0
