"""The configuration every job shares: one dataclass per section, every field documented.

A job type extends RunConfig with its own section (launch/jobs/<job>.py `Config`); `job=<name>`
selects that schema, so another job's section does not exist in the composed config and a
misspelt key is an error. The YAML files in launch/conf/ and launch/jobs/ are presets on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from ..data.config import DataConfig
from ..models.config import ModelConfig, ParallelConfig


@dataclass
class OptimConfig:
    """AdamW with a cosine schedule (Megatron's optimizer and scheduler)."""

    lr: float = 3e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.0
    """The cosine decays to lr x this at the last step (the paper decays to 0)."""
    warmup_frac: float = 0.01
    """Fraction of all steps spent in linear warmup from 0 (at least one step)."""
    weight_decay: float = 0.1
    """Decoupled (AdamW) weight decay on matrices; norms are not decayed."""
    beta1: float = 0.9
    """Adam beta1."""
    beta2: float = 0.95
    """Adam beta2."""
    eps: float = 1e-8
    """Adam epsilon."""
    clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""


@dataclass
class TrainConfig:
    """How long to train and how often to evaluate and checkpoint."""

    epochs: int = 1
    """E: passes over the D seed tokens; steps = D x E / (global_batch x seq_len)."""
    global_batch: int = 16
    """Sequences per optimizer step, over all data-parallel ranks."""
    micro_batch: int = 4
    """Sequences per forward pass on one rank; global_batch / (micro_batch x dp) microbatches
    are accumulated per step."""
    eval_every: int = 50
    """Validation every this many steps (and always at the end); 0: only at the end."""
    ckpt_every: int = 100
    """Checkpoint every this many steps (and always at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Most recent periodic checkpoints kept on disk (the final one is always kept)."""
    keep_at_tokens: List[int] = field(default_factory=list)
    """Training-token counts (the D grid of split runs) at which a checkpoint is saved and never
    deleted, so `job=split` can start from the model after D tokens without retraining. Each
    must be a multiple of global_batch x seq_len and at most the run's total tokens."""
    log_every: int = 1
    """Write train/* scalars every this many steps."""
    precision: str = "auto"
    """`bf16`, `fp32`, or `auto` (bf16 on GPU, fp32 on CPU). Parameters stay fp32."""
    max_restarts: int = 10
    """A run folder started more often than this (requeues, crashes, resubmissions) fails
    instead of starting again: a run that keeps dying should be looked at, not retried forever."""
    peak_flops: Optional[float] = None
    """Dense bf16 peak FLOP/s of one accelerator for perf/mfu; null looks the device up in
    asymptote.models.gpu_peaks (an unknown device logs no MFU)."""
    crash_at_step: Optional[int] = None
    """Testing crash recovery: SIGKILL every rank right after this step (no cleanup)."""


@dataclass
class SeedConfig:
    """Seeds; ensembles vary either or both."""

    train: int = 0
    """Initialisation (and dropout) seed."""
    data: int = 0
    """Order of the D seed tokens within each epoch."""


@dataclass
class RunConfig:
    """One training run. Keys other parts of asymptote rely on are kept (aliases may be added)."""

    out: str = "runs"
    """Root folder; the run writes to <out>/<name>/."""
    name: Optional[str] = None
    """Run folder name; null derives a readable name with a hash of the resolved config."""
    job: str = "pretrain"
    """Job type, chosen with `job=<name>` (a module in launch/jobs/; `asymptote-train
    --help` lists them). Each job adds its own config section."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model architecture (pick a preset with `model=<name>`)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Corpus, tokenizer, D and validation data."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Length, batch, evaluation and checkpoint cadence."""
    seed: SeedConfig = field(default_factory=SeedConfig)
    """Training and data-order seeds."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """TP x PP x DP layout."""
    tags: dict[str, Any] = field(default_factory=dict)
    """Free-form labels copied into run.json (e.g. ensemble name and member index)."""


def to_dict(cfg) -> dict:
    """A typed config as a plain dict (what run.json stores and the folder hash reads)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def stored_run_config(config: dict) -> RunConfig:
    """The shared part of a run.json `config`, typed: what a continuation or a tool needs of
    any run (model, data, train, optim...), whatever its job; job sections are left out."""
    from dataclasses import fields

    from omegaconf import OmegaConf

    keep = {f.name for f in fields(RunConfig)}
    node = OmegaConf.create({k: v for k, v in config.items() if k in keep})
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), node))
