"""Losses of the Trainer, as Megatron forward-step functions over microbatches.

- `CrossEntropy`: next-token cross-entropy (Megatron's vocab-parallel loss inside GPTModel).
- `Distillation`: (1 - alpha) CE + alpha T^2 KL(teacher || student) against the logit mean of
  teacher runs, run online beside the student or read from an HDF5 cache of their top-k
  logits per training sequence (asymptote.models.distill; correct under student TP > 1).
Validation always uses cross-entropy.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError


def masked_mean(loss_mask: torch.Tensor, output: torch.Tensor):
    """Mean token loss of a microbatch, plus its sum and count for exact averages."""
    losses = output.float()
    total = (losses * loss_mask).sum()
    count = loss_mask.sum()
    return total / count.clamp(min=1), {"loss_sum": total.detach(), "tokens": count.detach()}


def ce_forward_step(data_iterator, model):
    """Megatron forward step: per-token cross-entropy of one microbatch."""
    batch = next(data_iterator)
    output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    return output, partial(masked_mean, batch["loss_mask"])


def kd_forward_step(alpha, temperature, data_iterator, model):
    """Megatron forward step: the distillation loss of one microbatch."""
    from ...models.distill import distill_loss

    b = next(data_iterator)
    logits = model(b["tokens"], b["position_ids"], None)  # vocab-parallel [b, s, V / tp]
    losses = distill_loss(logits, b["labels"], alpha, temperature,
                          teacher_full=b.get("teacher_full"), teacher_ids=b.get("teacher_ids"),
                          teacher_logits=b.get("teacher_logits"))
    return losses, partial(masked_mean, b["loss_mask"])


class CrossEntropy:
    """Next-token cross-entropy."""

    forward_step = staticmethod(ce_forward_step)

    def setup(self, trainer) -> None:
        """Nothing to load."""

    def attach(self, batches: list[dict], indices: list[int | None]) -> None:
        """Nothing to add to the microbatches."""


class Distillation:
    """KD against teacher runs (online) or their cached top-k logits (offline)."""

    def __init__(self, teachers: list[str], alpha: float, temperature: float, offline: bool,
                 top_k: int, cache: str | None):
        self.teacher_dirs, self.alpha, self.temperature = list(teachers), alpha, temperature
        self.offline, self.top_k, self.cache = offline, top_k, cache
        self.forward_step = partial(kd_forward_step, alpha, temperature)

    def cache_path(self, run_root: Path) -> Path:
        """The offline cache file."""
        return Path(self.cache).expanduser() if self.cache else run_root / "teacher_topk.h5"

    def setup(self, trainer) -> None:
        """Load the teachers (unless a finished cache makes them unnecessary) and build the
        offline cache when asked."""
        from ...models.inference import load_run

        self.micro = trainer.cfg.train.micro_batch
        path = self.cache_path(trainer.run.root)
        ready = self.offline and path.is_file()
        self.teachers = [] if ready else [load_run(t) for t in self.teacher_dirs]
        for t in self.teachers:
            if t.vocab != trainer.vocab:
                raise ConfigError(f"teacher {t.run_dir} has vocabulary {t.vocab}, the student "
                                  f"{trainer.vocab}; set the student's model.vocab_size={t.vocab}")
        if self.offline:
            self._build_cache(trainer, path)

    @torch.no_grad()
    def _build_cache(self, trainer, path: Path) -> None:
        """Top-k teacher logits for each of the S training sequences (rank 0 writes)."""
        import h5py
        import torch.distributed as dist

        from ...atomic import replacing
        from ...data.datasets import window

        if not path.is_file():
            budget, k = trainer.budget, self.top_k
            s_count, seq = budget.num_sequences, trainer.cfg.model.seq_len
            ids = np.zeros((s_count, seq, k), np.int32)
            vals = np.zeros((s_count, seq, k), np.float32)
            for start in range(0, s_count, 8):
                idx = range(start, min(start + 8, s_count))
                rows = np.stack([window(budget.dataset, i) for i in idx])
                inputs = torch.from_numpy(rows[:, :-1].astype(np.int64))
                mean = torch.stack([t.logits(inputs) for t in self.teachers]).mean(0)
                top = mean.topk(k, dim=-1)
                ids[idx.start: idx.stop] = top.indices.numpy()
                vals[idx.start: idx.stop] = top.values.numpy()
            if trainer.info.rank == 0:
                path.parent.mkdir(parents=True, exist_ok=True)
                with replacing(path) as tmp, h5py.File(tmp, "w") as f:
                    f.create_dataset("ids", data=ids)
                    f.create_dataset("logits", data=vals)
                    f.attrs["teacher"] = [str(t.run_dir) for t in self.teachers]
                    f.attrs["top_k"] = k
        if dist.is_initialized():
            dist.barrier()
        with h5py.File(path, "r") as f:
            self.cache_ids = f["ids"][...]
            self.cache_logits = f["logits"][...]

    def attach(self, batches: list[dict], indices: list[int | None]) -> None:
        """Add the teacher's logits to each microbatch."""
        for i, b in enumerate(batches):
            if self.offline:
                sel = indices[i * self.micro: (i + 1) * self.micro]
                b["teacher_ids"] = torch.from_numpy(self.cache_ids[sel]).long()
                b["teacher_logits"] = torch.from_numpy(self.cache_logits[sel])
            else:
                with torch.no_grad():
                    b["teacher_full"] = torch.stack(
                        [t.logits(b["tokens"]) for t in self.teachers]).mean(0)
