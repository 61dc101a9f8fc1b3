"""The training loop of one run, executed by every rank.

init -> model (Megatron GPTModel, DDP) -> optimizer + cosine schedule -> resume from the
latest checkpoint -> steps of get_forward_backward_func -> eval / TensorBoard / checkpoints.
"""

from __future__ import annotations

import math
import os
import signal
import time
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..data.datasets import TrainBudget, validation_sets
from ..data.sources import prepare_data
from ..models import checkpoint, gpt, init, parallel, size
from ..models.optimizer import build_optimizer, build_scheduler
from .config import RunConfig
from .preemption import PreemptionWatch, Preempted, RunBusyError, RunLock
from .run_dir import RunDir
from .validate import ConfigError, plan_steps


def _to_dict(cfg: RunConfig) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def _loss_func(loss_mask: torch.Tensor, output: torch.Tensor):
    """Mean token loss of a microbatch, plus its sum and count for exact averages."""
    losses = output.float()
    total = (losses * loss_mask).sum()
    count = loss_mask.sum()
    return total / count.clamp(min=1), {"loss_sum": total.detach(), "tokens": count.detach()}


def _forward_step(data_iterator, model):
    batch = next(data_iterator)
    output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    return output, partial(_loss_func, batch["loss_mask"])


def _microbatches(rows: np.ndarray, mask: np.ndarray, micro: int, device) -> list[dict]:
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


class Trainer:
    """Everything one rank holds for one run."""

    def __init__(self, cfg: RunConfig):
        import logging

        logging.getLogger("megatron.core").setLevel(logging.WARNING)  # per-layer INFO spam
        # We build GPTDataset indexes in memory on purpose (they are tiny); no need to warn.
        logging.getLogger("megatron.core.datasets.gpt_dataset").setLevel(logging.ERROR)
        self.cfg = cfg
        self.cfg_dict = _to_dict(cfg)
        self.run = RunDir.for_config(self.cfg_dict)
        self.info = parallel.initialize(cfg.parallel, seed=cfg.seed.train)
        self.bf16 = cfg.train.precision == "bf16" or (
            cfg.train.precision == "auto" and torch.cuda.is_available()
        )
        self.writer = None
        # Jobs that start from other weights set this: evaluate and log at step 0 first.
        self.eval_at_start = False
        self.lock = RunLock(self.run.root)
        self.watch = None

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
        self.steps = plan_steps(cfg, self.budget.num_sequences)
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
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.steps)
        self.step = 0
        self.params = size.total_params(cfg.model, self.vocab)
        self.flops_per_token = size.flops_per_token(cfg.model, self.vocab)

    def resume(self) -> bool:
        """Load the latest checkpoint of this run folder, if any. Returns whether it did."""
        last = checkpoint.latest_step(self.run.checkpoints)
        if last is None:
            return False
        extra = checkpoint.load(self.run.checkpoints, last, self.model, self.optimizer)
        self.scheduler.load_state_dict(extra["scheduler"])
        self.step = int(extra["step"])
        if "rng" in extra:
            torch.set_rng_state(extra["rng"]["cpu"])
        return True

    # ----------------------------------------------------------------- steps
    def _fb(self, batches: list[dict], forward_only: bool):
        from megatron.core.pipeline_parallel import get_forward_backward_func

        n_chunks = len(self.model)
        iterators = [iter(batches) for _ in range(n_chunks)]
        return get_forward_backward_func()(
            forward_step_func=_forward_step,
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
        cfg = self.cfg
        per_rank = cfg.train.global_batch // self.info.dp
        start = self.step * cfg.train.global_batch + self.info.dp_rank * per_rank
        rows = np.stack(
            [self.budget.tokens(p, cfg.seed.data) for p in range(start, start + per_rank)]
        )
        batches = _microbatches(
            rows, np.ones((per_rank, rows.shape[1] - 1), np.float32), cfg.train.micro_batch,
            self.info.device,
        )
        return self.update(batches)

    def update(self, batches: list[dict]) -> tuple[float | None, float]:
        """One optimizer step on these microbatches: (loss on the logger's view, grad norm)."""
        for m in self.model:
            m.zero_grad_buffer()
        self.optimizer.zero_grad()
        outputs = self._fb(batches, forward_only=False)
        # Update i (1-based) uses the schedule's lr at i: warmup starts above zero.
        self.scheduler.step(increment=1)
        _, grad_norm, _ = self.optimizer.step()
        self.step += 1
        return self._reduce_over_dp(outputs), float(grad_norm or 0.0)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss per domain and overall (token-weighted), on the logger's view."""
        micro, dp, r = self.cfg.train.micro_batch, self.info.dp, self.info.dp_rank
        for m in self.model:
            m.eval()
        results, total = {}, [0.0, 0.0]
        for domain, rows in self.val.items():
            mine = rows[r::dp]
            # Pad to whole microbatches (pipelines need fixed shapes); padding has mask 0.
            n_micro = max(1, math.ceil(math.ceil(len(rows) / dp) / micro))
            pad = n_micro * micro - len(mine)
            mask = np.ones((len(mine), rows.shape[1] - 1), np.float32)
            if pad > 0:
                mine = np.concatenate([mine, np.repeat(rows[:1], pad, axis=0)])
                mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), np.float32)])
            outputs = self._fb(_microbatches(mine, mask, micro, self.info.device), True)
            loss = self._reduce_over_dp(outputs)
            if loss is not None:
                results[domain] = loss
                tokens = len(rows) * (rows.shape[1] - 1)
                total[0] += loss * tokens
                total[1] += tokens
        for m in self.model:
            m.train()
        if total[1]:
            results["__all__"] = total[0] / total[1]
        return results

    # ----------------------------------------------------------------- logging
    def _log(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def _log_eval(self, losses: dict[str, float]) -> None:
        if not losses:
            return
        self._log("val/loss", losses["__all__"], self.step)
        self._record(step=self.step, val_loss=losses["__all__"])
        for domain, loss in losses.items():
            if domain != "__all__":
                self._log(f"val/{domain}/loss", loss, self.step)
        if self.info.is_logger:
            print(f"[asymptote] step {self.step}/{self.steps} val/loss {losses['__all__']:.4f}",
                  flush=True)

    def _save(self, final: bool = False) -> None:
        extra = {"step": self.step, "scheduler": self.scheduler.state_dict(),
                 "rng": checkpoint.rng_state()}
        checkpoint.save(self.run.checkpoints, self.step, self.model, self.optimizer, extra,
                        keep=self.cfg.train.keep_checkpoints,
                        protect={self.steps} | self.keep_steps)

    def _keep_tokenizer(self) -> str:
        """Copy the tokenizer into the run folder (the run stays loadable without the data cache,
        e.g. on another machine) and return its identity."""
        import shutil

        from ..models.inference import tokenizer_sha

        self.run.root.mkdir(parents=True, exist_ok=True)
        target = self.run.root / "tokenizer.json"
        if not target.exists():
            tmp = target.with_suffix(f".json.tmp{os.getpid()}")
            shutil.copyfile(self.prepared.root / "tokenizer.json", tmp)
            os.replace(tmp, target)
        return tokenizer_sha(target)

    def _record(self, **fields) -> None:
        if self.info.is_logger:
            self.run.update(**fields)

    # ----------------------------------------------------------------- main
    def fit(self) -> dict:
        cfg, info = self.cfg, self.info
        self.admit()
        self.setup()
        resumed = self.resume()
        tokens_per_step = cfg.train.global_batch * cfg.model.seq_len
        base = dict(
            name=self.run.root.name, job=cfg.job, status="running", error=None,
            config=self.cfg_dict, params=self.params,
            non_embedding_params=size.non_embedding_params(cfg.model),
            flops_per_token=self.flops_per_token, seed_tokens=cfg.data.seed_tokens,
            epochs=cfg.train.epochs, steps=self.steps, step=self.step,
            world=info.world, layout={"tp": info.tp, "pp": info.pp, "dp": info.dp},
            tags=dict(cfg.tags), domains=sorted(self.val), vocab=self.vocab,
            kept_tokens={str(s * tokens_per_step): s for s in sorted(self.keep_steps)},
        )
        if info.is_logger:
            base["tokenizer_sha"] = self._keep_tokenizer()
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events logged after the checkpoint we resumed from, so no step
            # appears twice.
            self.writer = SummaryWriter(
                str(self.run.tb), purge_step=self.step + 1 if resumed else None
            )
            record = self.run.read()
            restarts = record.get("restarts", -1) + 1
            self.run.update(**base, restarts=restarts, resumed_from=self.step if resumed else None)
            print(f"[asymptote] run {self.run.root} ({self.params:,} params, {self.steps} steps, "
                  f"layout tp{info.tp} pp{info.pp} dp{info.dp})"
                  + (f", resumed at step {self.step}" if resumed else ""), flush=True)

        if self.eval_at_start and not resumed:
            # Jobs that start from other weights (split, cpt) log the loss they start from.
            start = self.evaluate()
            self._log_eval(start)
            self._record(start={f"val/{d}/loss" if d != "__all__" else "val_loss": v
                                for d, v in start.items()})
        eval_every, ckpt_every = cfg.train.eval_every, cfg.train.ckpt_every
        last_loss = None
        self.watch = PreemptionWatch()
        while self.step < self.steps:
            t0 = time.perf_counter()
            loss, grad_norm = self.train_step()
            dt = time.perf_counter() - t0
            if info.is_logger and self.step % cfg.train.log_every == 0:
                last_loss = loss
                self._log("train/loss", loss, self.step)
                self._log("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
                self._log("train/grad_norm", grad_norm, self.step)
                self._log("train/tokens", self.step * tokens_per_step, self.step)
                self._log("perf/tokens_per_s", tokens_per_step / dt, self.step)
                if torch.cuda.is_available():
                    peak = _peak_flops() * info.world
                    self._log("perf/mfu", self.flops_per_token * tokens_per_step / dt / peak,
                              self.step)
            at_eval = bool(eval_every) and self.step % eval_every == 0
            if (at_eval or self.step in self.keep_steps) and self.step < self.steps:
                self._log_eval(self.evaluate())
            periodic = bool(ckpt_every) and self.step % ckpt_every == 0
            if (periodic or self.step in self.keep_steps) and self.step < self.steps:
                self._save()
                self._record(step=self.step, train_loss=last_loss)
            if self.watch.agreed(info.device):
                # Preemption or the time limit is near: checkpoint now, then requeue (run_training).
                if checkpoint.latest_step(self.run.checkpoints) != self.step:
                    self._save()
                self._record(status="requeued", step=self.step, train_loss=last_loss)
                if self.writer is not None:
                    self.writer.close()
                raise Preempted(f"stopped by a preemption/timeout signal at step {self.step}, "
                                "after a checkpoint")
            if cfg.train.crash_at_step is not None and self.step == cfg.train.crash_at_step:
                if self.writer is not None:
                    self.writer.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        final = self.evaluate()
        self._log_eval(final)
        if checkpoint.latest_step(self.run.checkpoints) != self.step:
            self._save(final=True)
        if self.writer is not None:
            self.writer.close()
        result = {}
        if info.is_logger:
            result = {"val_loss": final.get("__all__"), "train_loss": last_loss}
            result.update({f"val/{d}/loss": v for d, v in final.items() if d != "__all__"})
            self.run.update(status="done", step=self.step, final=result)
        return result


def _peak_flops() -> float:
    """Dense bf16 peak of this GPU (H100/H200 SXM 989 TFLOP/s; A100 312), for MFU."""
    name = torch.cuda.get_device_name()
    if "H100" in name or "H200" in name or "H20" in name:
        return 989e12
    if "A100" in name:
        return 312e12
    return float(os.environ.get("ASYMPTOTE_PEAK_FLOPS", 312e12))


def run_training(cfg: RunConfig, make_trainer=None) -> dict:
    """Train one run on this rank; on error record it in run.json (status failed) and re-raise.
    `make_trainer(cfg)` builds the Trainer (a subclass for jobs that start from other weights)."""
    trainer = None
    try:
        trainer = (make_trainer or Trainer)(cfg)
        return trainer.fit()
    except Preempted:
        parallel.shutdown()
        try:
            if trainer.watch.hand_over():  # submitit requeues from rank 0 (and exits there)
                return {}
        except Exception as exc:  # e.g. submitit: timed out too many times, not requeued
            trainer._record(status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        trainer._record(status="stopped")
        raise
    except RunBusyError:
        raise  # the folder belongs to the other job: leave its run.json alone
    except BaseException as exc:
        if trainer is not None and not isinstance(exc, KeyboardInterrupt):
            trainer.run.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc(), step=trainer.__dict__.get("step"))
        raise
    finally:
        if trainer is not None:
            if trainer.watch is not None:
                trainer.watch.close()
            trainer.lock.release()
        parallel.shutdown()
