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
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from ... import atomic
from ..config import RunConfig
from ..outputs import Outputs

COMBINE = ("logit_mean", "prob_mean")


@dataclass
class GenerateConfig:
    """job=generate: a teacher (one run or an ensemble) writes synthetic sequences."""

    teacher: List[str] = field(default_factory=list)
    """Teacher run folders; several are combined by `combine` at every step."""
    combine: str = "logit_mean"
    """How an ensemble teacher combines its members: `logit_mean` or `prob_mean`."""
    sequences: int = 64
    """Synthetic sequences over all shards."""
    length: Optional[int] = None
    """New tokens per sequence (a sequence ends early at EOD); null: the teacher's seq_len - 1."""
    temperature: float = 1.0
    """Sampling temperature (0: greedy)."""
    top_k: int = 0
    """Sample among the k most probable tokens (0: all)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0: all)."""
    seed: int = 0
    """Sampling seed; shard i samples with (seed, i)."""
    shards: int = 1
    """Number of shards (array tasks); shard i writes sequences i, i + shards, ..."""
    shard: int = 0
    """This task's shard (sweep it: `generate.shard=0,1,2,3` is one array)."""
    batch: int = 16
    """Sequences decoded together."""
    use_cache: bool = True
    """Use the KV cache (false only to measure what it saves)."""
    output: Optional[str] = None
    """Dataset folder; null: <out>/generate-<hash of teacher and sampling>."""


@dataclass
class Config(RunConfig):
    """The shared config (its layout is used) plus the teacher and sampling."""

    generate: GenerateConfig = field(default_factory=GenerateConfig)
    """Teacher, sampling and sharding."""


def output_dir(cfg) -> Path:
    """generate.output, or <out>/generate-<hash of teacher and sampling> (shards excluded)."""
    g = cfg.generate
    if g.output:
        return Path(g.output).expanduser()
    key = [sorted(str(Path(t).expanduser().resolve()) for t in g.teacher), g.combine,
           g.sequences, g.length, g.temperature, g.top_k, g.top_p, g.seed, g.shards]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:8]
    return Path(cfg.out).expanduser() / f"generate-K{len(g.teacher)}-{digest}"


def check(cfg: Config, world: int | None = None) -> list[str]:
    """Teacher runs, sampling values and the shard index."""
    from ...evals.ensemble import EnsembleEvalError, check_members

    g, errors = cfg.generate, []
    if not g.teacher:
        errors.append("job=generate needs generate.teacher=[<run folder>, ...]")
    else:
        try:
            check_members(g.teacher)
        except EnsembleEvalError as exc:
            errors.append(f"generate.teacher: {exc}")
    if g.shards < 1 or not 0 <= g.shard < g.shards:
        errors.append(f"generate.shard={g.shard} must be in 0..generate.shards-1={g.shards - 1} "
                      "(and generate.shards >= 1)")
    if g.sequences < 1:
        errors.append(f"generate.sequences={g.sequences} must be >= 1")
    if g.combine not in COMBINE:
        errors.append(f"generate.combine={g.combine!r}: use one of {', '.join(COMBINE)}")
    if g.temperature < 0 or g.top_k < 0 or not 0 < g.top_p <= 1:
        errors.append("generate.temperature and generate.top_k must be >= 0 and generate.top_p "
                      "in (0, 1]")
    if g.length is not None and g.length < 1:
        errors.append(f"generate.length={g.length} must be >= 1 (or null)")
    if g.batch < 1:
        errors.append(f"generate.batch={g.batch} must be >= 1")
    if cfg.parallel.pp != 1:
        errors.append("job=generate runs without pipeline stages: set parallel.pp=1")
    return errors


def outputs(cfg: Config) -> Outputs:
    """The dataset folder; this task's shard is done once its provenance file exists."""
    folder = output_dir(cfg).resolve()
    prefix = shard_prefix(folder, cfg.generate.shard)
    return Outputs(folder=folder, files=(Path(f"{prefix}.bin"), Path(f"{prefix}.idx"),
                                         Path(f"{prefix}.json")))


def shard_prefix(folder: Path, shard: int) -> Path:
    return folder / f"shard_{shard:05d}"


def run(cfg: Config) -> dict:
    """Generate this task's shard (every rank runs the teacher; tp rank 0 writes)."""
    import torch.distributed as dist
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from ...models import parallel
    from ...models.config import ParallelConfig
    from ...models.generate import generate
    from ...models.inference import ensure_distributed, load_run

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
            with atomic.replacing(folder / "tokenizer.json") as tmp:
                shutil.copyfile(own_tok, tmp)
        prefix = shard_prefix(folder, g.shard)
        dtype = np.uint16 if teachers[0].vocab < 65500 else np.int32
        # .bin is replaced before .idx (inner block exits first): readers find shards by .idx.
        with atomic.replacing(Path(f"{prefix}.idx")) as idx_tmp, \
                atomic.replacing(Path(f"{prefix}.bin")) as bin_tmp:
            builder = IndexedDatasetBuilder(str(bin_tmp), dtype=dtype)
            for seq in new:
                doc = seq if seq and seq[-1] == tok.eod else seq + [tok.eod]
                builder.add_document(np.asarray(doc, dtype=dtype), [len(doc)])
            builder.finalize(str(idx_tmp))
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
        atomic.write_text(folder / f"{prefix.name}.json", json.dumps(provenance, indent=2))
        result["out"] = str(folder)
        print(f"[asymptote] generate shard {g.shard}/{g.shards}: {len(mine)} sequences, "
              f"{generated} tokens, {result['tokens_per_s']:.0f} tokens/s -> {prefix}.bin",
              flush=True)
        return result
    finally:
        parallel.shutdown()
