"""Checkpoints with Megatron's dist_checkpointing: resharding across TP/PP/DP, atomic saves.

A checkpoint is `<ckpt_root>/step_<N>/`. It is written to `step_<N>.tmp/` and renamed only
after every rank finished, then `latest` (a one-line file) is replaced atomically: a crash in
the middle of a save leaves the previous checkpoint as the latest loadable one.

Besides the (resharding) model and optimizer state, every rank writes its own random-number
state, `step_<N>/rng_rank<r>.pt` (torch CPU and CUDA, numpy, python `random`, and every state of
Megatron's tensor-parallel RNG tracker): dropout differs per TP rank and per data-parallel
replica, so one copy cannot serve all ranks. :func:`load` hands this rank's state back in
`extra["rng"]` and :func:`restore_rng_state` puts it in place; a resume under another layout
(world size, TP, PP, ...) cannot continue those streams: it warns and re-seeds instead.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..atomic import write_text

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
    """Save model, optimizer and `extra` (plain, picklable) as the checkpoint of `step`, and
    this rank's RNG state (:func:`rng_state`, taken on entry) as `rng_rank<r>.pt`.

    All ranks call this. `extra` is common state, written once and the same on every rank, so an
    `extra["rng"]` is left out of it (RNG states differ per rank; :func:`load` returns this
    rank's own in its place). Keeps the `keep` newest checkpoints plus those in `protect`.
    """
    from megatron.core import dist_checkpointing

    root = Path(root)
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    rank = dist.get_rank()
    rng = rng_state()  # before anything else runs: the state the next step starts from
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # debris of a save that crashed
        tmp.mkdir(parents=True)
    dist.barrier()
    state = _sharded_state(chunks, optimizer, is_loading=False)
    # Not sharded: rank 0 writes it once (dist_checkpointing checks it is equal on all ranks).
    state["extra"] = {k: v for k, v in extra.items() if k != "rng"}
    _shield_writer_process()
    dist_checkpointing.save(state, str(tmp))
    torch.save(rng, tmp / rng_file(rank))  # every rank its own (the folder is still private)
    dist.barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a folder: renamed whole, after every rank wrote its part
        write_text(root / "latest", f"{step}\n", fsync=True)
        for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
            if old != step and old not in protect:
                shutil.rmtree(step_dir(root, old), ignore_errors=True)
    dist.barrier()
    return final


def load(root: Path, step: int, chunks, optimizer) -> dict:
    """Load the checkpoint of `step` into `chunks` (and `optimizer`), under the current layout.
    Returns its `extra` dict, with `extra["rng"]` set to THIS rank's saved RNG state when the
    checkpoint has one for this rank, absent when it has none (a job with more ranks than the
    one that saved it). Pass it on as `restore_rng_state(extra.get("rng"), seed)`: RNGs are not
    touched here. Checkpoints from before per-rank states keep the `extra["rng"]` they saved
    (`{"cpu": ...}`, rank 0's)."""
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
    extra = dict(state.get("extra") or {})
    own = path / rng_file(dist.get_rank() if dist.is_initialized() else 0)
    if own.is_file():
        extra["rng"] = torch.load(own, map_location="cpu", weights_only=True)
    return extra


def load_model_only(path: Path, chunks) -> None:
    """Load only the weights of a checkpoint folder (e.g. for evaluation or a new job type)."""
    from megatron.core import dist_checkpointing

    template = {"model": {f"chunk{i}": _unwrap(c).sharded_state_dict() for i, c in enumerate(chunks)}}
    state = dist_checkpointing.load(template, str(path), strict="assume_ok_unexpected")
    for i, chunk in enumerate(chunks):
        _unwrap(chunk).load_state_dict(state["model"][f"chunk{i}"])


def rng_file(rank: int) -> str:
    """Name of the file holding global rank `rank`'s RNG state inside a checkpoint folder."""
    return f"rng_rank{rank}.pt"


def _rng_tracker():
    """Megatron's (model-parallel) CUDA RNG tracker; on CPU its states are CPU-generator states
    (models/cpu_compat.py)."""
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    return get_cuda_rng_tracker()


def _layout() -> dict:
    """This process's place in the job: global rank and the sizes that decide which RNG stream
    each rank draws (dropout seeds differ per TP rank; the default stream per model-parallel
    group)."""
    from megatron.core import parallel_state as ps

    on = dist.is_available() and dist.is_initialized()
    layout = {"rank": dist.get_rank() if on else 0, "world": dist.get_world_size() if on else 1}
    if ps.model_parallel_is_initialized():
        layout.update(tp=ps.get_tensor_model_parallel_world_size(),
                      pp=ps.get_pipeline_model_parallel_world_size(),
                      cp=ps.get_context_parallel_world_size(),
                      ep=ps.get_expert_model_parallel_world_size())
    return layout


def _copy_state(value):
    # A graph-safe tracker holds torch.Generator objects: keep their state tensor.
    if isinstance(value, torch.Generator):
        return value.get_state()
    return value.clone()


def rng_state() -> dict:
    """Every random-number state of THIS rank, so dropout continues its streams after a resume:
    torch CPU, CUDA (when available), numpy's and python's global generators, and every named
    state of Megatron's RNG tracker (`tracker.get_states()`), plus the layout it belongs to.
    Only tensors and plain Python values (loadable with `torch.load(weights_only=True)`)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "cpu": torch.get_rng_state(),
        "numpy": {"name": name, "key": torch.from_numpy(np.asarray(key, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
        "tracker": {k: _copy_state(v) for k, v in _rng_tracker().get_states().items()},
        "layout": _layout(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def reseed_rng(seed: int) -> None:
    """Seed every generator `rng_state` covers from `seed` (the tracker as Megatron seeds it at
    start-up: per TP rank)."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if ps.model_parallel_is_initialized():
        model_parallel_cuda_manual_seed(seed)


def _warn(message: str) -> None:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def restore_rng_state(state: dict | None, seed: int | None = None) -> bool:
    """Put this rank's RNGs back to `state` (what :func:`rng_state` returned; after a resume
    `extra["rng"]` from :func:`load`), including `tracker.set_states()`. Returns True when the
    state was restored.

    When it cannot be (no state for this rank, or one saved under another layout: world size,
    TP, PP, CP, EP or rank differ), warns and returns False, after re-seeding every generator
    from `seed` when given (e.g. the run's seed plus the resumed step, so the masks do not repeat
    those of the first steps). A state from a checkpoint older than per-rank states (only
    `{"cpu": ...}`, rank 0's) restores the CPU generator, as before, and returns True."""
    if state is None:
        reason = "the checkpoint holds no RNG state for this rank"
    elif "layout" in state and state["layout"] != _layout():
        saved, now = state["layout"], _layout()
        reason = (f"the checkpoint's RNG states were saved under another layout ({_show(saved)}; "
                  f"now {_show(now)})")
    else:
        if "layout" not in state:
            _warn("the checkpoint predates per-rank RNG states: only the CPU generator is "
                  "restored (rank 0's, on every rank); dropout after the resume will not match an "
                  "uninterrupted run step for step")
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
        if "numpy" in state:
            n = state["numpy"]
            np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"],
                                 n["has_gauss"], n["gauss"]))
        if "python" in state:
            random.setstate(_as_tuple(state["python"]))
        if "tracker" in state:
            tracker = _rng_tracker()
            current = tracker.get_states()
            states = {}
            for name, value in state["tracker"].items():
                if isinstance(current.get(name), torch.Generator):
                    current[name].set_state(value)
                    states[name] = current[name]
                else:
                    states[name] = value.clone()  # the tracker keeps (and updates) this dict
            tracker.set_states(states)
        return True
    then = f"re-seeding from {seed}" if seed is not None else "keeping the current RNG state"
    _warn(f"{reason}: dropout cannot continue its exact random streams, {then}; the resumed run "
          "will not match an uninterrupted one step for step")
    if seed is not None:
        reseed_rng(seed)
    return False


def _show(layout: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in layout.items())


def _as_tuple(value):
    # random.setstate wants (version, tuple_of_ints, gauss): undo any list conversion.
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
