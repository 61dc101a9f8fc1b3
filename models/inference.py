"""Load a trained run for inference: its config, tokenizer and weights, and full-vocabulary logits.

Used by every job that reads a model rather than trains it (ensemble evaluation, teacher
generation, distillation teachers, lm-eval). A checkpoint written under any TP/PP layout loads
into the layout of the process that reads it (dist_checkpointing reshards); inference here runs
without pipeline stages (pp=1) and gathers tensor-parallel logits.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint, gpt, size
from ..data.config import DataConfig
from .config import ModelConfig, ParallelConfig


class RunLoadError(ValueError):
    """A run folder that cannot be loaded for inference (the message says why and what to do)."""


def read_record(run_dir: str | Path) -> dict:
    """run.json of a run folder, with a clear error when the folder is not a run."""
    path = Path(run_dir).expanduser() / "run.json"
    if not path.is_file():
        raise RunLoadError(f"{run_dir} is not a run folder (no run.json); give the folder that "
                           "`asymptote-train` created under `out`")
    return json.loads(path.read_text())


@dataclass
class StoredConfig:
    """What inference needs of a run's stored config: its model and data, typed, and the
    whole config as run.json keeps it (models/ never imports the launch layer's schemas)."""

    model: ModelConfig
    data: DataConfig
    raw: dict


def run_config(record: dict) -> StoredConfig:
    """The model and data config stored in a run.json record."""
    from omegaconf import OmegaConf

    config = record["config"]

    def typed(cls, section):
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), config[section]))

    return StoredConfig(typed(ModelConfig, "model"), typed(DataConfig, "data"), config)


def tokenizer_sha(path: Path) -> str:
    """Identity of a tokenizer: the sha256 of its tokenizer.json (12 hex digits)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def checkpoint_path(run_dir: str | Path, step: int | None = None) -> tuple[Path, int]:
    """(folder, step) of the checkpoint at `step`, or of the latest one when `step` is None."""
    root = Path(run_dir).expanduser() / "checkpoints"
    steps = checkpoint.list_checkpoints(root)
    if not steps:
        raise RunLoadError(f"{run_dir} has no checkpoint yet; wait for the run to save one "
                           "(train.ckpt_every) or finish")
    if step is None:
        step = checkpoint.latest_step(root)
    elif step not in steps:
        raise RunLoadError(f"{run_dir} has no checkpoint at step {step}; it has steps {steps}")
    return checkpoint.step_dir(root, step), step


def run_tokenizer(run_dir: str | Path, cfg=None):
    """The run's tokenizer: its own copy in the run folder, else the prepared-data cache."""
    from ..data.tokenizer import Tokenizer

    own = Path(run_dir).expanduser() / "tokenizer.json"
    if own.is_file():
        return Tokenizer.load(own)
    from ..data.sources import prepare_data

    cfg = cfg or run_config(read_record(run_dir))
    return prepare_data(cfg.data, cfg.data.val_sequences * cfg.model.seq_len + 1,
                        progress=False).tokenizer


def ensure_distributed(parallel: ParallelConfig | None = None, seed: int = 0):
    """Start torch.distributed and Megatron's groups for inference, if not started yet.

    A single process gets a private gloo/NCCL group on a free port; under torchrun/SLURM the
    environment decides. Returns the RankInfo."""
    from megatron.core import parallel_state as ps

    from . import parallel as par

    parallel = parallel or ParallelConfig()
    if parallel.pp != 1:
        raise RunLoadError("inference runs without pipeline stages: set parallel.pp=1")
    if "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    if ps.model_parallel_is_initialized():
        return None
    return par.initialize(parallel, seed=seed)


@dataclass
class LoadedRun:
    """One run's model, ready for `logits`, with what callers check for compatibility."""

    run_dir: Path
    record: dict
    cfg: object  # RunConfig
    tokenizer: object  # asymptote.data.tokenizer.Tokenizer
    model: torch.nn.Module
    vocab: int  # padded vocabulary size of the output layer
    step: int  # checkpoint step loaded
    tokenizer_id: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """[batch, seq] token ids -> [batch, seq, vocab] fp32 logits (all TP shards gathered).

        The padded vocabulary rows are kept: they took part in the softmax during training, so
        losses computed from these logits equal the training loop's validation loss."""
        tokens = tokens.to(self.device)
        positions = torch.arange(tokens.shape[1], device=self.device).unsqueeze(0).expand_as(tokens)
        out = self.model(tokens, positions, None, runtime_gather_output=True)
        return out.float()


def load_run(run_dir: str | Path, step: int | None = None, bf16: bool = False) -> LoadedRun:
    """Load a run's weights into the current process's layout (call `ensure_distributed` first,
    or let this call start a single-process group)."""
    from megatron.core import parallel_state as ps

    run_dir = Path(run_dir).expanduser()
    record = read_record(run_dir)
    cfg = run_config(record)
    path, step = checkpoint_path(run_dir, step)
    if not ps.model_parallel_is_initialized():
        ensure_distributed()
    tp = ps.get_tensor_model_parallel_world_size()
    if ps.get_pipeline_model_parallel_world_size() != 1:
        raise RunLoadError("inference runs without pipeline stages: initialise with pp=1")
    # Flipped bytes can load as wrong weights without an error: check the CRC-32C manifest.
    verdict = checkpoint.verify(path)
    if not verdict.intact:
        raise RunLoadError(f"{run_dir}: its checkpoint is damaged: {verdict.describe()}; "
                           "train the run again (or resume it from an intact checkpoint)")
    tokenizer = run_tokenizer(run_dir, cfg)
    vocab = record.get("vocab") or cfg.model.vocab_size or size.padded_vocab_size(
        tokenizer.vocab_size, cfg.model.vocab_multiple)
    if vocab % tp:
        raise RunLoadError(f"{run_dir}: vocabulary {vocab} does not split over tp={tp}; "
                           "evaluate with a tp that divides it")
    layout = ParallelConfig(tp=tp, pp=1)
    chunks = gpt.build_model_chunks(cfg.model, layout, vocab, bf16)
    checkpoint.load_model_only(path, chunks)
    model = chunks[0]
    model.eval()
    own = run_dir / "tokenizer.json"
    tok_id = record.get("tokenizer_sha") or (tokenizer_sha(own) if own.is_file() else
                                             tokenizer.unique_identifiers["name"])
    return LoadedRun(run_dir, record, cfg, tokenizer, model, vocab, step, tok_id)
