"""`job=split`: one specialist of the split-training recipe.

A base run pretrained on the mixture of a clustered corpus (`data.prepared=<clusters>`, with
`train.keep_at_tokens` listing the D grid) is continued from its checkpoint after D tokens
(`split.base_tokens`) on one cluster (`split.cluster`) for D' = data.seed_tokens x train.epochs
tokens, with a fresh optimizer and schedule. Every cluster's validation loss is logged
(`val/<cluster>/loss`), at step 0 too (the base's loss at D). A sweep over (cluster, D, D') is
one Hydra multirun, i.e. one SLURM array with the slurm launcher:

    asymptote-train -m job=split split.base=runs/base split.cluster=c0,c1,c2 \\
        split.base_tokens=65536,131072 data.seed_tokens=16384,32768
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from ..config import RunConfig, to_dict
from ..errors import BaseRunError

MIXTURE = "mixture"
"""`split.cluster=mixture`: the control, the base continued on the whole mixture for D'."""


@dataclass
class SplitConfig:
    """A specialist: the base run's model after D tokens, continued on one cluster for D' tokens
    (D' = data.seed_tokens x train.epochs) with a fresh optimizer and schedule."""

    base: Optional[str] = None
    """Folder of the base run, pretrained on the mixture of a clustered corpus
    (`data.prepared=<asymptote data cluster --out>`)."""
    base_tokens: int = 0
    """D: start from the base's checkpoint after this many training tokens (kept by the base's
    train.keep_at_tokens); 0: the base's final checkpoint."""
    cluster: Optional[str] = None
    """The cluster to specialize on (a domain of the base's prepared data, e.g. `c0`), or
    `mixture`: the control, continuing on the whole mixture with the same fresh schedule."""


@dataclass
class Config(RunConfig):
    """A continuation of a base run on one cluster."""

    split: SplitConfig = field(default_factory=SplitConfig)
    """Base run, D and cluster."""


def _base(cfg: Config):
    from ..train.start import base_at_tokens

    return base_at_tokens(cfg.split.base, cfg.split.base_tokens, "split")


def _clusters(base) -> list[str]:
    from ...data.sources import DataSourceError, load_prepared

    data = base.cfg.data
    if not data.prepared:
        raise BaseRunError(
            f"split.base={base.run_dir} was not trained on a clustered corpus (its data.prepared "
            "is unset); pretrain the base with data.prepared=<asymptote data cluster --out folder>")
    try:
        return sorted(load_prepared(data.prepared).manifest["train_tokens"])
    except DataSourceError as exc:
        raise BaseRunError(f"the base's clustered data is gone: {exc}") from None


def derive(cfg: Config) -> Config:
    """The base's model and prepared data restricted to this run's cluster; the base resolved
    to its folder and token count; the run's readable name. Raises BaseRunError when the base
    cannot serve."""
    from ..run_dir import run_name

    s = cfg.split
    base = _base(cfg)
    clusters = _clusters(base)
    if s.cluster not in clusters and s.cluster != MIXTURE:
        raise BaseRunError(f"split.cluster={s.cluster!r}: the base's clusters are "
                           f"{', '.join(clusters)} (or `{MIXTURE}`: the control)")
    # The base's data (prepared folder, tokenizer, validation sets) restricted to one cluster
    # (the control `mixture` continues on all of them, same fresh schedule and D').
    data = dataclasses.replace(base.cfg.data, seed_tokens=cfg.data.seed_tokens,
                               train_domain=None if s.cluster == MIXTURE else s.cluster,
                               cache_dir=cfg.data.cache_dir)
    split = dataclasses.replace(s, base=str(base.run_dir.resolve()), base_tokens=base.tokens)
    cfg = dataclasses.replace(cfg, model=base.cfg.model, data=data, split=split)
    if cfg.name is None:
        d_prime = cfg.data.seed_tokens * cfg.train.epochs
        cfg = dataclasses.replace(cfg, name=run_name(
            to_dict(cfg), f"{s.cluster}-D{base.tokens}-Dp{d_prime}"))
    return cfg


def check(cfg: Config, world: int | None = None) -> list[str]:
    """The base (a run with the checkpoint asked for, on clustered data) and the cluster."""
    if not cfg.split.cluster:
        return ["split.cluster is not set; give one of the base's clusters (e.g. c0) or "
                f"`{MIXTURE}`"]
    try:
        derive(cfg)
    except BaseRunError as exc:
        return [str(exc)]
    return []


def run(cfg: Config) -> dict:
    """Train one specialist (every rank calls this)."""
    from ..train.start import FromRun
    from ..train.trainer import Parts, run_training

    cfg = derive(cfg)
    base = _base(cfg)
    seq, gb = cfg.model.seq_len, cfg.train.global_batch
    steps = (cfg.data.seed_tokens // seq) * cfg.train.epochs // gb
    start = FromRun(base, cluster=cfg.split.cluster, pretrain_tokens=base.tokens,
                    split_tokens=steps * gb * seq)
    return run_training(cfg, Parts(start=start))
