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

Every checkpoint also carries `step_<N>/checksums.json`: the size and CRC-32C of every file in
the folder (all ranks' files), computed after every rank finished writing and before the rename,
the work spread over the ranks. :func:`verify` checks a folder against it and names what is
wrong (missing, truncated or altered files, an unreadable manifest); :func:`choose_resume`,
called by every rank of a restarting job, picks the newest intact checkpoint, sets damaged newer
ones aside as `step_<N>.damaged` and fails, naming the damaged files, only when none is intact.
Checkpoints written before checksums (no `checksums.json`, and older than the first one with it,
which `<ckpt_root>/checksummed` records) are loaded unverified, as before.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..atomic import write_text
from .parallel import global_rank

_STEP_DIR = re.compile(r"^step_(\d+)$")
CHECKSUMS = "checksums.json"
"""Manifest inside every checkpoint folder:
{"algorithm", "step", "files": {name: {size, crc32c}}, "files_crc32c"}."""
MARKER = "checksummed"
"""File in the checkpoint root: the first step saved with a manifest. A checkpoint at or after it
without a manifest lost it (damaged); one before it predates checksums (loaded unverified)."""
_CHUNK = 8 << 20
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
    # Every rank's files are complete now: checksum them all (the work spread over the ranks)
    # into the folder before it is renamed, so a step_<N> never exists without its manifest.
    write_checksums(tmp, step)
    if rank == 0:
        if not (root / MARKER).is_file():
            write_text(root / MARKER, f"{step}\n", fsync=True)
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
    own = path / rng_file(global_rank())
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


# ----------------------------------------------------------------- integrity
class CheckpointDamaged(RuntimeError):
    """No intact checkpoint to resume from: every one is damaged (see `damaged`)."""

    def __init__(self, root: Path, damaged: list["Verdict"]):
        self.root, self.damaged = Path(root), damaged
        lines = "\n".join(f"  step {v.step}: {v.describe()}" for v in damaged)
        super().__init__(
            f"no intact checkpoint to resume from in {self.root}: every checkpoint is "
            f"damaged:\n{lines}\nRestore these files (e.g. from a copy of the run), or move the "
            "checkpoints folder away to train the run again from step 0; run.json keeps the "
            "progress recorded so far")


@dataclass
class Verdict:
    """What :func:`verify` found in one checkpoint folder."""

    step: int | None
    path: Path
    checked: bool
    """False for a checkpoint written before checksums: nothing could be verified."""
    problems: dict[str, str] = field(default_factory=dict)
    """File (relative to the folder) -> what is wrong with it; empty when intact."""
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """The damaged files and what is wrong, e.g. `step_00000008/__0_0.distcp truncated
        (1000 of 3746782 bytes)`."""
        return "; ".join(f"{self.path.name}/{name} {why}" for name, why in self.problems.items())


@dataclass
class Resume:
    """The checkpoint a restart loads (:func:`choose_resume`), the same on every rank."""

    step: int | None
    """Step to load; None when there is no checkpoint at all."""
    verdict: Verdict | None = None
    damaged: list[Verdict] = field(default_factory=list)
    """Newer checkpoints found damaged, newest first (skipped)."""
    set_aside: dict[int, str | None] = field(default_factory=dict)
    """Damaged step -> the folder name it was moved to (None: it could not be moved)."""

    def warnings(self) -> list[dict]:
        """One record per damaged checkpoint skipped: {time, step, damaged, fallback, moved_to,
        message}."""
        out = []
        for v in self.damaged:
            moved = self.set_aside.get(v.step)
            kept = (f"; the damaged folder is kept as {moved} (delete it once inspected)"
                    if moved else "")
            out.append({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "step": v.step,
                "damaged": dict(v.problems), "fallback": self.step, "moved_to": moved,
                "message": (f"checkpoint step {v.step} in {v.path.parent} is damaged: "
                            f"{v.describe()}; resuming from step {self.step} instead, the newest "
                            f"intact checkpoint{kept}"),
            })
        return out


def _collective() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _from_rank0(obj):
    """`obj` as rank 0 holds it, on every rank (a collective when several ranks run)."""
    if not _collective():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


_OWNER = re.compile(r"^__(\d+)_\d+\.distcp$|^rng_rank(\d+)\.pt$")


def _shares(names: list[str], world: int) -> list[list[str]]:
    """Split files over `world` ranks: a rank's own shard and RNG files to that rank (after a
    save they are still in its page cache), the others round robin."""
    shares: list[list[str]] = [[] for _ in range(world)]
    others = 0
    for name in names:
        m = _OWNER.match(name)
        if m:
            shares[int(m.group(1) or m.group(2)) % world].append(name)
        else:
            shares[others % world].append(name)
            others += 1
    return shares


def _spread(names: list[str], fn) -> dict:
    """{name: fn(name)} for all of `names` (the same list on every rank): each rank computes its
    share, and every rank gets every result (a collective when several ranks run)."""
    if not _collective():
        return {n: fn(n) for n in names}
    world = dist.get_world_size()
    mine = {n: fn(n) for n in _shares(names, world)[dist.get_rank()]}
    parts: list = [None] * world
    dist.all_gather_object(parts, mine)
    return {k: v for part in parts for k, v in part.items()}


def file_crc32c(path: Path) -> tuple[int, str]:
    """(size in bytes, CRC-32C as 8 hex digits) of a file, read in 8 MiB chunks."""
    import google_crc32c

    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = google_crc32c.extend(crc, chunk)
            size += len(chunk)
    return size, f"{crc:08x}"


def _measure(folder: Path):
    def one(name: str) -> dict:
        try:
            size, crc = file_crc32c(folder / name)
        except FileNotFoundError:
            return {"missing": True}
        except OSError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"size": size, "crc32c": crc}
    return one


def _files_crc(files: dict) -> str:
    """CRC-32C of the manifest's own file table: a flipped byte in checksums.json is caught too."""
    import google_crc32c

    return f"{google_crc32c.value(json.dumps(files, sort_keys=True).encode()):08x}"


def write_checksums(folder: Path, step: int | None = None) -> dict:
    """Write `folder/checksums.json`: size and CRC-32C of every file under `folder` (all ranks'
    files). Called by every rank once all of them finished writing (after a barrier); each rank
    reads its share of the files, rank 0 writes the manifest. Returns the manifest."""
    folder = Path(folder)
    names = None
    if global_rank() == 0:
        names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file() and p.name != CHECKSUMS)
    names = _from_rank0(names)
    found = _spread(names, _measure(folder))
    bad = {n: r for n, r in found.items() if "size" not in r}
    if bad:
        raise OSError(f"cannot checksum the checkpoint being saved in {folder}: {bad}")
    files = {n: found[n] for n in names}
    manifest = {"algorithm": "crc32c", "step": step, "files": files,
                "files_crc32c": _files_crc(files)}
    if global_rank() == 0:
        write_text(folder / CHECKSUMS, json.dumps(manifest, indent=1) + "\n", fsync=True)
    return manifest


def expects_checksums(root: Path, step: int) -> bool:
    """Whether the checkpoint of `step` must have a manifest: it is at or after the first step
    saved with one (`<root>/checksummed`), or an older checkpoint of the run has one."""
    root = Path(root)
    try:
        if step >= int((root / MARKER).read_text().strip()):
            return True
    except (OSError, ValueError):
        pass
    return any((step_dir(root, s) / CHECKSUMS).is_file()
               for s in list_checkpoints(root) if s < step)


def _plan(path: Path, expect: bool | None) -> dict:
    """Rank 0's reading of a folder's manifest: {"files": ...}, {"legacy": True} or
    {"problem": (file, what)}."""
    if not path.is_dir():
        return {"problem": (".", "missing (no such folder)")}
    try:
        text = (path / CHECKSUMS).read_text()
    except FileNotFoundError:
        step = _STEP_DIR.match(path.name)
        if expect is None:
            expect = bool(step) and expects_checksums(path.parent, int(step.group(1)))
        if expect:
            return {"problem": (CHECKSUMS, "missing (this run writes checksums with every "
                                           "checkpoint)")}
        return {"legacy": True}
    except (OSError, UnicodeDecodeError) as exc:
        return {"problem": (CHECKSUMS, f"unreadable ({type(exc).__name__})")}
    try:
        manifest = json.loads(text)
        files = manifest["files"]
        ok = all(isinstance(v["size"], int) and isinstance(v["crc32c"], str)
                 for v in files.values())
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok or manifest.get("algorithm") != "crc32c":
        return {"problem": (CHECKSUMS, "unreadable (not a checksum manifest)")}
    if manifest.get("files_crc32c") != _files_crc(files):
        return {"problem": (CHECKSUMS, "altered (its own checksum does not match)")}
    step = _STEP_DIR.match(path.name)
    if step and manifest.get("step") is not None and manifest["step"] != int(step.group(1)):
        return {"problem": (CHECKSUMS, f"records step {manifest['step']}, not this folder's")}
    return {"files": files}


def verify(path: Path, expect_checksums: bool | None = None) -> Verdict:
    """Check a checkpoint folder against its `checksums.json`: every file listed is present,
    has its size and its CRC-32C. A folder without a manifest is accepted unchecked
    (`checked=False`) when it predates checksums, damaged when it should have one
    (`expect_checksums`; None: decided from the checkpoint root, :func:`expects_checksums`).

    A collective when torch.distributed runs several ranks: every rank calls it, each reads a
    share of the files, and all get the same verdict."""
    path = Path(path)
    m = _STEP_DIR.match(path.name)
    step = int(m.group(1)) if m else None
    t0 = time.perf_counter()
    plan = _from_rank0(_plan(path, expect_checksums) if global_rank() == 0 else None)
    if "problem" in plan:
        name, why = plan["problem"]
        return Verdict(step, path, True, {name: why})
    if plan.get("legacy"):
        return Verdict(step, path, False)
    files = plan["files"]
    found = _spread(sorted(files), _measure(path))
    problems = {}
    for name in sorted(files):
        want, have = files[name], found[name]
        if have.get("missing"):
            problems[name] = "missing"
        elif "error" in have:
            problems[name] = f"unreadable ({have['error']})"
        elif have["size"] < want["size"]:
            problems[name] = f"truncated ({have['size']} of {want['size']} bytes)"
        elif have["size"] > want["size"]:
            problems[name] = f"has {have['size']} bytes, {want['size']} were written"
        elif have["crc32c"] != want["crc32c"]:
            problems[name] = (f"altered (CRC-32C {have['crc32c']}, {want['crc32c']} when "
                              "written)")
    return Verdict(step, path, True, problems, files=len(files),
                   bytes=sum(f["size"] for f in files.values()),
                   seconds=time.perf_counter() - t0)


def _set_aside(path: Path) -> str | None:
    """Rename a damaged checkpoint folder out of the way (`step_<N>.damaged`, kept for
    inspection); the folder name, or None when it could not be moved."""
    target = path.with_name(path.name + ".damaged")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged{n}")
        n += 1
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target.name


def choose_resume(root: Path) -> Resume:
    """The checkpoint a restart loads, called by every rank (all get the same answer): the
    newest that :func:`verify` finds intact (or that predates checksums). Damaged newer ones are
    skipped, renamed to `step_<N>.damaged` and `latest` is pointed at the chosen step (so they
    are neither counted by `keep` nor found again); :meth:`Resume.warnings` describes them.
    Raises :class:`CheckpointDamaged`, naming every damaged file, when checkpoints exist but none
    is intact."""
    root = Path(root)
    steps = _from_rank0(list_checkpoints(root) if global_rank() == 0 else None)
    damaged, chosen = [], None
    for step in reversed(steps):
        verdict = verify(step_dir(root, step))
        if verdict.intact:
            chosen = verdict
            break
        damaged.append(verdict)
    if chosen is None:
        if damaged:
            raise CheckpointDamaged(root, damaged)
        return Resume(None)
    moved: dict = {}
    if damaged:
        if global_rank() == 0:
            moved = {v.step: _set_aside(v.path) for v in damaged}
            write_text(root / "latest", f"{chosen.step}\n", fsync=True)
        moved = _from_rank0(moved)  # also: no rank reads the folder before rank 0 is done
    return Resume(chosen.step, chosen, damaged, moved)


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
    if global_rank() == 0:
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
