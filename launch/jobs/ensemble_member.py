"""`job=ensemble_member`: one member of an ensemble, a pretrain run on derived seeds.

Member i adds i to the varied seeds (`ensemble.vary`: the train seed, the data seed or both),
is tagged with its ensemble, and optionally follows the seed paper's rule (2x epochs, 1/2
weight decay of the single-model optimum given). A sweep over `ensemble.member=0,1,2,...` is
one array:

    asymptote-train -m job=ensemble_member model=tiny ensemble.member=0,1,2
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..config import RunConfig

VARY = ("train", "data", "both")


@dataclass
class EnsembleMemberConfig:
    """One member of an ensemble."""

    name: str = "ensemble"
    """Ensemble label, copied into every member's tags."""
    member: int = 0
    """Member index (sweep it: `ensemble.member=0,1,2,3` is one array)."""
    vary: str = "both"
    """Which seeds differ between members: `train` (init), `data` (data order) or `both`.
    Member i adds i to each varied seed (seed.train / seed.data are the base)."""
    paper_rule: bool = False
    """Apply the seed paper's ensemble rule to the config given (the single-model optimum):
    train.epochs x 2 and optim.weight_decay / 2."""
    derived: bool = False
    """Set once seeds (and the rule) are applied; do not set it."""


@dataclass
class Config(RunConfig):
    """A pretrain run plus its place in an ensemble."""

    ensemble: EnsembleMemberConfig = field(default_factory=EnsembleMemberConfig)
    """The ensemble and this member's index."""


def check(cfg: Config, world: int | None = None) -> list[str]:
    """The member's index and seed rule."""
    e, errors = cfg.ensemble, []
    if e.vary not in VARY:
        errors.append(f"ensemble.vary={e.vary!r}: use one of {', '.join(VARY)}")
    if e.member < 0:
        errors.append(f"ensemble.member={e.member} must be >= 0")
    return errors


def derive(cfg: Config) -> Config:
    """Apply the member's seeds, tags and (when asked) the paper's rule, once."""
    e = cfg.ensemble
    if e.derived or e.vary not in VARY:  # a bad `vary` is reported by check()
        return cfg
    seed, train, optim = cfg.seed, cfg.train, cfg.optim
    if e.vary in ("train", "both"):
        seed = dataclasses.replace(seed, train=seed.train + e.member)
    if e.vary in ("data", "both"):
        seed = dataclasses.replace(seed, data=seed.data + e.member)
    if e.paper_rule:
        train = dataclasses.replace(train, epochs=train.epochs * 2)
        optim = dataclasses.replace(optim, weight_decay=optim.weight_decay / 2)
    tags = dict(cfg.tags, ensemble=e.name, member=e.member, vary=e.vary,
                paper_rule=bool(e.paper_rule))
    return dataclasses.replace(cfg, seed=seed, train=train, optim=optim, tags=tags,
                               ensemble=dataclasses.replace(e, derived=True))


def run(cfg: Config) -> dict:
    """Train this member (the pretrain loop on derived seeds)."""
    from ..train.trainer import run_training

    return run_training(derive(cfg))
