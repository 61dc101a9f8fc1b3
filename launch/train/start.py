"""Starting points of the Trainer: fresh initialisation, or another run's checkpoint.

`FromRun` starts a new run (own folder, optimizer and schedule) from a base run's weights at a
step or a token count, saved under any TP/PP layout (dist_checkpointing reshards into this
run's layout). On a restart of the same run folder the run's own latest checkpoint wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...models import checkpoint
from ...models.inference import RunLoadError, read_record, tokenizer_sha
from ..config import stored_run_config
from ..errors import BaseRunError


@dataclass
class BaseCheckpoint:
    """A checkpoint of a base run and what a continuation needs from it."""

    run_dir: Path
    record: dict
    cfg: object  # the base's typed run config
    step: int
    path: Path

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per optimizer step of the base."""
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
        """The base tokenizer's identity (sha of tokenizer.json)."""
        return self.record.get("tokenizer_sha") or tokenizer_sha(self.tokenizer)


def _open(base: str | None, key: str) -> tuple[Path, dict, object, list[int]]:
    if not base:
        raise BaseRunError(f"{key}.base is not set; give the folder of the run to start from")
    run_dir = Path(base).expanduser()
    try:
        record = read_record(run_dir)
    except RunLoadError as exc:
        if (run_dir / "config.json").is_file():  # a Hugging Face model folder
            raise BaseRunError(
                f"{key}.base={base} is a Hugging Face model folder, not a run: import it first "
                f"with `asymptote import-hf {base} --out <run folder>` and give that folder") \
                from None
        raise BaseRunError(f"{key}.base: {exc}") from None
    if "config" not in record:
        raise BaseRunError(f"{key}.base={base}: run.json has no config; it is not a training run")
    steps = checkpoint.list_checkpoints(run_dir / "checkpoints")
    if not steps:
        raise BaseRunError(f"{key}.base={base} has no checkpoint yet; let it train or finish")
    return run_dir, record, stored_run_config(record["config"]), steps


def base_at_tokens(base: str | None, tokens: int, key: str = "split") -> BaseCheckpoint:
    """The base's checkpoint after `tokens` training tokens (0: its final/latest checkpoint)."""
    run_dir, record, cfg, steps = _open(base, key)
    root = run_dir / "checkpoints"
    per_step = cfg.train.global_batch * cfg.model.seq_len
    if tokens == 0:
        step = checkpoint.latest_step(root)
    elif tokens % per_step or tokens // per_step not in steps:
        kept = [s * per_step for s in steps]
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
    run_dir, record, cfg, steps = _open(base, key)
    root = run_dir / "checkpoints"
    if step is None:
        step = checkpoint.latest_step(root)
    elif step not in steps:
        raise BaseRunError(f"{key}.base_step={step}: {run_dir.name} has checkpoints at steps {steps}")
    return BaseCheckpoint(run_dir, record, cfg, step, checkpoint.step_dir(root, step))


class Fresh:
    """Weights from the run's own initialisation (seed.train)."""

    evaluate_first = False
    """Whether the loss before the first step is worth logging (it is not for random weights)."""

    def load(self, trainer) -> None:
        """Nothing to load: the model is initialised by the trainer."""

    def record(self) -> dict:
        """Fields of run.json describing the starting point."""
        return {}


class FromRun:
    """Weights (and optionally AdamW moments) of a base run's checkpoint; fresh schedule. The
    loss before the first step is evaluated and logged at step 0 (`start` in run.json)."""

    evaluate_first = True

    def __init__(self, base: BaseCheckpoint, load_optimizer: bool = False, **record_fields):
        self.base, self.load_optimizer, self.fields = base, load_optimizer, record_fields

    def load(self, trainer) -> None:
        """Load the base's checkpoint into the trainer's model (and optimizer)."""
        if self.load_optimizer:
            checkpoint.load(self.base.path.parent, self.base.step, trainer.model, trainer.optimizer)
        else:
            checkpoint.load_model_only(self.base.path, trainer.model)
            # Mixed precision keeps fp32 main copies of the weights: refresh them from the model.
            trainer.optimizer.reload_model_params()
        if trainer.info.is_logger:
            print(f"[asymptote] starting from {self.base.run_dir} step {self.base.step} "
                  f"({self.base.tokens} tokens)", flush=True)

    def record(self) -> dict:
        return {"base_run": str(self.base.run_dir.resolve()), "base_step": self.base.step,
                "base_tokens": self.base.tokens, **self.fields}
