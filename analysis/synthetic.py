"""Synthetic sweeps in the exact on-disk format of real runs (``run.json`` + TensorBoard events).

Used by the tests, the benchmarks and the documentation to exercise the analysis without a
cluster: losses come from a known scaling law plus a hyper-parameter "bowl" and noise, so every
fitted number can be compared with the truth. Event records are serialised with TensorBoard's own
``event_pb2`` (the bytes ``SummaryWriter.add_scalar`` writes) and framed with correct checksums.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .tfrecord import frame_records

DEFAULT_TAGS = ("train/loss", "val/loss", "train/lr", "perf/tokens_per_s")


def scalar_payloads(tag: str, steps: Sequence[int], values: Sequence[float], wall_times: Sequence[float]) -> list[bytes]:
    """Serialised ``Event`` records holding one ``simple_value`` scalar each."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    out = []
    for s, v, w in zip(steps, values, wall_times):
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(v))])
        out.append(event_pb2.Event(wall_time=float(w), step=int(s), summary=summary).SerializeToString())
    return out


def header_payloads(wall_time: float, purge_step: int | None = None) -> list[bytes]:
    """The records a writer puts first: the file version, and on resume a ``SessionLog.START``
    at ``purge_step`` (what ``SummaryWriter(purge_step=...)`` writes)."""
    from tensorboard.compat.proto import event_pb2

    out = [event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2").SerializeToString()]
    if purge_step is not None:
        out.append(event_pb2.Event(wall_time=wall_time, step=purge_step, file_version="brain.Event:2").SerializeToString())
        start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
        out.append(event_pb2.Event(wall_time=wall_time, step=purge_step, session_log=start).SerializeToString())
    return out


def event_file_name(wall_time: float, host: str = "synthetic", pid: int = 1, index: int = 0) -> str:
    """A TensorBoard-style event file name; names sort in creation order like real ones."""
    return f"events.out.tfevents.{int(wall_time):010d}.{host}.{pid}.{index}"


def write_event_file(path: str | os.PathLike, payloads: Iterable[bytes]) -> Path:
    """Write framed records to ``path`` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(frame_records(list(payloads)))
    return path


def interleave(curves: dict[str, tuple[np.ndarray, np.ndarray]], t0: float, seconds_per_step: float = 1.0) -> list[bytes]:
    """Records for several tags in training order (all tags of step s before step s + 1)."""
    per_tag = []
    for tag, (steps, values) in curves.items():
        steps = np.asarray(steps, dtype=np.int64)
        per_tag.append((steps, scalar_payloads(tag, steps, values, t0 + steps * seconds_per_step)))
    order = sorted(
        ((int(s), i, j) for i, (steps, _) in enumerate(per_tag) for j, s in enumerate(steps.tolist())),
    )
    return [per_tag[i][1][j] for _, i, j in order]


@dataclass
class SweepSpec:
    """What :func:`make_sweep` generates; the defaults give a small grid that runs in seconds."""

    sizes: Sequence[int] = (20_000_000, 60_000_000, 150_000_000, 400_000_000)
    """Total parameter counts N of the model sizes."""
    seed_tokens: Sequence[int] = (200_000_000,)
    """Seed-token budgets D."""
    lrs: Sequence[float] = (1e-3, 3e-3, 1e-2)
    """Learning-rate grid."""
    weight_decays: Sequence[float] = (0.1, 0.8, 3.2)
    """Weight-decay grid."""
    epochs: Sequence[int] = (4, 8, 16)
    """Epoch grid."""
    seeds: Sequence[int] = (0,)
    """Training seeds per configuration."""
    E: float = 1.8
    """True asymptote of the best loss."""
    A: float = 400.0
    """True N coefficient."""
    alpha: float = 0.34
    """True N exponent."""
    B: float = 2000.0
    """True D coefficient (Chinchilla-style term)."""
    beta: float = 0.38
    """True D exponent."""
    bowl: float = 0.02
    """Loss added per squared grid step away from the optimum (lr, wd, epochs in log2 units)."""
    optimum: Callable[[int], tuple[float, float, float]] | None = None
    """(lr, wd, epochs) optimum of size N; default: the middle of each grid."""
    noise: float = 0.002
    """Standard deviation of the multiplicative noise on final losses."""
    steps: int = 100
    """Logged steps per run."""
    eval_every: int = 10
    """Validation-loss interval in steps."""
    tags: Sequence[str] = DEFAULT_TAGS
    """Scalar tags written every step (``val/*`` ones every ``eval_every`` steps)."""
    domains: Sequence[str] = ()
    """Extra ``val/<domain>/loss`` tags."""
    failed: int = 0
    """How many runs (chosen at random) end as failed without a final loss."""
    seed: int = 0
    """Random seed of the noise and of the failed-run choice."""
    extra_config: dict = field(default_factory=dict)
    """Merged into every run's ``config`` (e.g. a baseline marker)."""

    def best_loss(self, n: float, d: float) -> float:
        """Noise-free loss at the hyper-parameter optimum: E + A/N^alpha + B/D^beta."""
        return self.E + self.A / n**self.alpha + self.B / d**self.beta


def _grid_index(grid: Sequence[float], value: float) -> float:
    """Fractional position of ``value`` on a log2 scale relative to ``grid``'s first element."""
    return math.log2(value) - math.log2(grid[0])


def run_loss(spec: SweepSpec, n: int, d: int, lr: float, wd: float, ep: int) -> float:
    """Noise-free final loss of one configuration."""
    opt = spec.optimum(n) if spec.optimum else (
        spec.lrs[len(spec.lrs) // 2], spec.weight_decays[len(spec.weight_decays) // 2], spec.epochs[len(spec.epochs) // 2]
    )
    dist2 = sum((math.log2(v) - math.log2(o)) ** 2 for v, o in zip((lr, wd, ep), opt))
    return spec.best_loss(n, d) + spec.bowl * dist2


def run_json(name: str, n: int, d: int, lr: float, wd: float, ep: int, seed: int, steps: int, status: str,
             final: dict | None, extra_config: dict | None = None, job: str = "pretrain") -> dict:
    """A ``run.json`` document in the format the training code writes."""
    hidden = int(round((n / 12 / 8) ** 0.5 / 64)) * 64 or 64
    config = {
        "model": {"name": f"{n // 1_000_000}M", "hidden": hidden, "layers": 8, "heads": max(1, hidden // 64),
                  "kv_heads": max(1, hidden // 64), "ffn": int(3.5 * hidden), "seq_len": 4096, "vocab_size": 128256},
        "data": {"seed_tokens": d},
        "train": {"epochs": ep, "global_batch": 64, "micro_batch": 8, "eval_every": 10, "ckpt_every": 100},
        "optim": {"lr": lr, "weight_decay": wd},
        "seed": {"train": seed, "data": seed},
        "parallel": {"tp": 1, "pp": 1, "vpp": 1, "dp": 1},
    }
    for key, value in (extra_config or {}).items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return {
        "name": name, "status": status, "error": "Traceback: synthetic failure" if status == "failed" else None,
        "job": job, "config": config, "params": int(n), "non_embedding_params": int(n * 0.8),
        "flops_per_token": 6.0 * n, "seed_tokens": int(d), "epochs": int(ep), "steps": int(steps),
        "step": int(steps if status == "done" else steps // 2), "final": final or {},
    }


def write_run(run_dir: str | os.PathLike, meta: dict, curves: dict[str, tuple[np.ndarray, np.ndarray]],
              t0: float | None = None, resume_at: int | None = None, crash_at: int | None = None) -> Path:
    """Write one run folder: ``run.json`` and ``tb/`` events.

    With ``resume_at`` the events are split into two files like a requeued job: the first holds
    everything up to ``crash_at`` (default: the last step) with values shifted by +1 after
    ``resume_at`` (the orphaned steps a resume recomputes), the second starts with a
    ``SessionLog.START`` at ``resume_at`` and holds the true values from there on.
    """
    run_dir = Path(run_dir)
    tb = run_dir / "tb"
    tb.mkdir(parents=True, exist_ok=True)
    t0 = time.time() if t0 is None else t0
    if resume_at is None:
        write_event_file(tb / event_file_name(t0), header_payloads(t0) + interleave(curves, t0))
    else:
        crash_at = crash_at if crash_at is not None else max(int(np.max(s)) for s, _ in curves.values())
        first = {}
        second = {}
        for tag, (steps, values) in curves.items():
            steps = np.asarray(steps)
            values = np.asarray(values, dtype=np.float64)
            pre = steps <= crash_at
            stale = np.where(steps >= resume_at, values + 1.0, values)  # orphaned, to be purged
            first[tag] = (steps[pre], stale[pre])
            post = steps >= resume_at
            second[tag] = (steps[post], values[post])
        write_event_file(tb / event_file_name(t0), header_payloads(t0) + interleave(first, t0))
        t1 = t0 + 10_000
        write_event_file(tb / event_file_name(t1, index=1), header_payloads(t1, purge_step=resume_at) + interleave(second, t0))
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
    return run_dir


def curves_for(spec: SweepSpec, final_loss: float, rng: np.random.Generator, lr: float, n: int) -> dict:
    """Loss curves that decay to ``final_loss``, plus learning rate and throughput."""
    steps = np.arange(1, spec.steps + 1)
    frac = steps / spec.steps
    shape = final_loss + (10.0 - final_loss) * np.exp(-6 * frac) * (1 - frac) + 0.02 * (1 - frac)
    curves = {}
    val_steps = steps[(steps % spec.eval_every == 0) | (steps == spec.steps)]
    for tag in spec.tags:
        if tag == "train/loss":
            curves[tag] = (steps, shape * (1 - 0.01) + rng.normal(0, 0.01, steps.size))
        elif tag == "val/loss":
            vals = np.interp(val_steps, steps, shape)
            vals[-1] = final_loss
            curves[tag] = (val_steps, vals)
        elif tag == "train/lr":
            curves[tag] = (steps, lr * 0.5 * (1 + np.cos(np.pi * frac)))
        elif tag == "perf/tokens_per_s":
            curves[tag] = (steps, 1e12 / n * (1 + rng.normal(0, 0.02, steps.size)))
        else:
            curves[tag] = (steps, rng.normal(0, 1, steps.size))
    for dom in spec.domains:
        vals = np.interp(val_steps, steps, shape) + 0.1
        vals[-1] = final_loss + 0.1
        curves[f"val/{dom}/loss"] = (val_steps, vals)
    return curves


def make_sweep(root: str | os.PathLike, spec: SweepSpec | None = None, resume: Sequence[str] = ()) -> dict:
    """Write a full synthetic sweep under ``root``; returns {"runs": [...], "failed": [...], "spec": spec}.

    Every combination of size x seed tokens x lr x wd x epochs x seed becomes one run folder named
    by its configuration; ``resume`` lists run names written as two event files (requeue+resume).
    """
    spec = spec or SweepSpec()
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    combos = list(itertools.product(spec.sizes, spec.seed_tokens, spec.lrs, spec.weight_decays, spec.epochs, spec.seeds))
    failed = set(rng.choice(len(combos), size=spec.failed, replace=False).tolist()) if spec.failed else set()
    names, failed_names = [], []
    t0 = 1_700_000_000.0
    for i, (n, d, lr, wd, ep, seed) in enumerate(combos):
        name = f"N{n}_D{d}_lr{lr:g}_wd{wd:g}_ep{ep}_s{seed}"
        loss = run_loss(spec, n, d, lr, wd, ep) * (1 + rng.normal(0, spec.noise))
        curves = curves_for(spec, loss, rng, lr, n)
        if i in failed:
            half = {t: (s[s <= spec.steps // 2], v[s <= spec.steps // 2]) for t, (s, v) in curves.items()}
            meta = run_json(name, n, d, lr, wd, ep, seed, spec.steps, "failed", None, spec.extra_config)
            write_run(root / name, meta, half, t0=t0 + i)
            failed_names.append(name)
            continue
        final = {"val_loss": float(np.float32(loss)), "train_loss": float(curves["train/loss"][1][-1])}
        for dom in spec.domains:
            final[f"val/{dom}/loss"] = float(np.float32(loss + 0.1))
        meta = run_json(name, n, d, lr, wd, ep, seed, spec.steps, "done", final, spec.extra_config)
        write_run(root / name, meta, curves, t0=t0 + i, resume_at=(spec.steps // 2 if name in resume else None))
        names.append(name)
    return {"runs": names, "failed": failed_names, "spec": spec}
