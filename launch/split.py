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
import os

from .config import RunConfig
from .continued import BaseRunError, ContinuedTrainer, adopt_base_model, base_at_tokens

MIXTURE = "mixture"
"""`split.cluster=mixture`: the control, the base continued on the whole mixture for D'."""


def split_config(cfg: RunConfig):
    """Resolve the split run's config from its base: the base's model and prepared data, this
    run's cluster and D'. Returns (cfg, base checkpoint)."""
    s = cfg.split
    base = base_at_tokens(s.base, s.base_tokens, "split")
    data = base.cfg.data
    if not data.prepared:
        raise BaseRunError(
            f"split.base={s.base} was not trained on a clustered corpus (its data.prepared is "
            "unset); pretrain the base with data.prepared=<asymptote data cluster --out folder>")
    from ..data.sources import DataSourceError, load_prepared

    try:
        clusters = sorted(load_prepared(data.prepared).manifest["train_tokens"])
    except DataSourceError as exc:
        raise BaseRunError(f"the base's clustered data is gone: {exc}") from None
    if s.cluster not in clusters and s.cluster != MIXTURE:
        raise BaseRunError(f"split.cluster={s.cluster!r}: the base's clusters are "
                           f"{', '.join(clusters)} (or `{MIXTURE}`: the control)")
    adopt_base_model(cfg, base)
    # The base's data (prepared folder, tokenizer, validation sets) restricted to one cluster
    # (the control `mixture` continues on all of them, same fresh schedule and D').
    cfg.data = dataclasses.replace(data, seed_tokens=cfg.data.seed_tokens,
                                   train_domain=None if s.cluster == MIXTURE else s.cluster,
                                   cache_dir=cfg.data.cache_dir)
    s.base = str(base.run_dir.resolve())
    s.base_tokens = base.tokens
    if cfg.name is None:
        from omegaconf import OmegaConf

        from .run_dir import config_hash

        d = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
        cfg.name = (f"split-{cfg.model.name}-{s.cluster}-D{base.tokens}-Dp"
                    f"{cfg.data.seed_tokens * cfg.train.epochs}-lr{cfg.optim.lr:g}"
                    f"-s{cfg.seed.train}.{cfg.seed.data}-{config_hash(d)}")
    return cfg, base


class SplitTrainer(ContinuedTrainer):
    """Records D, D' and the cluster in run.json for the analysis."""

    def resume(self) -> bool:
        resumed = super().resume()
        s, per_step = self.cfg.split, self.cfg.train.global_batch * self.cfg.model.seq_len
        self._record(cluster=s.cluster, base_run=s.base, base_step=self.base.step,
                     pretrain_tokens=self.base.tokens, split_tokens=self.steps * per_step)
        return resumed


def prepare_config(cfg):
    """Hook of `asymptote-train` (DictConfig in, DictConfig out): derive the config from the
    base once in the launching process, so validation sees the base's model and every rank
    and the run folder's name agree. Idempotent (the job function applies it again)."""
    from .jobs import derive_once

    return derive_once(cfg, "split", lambda run_cfg: split_config(run_cfg)[0])


def run_split(cfg: RunConfig) -> dict:
    """Train one specialist (every rank calls this)."""
    from .loop import run_training
    from .validate import validate

    cfg, base = split_config(cfg)
    validate(cfg, world=int(os.environ.get("WORLD_SIZE", "1")))  # the base's model, this layout
    return run_training(cfg, lambda c: SplitTrainer(c, base))
