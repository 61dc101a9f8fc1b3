"""`job=cpt`: continued pre-training of a run on a domain dataset, with replay of general data.

The base run's weights (any saved TP/PP layout, resharded into this run's) continue on `data`
(the domain corpus, tokenized with the base's tokenizer) for data.seed_tokens x train.epochs
domain tokens, while a share `cpt.replay_fraction` of the training sequences comes from the
replay data (default: the base's own training data). The learning rate re-warms up
(`cpt.warmup_frac`, from lr x `cpt.warmup_start`) and decays (`cpt.decay`). Logged: the domain
validation loss (`val/loss`, `val/<domain>/loss`) and the general one (`val/general/loss`,
`val/general/<domain>/loss`) from step 0, so forgetting shows in TensorBoard, and the replay
share of every batch (`train/replay_fraction`).

    asymptote-train job=cpt cpt.base=runs/base 'data.corpus=[math.jsonl]' cpt.replay_fraction=0.25
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ...data.config import DataConfig
from ..config import RunConfig, to_dict
from ..errors import BaseRunError

DECAYS = ("cosine", "linear", "constant")


@dataclass
class CPTConfig:
    """Continued pre-training: a run's weights continued on a domain dataset (`data`), with a
    fraction of every batch replayed from general data and a re-warmed learning rate."""

    base: Optional[str] = None
    """Folder of the run to continue (any saved TP/PP layout)."""
    base_step: Optional[int] = None
    """Checkpoint step of the base to start from; null: its latest checkpoint."""
    replay_fraction: float = 0.0
    """Share of the training sequences drawn from the replay (general) data, each sequence
    independently (seeded by seed.data); steps grow by 1 / (1 - replay_fraction) so the domain
    data still gets train.epochs passes."""
    replay: DataConfig = field(default_factory=lambda: DataConfig(corpus=[]))
    """The general (replay) data. Empty `corpus` and no `prepared`: the base run's own training
    data (its D seed tokens). A corpus with tokenizer `train` is tokenized with the base's
    tokenizer; any other tokenizer must be the base's (checked)."""
    warmup_frac: float = 0.01
    """Re-warmup: fraction of the CPT steps with a linear warmup; 0 starts at the peak lr."""
    warmup_start: float = 0.0
    """Re-warmup starts at lr x this (0: from zero)."""
    decay: str = "cosine"
    """Learning-rate decay after warmup: `cosine` or `linear` (to lr x optim.min_lr_ratio), or
    `constant`."""
    load_optimizer: bool = False
    """Also load the base's AdamW moments (same layout-independent checkpoint); default: fresh."""


@dataclass
class Config(RunConfig):
    """A continuation of a base run on domain data (`data`), with replay."""

    cpt: CPTConfig = field(default_factory=CPTConfig)
    """Base run, replay and the re-warmed schedule."""


def _vocab(path: Path) -> dict:
    from ...data.tokenizer import Tokenizer

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


def with_base_tokenizer(data, base, key: str):
    """`data` tokenized with the base's tokenizer: `train` becomes the base's tokenizer.json; a
    fixed tokenizer (or a prepared folder's) must equal it."""
    fixed = _tokenizer_file(data)
    if fixed is None:
        return dataclasses.replace(data, tokenizer=str(base.tokenizer.resolve()))
    if not fixed.is_file():
        raise BaseRunError(f"{key}: no tokenizer at {fixed}")
    if not same_tokenizer(fixed, base.tokenizer):
        from ...data.tokenizer import Tokenizer

        theirs, mine = Tokenizer.load(fixed), Tokenizer.load(base.tokenizer)
        raise BaseRunError(
            f"{key} uses another tokenizer than the base run: {fixed} ({theirs.vocab_size} "
            f"tokens) vs the base's {base.tokenizer} ({mine.vocab_size} tokens); token ids would "
            f"not mean the same. Tokenize it with the base's tokenizer: leave {key}.tokenizer=train "
            f"(or set it to {base.tokenizer}); a prepared folder must have been written with it")
    return data


def _base(cfg: Config):
    from ..train.start import base_at_step

    return base_at_step(cfg.cpt.base, cfg.cpt.base_step, "cpt")


def derive(cfg: Config) -> Config:
    """The base's model, the domain data on the base's tokenizer, the base resolved to its
    folder and step, the run's readable name. Raises BaseRunError when the base cannot serve."""
    from ..run_dir import run_name

    c = cfg.cpt
    base = _base(cfg)
    data = with_base_tokenizer(cfg.data, base, "data")
    replay = c.replay
    if c.replay.corpus or c.replay.prepared:
        replay = with_base_tokenizer(c.replay, base, "cpt.replay")
    cpt = dataclasses.replace(c, base=str(base.run_dir.resolve()), base_step=base.step,
                              replay=replay)
    cfg = dataclasses.replace(cfg, model=base.cfg.model, data=data, cpt=cpt)
    if cfg.name is None:
        cfg = dataclasses.replace(cfg, name=run_name(
            to_dict(cfg), f"D{cfg.data.seed_tokens}-E{cfg.train.epochs}-r{c.replay_fraction:g}"))
    return cfg


def replay_data(cfg: Config, base) -> DataConfig:
    """The general data replayed: `cpt.replay`, or the base's own D seed tokens."""
    c = cfg.cpt
    if c.replay.corpus or c.replay.prepared:
        replay = c.replay
    else:  # the base's own training data: exactly the D tokens it was trained on
        if not base.cfg.data.corpus and not base.cfg.data.prepared:
            raise BaseRunError(
                f"cpt.replay: the base {base.run_dir} records no training data of its own (a "
                "model imported from Hugging Face: its pretraining corpus is not here), and "
                "cpt replays and measures forgetting on general data; give it with "
                "cpt.replay.corpus=[...] (e.g. [shipped]), tokenized with the base's tokenizer")
        replay = dataclasses.replace(base.cfg.data, cache_dir=cfg.data.cache_dir)
        fixed = _tokenizer_file(replay)
        if fixed is not None and not same_tokenizer(fixed, base.tokenizer):
            raise BaseRunError(f"the base's data tokenizer {fixed} changed since it trained")
    return dataclasses.replace(replay, val_sequences=cfg.data.val_sequences)


def check(cfg: Config, world: int | None = None) -> list[str]:
    """Replay share, schedule, and the base (a run with the checkpoint asked for, whose
    tokenizer the domain and replay data can use)."""
    c, errors = cfg.cpt, []
    if not 0.0 <= c.replay_fraction < 1.0:
        errors.append(f"cpt.replay_fraction={c.replay_fraction} must be in [0, 1)")
    if c.decay not in DECAYS:
        errors.append(f"cpt.decay={c.decay!r}: use one of {', '.join(DECAYS)}")
    if not 0.0 <= c.warmup_frac < 1.0 or not 0.0 <= c.warmup_start <= 1.0:
        errors.append("cpt.warmup_frac must be in [0, 1) and cpt.warmup_start in [0, 1]")
    try:
        derived = derive(cfg)
        base = _base(derived)
        replay_data(derived, base)
        if c.load_optimizer and base.record.get("imported_from"):
            errors.append(f"cpt.load_optimizer=true: the base {base.run_dir} was imported from "
                          "Hugging Face and has no optimizer state; leave cpt.load_optimizer=false")
    except BaseRunError as exc:
        errors.append(str(exc))
    return errors


def rewarm_schedule(optimizer, cfg: Config, total_steps: int):
    """Re-warmup from lr x warmup_start over warmup_frac of the steps, then the chosen decay."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    optim, c = cfg.optim, cfg.cpt
    warmup = min(math.ceil(c.warmup_frac * total_steps), max(total_steps - 1, 0))
    return OptimizerParamScheduler(
        optimizer, init_lr=optim.lr * c.warmup_start, max_lr=optim.lr,
        min_lr=optim.lr * optim.min_lr_ratio, lr_warmup_steps=warmup,
        lr_decay_steps=max(total_steps, 1), lr_decay_style=c.decay,
        start_wd=optim.weight_decay, end_wd=optim.weight_decay, wd_incr_steps=max(total_steps, 1),
        wd_incr_style="constant",
    )


def run(cfg: Config) -> dict:
    """Continue the base run on the domain data (every rank calls this)."""
    from ..train.batches import ReplayMix
    from ..train.start import FromRun
    from ..train.trainer import Parts, run_training

    cfg = derive(cfg)
    base = _base(cfg)
    replay = replay_data(cfg, base)

    def tokenizer_check(path: Path, what: str) -> None:
        if not same_tokenizer(path, base.tokenizer):
            raise BaseRunError(f"{what} was prepared with another tokenizer than the base's")

    start = FromRun(base, load_optimizer=cfg.cpt.load_optimizer,
                    replay_fraction=cfg.cpt.replay_fraction,
                    replay_data=dataclasses.asdict(replay))
    parts = Parts(batches=ReplayMix(replay, cfg.cpt.replay_fraction, tokenizer_check),
                  start=start, schedule=rewarm_schedule)
    return run_training(cfg, parts)
