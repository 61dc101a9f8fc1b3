"""`job=distill`: a student (any preset and layout) trained from a teacher.

- `distill.mode=sequence`: real data mixed with teacher text (datasets of job=generate) at
  weight w. The real D tokens still pass train.epochs times, so total steps = base steps /
  (1 - w) (the seed paper's rule); every batch holds the mix (launch/train/batches.py).
- `distill.mode=logit`: loss = (1 - alpha) CE + alpha T^2 KL(teacher || student), teacher = the
  logit mean of `distill.teacher`, run online (teacher forward in the job, same TP layout) or
  read from an HDF5 cache of its top-k logits per training sequence (`distill.offline`).
  Correct under student TP > 1 (asymptote.models.distill). Needs parallel.pp=1.
- Self-distillation: a teacher of the student's own size -- the same job and config.

    asymptote-train job=distill distill.mode=logit 'distill.teacher=[runs/a,runs/b]' model=tiny_s
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..config import RunConfig

MODES = ("sequence", "logit")


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


@dataclass
class Config(RunConfig):
    """A student run plus where its teacher signal comes from."""

    distill: DistillConfig = field(default_factory=DistillConfig)
    """Teacher text or teacher logits."""


def _synthetic_problems(folders: list[str]) -> list[str]:
    errors, shas = [], set()
    for folder in folders:
        shards = sorted(Path(folder).expanduser().glob("shard_*.json"))
        if not shards:
            errors.append(f"distill.synthetic: {folder} holds no finished shard of job=generate "
                          "(shard_*.json); run job=generate with generate.output there first")
            continue
        for meta in shards:
            shas.add(json.loads(meta.read_text()).get("tokenizer_sha"))
    if len(shas) > 1:
        errors.append(f"distill.synthetic: the teacher text uses several tokenizers {sorted(shas)}; "
                      "a student reads one")
    return errors


def _teacher_problems(cfg: Config) -> list[str]:
    from ...evals.ensemble import EnsembleEvalError, check_members

    d, errors = cfg.distill, []
    if not d.teacher:
        if not (d.offline and d.cache and Path(d.cache).expanduser().is_file()):
            errors.append("distill.mode=logit needs distill.teacher=[<run folder>, ...] (or "
                          "distill.offline with an existing distill.cache)")
        return errors
    try:
        records = check_members(d.teacher)
    except EnsembleEvalError as exc:
        return [f"distill.teacher: {exc}"]
    vocab = records[0].get("vocab")
    if cfg.model.vocab_size is not None and vocab is not None and vocab != cfg.model.vocab_size:
        errors.append(f"distill.teacher has vocabulary {vocab}, the student model.vocab_size="
                      f"{cfg.model.vocab_size}; set model.vocab_size={vocab}")
    return errors


def check(cfg: Config, world: int | None = None) -> list[str]:
    """Mode, weights, teacher runs or teacher text, and the layout the teacher needs."""
    d, errors = cfg.distill, []
    if d.mode not in MODES:
        return [f"distill.mode={d.mode!r}: use one of {', '.join(MODES)}"]
    if d.mode == "sequence":
        if not d.synthetic:
            errors.append("distill.mode=sequence needs distill.synthetic=[<job=generate output "
                          "folder>, ...]")
        if not 0 <= d.weight < 1:
            errors.append(f"distill.weight={d.weight} must be in [0, 1)")
        return errors + _synthetic_problems(d.synthetic)
    if not 0 <= d.alpha <= 1:
        errors.append(f"distill.alpha={d.alpha} must be in [0, 1]")
    if not d.temperature > 0:
        errors.append(f"distill.temperature={d.temperature} must be > 0")
    if d.top_k < 1:
        errors.append(f"distill.top_k={d.top_k} must be >= 1")
    if cfg.parallel.pp != 1:
        errors.append("distill.mode=logit runs the teacher beside the student: set "
                      "parallel.pp=1 (tp and dp are fine)")
    return errors + _teacher_problems(cfg)


def parts(cfg: Config):
    """The Trainer's parts: teacher-text batches, or the distillation loss."""
    from ..train.batches import TeacherTextMix
    from ..train.losses import Distillation
    from ..train.trainer import Parts

    d = cfg.distill
    if d.mode == "sequence":
        return Parts(batches=TeacherTextMix(d.synthetic, d.weight))
    return Parts(loss=Distillation(d.teacher, d.alpha, d.temperature, d.offline, d.top_k, d.cache))


def run(cfg: Config) -> dict:
    """Train the student on this rank."""
    from ..train.trainer import run_training

    return run_training(cfg, parts(cfg))
