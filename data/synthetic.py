"""Teacher text written by job=generate (indexed datasets, one per shard, with provenance),
read back as one token stream for distillation students."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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
