"""Checkpoints with Megatron's dist_checkpointing: resharding across TP/PP/DP, atomic saves.

A checkpoint is `<ckpt_root>/step_<N>/`. It is written to `step_<N>.tmp/` and renamed only
after every rank finished, then `latest` (a one-line file) is replaced atomically: a crash in
the middle of a save leaves the previous checkpoint as the latest loadable one.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

_STEP_DIR = re.compile(r"^step_(\d+)$")
# The distributed optimizer's canonical format loads under any TP/PP/DP layout.
_OPT_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def step_dir(root: Path, step: int) -> Path:
    """Folder of the checkpoint taken after `step` updates."""
    return Path(root) / f"step_{step:08d}"


def list_checkpoints(root: Path) -> list[int]:
    """Steps of the complete checkpoints under `root`, ascending."""
    if not Path(root).is_dir():
        return []
    return sorted(int(m.group(1)) for p in Path(root).iterdir() if (m := _STEP_DIR.match(p.name)))


def latest_step(root: Path) -> int | None:
    """Step named by `latest`, falling back to the newest complete folder; None if none."""
    latest = Path(root) / "latest"
    if latest.is_file():
        step = int(latest.read_text().strip())
        if step_dir(root, step).is_dir():
            return step
    steps = list_checkpoints(root)
    return steps[-1] if steps else None


def _unwrap(chunk):
    # The DDP wrapper prefixes its state-dict keys with "module."; load and save the model itself.
    return getattr(chunk, "module", chunk)


def _sharded_state(chunks, optimizer, is_loading: bool) -> dict:
    model_sd = {f"chunk{i}": _unwrap(c).sharded_state_dict() for i, c in enumerate(chunks)}
    state = {"model": model_sd}
    if optimizer is not None:
        # Nested per chunk: with virtual stages the chunks' local keys repeat.
        state["optimizer"] = optimizer.sharded_state_dict(
            model_sd, is_loading=is_loading, metadata=_OPT_METADATA
        )
    return state


def _shield_writer_process() -> None:
    """Start dist_checkpointing's long-lived results-queue process with SIGUSR2 ignored.

    The torch_dist writer keeps a multiprocessing Manager (a separate process) for the life of
    the job. SLURM delivers its preemption/timeout signal (USR2) to every process of the job
    step, and USR2's default action kills that Manager, so the next save, the one meant to
    save the preempted run, dies with BrokenPipeError. An ignored signal stays ignored in the
    spawned child, so the Manager survives; our own ranks keep their handler."""
    import signal

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if getattr(filesystem_async, "_results_queue", None) is not None:
        return
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        filesystem_async._get_write_results_queue()
    finally:
        signal.signal(signal.SIGUSR2, previous)


def save(root: Path, step: int, chunks, optimizer, extra: dict, keep: int, protect: set[int] = frozenset()) -> Path:
    """Save model, optimizer and `extra` (plain, picklable) as the checkpoint of `step`.

    All ranks call this. Keeps the `keep` newest checkpoints plus those in `protect`.
    """
    from megatron.core import dist_checkpointing

    root = Path(root)
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # debris of a save that crashed
        tmp.mkdir(parents=True)
    dist.barrier()
    state = _sharded_state(chunks, optimizer, is_loading=False)
    state["extra"] = extra  # not sharded: rank 0 writes it once
    _shield_writer_process()
    dist_checkpointing.save(state, str(tmp))
    dist.barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = root / "latest.tmp"
        pointer.write_text(f"{step}\n")
        os.replace(pointer, root / "latest")
        for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
            if old != step and old not in protect:
                shutil.rmtree(step_dir(root, old), ignore_errors=True)
    dist.barrier()
    return final


def load(root: Path, step: int, chunks, optimizer) -> dict:
    """Load the checkpoint of `step` into `chunks` (and `optimizer`), under the current layout.
    Returns its `extra` dict."""
    from megatron.core import dist_checkpointing

    from .optimizer import prime_adam_state, untie_adam_steps

    path = step_dir(root, step)
    if optimizer is not None:
        prime_adam_state(optimizer)
    template = _sharded_state(chunks, optimizer, is_loading=True)
    template["extra"] = None
    state = dist_checkpointing.load(template, str(path))
    for i, chunk in enumerate(chunks):
        _unwrap(chunk).load_state_dict(state["model"][f"chunk{i}"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
        untie_adam_steps(optimizer)
    return state.get("extra") or {}


def load_model_only(path: Path, chunks) -> None:
    """Load only the weights of a checkpoint folder (e.g. for evaluation or a new job type)."""
    from megatron.core import dist_checkpointing

    template = {"model": {f"chunk{i}": _unwrap(c).sharded_state_dict() for i, c in enumerate(chunks)}}
    state = dist_checkpointing.load(template, str(path), strict="assume_ok_unexpected")
    for i, chunk in enumerate(chunks):
        _unwrap(chunk).load_state_dict(state["model"][f"chunk{i}"])


def rng_state() -> dict:
    """CPU (and CUDA) RNG states, saved so dropout continues its stream after a resume."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state
