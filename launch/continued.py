"""Runs that start from another run's weights: the base checkpoint, checked, and a Trainer that
loads it (model only: fresh optimizer and schedule) before its first step.

Shared by `job=split` and `job=cpt`. The base may have been saved under any TP/PP layout
(dist_checkpointing reshards into this run's layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..models import checkpoint
from ..models.inference import RunLoadError, read_record, run_config, tokenizer_sha
from .loop import Trainer
from .validate import ConfigError


class BaseRunError(ConfigError):
    """The base run cannot serve as a starting point as asked; the message says why."""


@dataclass
class BaseCheckpoint:
    """A checkpoint of a base run and what a continuation needs from it."""

    run_dir: Path
    record: dict
    cfg: object  # the base's RunConfig
    step: int
    path: Path

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.train.global_batch * self.cfg.model.seq_len

    @property
    def tokens(self) -> int:
        """Training tokens the base had seen at this checkpoint."""
        return self.step * self.tokens_per_step

    @property
    def tokenizer(self) -> Path:
        """The base's own copy of its tokenizer."""
        return self.run_dir / "tokenizer.json"

    @property
    def tokenizer_id(self) -> str:
        return self.record.get("tokenizer_sha") or tokenizer_sha(self.tokenizer)


def _open(base: str | None, key: str) -> tuple[Path, dict, object]:
    if not base:
        raise BaseRunError(f"{key}.base is not set; give the folder of the run to start from")
    run_dir = Path(base).expanduser()
    try:
        record = read_record(run_dir)
    except RunLoadError as exc:
        raise BaseRunError(f"{key}.base: {exc}") from None
    if "config" not in record:
        raise BaseRunError(f"{key}.base={base}: run.json has no config; it is not a training run")
    return run_dir, record, run_config(record)


def base_at_tokens(base: str | None, tokens: int, key: str = "split") -> BaseCheckpoint:
    """The base's checkpoint after `tokens` training tokens (0: its final/latest checkpoint)."""
    run_dir, record, cfg = _open(base, key)
    root = run_dir / "checkpoints"
    steps = checkpoint.list_checkpoints(root)
    if not steps:
        raise BaseRunError(f"{key}.base={base} has no checkpoint yet; let it train or finish")
    per_step = cfg.train.global_batch * cfg.model.seq_len
    kept = [s * per_step for s in steps]
    if tokens == 0:
        step = checkpoint.latest_step(root)
    elif tokens % per_step or tokens // per_step not in steps:
        raise BaseRunError(
            f"{key}.base_tokens={tokens}: the base run {run_dir.name} has no checkpoint after "
            f"{tokens} tokens (it has checkpoints after {kept} tokens, {per_step} per step); "
            f"pick one of those, or add {tokens} to the base's train.keep_at_tokens and train it "
            "again (a multiple of its global_batch x seq_len)")
    else:
        step = tokens // per_step
    return BaseCheckpoint(run_dir, record, cfg, step, checkpoint.step_dir(root, step))


def base_at_step(base: str | None, step: int | None, key: str = "cpt") -> BaseCheckpoint:
    """The base's checkpoint at `step` (None: its latest)."""
    run_dir, record, cfg = _open(base, key)
    root = run_dir / "checkpoints"
    steps = checkpoint.list_checkpoints(root)
    if not steps:
        raise BaseRunError(f"{key}.base={base} has no checkpoint yet; let it train or finish")
    if step is None:
        step = checkpoint.latest_step(root)
    elif step not in steps:
        raise BaseRunError(f"{key}.base_step={step}: {run_dir.name} has checkpoints at steps {steps}")
    return BaseCheckpoint(run_dir, record, cfg, step, checkpoint.step_dir(root, step))


class ContinuedTrainer(Trainer):
    """A fresh run (own folder, optimizer and schedule) whose weights start as the base's.

    On a restart of the same run folder the run's own latest checkpoint wins (normal resume).
    The loss before the first step is evaluated and logged at step 0 (`start` in run.json)."""

    def __init__(self, cfg, base: BaseCheckpoint, load_optimizer: bool = False):
        super().__init__(cfg)
        self.base = base
        self.load_optimizer = load_optimizer
        self.eval_at_start = True

    def resume(self) -> bool:
        if super().resume():
            return True
        if self.load_optimizer:
            checkpoint.load(self.base.path.parent, self.base.step, self.model, self.optimizer)
        else:
            checkpoint.load_model_only(self.base.path, self.model)
            # Mixed precision keeps fp32 main copies of the weights: refresh them from the model.
            self.optimizer.reload_model_params()
        if self.info.is_logger:
            print(f"[asymptote] starting from {self.base.run_dir} step {self.base.step} "
                  f"({self.base.tokens} tokens)", flush=True)
        return False


def adopt_base_model(cfg, base: BaseCheckpoint) -> None:
    """Continuations keep the base's architecture (`model` and its overrides are taken from the
    base run, whatever the composed config says)."""
    cfg.model = base.cfg.model
