"""`job=distill`: a student (any preset and layout) trained from a teacher.

- `distill.mode=sequence`: real data mixed with teacher text (datasets of job=generate) at
  weight w. The real D tokens still pass train.epochs times, so total steps = base steps /
  (1 - w) (the seed paper's rule); position p of the sample stream is real when
  floor((p + 1)(1 - w)) > floor(p (1 - w)), so every batch holds the mix.
- `distill.mode=logit`: loss = (1 - alpha) CE + alpha T^2 KL(teacher || student), teacher = the
  logit mean of `distill.teacher`, run online (teacher forward in the job, same TP layout) or
  read from an HDF5 cache of its top-k logits per training sequence (`distill.offline`).
  Correct under student TP > 1 (asymptote.models.distill). Needs parallel.pp=1.
- Self-distillation: a teacher of the student's own size (e.g. a pretrain run of the same
  preset) -- the same job and config.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .loop import Trainer, _microbatches, run_training
from .validate import ConfigError


def _real_fraction(w: float) -> Fraction:
    return 1 - Fraction(str(w))


def is_real(position: int, w: float) -> bool:
    """Whether sample-stream position `position` is a real sequence under teacher weight w."""
    r = _real_fraction(w)
    return math.floor((position + 1) * r) > math.floor(position * r)


class DistillTrainer(Trainer):
    """The pretrain loop with a mixed sample stream or a distillation loss."""

    def setup(self) -> None:
        super().setup()
        d, cfg = self.cfg.distill, self.cfg
        if d.mode == "sequence":
            from ..models.inference import tokenizer_sha
            from .generate import load_synthetic

            stream = load_synthetic(d.synthetic, tokenizer_sha(self.prepared.root / "tokenizer.json"))
            seq = cfg.model.seq_len
            n = (len(stream) - 1) // seq
            if n < 1:
                raise ConfigError(f"distill.synthetic holds {len(stream)} tokens, less than one "
                                  f"sequence of {seq}; generate more teacher text")
            self.synthetic = np.lib.stride_tricks.sliding_window_view(stream, seq + 1)[::seq][:n]
            base = self.steps
            self.steps = math.ceil(base / float(_real_fraction(d.weight)))
            from ..models.optimizer import build_scheduler

            self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.steps)
        else:
            self._setup_teacher()

    def _setup_teacher(self) -> None:
        from ..models.inference import load_run

        d = self.cfg.distill
        self.teachers = [] if d.offline and self._cache_ready() else \
            [load_run(t) for t in d.teacher]
        for t in self.teachers:
            if t.vocab != self.vocab:
                raise ConfigError(f"teacher {t.run_dir} has vocabulary {t.vocab}, the student "
                                  f"{self.vocab}; set the student's model.vocab_size={t.vocab}")
        if d.offline:
            self._build_cache()

    # ------------------------------------------------------------ offline top-k cache
    def cache_path(self) -> Path:
        d = self.cfg.distill
        return Path(d.cache).expanduser() if d.cache else self.run.root / "teacher_topk.h5"

    def _cache_ready(self) -> bool:
        return self.cache_path().is_file()

    @torch.no_grad()
    def _build_cache(self) -> None:
        """Top-k teacher logits for each of the S training sequences (rank 0 writes)."""
        import os

        import h5py
        import torch.distributed as dist

        path = self.cache_path()
        if not path.is_file():
            k, s_count = self.cfg.distill.top_k, self.budget.num_sequences
            seq = self.cfg.model.seq_len
            ids = np.zeros((s_count, seq, k), np.int32)
            vals = np.zeros((s_count, seq, k), np.float32)
            for start in range(0, s_count, 8):
                idx = range(start, min(start + 8, s_count))
                rows = torch.from_numpy(np.stack([self._sequence(i) for i in idx])[:, :-1])
                mean = torch.stack([t.logits(rows) for t in self.teachers]).mean(0)
                top = mean.topk(k, dim=-1)
                ids[idx.start: idx.stop] = top.indices.numpy()
                vals[idx.start: idx.stop] = top.values.numpy()
            if self.info.rank == 0:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".h5.tmp{os.getpid()}")
                with h5py.File(tmp, "w") as f:
                    f.create_dataset("ids", data=ids)
                    f.create_dataset("logits", data=vals)
                    f.attrs["teacher"] = [str(t.run_dir) for t in self.teachers]
                    f.attrs["top_k"] = k
                os.replace(tmp, path)
        if dist.is_initialized():
            dist.barrier()
        with h5py.File(path, "r") as f:
            self.cache_ids = f["ids"][...]
            self.cache_logits = f["logits"][...]

    def _sequence(self, index: int) -> np.ndarray:
        item = self.budget.dataset[index]
        return np.concatenate([item["tokens"].numpy(), item["labels"].numpy()[-1:]]).astype(np.int64)

    # ------------------------------------------------------------ steps
    def _row(self, position: int) -> tuple[np.ndarray, int | None]:
        """Tokens at a stream position, and the S-index of a real sequence (None: synthetic)."""
        cfg = self.cfg
        if cfg.distill.mode == "sequence":
            r = _real_fraction(cfg.distill.weight)
            real_before = math.floor(position * r)
            if not is_real(position, cfg.distill.weight):
                s = position - real_before
                epoch, offset = divmod(s, len(self.synthetic))
                perm = np.random.default_rng([cfg.seed.data, 7919, epoch]).permutation(
                    len(self.synthetic))
                return self.synthetic[perm[offset]].astype(np.int64), None
            position = real_before
        index = self.budget.sample_index(position, cfg.seed.data)
        return self._sequence(index), index

    def train_step(self):
        cfg = self.cfg
        per_rank = cfg.train.global_batch // self.info.dp
        start = self.step * cfg.train.global_batch + self.info.dp_rank * per_rank
        got = [self._row(p) for p in range(start, start + per_rank)]
        rows = np.stack([g[0] for g in got])
        batches = _microbatches(rows, np.ones((per_rank, rows.shape[1] - 1), np.float32),
                                cfg.train.micro_batch, self.info.device)
        if cfg.distill.mode == "logit":
            micro = cfg.train.micro_batch
            for i, b in enumerate(batches):
                if cfg.distill.offline:
                    sel = [g[1] for g in got[i * micro: (i + 1) * micro]]
                    b["teacher_ids"] = torch.from_numpy(self.cache_ids[sel]).long()
                    b["teacher_logits"] = torch.from_numpy(self.cache_logits[sel])
                else:
                    with torch.no_grad():
                        b["teacher_full"] = torch.stack(
                            [t.logits(b["tokens"]) for t in self.teachers]).mean(0)
        return self.update(batches)

    def _fb(self, batches, forward_only: bool):
        if forward_only or self.cfg.distill.mode != "logit":
            return super()._fb(batches, forward_only)
        from megatron.core.pipeline_parallel import get_forward_backward_func

        d = self.cfg.distill
        return get_forward_backward_func()(
            forward_step_func=partial(_kd_forward_step, d.alpha, d.temperature),
            data_iterator=iter(batches), model=self.model[0], num_microbatches=len(batches),
            seq_length=self.cfg.model.seq_len, micro_batch_size=self.cfg.train.micro_batch,
            forward_only=False)


def _kd_loss_func(mask, losses):
    total = (losses * mask).sum()
    count = mask.sum()
    return total / count.clamp(min=1), {"loss_sum": total.detach(), "tokens": count.detach()}


def _kd_forward_step(alpha, temperature, data_iterator, model):
    from ..models.distill import distill_loss

    b = next(data_iterator)
    logits = model(b["tokens"], b["position_ids"], None)  # vocab-parallel [b, s, V / tp]
    losses = distill_loss(logits, b["labels"], alpha, temperature,
                          teacher_full=b.get("teacher_full"), teacher_ids=b.get("teacher_ids"),
                          teacher_logits=b.get("teacher_logits"))
    return losses, partial(_kd_loss_func, b["loss_mask"])


def check(cfg) -> None:
    """Clear errors before any rank starts work."""
    d = cfg.distill
    if d.mode not in ("sequence", "logit"):
        raise ConfigError(f"distill.mode={d.mode!r}: use sequence or logit")
    if d.mode == "sequence":
        if not d.synthetic:
            raise ConfigError("distill.mode=sequence needs distill.synthetic=[<job=generate "
                              "output folder>, ...]")
        if not 0 <= d.weight < 1:
            raise ConfigError(f"distill.weight={d.weight} must be in [0, 1)")
        return
    if not 0 <= d.alpha <= 1 or d.temperature <= 0:
        raise ConfigError("distill.alpha must be in [0, 1] and distill.temperature > 0")
    if cfg.parallel.pp != 1:
        raise ConfigError("distill.mode=logit runs the teacher beside the student: set "
                          "parallel.pp=1 (tp and dp are fine)")
    if not d.teacher and not (d.offline and d.cache and Path(d.cache).expanduser().is_file()):
        raise ConfigError("distill.mode=logit needs distill.teacher=[<run folder>, ...]")
    if d.teacher:
        from ..evals.ensemble import EnsembleEvalError, check_members

        try:
            check_members(d.teacher)
        except EnsembleEvalError as exc:
            raise ConfigError(f"distill.teacher: {exc}") from None


def run_distill(cfg) -> dict:
    """job=distill on this rank."""
    check(cfg)
    return run_training(cfg, make_trainer=DistillTrainer)
