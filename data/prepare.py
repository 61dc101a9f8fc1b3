"""Corpus -> tokenizer -> Megatron indexed datasets (.bin/.idx), cached by content hash.

One prepared entry serves every run of a sweep: the training documents (one indexed dataset,
documents separated by EOD) and, per domain, held-out validation documents that no run trains
on. Preparation is locked and finishes with an atomic manifest, so concurrent array tasks share
one copy and a crash never leaves a half-written entry that looks complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DataConfig
from .corpus import corpus_files, iter_documents
from .tokenizer import Tokenizer, train_bpe

FORMAT_VERSION = 1
# Every VAL_EVERY-th document of a domain goes to validation until its quota is met.
VAL_EVERY = 8
TOKENIZER_SAMPLE_CHARS = 50_000_000


@dataclass
class PreparedData:
    """A prepared corpus: tokenizer, training documents and per-domain validation documents."""

    root: Path
    tokenizer: Tokenizer
    manifest: dict

    @property
    def train_prefix(self) -> str:
        """Path prefix of the training indexed dataset (`<prefix>.bin` / `.idx`)."""
        return str(self.root / "train")

    def val_prefix(self, domain: str) -> str:
        """Path prefix of one domain's validation indexed dataset."""
        return str(self.root / f"val_{domain}")

    @property
    def domains(self) -> list[str]:
        """Domains that have validation data, sorted."""
        return sorted(self.manifest["val_tokens"])


def cache_key(cfg: DataConfig, val_tokens_per_domain: int) -> str:
    """Content hash of everything that decides the prepared data."""
    h = hashlib.sha256()
    for path in corpus_files(cfg):
        stat = path.stat()
        h.update(str(path.resolve()).encode())
        if stat.st_size <= 64 << 20:
            h.update(hashlib.md5(path.read_bytes()).digest())
        else:  # hashing many GB on every start costs minutes; size and mtime identify it
            h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    tok = cfg.tokenizer if cfg.tokenizer == "train" else str(Path(cfg.tokenizer).expanduser().resolve())
    h.update(
        json.dumps(
            [FORMAT_VERSION, cfg.text_key, cfg.domain_key, tok, cfg.vocab_size,
             val_tokens_per_domain, cfg.split_seed]
        ).encode()
    )
    return h.hexdigest()[:16]


def prepare(cfg: DataConfig, val_tokens_per_domain: int, progress: bool = True) -> PreparedData:
    """Return the prepared entry for `cfg`, building it first if no complete one exists."""
    root = Path(os.path.expanduser(cfg.cache_dir)) / "data" / cache_key(cfg, val_tokens_per_domain)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other ranks/array tasks wait for the builder
        if not manifest_path.exists():
            _build(cfg, root, val_tokens_per_domain, progress)
    manifest = json.loads(manifest_path.read_text())
    return PreparedData(root, Tokenizer.load(root / "tokenizer.json"), manifest)


def _is_validation(text: str, seen_in_domain: int, split_seed: int) -> bool:
    return (zlib.crc32(text[:256].encode()) + split_seed + seen_in_domain) % VAL_EVERY == 0


def _build(cfg: DataConfig, root: Path, val_tokens_per_domain: int, progress: bool) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from tqdm import tqdm

    # Pass 1: decide the split and (if asked) train the tokenizer on training text only.
    val_chars: dict[str, int] = {}
    seen: dict[str, int] = {}
    is_val: list[bool] = []
    sample: list[str] = []
    sample_chars = 0
    docs = iter_documents(cfg)
    for doc in tqdm(docs, desc="reading corpus", unit="doc", disable=not progress):
        n = seen.get(doc.domain, 0)
        seen[doc.domain] = n + 1
        # ~4 chars per token: stop adding validation documents once the quota is surely met
        val = val_chars.get(doc.domain, 0) < 6 * val_tokens_per_domain and _is_validation(
            doc.text, n, cfg.split_seed
        )
        is_val.append(val)
        if val:
            val_chars[doc.domain] = val_chars.get(doc.domain, 0) + len(doc.text)
        elif sample_chars < TOKENIZER_SAMPLE_CHARS:
            sample.append(doc.text)
            sample_chars += len(doc.text)
    if not is_val:
        raise ValueError("the corpus has no non-empty documents; check data.corpus and data.text_key")

    if cfg.tokenizer == "train":
        tokenizer = train_bpe(sample, cfg.vocab_size)
    else:
        tokenizer = Tokenizer.load(cfg.tokenizer)
    del sample
    tmp_tok = root / "tokenizer.json.tmp"
    tokenizer.save(tmp_tok)
    os.replace(tmp_tok, root / "tokenizer.json")

    # Pass 2: tokenize and write the indexed datasets (documents separated by EOD).
    dtype = np.uint16 if tokenizer.vocab_size < 65500 else np.int32
    train = IndexedDatasetBuilder(str(root / "train.bin"), dtype=dtype)
    val_builders: dict[str, IndexedDatasetBuilder] = {}
    train_tokens: dict[str, int] = {}
    val_tokens: dict[str, int] = {}
    train_docs = 0
    batch: list = []

    def flush():
        nonlocal train_docs
        for (doc, val), ids in zip(batch, tokenizer.encode_batch([d.text for d, _ in batch])):
            ids.append(tokenizer.eod)
            arr = np.asarray(ids, dtype=dtype)
            if val:
                if doc.domain not in val_builders:
                    val_builders[doc.domain] = IndexedDatasetBuilder(
                        str(root / f"val_{doc.domain}.bin"), dtype=dtype
                    )
                val_builders[doc.domain].add_document(arr, [len(arr)])
                val_tokens[doc.domain] = val_tokens.get(doc.domain, 0) + len(arr)
            else:
                train.add_document(arr, [len(arr)])
                train_tokens[doc.domain] = train_tokens.get(doc.domain, 0) + len(arr)
                train_docs += 1
        batch.clear()

    for doc, val in tqdm(
        zip(iter_documents(cfg), is_val), total=len(is_val), desc="tokenizing", unit="doc",
        disable=not progress,
    ):
        batch.append((doc, val))
        if len(batch) >= 256:
            flush()
    flush()
    train.finalize(str(root / "train.idx"))
    for domain, builder in val_builders.items():
        builder.finalize(str(root / f"val_{domain}.idx"))
    if train_docs == 0:
        raise ValueError("no training documents left after the validation split; use a larger corpus")

    manifest = {
        "format": FORMAT_VERSION,
        "files": [str(p) for p in corpus_files(cfg)],
        "tokenizer": cfg.tokenizer,
        "vocab_size": tokenizer.vocab_size,
        "eod": tokenizer.eod,
        "train_docs": train_docs,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "val_tokens_per_domain_requested": val_tokens_per_domain,
        "split_seed": cfg.split_seed,
    }
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, root / "manifest.json")  # the entry is complete only from here on
