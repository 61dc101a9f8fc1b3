"""Training-loop overhead, tiny-preset throughput and (on a GPU) MFU.

Run from the repository root (the folder holding pyproject.toml) with the project's venv:

    OMP_NUM_THREADS=1 .venv/bin/python bench/training/step_overhead.py

(a) `asymptote.launch.train.trainer.Trainer.train_step()` (what `asymptote-train` runs every step: data
    from the fixed budget, microbatching, Megatron DDP, forward_backward, cosine schedule,
    Megatron AdamW, loss reduction) and
(b) a minimal Megatron-Core loop written here: the same GPTModel (built with
    `asymptote.models.gpt.build_model_chunks`, initialised the same way), wrapped in Megatron
    DDP, Megatron's AdamW (`get_megatron_optimizer`, same hyper-parameters, constant lr), the
    same micro/global batch pre-built once on the device, `get_forward_backward_func`, optimizer
    step, nothing else (no scheduler, no data loading, no loss reduction, no logging)
are timed in ONE process on the same model and batch, in interleaved blocks ABAB... so drift
(thermal, other users of the machine) hits both alike. Reported: median step time of each and
the overhead ratio median(a) / median(b) - 1 (target <= 5%).

(c) tokens/s of each tiny preset through the project's loop (median train_step time).
(d) with CUDA: MFU of `150m` and `300m` (bf16) through the project's loop,
    flops_per_token x tokens/s / peak (`models/gpu_peaks.py`); skipped without CUDA.

Writes bench/training/results/step_overhead.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = REPO / "bench" / "_work" / "training"  # git-ignored


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(preset: str, args, *, seq_len: int | None = None, global_batch: int | None = None,
            micro_batch: int | None = None, val_sequences: int = 4):
    from asymptote.launch.config import RunConfig
    from asymptote.models.presets import load_preset

    cfg = RunConfig()
    cfg.out = str(WORK / "runs")
    cfg.model = load_preset(preset)
    if seq_len:
        cfg.model.seq_len = seq_len
    cfg.train.global_batch = global_batch or args.global_batch
    cfg.train.micro_batch = micro_batch or args.micro_batch
    cfg.train.eval_every = 0
    cfg.train.ckpt_every = 0
    cfg.data.cache_dir = os.environ.get("ASYMPTOTE_CACHE", str(WORK / "cache"))
    # Enough budget for every step we time to stay inside the first epoch(s).
    cfg.data.seed_tokens = args.seed_tokens
    # Validation is not timed; at seq 4096 the shipped corpus holds out 1 sequence per domain.
    cfg.data.val_sequences = val_sequences
    cfg.tags = {"bench": "step_overhead"}
    return cfg


def _trainer(cfg):
    from asymptote.launch.train.trainer import Trainer

    trainer = Trainer(cfg)
    trainer.setup()
    return trainer


class MinimalLoop:
    """The smallest Megatron-Core training loop on the same model and batch as `trainer`."""

    def __init__(self, trainer):
        import numpy as np
        import torch
        from megatron.core.distributed import (
            DistributedDataParallel,
            DistributedDataParallelConfig,
            finalize_model_grads,
        )
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from asymptote.models import gpt, init

        cfg = trainer.cfg
        self.cfg = cfg
        chunks = gpt.build_model_chunks(cfg.model, cfg.parallel, trainer.vocab, trainer.bf16)
        init.init_weights(chunks, cfg.seed.train, cfg.model.init_std, cfg.model.layers)
        tcfg = chunks[0].config
        tcfg.finalize_model_grads_func = finalize_model_grads
        self.model = DistributedDataParallel(
            config=tcfg,
            ddp_config=DistributedDataParallelConfig(grad_reduce_in_fp32=True),
            module=chunks[0],
        )
        o = cfg.optim
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(optimizer="adam", lr=o.lr, weight_decay=o.weight_decay,
                            adam_beta1=o.beta1, adam_beta2=o.beta2, adam_eps=o.eps,
                            clip_grad=o.clip, bf16=trainer.bf16, params_dtype=torch.float32),
            [self.model],
        )
        self.fb = get_forward_backward_func()
        # The batch of the trainer's first step, built once on the device.
        g, m, seq = cfg.train.global_batch, cfg.train.micro_batch, cfg.model.seq_len
        rows = np.stack([trainer.budget.tokens(p, cfg.seed.data) for p in range(g)])
        rows = torch.from_numpy(rows.astype(np.int64)).to(trainer.info.device)
        pos = torch.arange(seq, device=trainer.info.device).unsqueeze(0).expand(m, seq)
        self.batches = [
            (rows[i:i + m, :-1].contiguous(), rows[i:i + m, 1:].contiguous(), pos)
            for i in range(0, g, m)
        ]

    @staticmethod
    def _forward(it, model):
        tokens, labels, pos = next(it)
        out = model(tokens, pos, None, labels=labels)
        return out, lambda o: (o.float().mean(), {})

    def step(self) -> None:
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        self.fb(forward_step_func=self._forward, data_iterator=iter(self.batches),
                model=self.model, num_microbatches=len(self.batches),
                seq_length=self.cfg.model.seq_len, micro_batch_size=self.cfg.train.micro_batch,
                forward_only=False)
        self.optimizer.step()


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        out.append(time.perf_counter() - t0)
    return out


def overhead(args) -> dict:
    trainer = _trainer(_config(args.preset, args))
    minimal = MinimalLoop(trainer)
    for _ in range(args.warmup):
        trainer.train_step()
        minimal.step()
    loop_t, min_t = [], []
    for block in range(args.blocks):
        # Alternate which one goes first so neither always follows the other.
        pair = [(loop_t, trainer.train_step), (min_t, minimal.step)]
        for times, fn in pair if block % 2 == 0 else pair[::-1]:
            times.extend(_time(fn, args.steps))
    a, b = statistics.median(loop_t), statistics.median(min_t)
    n = args.steps
    blocks = [statistics.median(loop_t[i:i + n]) / statistics.median(min_t[i:i + n]) - 1.0
              for i in range(0, len(loop_t), n)]
    tokens = trainer.cfg.train.global_batch * trainer.cfg.model.seq_len
    return {
        "preset": args.preset,
        "global_batch": trainer.cfg.train.global_batch,
        "micro_batch": trainer.cfg.train.micro_batch,
        "seq_len": trainer.cfg.model.seq_len,
        "params": trainer.params,
        "blocks": args.blocks,
        "steps_per_block": args.steps,
        "warmup_steps": args.warmup,
        "asymptote_loop_median_s": a,
        "minimal_loop_median_s": b,
        "overhead": a / b - 1.0,
        "block_overheads": blocks,
        "asymptote_loop_tokens_per_s": tokens / a,
        "minimal_loop_tokens_per_s": tokens / b,
        "asymptote_loop_step_s": loop_t,
        "minimal_loop_step_s": min_t,
    }


def _reinit():
    """Fresh Megatron groups for the next model (the process group is kept)."""
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()


def throughput(preset: str, args, n: int, **kw) -> dict:
    import torch

    from asymptote.models import size

    _reinit()
    trainer = _trainer(_config(preset, args, **kw))
    for _ in range(args.warmup):
        trainer.train_step()
    times = _time(trainer.train_step, n)
    med = statistics.median(times)
    tokens = trainer.cfg.train.global_batch * trainer.cfg.model.seq_len
    out = {
        "preset": preset,
        "params": trainer.params,
        "non_embedding_params": size.non_embedding_params(trainer.cfg.model),
        "global_batch": trainer.cfg.train.global_batch,
        "micro_batch": trainer.cfg.train.micro_batch,
        "seq_len": trainer.cfg.model.seq_len,
        "steps": n,
        "median_step_s": med,
        "tokens_per_s": tokens / med,
    }
    if torch.cuda.is_available():
        from asymptote.models.gpu_peaks import dense_bf16_peak

        per_device = dense_bf16_peak(torch.cuda.get_device_name(), trainer.cfg.train.peak_flops)
        out["flops_per_token"] = trainer.flops_per_token
        out["bf16"] = trainer.bf16
        if per_device is not None:  # an unknown device gets no MFU
            peak = per_device * trainer.info.world
            out["peak_flops"] = peak
            out["mfu"] = trainer.flops_per_token * tokens / med / peak
    del trainer
    return out


def _markdown(result: dict) -> str:
    o = result["overhead"]
    q = statistics.quantiles(o["block_overheads"], n=4)
    lines = [
        "# Training-step overhead and throughput",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}  ",
        f"Machine: {result['machine']}",
        "",
        "## Project loop vs minimal Megatron-Core loop (same process, same model and batch)",
        "",
        f"Preset `{o['preset']}` ({o['params']:,} params), global batch {o['global_batch']}, "
        f"micro batch {o['micro_batch']}, seq {o['seq_len']}; {o['blocks']} interleaved blocks "
        f"x {o['steps_per_block']} steps each, after {o['warmup_steps']} warm-up steps.",
        "",
        "| loop | median step (ms) | tokens/s |",
        "|---|---:|---:|",
        f"| asymptote `Trainer.train_step` | {o['asymptote_loop_median_s'] * 1e3:.2f} "
        f"| {o['asymptote_loop_tokens_per_s']:,.0f} |",
        f"| minimal Megatron-Core loop | {o['minimal_loop_median_s'] * 1e3:.2f} "
        f"| {o['minimal_loop_tokens_per_s']:,.0f} |",
        "",
        f"Overhead: **{o['overhead'] * 100:+.1f}%** (target <= 5%). Per interleaved block "
        f"(ratio of that block's medians): median {q[1] * 100:+.1f}%, quartiles "
        f"{q[0] * 100:+.1f}% / {q[2] * 100:+.1f}%, range {min(o['block_overheads']) * 100:+.1f}% "
        f"to {max(o['block_overheads']) * 100:+.1f}% (the machine is shared; the interleaving "
        "is what makes the overall medians comparable).",
        "",
        "## Tiny presets through the project's loop",
        "",
        "| preset | params | non-embedding | median step (ms) | tokens/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in result["tiny_presets"]:
        lines.append(f"| `{t['preset']}` | {t['params']:,} | {t['non_embedding_params']:,} | "
                     f"{t['median_step_s'] * 1e3:.1f} | {t['tokens_per_s']:,.0f} |")
    lines += ["", "## GPU MFU (150m, 300m)", ""]
    if result["mfu"]:
        lines += ["| preset | global x micro batch | seq | median step (s) | tokens/s | MFU |",
                  "|---|---|---:|---:|---:|---:|"]
        for t in result["mfu"]:
            lines.append(f"| `{t['preset']}` | {t['global_batch']} x {t['micro_batch']} | "
                         f"{t['seq_len']} | {t['median_step_s']:.3f} | {t['tokens_per_s']:,.0f} "
                         f"| {t['mfu'] * 100:.1f}% |")
    else:
        lines.append("Skipped: no CUDA device in this run.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="model of the overhead comparison")
    p.add_argument("--global-batch", type=int, default=16)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--seed-tokens", type=int, default=131072)
    p.add_argument("--blocks", type=int, default=16, help="interleaved blocks of each loop")
    p.add_argument("--steps", type=int, default=10, help="steps per block")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--preset-steps", type=int, default=15, help="timed steps per tiny preset")
    p.add_argument("--mfu-steps", type=int, default=10)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    import torch

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(_free_port())
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(var, None)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    from asymptote.models import parallel

    t_start = time.perf_counter()
    result: dict = {
        "command": "OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"] + " .venv/bin/python "
                   + " ".join(["bench/training/step_overhead.py", *(argv or sys.argv[1:])]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": (f"{platform.machine()} {os.cpu_count()}-core CPU, "
                    f"torch {torch.__version__}, threads {torch.get_num_threads()}"
                    + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available()
                       else ", no GPU")),
        "minimal_loop": "Megatron DDP + Megatron AdamW (get_megatron_optimizer), constant lr, "
                        "batch pre-built on the device, no loss reduction, no logging",
    }
    try:
        result["overhead"] = overhead(args)
        print(f"overhead: {result['overhead']['overhead'] * 100:+.1f}% "
              f"(loop {result['overhead']['asymptote_loop_median_s'] * 1e3:.2f} ms, "
              f"minimal {result['overhead']['minimal_loop_median_s'] * 1e3:.2f} ms)", flush=True)
        result["tiny_presets"] = []
        for preset in ("tiny", "tiny_m", "tiny_l", "tiny_xl"):
            t = throughput(preset, args, args.preset_steps)
            print(f"{preset}: {t['tokens_per_s']:,.0f} tokens/s", flush=True)
            result["tiny_presets"].append(t)
        result["mfu"] = []
        if torch.cuda.is_available():
            for preset in ("150m", "300m"):
                t = throughput(preset, args, args.mfu_steps, global_batch=8, micro_batch=1,
                               val_sequences=1)
                print(f"{preset}: MFU {t['mfu'] * 100:.1f}%", flush=True)
                result["mfu"].append(t)
        else:
            result["mfu_skipped"] = "no CUDA device"
    finally:
        parallel.shutdown()
    result["wall_s"] = time.perf_counter() - t_start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "step_overhead.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
