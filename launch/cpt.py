"""`job=cpt`: continued pre-training of a run on a domain dataset, with replay of general data.

The base run's weights (any saved TP/PP layout, resharded into this run's) continue on `data`
(the domain corpus, tokenized with the base's tokenizer) for data.seed_tokens x train.epochs
domain tokens, while a share `cpt.replay_fraction` of the training sequences comes from the
replay data (default: the base's own training data). The learning rate re-warms up
(`cpt.warmup_frac`, from lr x `cpt.warmup_start`) and decays (`cpt.decay`). Logged: the domain
validation loss (`val/loss`, `val/<domain>/loss`) and the general one (`val/general/loss`,
`val/general/<domain>/loss`) from step 0, so forgetting shows in TensorBoard, and the replay
share of every batch (`train/replay_fraction`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from .config import RunConfig
from .continued import BaseCheckpoint, BaseRunError, ContinuedTrainer, adopt_base_model, base_at_step

DECAYS = ("cosine", "linear", "constant")


def _vocab(path: Path) -> dict:
    from ..data.tokenizer import Tokenizer

    return Tokenizer.load(path)._tok.get_vocab()


def same_tokenizer(a: Path, b: Path) -> bool:
    """Whether two tokenizers map every token to the same id."""
    return _vocab(a) == _vocab(b)


def _tokenizer_file(data) -> Path | None:
    """The tokenizer a data config will use, when it is fixed before preparing."""
    if data.prepared:
        return Path(data.prepared).expanduser() / "tokenizer.json"
    if data.tokenizer != "train":
        p = Path(data.tokenizer).expanduser()
        return p / "tokenizer.json" if p.is_dir() else p
    return None


def with_base_tokenizer(data, base: BaseCheckpoint, key: str):
    """`data` tokenized with the base's tokenizer: `train` becomes the base's tokenizer.json; a
    fixed tokenizer (or a prepared folder's) must equal it."""
    fixed = _tokenizer_file(data)
    if fixed is None:
        return dataclasses.replace(data, tokenizer=str(base.tokenizer.resolve()))
    if not fixed.is_file():
        raise BaseRunError(f"{key}: no tokenizer at {fixed}")
    if not same_tokenizer(fixed, base.tokenizer):
        from ..data.tokenizer import Tokenizer

        theirs, mine = Tokenizer.load(fixed), Tokenizer.load(base.tokenizer)
        raise BaseRunError(
            f"{key} uses another tokenizer than the base run: {fixed} ({theirs.vocab_size} "
            f"tokens) vs the base's {base.tokenizer} ({mine.vocab_size} tokens); token ids would "
            f"not mean the same. Tokenize it with the base's tokenizer: leave {key}.tokenizer=train "
            f"(or set it to {base.tokenizer}); a prepared folder must have been written with it")
    return data


def cpt_config(cfg: RunConfig):
    """Resolve the CPT run's config from its base. Returns (cfg, base, replay data config)."""
    c = cfg.cpt
    if not 0.0 <= c.replay_fraction < 1.0:
        raise BaseRunError(f"cpt.replay_fraction={c.replay_fraction} must be in [0, 1)")
    if c.decay not in DECAYS:
        raise BaseRunError(f"cpt.decay={c.decay!r}: use one of {', '.join(DECAYS)}")
    if not 0.0 <= c.warmup_frac < 1.0 or not 0.0 <= c.warmup_start <= 1.0:
        raise BaseRunError("cpt.warmup_frac must be in [0, 1) and cpt.warmup_start in [0, 1]")
    base = base_at_step(c.base, c.base_step, "cpt")
    adopt_base_model(cfg, base)
    cfg.data = with_base_tokenizer(cfg.data, base, "data")
    if c.replay.corpus or c.replay.prepared:
        replay = with_base_tokenizer(c.replay, base, "cpt.replay")
    else:  # the base's own training data: exactly the D tokens it was trained on
        replay = dataclasses.replace(base.cfg.data, cache_dir=cfg.data.cache_dir)
        fixed = _tokenizer_file(replay)
        if fixed is not None and not same_tokenizer(fixed, base.tokenizer):
            raise BaseRunError(f"the base's data tokenizer {fixed} changed since it trained")
    replay = dataclasses.replace(replay, val_sequences=cfg.data.val_sequences)
    c.base = str(base.run_dir.resolve())
    c.base_step = base.step
    if cfg.name is None:
        from omegaconf import OmegaConf

        from .run_dir import config_hash

        d = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
        cfg.name = (f"cpt-{cfg.model.name}-D{cfg.data.seed_tokens}-E{cfg.train.epochs}"
                    f"-r{c.replay_fraction:g}-lr{cfg.optim.lr:g}-s{cfg.seed.train}.{cfg.seed.data}"
                    f"-{config_hash(d)}")
    return cfg, base, replay


def build_cpt_scheduler(optimizer, optim, c, total_steps: int):
    """Re-warmup from lr x warmup_start over warmup_frac of the steps, then the chosen decay."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    warmup = min(math.ceil(c.warmup_frac * total_steps), max(total_steps - 1, 0))
    return OptimizerParamScheduler(
        optimizer, init_lr=optim.lr * c.warmup_start, max_lr=optim.lr,
        min_lr=optim.lr * optim.min_lr_ratio, lr_warmup_steps=warmup,
        lr_decay_steps=max(total_steps, 1), lr_decay_style=c.decay,
        start_wd=optim.weight_decay, end_wd=optim.weight_decay, wd_incr_steps=max(total_steps, 1),
        wd_incr_style="constant",
    )


class CPTTrainer(ContinuedTrainer):
    """Domain budget mixed with replay; domain and general validation; re-warmed schedule."""

    def __init__(self, cfg, base: BaseCheckpoint, replay_data):
        super().__init__(cfg, base, load_optimizer=cfg.cpt.load_optimizer)
        self.replay_data = replay_data

    def setup(self) -> None:
        from ..data.datasets import TrainBudget, validation_sets
        from ..data.replay import ReplayMixture, mixture_positions
        from ..data.sources import prepare_data

        super().setup()
        cfg, seq = self.cfg, self.cfg.model.seq_len
        if not same_tokenizer(self.prepared.root / "tokenizer.json", self.base.tokenizer):
            raise BaseRunError("the domain data was prepared with another tokenizer than the base's")
        replay = prepare_data(self.replay_data, cfg.data.val_sequences * seq + 1,
                              progress=self.info.rank == 0)
        if not same_tokenizer(replay.root / "tokenizer.json", self.base.tokenizer):
            raise BaseRunError("the replay data was prepared with another tokenizer than the base's")
        self.general_val = validation_sets(replay, seq, cfg.data.val_sequences)
        positions = mixture_positions(self.budget.num_sequences, cfg.train.epochs,
                                      cfg.cpt.replay_fraction, cfg.train.global_batch)
        self.steps = positions // cfg.train.global_batch
        replay_budget = TrainBudget(replay, self.replay_data.seed_tokens, seq)
        self.budget = ReplayMixture(self.budget, replay_budget, cfg.cpt.replay_fraction,
                                    positions, cfg.seed.data)
        self.scheduler = build_cpt_scheduler(self.optimizer, cfg.optim, cfg.cpt, self.steps)

    def resume(self) -> bool:
        resumed = super().resume()
        self._record(base_run=self.cfg.cpt.base, base_step=self.base.step,
                     base_tokens=self.base.tokens, replay_fraction=self.cfg.cpt.replay_fraction,
                     replay_data=dataclasses.asdict(self.replay_data))
        return resumed

    def train_step(self):
        gb = self.cfg.train.global_batch
        share = self.budget.replay_share(self.step * gb, (self.step + 1) * gb)
        out = super().train_step()
        self._log("train/replay_fraction", share, self.step)
        return out

    def evaluate(self) -> dict[str, float]:
        """Domain losses (`__all__` is the domain mean) plus `general` and `general/<d>`."""
        results = super().evaluate()
        domain_val, self.val = self.val, self.general_val
        try:
            general = super().evaluate()
        finally:
            self.val = domain_val
        for d, v in general.items():
            results["general" if d == "__all__" else f"general/{d}"] = v
        return results


def prepare_config(cfg):
    """Hook of `asymptote-train` (DictConfig in, DictConfig out): derive the config from the
    base once in the launching process, so validation sees the base's model and every rank
    and the run folder's name agree. Idempotent (the job function applies it again)."""
    from .jobs import derive_once

    return derive_once(cfg, "cpt", lambda run_cfg: cpt_config(run_cfg)[0])


def run_cpt(cfg: RunConfig) -> dict:
    """Continue the base run on the domain data (every rank calls this)."""
    from .loop import run_training
    from .validate import validate

    cfg, base, replay = cpt_config(cfg)
    validate(cfg, world=int(os.environ.get("WORLD_SIZE", "1")))
    return run_training(cfg, lambda c: CPTTrainer(c, base, replay))
