"""`job=generate`: a teacher (one run, or an ensemble combined at every step) writes synthetic
sequences as a Megatron indexed dataset, one shard per array task, with its provenance.

    asymptote-train -m job=generate generate.teacher=[runs/a,runs/b,runs/c] \\
        generate.sequences=4096 generate.shards=4 generate.shard=0,1,2,3

Each sequence starts at a document boundary (EOD) and is sampled until EOD or
`generate.length` new tokens; it is stored as one document ending in EOD. Shard i holds
sequences i, i + shards, ... and samples with seed (generate.seed, i), so shards are
independent and a resubmitted shard rewrites exactly the same file. Output folder:
`shard_00000.bin/.idx` + `shard_00000.json` (provenance) per shard, `tokenizer.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np


def output_dir(cfg) -> Path:
    """generate.output, or <out>/generate-<hash of teacher and sampling> (shards excluded)."""
    g = cfg.generate
    if g.output:
        return Path(g.output).expanduser()
    key = [sorted(str(Path(t).expanduser().resolve()) for t in g.teacher), g.combine,
           g.sequences, g.length, g.temperature, g.top_k, g.top_p, g.seed, g.shards]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:8]
    return Path(cfg.out).expanduser() / f"generate-K{len(g.teacher)}-{digest}"


def _check(cfg) -> None:
    from ..evals.ensemble import check_members
    from .validate import ConfigError

    g = cfg.generate
    if not g.teacher:
        raise ConfigError("job=generate needs generate.teacher=[<run folder>, ...]")
    if not 0 <= g.shard < g.shards:
        raise ConfigError(f"generate.shard={g.shard} must be in 0..generate.shards-1="
                          f"{g.shards - 1}")
    if g.sequences < 1:
        raise ConfigError(f"generate.sequences={g.sequences} must be >= 1")
    if cfg.parallel.pp != 1:
        raise ConfigError("job=generate runs without pipeline stages: set parallel.pp=1")
    check_members(g.teacher)


def shard_prefix(folder: Path, shard: int) -> Path:
    return folder / f"shard_{shard:05d}"


def run_generate(cfg) -> dict:
    """Generate this task's shard (every rank runs the teacher; tp rank 0 writes)."""
    import torch.distributed as dist
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from ..models import parallel
    from ..models.config import ParallelConfig
    from ..models.generate import generate
    from ..models.inference import ensure_distributed, load_run

    _check(cfg)
    g = cfg.generate
    ensure_distributed(ParallelConfig(tp=cfg.parallel.tp, pp=1, backend=cfg.parallel.backend))
    try:
        teachers = [load_run(t) for t in g.teacher]
        tok = teachers[0].tokenizer
        length = g.length or min(t.cfg.model.seq_len for t in teachers) - 1
        mine = list(range(g.shard, g.sequences, g.shards))
        t0 = time.perf_counter()
        new = generate(teachers, [[tok.eod]] * len(mine), length, temperature=g.temperature,
                       top_k=g.top_k, top_p=g.top_p, seed=g.seed * 1_000_003 + g.shard,
                       stop=[tok.eod], use_cache=g.use_cache, combine=g.combine,
                       batch_size=g.batch)
        seconds = time.perf_counter() - t0
        generated = sum(len(x) for x in new)
        result = {"sequences": len(mine), "tokens": generated,
                  "tokens_per_s": generated / max(seconds, 1e-9), "seconds": seconds}
        if dist.is_initialized() and dist.get_rank() != 0:
            return result
        folder = output_dir(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        own_tok = Path(g.teacher[0]).expanduser() / "tokenizer.json"
        if own_tok.is_file() and not (folder / "tokenizer.json").exists():
            shutil.copyfile(own_tok, folder / "tokenizer.json")
        prefix = shard_prefix(folder, g.shard)
        dtype = np.uint16 if teachers[0].vocab < 65500 else np.int32
        tmp = prefix.with_name(prefix.name + f".tmp{os.getpid()}")
        builder = IndexedDatasetBuilder(str(tmp) + ".bin", dtype=dtype)
        for seq in new:
            doc = seq if seq and seq[-1] == tok.eod else seq + [tok.eod]
            builder.add_document(np.asarray(doc, dtype=dtype), [len(doc)])
        builder.finalize(str(tmp) + ".idx")
        os.replace(str(tmp) + ".bin", str(prefix) + ".bin")
        os.replace(str(tmp) + ".idx", str(prefix) + ".idx")
        provenance = {
            "job": "generate", "shard": g.shard, "shards": g.shards,
            "sequence_ids": [mine[0], mine[-1], g.shards] if mine else [],
            "teacher": [{"run": str(t.run_dir.resolve()), "step": t.step,
                         "name": t.record.get("name"), "params": t.record.get("params")}
                        for t in teachers],
            "combine": g.combine, "tokenizer_sha": teachers[0].tokenizer_id,
            "vocab": teachers[0].vocab, "eod": tok.eod,
            "sampling": {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p,
                         "seed": g.seed, "shard_seed": g.seed * 1_000_003 + g.shard,
                         "max_new_tokens": length, "prompt": "eod"},
            "use_cache": g.use_cache, "layout": {"tp": cfg.parallel.tp},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **result,
        }
        (folder / f"{prefix.name}.json").write_text(json.dumps(provenance, indent=2))
        result["out"] = str(folder)
        print(f"[asymptote] generate shard {g.shard}/{g.shards}: {len(mine)} sequences, "
              f"{generated} tokens, {result['tokens_per_s']:.0f} tokens/s -> {prefix}.bin",
              flush=True)
        return result
    finally:
        parallel.shutdown()


def load_synthetic(folders: list[str], tokenizer_sha: str | None = None) -> np.ndarray:
    """All documents of the generated datasets in `folders`, concatenated (one token stream,
    documents separated by their EOD). Checks every shard's tokenizer against `tokenizer_sha`."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    parts = []
    for folder in folders:
        folder = Path(folder).expanduser()
        shards = sorted(folder.glob("shard_*.idx"))
        if not shards:
            raise FileNotFoundError(f"{folder} holds no generated shard (shard_*.idx); run "
                                    "job=generate with generate.output there first")
        for idx in shards:
            meta = json.loads(idx.with_suffix(".json").read_text())
            if tokenizer_sha and meta.get("tokenizer_sha") != tokenizer_sha:
                raise ValueError(f"{idx.with_suffix('.json')}: teacher text uses tokenizer "
                                 f"{meta.get('tokenizer_sha')}, the student {tokenizer_sha}")
            ds = IndexedDataset(str(idx.with_suffix("")), mmap=False)
            parts.extend(np.asarray(ds[i], dtype=np.int64) for i in range(len(ds)))
            del ds
    return np.concatenate(parts)
