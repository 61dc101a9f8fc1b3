"""Tokenizing a large corpus in parallel shards (array tasks), merged into one prepared entry.

The result is the same cache entry `prepare` would build, byte for byte: pass 1 (the
validation split and the tokenizer) runs once in the calling process; pass 2 is split into
contiguous document ranges, each tokenized by its own task into `<entry>/shards/<i>/`; the
shards are then concatenated in order into `train.bin/.idx` and `val_<domain>.bin/.idx` with
Megatron's IndexedDatasetBuilder.add_index. The entry's lock is held throughout, so training
ranks that start meanwhile wait for the finished entry instead of building their own.

With `data.curate.enabled`, curation's scan stage (filters, normalized hashes, MinHash
signatures: `curate.scan_shard`) runs first as shard tasks of its own through the same `submit`,
writing `<entry>/shards/curate_<i>.npz`; deduplication over all shards and the split run in the
calling process, and the tokenization tasks skip the removed documents (`shards/keep.npy`).
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from .config import DataConfig
from .curate import (CurationPlan, Scan, count_documents, deduplicate, finish, format_report,
                     scan_shard)
from .prepare import (PreparedData, cache_root, check_curation, plan_split, token_dtype,
                      tokenize_range, write_manifest)
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
    keep_path = root_path / "shards" / "keep.npy"  # written when curation removed documents
    keep = np.load(keep_path) if keep_path.exists() else None
    out = root_path / "shards" / str(index)
    counts = tokenize_range(cfg, tokenizer, is_val, start, stop, out, progress=False, keep=keep)
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
    check_curation(cfg)
    root = cache_root(cfg, val_tokens_per_domain)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest.exists():
            shutil.rmtree(root / "shards", ignore_errors=True)  # debris of an interrupted build
            (root / "shards").mkdir()
            curation = _curate_sharded(cfg, root, shards, submit, progress) if cfg.curate.enabled else None
            is_val, tokenizer = plan_split(cfg, root, val_tokens_per_domain, progress, curation)
            np.save(root / "shards" / "is_val.npy", is_val)
            if curation is not None:
                np.save(root / "shards" / "keep.npy", curation.keep)
            bounds = shard_bounds(len(is_val), min(shards, len(is_val)))
            if progress:
                print(f"[asymptote] tokenizing {len(is_val)} documents in {len(bounds)} shards",
                      flush=True)
            tasks = [(tokenize_shard, (cfg, str(root), i, a, b)) for i, (a, b) in enumerate(bounds)]
            counts = _merge(root, tokenizer, submit(tasks))
            write_manifest(cfg, root, tokenizer, counts, val_tokens_per_domain, curation)
            shutil.rmtree(root / "shards", ignore_errors=True)
            if curation is not None and progress:
                print(format_report(curation.report(), curation.seconds), flush=True)
    info = json.loads(manifest.read_text())
    return PreparedData(root, Tokenizer.load(root / "tokenizer.json"), info)


def _curate_sharded(cfg: DataConfig, root: Path, shards: int, submit: Submit,
                    progress: bool) -> CurationPlan:
    """Curation's scan stage (filters, hashes, MinHash signatures) as shard tasks over document
    ranges, then its deduplication over all of them in this process."""
    n_docs = count_documents(cfg)
    if n_docs == 0:
        raise ValueError("the corpus has no non-empty documents; check data.corpus and data.text_key")
    bounds = shard_bounds(n_docs, min(shards, n_docs))
    if progress:
        print(f"[asymptote] curation scan of {n_docs} documents in {len(bounds)} shards", flush=True)
    tasks = [(scan_shard, (cfg, str(root), i, a, b)) for i, (a, b) in enumerate(bounds)]
    sizes = submit(tasks)
    scans = [Scan.load(root / "shards" / f"curate_{i}.npz") for i in range(len(bounds))]
    if [len(s.reason) for s in scans] != [b - a for a, b in bounds] or sizes != [b - a for a, b in bounds]:
        raise ValueError("a curation scan shard covered fewer documents than its range; did the "
                         "corpus change while being prepared?")
    return finish(deduplicate(Scan.concat(scans), cfg.curate))


def submit_local(workers: int) -> Submit:
    """Run the shard tasks in `workers` local processes."""
    from concurrent.futures import ProcessPoolExecutor

    def submit(tasks):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(fn, *args) for fn, args in tasks]
            return [f.result() for f in futures]

    return submit
