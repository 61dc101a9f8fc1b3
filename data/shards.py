"""Tokenizing a large corpus in parallel shards (array tasks), merged into one prepared entry.

The result is the same cache entry `prepare` would build, byte for byte: pass 1 (the
validation split and the tokenizer) runs once in the calling process; pass 2 is split into
contiguous document ranges, each tokenized by its own task into `<entry>/shards/<i>/`; the
shards are then concatenated in order into `train.bin/.idx` and `val_<domain>.bin/.idx` with
Megatron's IndexedDatasetBuilder.add_index. The entry's lock is held throughout, so training
ranks that start meanwhile wait for the finished entry instead of building their own.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from .config import DataConfig
from .prepare import (PreparedData, cache_root, plan_split, token_dtype, tokenize_range,
                      write_manifest)
from .tokenizer import Tokenizer

#: submit(list of (function, args)) -> list of results, in order: runs the shard tasks.
Submit = Callable[[list[tuple[Callable, tuple]]], list]


def shard_bounds(n_docs: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) document ranges of nearly equal size, in corpus order."""
    return [(i * n_docs // shards, (i + 1) * n_docs // shards) for i in range(shards)]


def tokenize_shard(cfg: DataConfig, root: str, index: int, start: int, stop: int) -> dict:
    """One task: tokenize documents [start, stop) into `<root>/shards/<index>/`."""
    root_path = Path(root)
    tokenizer = Tokenizer.load(root_path / "tokenizer.json")
    is_val = np.load(root_path / "shards" / "is_val.npy")
    out = root_path / "shards" / str(index)
    counts = tokenize_range(cfg, tokenizer, is_val, start, stop, out, progress=False)
    (out / "counts.json").write_text(json.dumps(counts))
    return counts


def _merge(root: Path, tokenizer: Tokenizer, shard_counts: list[dict]) -> dict:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    dtype = token_dtype(tokenizer)
    total = {"train_docs": 0, "train_tokens": {}, "val_tokens": {}}
    train = IndexedDatasetBuilder(str(root / "train.bin"), dtype=dtype)
    val: dict[str, IndexedDatasetBuilder] = {}
    for i, counts in enumerate(shard_counts):
        shard = root / "shards" / str(i)
        if counts["train_docs"]:  # an empty shard's index holds nothing to append
            train.add_index(str(shard / "train"))
        for domain in counts["val_tokens"]:
            if domain not in val:
                val[domain] = IndexedDatasetBuilder(str(root / f"val_{domain}.bin"), dtype=dtype)
            val[domain].add_index(str(shard / f"val_{domain}"))
        total["train_docs"] += counts["train_docs"]
        for key in ("train_tokens", "val_tokens"):
            for domain, n in counts[key].items():
                total[key][domain] = total[key].get(domain, 0) + n
    train.finalize(str(root / "train.idx"))
    for domain, builder in val.items():
        builder.finalize(str(root / f"val_{domain}.idx"))
    return total


def prepare_sharded(cfg: DataConfig, val_tokens_per_domain: int, shards: int, submit: Submit,
                    progress: bool = True) -> PreparedData:
    """Build (or find) the prepared entry of `cfg` with pass 2 split over `shards` tasks that
    `submit` runs (local processes, or a SLURM array)."""
    if shards < 1:
        raise ValueError(f"--shards {shards}: give at least 1")
    root = cache_root(cfg, val_tokens_per_domain)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest.exists():
            is_val, tokenizer = plan_split(cfg, root, val_tokens_per_domain, progress)
            shutil.rmtree(root / "shards", ignore_errors=True)  # debris of an interrupted build
            (root / "shards").mkdir()
            np.save(root / "shards" / "is_val.npy", is_val)
            bounds = shard_bounds(len(is_val), min(shards, len(is_val)))
            if progress:
                print(f"[asymptote] tokenizing {len(is_val)} documents in {len(bounds)} shards",
                      flush=True)
            tasks = [(tokenize_shard, (cfg, str(root), i, a, b)) for i, (a, b) in enumerate(bounds)]
            counts = _merge(root, tokenizer, submit(tasks))
            write_manifest(cfg, root, tokenizer, counts, val_tokens_per_domain)
            shutil.rmtree(root / "shards", ignore_errors=True)
    info = json.loads(manifest.read_text())
    return PreparedData(root, Tokenizer.load(root / "tokenizer.json"), info)


def submit_local(workers: int) -> Submit:
    """Run the shard tasks in `workers` local processes."""
    from concurrent.futures import ProcessPoolExecutor

    def submit(tasks):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(fn, *args) for fn, args in tasks]
            return [f.result() for f in futures]

    return submit
