"""The training loop of one run, executed by every rank, assembled from parts.

init -> model (Megatron GPTModel, DDP) -> optimizer + schedule -> resume from the run's latest
checkpoint, or load the starting point -> steps of get_forward_backward_func -> evaluation,
checkpoints, callbacks (TensorBoard, throughput).

Parts (launch/train/): a batch source (plain, replay mix, teacher-text mix), a loss
(cross-entropy, distillation), a starting point (fresh, another run's checkpoint), a schedule
and callbacks. pretrain, ensemble members, distill, split and cpt are configurations of it.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from ...data.datasets import TrainBudget, validation_sets
from ...data.sources import prepare_data
from ...models import checkpoint, gpt, init, parallel, size
from ...models.optimizer import build_optimizer, build_scheduler
from ..config import RunConfig, to_dict
from ..errors import ConfigError
from ..run_dir import RunDir
from .batches import PlainBatches
from .callbacks import TensorBoard, Throughput
from .losses import CrossEntropy
from .preemption import Preempted, PreemptionWatch, RunBusyError, RunLock
from .start import Fresh


def microbatches(rows: np.ndarray, mask: np.ndarray, micro: int, device) -> list[dict]:
    """[n, seq+1] token windows -> microbatches of inputs, labels, positions and loss mask."""
    seq = rows.shape[1] - 1
    positions = torch.arange(seq, device=device).unsqueeze(0).expand(micro, seq)
    out = []
    for i in range(0, len(rows), micro):
        chunk = torch.from_numpy(rows[i : i + micro].astype(np.int64)).to(device)
        out.append(
            {
                "tokens": chunk[:, :-1].contiguous(),
                "labels": chunk[:, 1:].contiguous(),
                "position_ids": positions,
                "loss_mask": torch.from_numpy(mask[i : i + micro]).float().to(device),
            }
        )
    return out


def cosine_schedule(optimizer, cfg: RunConfig, steps: int):
    """The default schedule: warmup then cosine (asymptote.models.optimizer)."""
    return build_scheduler(optimizer, cfg.optim, steps)


@dataclass
class Parts:
    """What distinguishes one job's training from another's."""

    batches: object = field(default_factory=PlainBatches)
    """Batch source (launch/train/batches.py)."""
    loss: object = field(default_factory=CrossEntropy)
    """Training loss (launch/train/losses.py)."""
    start: object = field(default_factory=Fresh)
    """Starting point (launch/train/start.py)."""
    schedule: Callable = cosine_schedule
    """`schedule(optimizer, cfg, steps)` -> Megatron OptimizerParamScheduler."""
    record: dict = field(default_factory=dict)
    """Extra run.json fields of the job."""


class Trainer:
    """Everything one rank holds for one run."""

    def __init__(self, cfg: RunConfig, parts: Parts | None = None):
        import logging

        logging.getLogger("megatron.core").setLevel(logging.WARNING)  # per-layer INFO spam
        # We build GPTDataset indexes in memory on purpose (they are tiny); no need to warn.
        logging.getLogger("megatron.core.datasets.gpt_dataset").setLevel(logging.ERROR)
        self.cfg = cfg
        self.parts = parts or Parts()
        self.cfg_dict = to_dict(cfg)
        self.run = RunDir.for_config(self.cfg_dict)
        self.info = parallel.initialize(cfg.parallel, seed=cfg.seed.train)
        self.bf16 = cfg.train.precision == "bf16" or (
            cfg.train.precision == "auto" and torch.cuda.is_available()
        )
        self.tensorboard = TensorBoard()
        self.throughput = Throughput()
        self.callbacks = [self.tensorboard, self.throughput]
        self.extra_val: dict[str, dict[str, np.ndarray]] = {}  # prefix -> validation sets
        self.lock = RunLock(self.run.root)
        self.watch = None
        self.step = 0
        self.checkpoint_warnings: list[dict] = []  # damaged checkpoints skipped by resume()
        self.attempt = _attempt_id(self.info)  # one failures entry per start, shared by ranks

    # ----------------------------------------------------------------- set-up
    def admit(self) -> None:
        """Before any work, agreed by all ranks: this job may train the run folder (no other job
        holds it) and the run has not been restarted more than train.max_restarts times."""
        code, message = 0, ""
        if self.info.is_logger:
            try:
                self.lock.acquire()
                restarts = self.run.read().get("restarts", -1) + 1
                if restarts > self.cfg.train.max_restarts:
                    code, message = 2, (
                        f"run {self.run.root.name} was restarted {restarts} times (limit "
                        f"train.max_restarts={self.cfg.train.max_restarts}); look at its log for "
                        "why it keeps stopping, then raise the limit to continue")
            except RunBusyError as exc:
                code, message = 1, str(exc)
        flag = torch.tensor([float(code)], device=self.info.device)
        if self.info.world > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        code = int(flag.item())
        if code == 1:
            raise RunBusyError(message or "the run folder is held by another job (see rank logs)")
        if code == 2:
            raise RuntimeError(message or "too many restarts (see the logger rank's log)")

    def setup(self) -> None:
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.distributed import finalize_model_grads

        cfg, info = self.cfg, self.info
        seq = cfg.model.seq_len
        val_tokens = cfg.data.val_sequences * seq + 1
        self.prepared = prepare_data(cfg.data, val_tokens, progress=info.rank == 0)
        tokenizer_vocab = self.prepared.tokenizer.vocab_size
        self.vocab = cfg.model.vocab_size or size.padded_vocab_size(
            tokenizer_vocab, cfg.model.vocab_multiple
        )
        if self.vocab < tokenizer_vocab or self.vocab % cfg.parallel.tp:
            raise ConfigError(
                f"vocabulary {self.vocab} must cover the tokenizer's {tokenizer_vocab} tokens and "
                f"be divisible by parallel.tp={cfg.parallel.tp}; set model.vocab_multiple or "
                "model.vocab_size accordingly"
            )
        self.budget = TrainBudget(self.prepared, cfg.data.seed_tokens, seq)
        self.val = validation_sets(self.prepared, seq, cfg.data.val_sequences)
        self.parts.batches.setup(self)
        self.steps = self.parts.batches.steps()
        # Checkpoints at the D grid (train.keep_at_tokens) are saved and never deleted.
        tokens_per_step = cfg.train.global_batch * seq
        self.keep_steps = {t // tokens_per_step for t in cfg.train.keep_at_tokens}
        beyond = sorted(t for t in cfg.train.keep_at_tokens if t > self.steps * tokens_per_step)
        if beyond:
            raise ConfigError(f"train.keep_at_tokens {beyond} exceed the run's "
                              f"{self.steps * tokens_per_step} training tokens")

        chunks = gpt.build_model_chunks(cfg.model, cfg.parallel, self.vocab, self.bf16)
        init.init_weights(chunks, cfg.seed.train, cfg.model.init_std, cfg.model.layers)
        tcfg = chunks[0].config
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=False,
            use_distributed_optimizer=cfg.parallel.distributed_optimizer,
        )
        self.model = [
            DistributedDataParallel(config=tcfg, ddp_config=ddp_config, module=c) for c in chunks
        ]
        tcfg.finalize_model_grads_func = finalize_model_grads
        self.optimizer = build_optimizer(
            self.model, cfg.optim, self.bf16, cfg.parallel.distributed_optimizer
        )
        self.scheduler = self.parts.schedule(self.optimizer, cfg, self.steps)
        self.params = size.total_params(cfg.model, self.vocab)
        self.flops_per_token = size.flops_per_token(cfg.model, self.vocab)
        self.parts.loss.setup(self)

    def resume(self) -> bool:
        """Load the newest intact checkpoint of this run folder, if any. Returns whether it did.

        Every rank takes part in checking it against the checksums it was saved with, and all
        load the same step (models/checkpoint.py: choose_resume). A damaged newer checkpoint is
        skipped with a warning: in the log, run.json `checkpoint_warnings` and TensorBoard text
        `checkpoint/warning` (written by the TensorBoard callback once it opens). When every
        checkpoint is damaged, CheckpointDamaged names the damaged files."""
        found = checkpoint.choose_resume(self.run.checkpoints)
        self.checkpoint_warnings = found.warnings()
        if found.step is None:
            return False
        if self.info.is_logger:
            self._report_checkpoint(found)
        last = found.step
        extra = checkpoint.load(self.run.checkpoints, last, self.model, self.optimizer)
        self.scheduler.load_state_dict(extra["scheduler"])
        self.step = int(extra["step"])
        # This rank's RNG streams (torch, numpy, python, Megatron's TP tracker) as saved; under
        # another layout they cannot be matched, so they are re-seeded from (seed, step).
        checkpoint.restore_rng_state(extra.get("rng"), seed=self.cfg.seed.train + self.step)
        return True

    def _report_checkpoint(self, found) -> None:
        """Log what the resume found (logger rank): warnings for skipped damaged checkpoints
        (also appended to run.json `checkpoint_warnings`), or a note on an unverified one."""
        for warning in self.checkpoint_warnings:
            print(f"[asymptote] WARNING: {warning['message']}", file=sys.stderr, flush=True)
        if self.checkpoint_warnings:
            earlier = self.run.read().get("checkpoint_warnings", [])
            self.run.update(checkpoint_warnings=earlier + self.checkpoint_warnings)
        v = found.verdict
        if not v.checked:
            print(f"[asymptote] note: checkpoint step {v.step} was written before checkpoints "
                  "carried checksums; loading it unverified", flush=True)
        else:
            print(f"[asymptote] checkpoint step {v.step} verified ({v.files} files, "
                  f"{v.bytes / 2**20:.1f} MiB, {v.seconds:.1f} s)", flush=True)

    # ----------------------------------------------------------------- steps
    def _fb(self, batches: list[dict], forward_only: bool, forward_step=None):
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from .losses import ce_forward_step

        n_chunks = len(self.model)
        iterators = [iter(batches) for _ in range(n_chunks)]
        return get_forward_backward_func()(
            forward_step_func=forward_step or ce_forward_step,
            data_iterator=iterators if n_chunks > 1 else iterators[0],
            model=self.model if n_chunks > 1 else self.model[0],
            num_microbatches=len(batches),
            seq_length=self.cfg.model.seq_len,
            micro_batch_size=self.cfg.train.micro_batch,
            forward_only=forward_only,
        )

    def _reduce_over_dp(self, outputs: list[dict]) -> float | None:
        """Token-weighted mean loss over microbatches and data-parallel ranks (last stage only)."""
        from megatron.core import parallel_state as ps

        if not ps.is_pipeline_last_stage(ignore_virtual=True):
            return None
        sums = torch.zeros(2, dtype=torch.float64, device=self.info.device)
        for out in outputs:
            sums[0] += out["loss_sum"].double()
            sums[1] += out["tokens"].double()
        dist.all_reduce(sums, group=ps.get_data_parallel_group())
        return float(sums[0] / sums[1])

    def train_step(self) -> tuple[float | None, float]:
        """One step on this rank's share of the next global batch."""
        cfg, source = self.cfg, self.parts.batches
        per_rank = cfg.train.global_batch // self.info.dp
        start = self.step * cfg.train.global_batch + self.info.dp_rank * per_rank
        positions = range(start, start + per_rank)
        rows = np.stack([source.row(p) for p in positions])
        batches = microbatches(
            rows, np.ones((per_rank, rows.shape[1] - 1), np.float32), cfg.train.micro_batch,
            self.info.device,
        )
        loss = self.parts.loss
        if not isinstance(loss, CrossEntropy):
            loss.attach(batches, [source.index(p) for p in positions])
        return self.update(batches)

    def update(self, batches: list[dict]) -> tuple[float | None, float]:
        """One optimizer step on these microbatches: (loss on the logger's view, grad norm)."""
        for m in self.model:
            m.zero_grad_buffer()
        self.optimizer.zero_grad()
        outputs = self._fb(batches, forward_only=False, forward_step=self.parts.loss.forward_step)
        # Update i (1-based) uses the schedule's lr at i: warmup starts above zero.
        self.scheduler.step(increment=1)
        _, grad_norm, _ = self.optimizer.step()
        self.step += 1
        return self._reduce_over_dp(outputs), float(grad_norm or 0.0)

    @torch.no_grad()
    def _evaluate_sets(self, sets: dict[str, np.ndarray]) -> dict[str, float]:
        micro, dp, r = self.cfg.train.micro_batch, self.info.dp, self.info.dp_rank
        results, total = {}, [0.0, 0.0]
        for domain, rows in sets.items():
            mine = rows[r::dp]
            # Pad to whole microbatches (pipelines need fixed shapes); padding has mask 0.
            n_micro = max(1, math.ceil(math.ceil(len(rows) / dp) / micro))
            pad = n_micro * micro - len(mine)
            mask = np.ones((len(mine), rows.shape[1] - 1), np.float32)
            if pad > 0:
                mine = np.concatenate([mine, np.repeat(rows[:1], pad, axis=0)])
                mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), np.float32)])
            outputs = self._fb(microbatches(mine, mask, micro, self.info.device), True)
            loss = self._reduce_over_dp(outputs)
            if loss is not None:
                results[domain] = loss
                tokens = len(rows) * (rows.shape[1] - 1)
                total[0] += loss * tokens
                total[1] += tokens
        if total[1]:
            results["__all__"] = total[0] / total[1]
        return results

    def evaluate(self) -> dict[str, float]:
        """Validation loss per domain and overall (token-weighted), on the logger's view; extra
        validation sets (e.g. `general` of a cpt run) as `<prefix>` and `<prefix>/<domain>`."""
        for m in self.model:
            m.eval()
        try:
            results = self._evaluate_sets(self.val)
            for prefix, sets in self.extra_val.items():
                for d, v in self._evaluate_sets(sets).items():
                    results[prefix if d == "__all__" else f"{prefix}/{d}"] = v
        finally:
            for m in self.model:
                m.train()
        return results

    # ----------------------------------------------------------------- records
    def record(self, **fields) -> None:
        """Merge fields into run.json (logger rank only)."""
        if self.info.is_logger:
            self.run.update(**fields)

    def _log_eval(self, losses: dict[str, float]) -> None:
        if not losses:
            return
        for cb in self.callbacks:
            cb.on_eval(self, losses)
        self.record(step=self.step, val_loss=losses["__all__"])
        if self.info.is_logger:
            print(f"[asymptote] step {self.step}/{self.steps} val/loss {losses['__all__']:.4f}",
                  flush=True)

    def _save(self) -> None:
        extra = {"step": self.step, "scheduler": self.scheduler.state_dict(),
                 "rng": checkpoint.rng_state()}
        checkpoint.save(self.run.checkpoints, self.step, self.model, self.optimizer, extra,
                        keep=self.cfg.train.keep_checkpoints,
                        protect={self.steps} | self.keep_steps)

    def _keep_tokenizer(self) -> str:
        """Copy the tokenizer into the run folder (the run stays loadable without the data cache,
        e.g. on another machine) and return its identity."""
        import shutil

        from ...atomic import replacing
        from ...models.inference import tokenizer_sha

        self.run.root.mkdir(parents=True, exist_ok=True)
        target = self.run.root / "tokenizer.json"
        if not target.exists():
            with replacing(target) as tmp:
                shutil.copyfile(self.prepared.root / "tokenizer.json", tmp)
        return tokenizer_sha(target)

    def _start_record(self, resumed: bool) -> None:
        cfg, info = self.cfg, self.info
        tokens_per_step = cfg.train.global_batch * cfg.model.seq_len
        fields = dict(
            name=self.run.root.name, job=cfg.job, status="running", error=None,
            config=self.cfg_dict, params=self.params,
            non_embedding_params=size.non_embedding_params(cfg.model),
            flops_per_token=self.flops_per_token, seed_tokens=cfg.data.seed_tokens,
            epochs=cfg.train.epochs, steps=self.steps, step=self.step,
            world=info.world, layout={"tp": info.tp, "pp": info.pp, "dp": info.dp},
            tags=dict(cfg.tags), domains=sorted(self.val), vocab=self.vocab,
            kept_tokens={str(s * tokens_per_step): s for s in sorted(self.keep_steps)},
            tokenizer_sha=self._keep_tokenizer(),
            **self.parts.start.record(), **self.parts.record,
        )
        restarts = self.run.read().get("restarts", -1) + 1
        self.run.update(**fields, restarts=restarts, resumed_from=self.step if resumed else None)
        print(f"[asymptote] run {self.run.root} ({self.params:,} params, {self.steps} steps, "
              f"layout tp{info.tp} pp{info.pp} dp{info.dp})"
              + (f", resumed at step {self.step}" if resumed else ""), flush=True)

    # ----------------------------------------------------------------- main
    def fit(self) -> dict:
        cfg, info = self.cfg, self.info
        self.admit()
        self.setup()
        resumed = self.resume()
        if not resumed:
            self.parts.start.load(self)
        self.started = True  # from here on a failure may record the step reached
        if info.is_logger:
            self._start_record(resumed)
        for cb in self.callbacks:
            cb.on_start(self, resumed)
        if self.parts.start.evaluate_first and not resumed:
            # Runs that start from other weights (split, cpt) log the loss they start from.
            start = self.evaluate()
            self._log_eval(start)
            self.record(start={f"val/{d}/loss" if d != "__all__" else "val_loss": v
                               for d, v in start.items()})
        tokens_per_step = cfg.train.global_batch * cfg.model.seq_len
        eval_every, ckpt_every = cfg.train.eval_every, cfg.train.ckpt_every
        last_loss = None
        self.watch = PreemptionWatch()
        while self.step < self.steps:
            self.throughput.step_started()
            loss, grad_norm = self.train_step()
            if info.is_logger and self.step % cfg.train.log_every == 0:
                last_loss = loss
                scalars = {"train/loss": loss, "train/lr": self.optimizer.param_groups[0]["lr"],
                           "train/grad_norm": grad_norm,
                           "train/tokens": self.step * tokens_per_step}
                scalars.update(self.throughput.scalars(self, tokens_per_step))
                scalars.update(self.parts.batches.step_logs(self.step, cfg.train.global_batch))
                for cb in self.callbacks:
                    cb.on_step(self, scalars)
            at_eval = bool(eval_every) and self.step % eval_every == 0
            if (at_eval or self.step in self.keep_steps) and self.step < self.steps:
                self._log_eval(self.evaluate())
            periodic = bool(ckpt_every) and self.step % ckpt_every == 0
            if (periodic or self.step in self.keep_steps) and self.step < self.steps:
                self._save()
                self.record(step=self.step, train_loss=last_loss)
            if self.watch.agreed(info.device):
                # Preemption or the time limit is near: checkpoint now, then requeue (run_training).
                if checkpoint.latest_step(self.run.checkpoints) != self.step:
                    self._save()
                self.record(status="requeued", step=self.step, train_loss=last_loss)
                self.tensorboard.close()
                raise Preempted(f"stopped by a preemption/timeout signal at step {self.step}, "
                                "after a checkpoint")
            if cfg.train.crash_at_step is not None and self.step == cfg.train.crash_at_step:
                self.tensorboard.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        final = self.evaluate()
        self._log_eval(final)
        if checkpoint.latest_step(self.run.checkpoints) != self.step:
            self._save()
        result = {}
        if info.is_logger:
            result = {"val_loss": final.get("__all__"), "train_loss": last_loss}
            result.update({f"val/{d}/loss": v for d, v in final.items() if d != "__all__"})
            self.run.update(status="done", step=self.step, final=result)
        for cb in self.callbacks:
            cb.on_end(self, result)
        return result


def run_training(cfg: RunConfig, parts: Parts | None = None) -> dict:
    """Train one run on this rank; on error record it in run.json (status failed) and re-raise."""
    trainer = None
    try:
        trainer = Trainer(cfg, parts)
        return trainer.fit()
    except Preempted:
        parallel.shutdown()
        try:
            if trainer.watch.hand_over():  # submitit requeues from rank 0 (and exits there)
                return {}
        except Exception as exc:  # e.g. submitit: timed out too many times, not requeued
            _record_failure(trainer, exc)
            raise
        trainer.record(status="stopped")
        raise
    except RunBusyError:
        raise  # the folder belongs to the other job: leave its run.json alone
    except BaseException as exc:
        if trainer is not None and not isinstance(exc, KeyboardInterrupt):
            _record_failure(trainer, exc)
            trainer.tensorboard.on_failure(trainer)
        raise
    finally:
        if trainer is not None:
            if trainer.watch is not None:
                trainer.watch.close()
            trainer.tensorboard.close()
            trainer.lock.release()
        parallel.shutdown()


def _attempt_id(info) -> str:
    """An id of this start of the run, the same on every rank (rank 0's, broadcast)."""
    token = torch.tensor([secrets.randbits(52) if info.rank == 0 else 0], dtype=torch.int64,
                         device=info.device)
    if info.world > 1:
        dist.broadcast(token, src=0)
    return f"{int(token.item()):013x}"


def _record_failure(trainer: Trainer, exc: BaseException) -> None:
    """Record a failure in run.json without erasing the progress recorded: status `failed`, the
    error and traceback, `step` only once the trainer started (else the last step recorded stays),
    and one entry of the `failures` history per failed start ({time, step, error, restarts,
    attempt, ranks}). Every failing rank reports (the logger may be killed first); under a lock,
    the first sets the error and the entry, later ones only add their rank to it."""
    import fcntl

    error = f"{type(exc).__name__}: {exc}"
    trainer.run.root.mkdir(parents=True, exist_ok=True)
    with open(trainer.run.root / ".record.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            record = trainer.run.read()
            failures = list(record.get("failures", []))
            mine = next((f for f in failures if f.get("attempt") == trainer.attempt), None)
            if mine is not None:
                if trainer.info.rank not in mine.setdefault("ranks", []):
                    mine["ranks"].append(trainer.info.rank)
                trainer.run.update(failures=failures)
                return
            fields = dict(status="failed", error=error, traceback=traceback.format_exc())
            if getattr(trainer, "started", False):  # else run.json keeps the progress it had
                fields["step"] = trainer.step
            failures.append({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "step": fields.get("step", record.get("step", 0)),
                "error": error, "restarts": record.get("restarts", 0),
                "attempt": trainer.attempt, "ranks": [trainer.info.rank]})
            trainer.run.update(**fields, failures=failures)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
