"""Config groups of the ensemble, teacher-generation and distillation jobs (part of RunConfig).

`ensemble.*` serves job=ensemble_member and job=ensemble_eval, `generate.*` job=generate,
`distill.*` job=distill. Other jobs ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class EnsembleConfig:
    """An ensemble: its members (job=ensemble_member) and their evaluation (job=ensemble_eval)."""

    name: str = "ensemble"
    """Ensemble label, copied into every member's tags (and the evaluation folder's name)."""
    member: int = 0
    """Member index (sweep it: `ensemble.member=0,1,2,3` is one array)."""
    vary: str = "both"
    """Which seeds differ between members: `train` (init), `data` (data order) or `both`.
    Member i adds i to each varied seed (seed.train / seed.data are the base)."""
    paper_rule: bool = False
    """Apply the seed paper's ensemble rule to the config given (the single-model optimum):
    train.epochs x 2 and optim.weight_decay / 2."""
    derived: bool = False
    """Set by job=ensemble_member once seeds (and the rule) are applied; do not set it."""
    members: List[str] = field(default_factory=list)
    """job=ensemble_eval: run folders of the members, in the order prefixes K = 1.. take them."""
    k_max: Optional[int] = None
    """job=ensemble_eval: largest ensemble evaluated (null: all members)."""
    subsets: int = 0
    """job=ensemble_eval: also this many random member subsets per K (mean loss reported)."""
    subset_seed: int = 0
    """Seed of the random subsets."""
    batch: int = 8
    """Validation sequences per forward pass in the evaluation."""
    eval_out: Optional[str] = None
    """job=ensemble_eval: output folder; null writes <out>/ensemble_eval-<name>-<hash>."""


@dataclass
class GenerateConfig:
    """job=generate: a teacher (one run or an ensemble) writes synthetic sequences."""

    teacher: List[str] = field(default_factory=list)
    """Teacher run folders; several are combined by `combine` at every step."""
    combine: str = "logit_mean"
    """How an ensemble teacher combines its members: `logit_mean` or `prob_mean`."""
    sequences: int = 64
    """Synthetic sequences over all shards."""
    length: Optional[int] = None
    """New tokens per sequence (a sequence ends early at EOD); null: the teacher's seq_len - 1."""
    temperature: float = 1.0
    """Sampling temperature (0: greedy)."""
    top_k: int = 0
    """Sample among the k most probable tokens (0: all)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0: all)."""
    seed: int = 0
    """Sampling seed; shard i samples with (seed, i)."""
    shards: int = 1
    """Number of shards (array tasks); shard i writes sequences i, i + shards, ..."""
    shard: int = 0
    """This task's shard (sweep it: `generate.shard=0,1,2,3` is one array)."""
    batch: int = 16
    """Sequences decoded together."""
    use_cache: bool = True
    """Use the KV cache (false only to measure what it saves)."""
    output: Optional[str] = None
    """Dataset folder; null: <out>/generate-<hash of teacher and sampling>."""


@dataclass
class DistillConfig:
    """job=distill: train a student from a teacher (sequence-level or logit-level)."""

    mode: str = "sequence"
    """`sequence`: real data mixed with teacher text; `logit`: (1 - alpha) CE + alpha T^2 KL."""
    synthetic: List[str] = field(default_factory=list)
    """mode=sequence: dataset folders written by job=generate."""
    weight: float = 0.75
    """mode=sequence: w, the fraction of training sequences that are teacher text; the real
    data still passes train.epochs times, so steps = base steps / (1 - w)."""
    teacher: List[str] = field(default_factory=list)
    """mode=logit: teacher run folders (an ensemble is combined by logit mean). The same run
    as the student's config makes self-distillation."""
    alpha: float = 0.5
    """mode=logit: weight of the KL term."""
    temperature: float = 1.0
    """mode=logit: T; both distributions are softened by T and the KL is scaled by T^2."""
    offline: bool = False
    """mode=logit: read the teacher from an HDF5 cache of its top-k logits per training
    sequence (built first if absent) instead of running it at every step."""
    top_k: int = 64
    """Logits kept per position in the offline cache."""
    cache: Optional[str] = None
    """Offline cache file; null: <run folder>/teacher_topk.h5."""
