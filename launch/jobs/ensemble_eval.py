"""`job=ensemble_eval`: an ensemble's validation loss for K = 1..K_max members, logit mean and
probability mean, under this job's tensor-parallel size.

    asymptote-train job=ensemble_eval 'ensemble.members=[runs/m0,runs/m1,runs/m2]'

Writes `ensemble.json`, `ensemble.csv`, `logprobs.h5`, `tb/` and a run.json into
`ensemble.eval_out` (default `<out>/ensemble_eval-<name>-<hash of the members>`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..config import RunConfig
from ..outputs import Outputs


@dataclass
class EnsembleEvalConfig:
    """The members to evaluate and how."""

    members: List[str] = field(default_factory=list)
    """Run folders of the members, in the order prefixes K = 1.. take them."""
    name: str = "ensemble"
    """Ensemble label (part of the output folder's name)."""
    k_max: Optional[int] = None
    """Largest ensemble evaluated (null: all members)."""
    subsets: int = 0
    """Also this many random member subsets per K (mean loss reported)."""
    subset_seed: int = 0
    """Seed of the random subsets."""
    batch: int = 8
    """Validation sequences per forward pass."""
    eval_out: Optional[str] = None
    """Output folder; null writes <out>/ensemble_eval-<name>-<hash>."""


@dataclass
class Config(RunConfig):
    """The shared config (its layout is used) plus the ensemble to evaluate."""

    ensemble: EnsembleEvalConfig = field(default_factory=EnsembleEvalConfig)
    """Members and evaluation settings."""


def check(cfg: Config, world: int | None = None) -> list[str]:
    """Members exist, have checkpoints, share tokenizer, vocabulary and validation sets."""
    from ...evals.ensemble import EnsembleEvalError, check_members

    e, errors = cfg.ensemble, []
    if cfg.parallel.pp != 1:
        errors.append("job=ensemble_eval runs without pipeline stages: set parallel.pp=1")
    if e.subsets < 0 or e.batch < 1:
        errors.append("ensemble.subsets must be >= 0 and ensemble.batch >= 1")
    try:
        check_members(e.members, e.k_max)
    except EnsembleEvalError as exc:
        errors.append(f"ensemble.members: {exc}")
    return errors


def outputs(cfg: Config) -> Outputs:
    """The evaluation folder and its run.json."""
    from ...evals.ensemble import default_out

    e = cfg.ensemble
    if e.eval_out:
        folder = Path(e.eval_out).expanduser()
    elif e.members:
        folder = Path(cfg.out).expanduser() / default_out(e.members, e.name).name
    else:
        folder = Path(cfg.out).expanduser() / f"ensemble_eval-{e.name}"
    folder = folder.resolve()
    return Outputs(folder=folder, record=folder / "run.json", files=(folder / "ensemble.json",))


def run(cfg: Config) -> dict:
    """Evaluate `ensemble.members` (every rank; tp rank 0 writes)."""
    from ...evals.ensemble import evaluate_ensemble
    from ...models import parallel
    from ...models.config import ParallelConfig
    from ...models.inference import ensure_distributed

    e = cfg.ensemble
    out = outputs(cfg).folder
    ensure_distributed(ParallelConfig(tp=cfg.parallel.tp, pp=1, backend=cfg.parallel.backend))
    try:
        results = evaluate_ensemble(e.members, out, e.k_max, e.subsets, e.subset_seed, e.batch,
                                    e.name)
    except Exception as exc:
        # On record (run.json `failed` with the error), so `asymptote status` and `study
        # status` say FAILED and why, instead of showing an evaluation that never ran.
        if parallel.global_rank() == 0:
            from ..run_dir import RunDir

            RunDir(out).update(status="failed", error=f"{type(exc).__name__}: {exc}"[:4000])
        raise
    finally:
        parallel.shutdown()
    return {"ensemble_loss": {c: results[c]["loss"] for c in ("logit_mean", "prob_mean")},
            "out": results.get("out")}
