"""Config sections of the domain jobs: split specialists (`job=split`) and continued
pre-training with replay (`job=cpt`). Part of RunConfig as `split` and `cpt`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..data.config import DataConfig


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
