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

from ..atomic import replacing, write_json
from .config import DataConfig
from .corpus import corpus_files, iter_documents
from .curate import CurationPlan, config_identity
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
    decided = [FORMAT_VERSION, cfg.text_key, cfg.domain_key, tok, cfg.vocab_size,
               val_tokens_per_domain, cfg.split_seed]
    curation = config_identity(cfg.curate)
    if curation is not None:  # off: the key (and so the entry) of an uncurated corpus is unchanged
        decided.append({"curate": curation})
    h.update(json.dumps(decided).encode())
    return h.hexdigest()[:16]


def prepare(cfg: DataConfig, val_tokens_per_domain: int, progress: bool = True) -> PreparedData:
    """Return the prepared entry for `cfg`, building it first if no complete one exists."""
    if cfg.tokenizer != "train":
        path = Path(cfg.tokenizer).expanduser()
        if not (path / "tokenizer.json" if path.is_dir() else path).is_file():
            # Checked before the corpus is read (which can take long on a large one).
            raise FileNotFoundError(
                f"data.tokenizer={cfg.tokenizer!r}: no tokenizer there; give a tokenizer.json "
                "file or a local Hugging Face tokenizer folder containing one, or set "
                "data.tokenizer=train to train a BPE on the corpus"
            )
    check_curation(cfg)
    root = cache_root(cfg, val_tokens_per_domain)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other ranks/array tasks wait for the builder
        if not manifest_path.exists():
            _build(cfg, root, val_tokens_per_domain, progress)
    manifest = json.loads(manifest_path.read_text())
    return PreparedData(root, Tokenizer.load(root / "tokenizer.json"), manifest)


def check_curation(cfg: DataConfig) -> None:
    """Refuse a bad `data.curate` before the corpus is read, listing every problem."""
    if cfg.curate.enabled:
        from .curate import CurationError, check

        problems = check(cfg.curate)
        if problems:
            raise CurationError("; ".join(problems))


def _is_validation(text: str, seen_in_domain: int, split_seed: int) -> bool:
    return (zlib.crc32(text[:256].encode()) + split_seed + seen_in_domain) % VAL_EVERY == 0


def cache_root(cfg: DataConfig, val_tokens_per_domain: int) -> Path:
    """The cache folder of the prepared entry for `cfg`."""
    cache_dir = cfg.cache_dir
    if "${" in cache_dir:
        # A DataConfig built in Python (not through Hydra) still holds the interpolation
        # `${oc.env:ASYMPTOTE_CACHE,...}`; resolve it rather than create a folder of that name.
        from omegaconf import OmegaConf

        cache_dir = OmegaConf.create({"dir": cache_dir}).dir
    return Path(os.path.expanduser(cache_dir)) / "data" / cache_key(cfg, val_tokens_per_domain)


def plan_split(cfg: DataConfig, root: Path, val_tokens_per_domain: int,
               progress: bool, curation: CurationPlan | None = None) -> tuple[np.ndarray, Tokenizer]:
    """Pass 1: decide which documents are held out, and (if asked) train the tokenizer on
    training text only; writes `root/tokenizer.json`. Returns (is_validation per document in
    corpus order, tokenizer).

    With a `curation` plan, removed documents are neither held out nor tokenizer text, and a
    document that has duplicates is never held out (it stays in training), so the validation
    quota fills with documents that no training document duplicates; what the split rule would
    have picked otherwise is counted into `curation.validation`."""
    from tqdm import tqdm

    val_chars: dict[str, int] = {}
    seen: dict[str, int] = {}
    is_val: list[bool] = []
    sample: list[str] = []
    sample_chars = 0
    removed = kept_in_training = 0
    if curation is not None:
        keep, clustered = curation.keep, curation.clustered
    for i, doc in enumerate(tqdm(iter_documents(cfg), desc="reading corpus", unit="doc",
                                 disable=not progress)):
        n = seen.get(doc.domain, 0)
        seen[doc.domain] = n + 1
        # ~4 chars per token: stop adding validation documents once the quota is surely met
        val = val_chars.get(doc.domain, 0) < 6 * val_tokens_per_domain and _is_validation(
            doc.text, n, cfg.split_seed
        )
        if curation is not None:
            if i >= len(keep):
                raise ValueError(f"the corpus has more documents than the {len(keep)} curation "
                                 "scanned; did it change while being prepared?")
            if not keep[i]:
                removed += val
                is_val.append(False)
                continue
            if val and clustered[i]:
                kept_in_training += 1
                val = False
        is_val.append(val)
        if val:
            val_chars[doc.domain] = val_chars.get(doc.domain, 0) + len(doc.text)
        elif sample_chars < TOKENIZER_SAMPLE_CHARS:
            sample.append(doc.text)
            sample_chars += len(doc.text)
    if not is_val:
        raise ValueError("the corpus has no non-empty documents; check data.corpus and data.text_key")
    if curation is not None:
        if len(is_val) != len(curation.reason):
            raise ValueError(f"the corpus has {len(is_val)} documents but curation scanned "
                             f"{len(curation.reason)}; did it change while being prepared?")
        curation.validation = {"documents": int(sum(is_val)), "removed": int(removed),
                               "kept_in_training": int(kept_in_training)}

    if cfg.tokenizer == "train":
        tokenizer = train_bpe(sample, cfg.vocab_size)
    else:
        tokenizer = Tokenizer.load(cfg.tokenizer)
    del sample
    with replacing(root / "tokenizer.json") as tmp_tok:
        tokenizer.save(tmp_tok)
    return np.asarray(is_val, dtype=bool), tokenizer


def token_dtype(tokenizer: Tokenizer):
    """The smallest integer type that holds every token id."""
    return np.uint16 if tokenizer.vocab_size < 65500 else np.int32


def tokenize_range(cfg: DataConfig, tokenizer: Tokenizer, is_val: np.ndarray, start: int,
                   stop: int, out: Path, progress: bool, keep: np.ndarray | None = None) -> dict:
    """Pass 2 over documents [start, stop) of the corpus: write `out/train.bin/.idx` and
    `out/val_<domain>.bin/.idx` (documents separated by EOD), skipping documents whose `keep`
    is False (curation removed them). Returns the token counts."""
    from itertools import islice

    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from tqdm import tqdm

    dtype = token_dtype(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    train = IndexedDatasetBuilder(str(out / "train.bin"), dtype=dtype)
    val_builders: dict[str, IndexedDatasetBuilder] = {}
    counts = {"train_docs": 0, "train_tokens": {}, "val_tokens": {}}
    batch: list = []

    def flush():
        for (doc, val), ids in zip(batch, tokenizer.encode_batch([d.text for d, _ in batch])):
            ids.append(tokenizer.eod)
            arr = np.asarray(ids, dtype=dtype)
            if val:
                if doc.domain not in val_builders:
                    val_builders[doc.domain] = IndexedDatasetBuilder(
                        str(out / f"val_{doc.domain}.bin"), dtype=dtype
                    )
                val_builders[doc.domain].add_document(arr, [len(arr)])
                tokens = counts["val_tokens"]
            else:
                train.add_document(arr, [len(arr)])
                tokens = counts["train_tokens"]
                counts["train_docs"] += 1
            tokens[doc.domain] = tokens.get(doc.domain, 0) + len(arr)
        batch.clear()

    documents = islice(iter_documents(cfg), start, stop)
    kept = keep[start:stop] if keep is not None else np.ones(stop - start, dtype=bool)
    for doc, val, k in tqdm(zip(documents, is_val[start:stop], kept), total=stop - start,
                            desc="tokenizing", unit="doc", disable=not progress):
        if not k:
            continue
        batch.append((doc, bool(val)))
        if len(batch) >= 256:
            flush()
    flush()
    train.finalize(str(out / "train.idx"))
    for domain, builder in val_builders.items():
        builder.finalize(str(out / f"val_{domain}.idx"))
    return counts


def write_manifest(cfg: DataConfig, root: Path, tokenizer: Tokenizer, counts: dict,
                   val_tokens_per_domain: int, curation: CurationPlan | None = None) -> None:
    """Check the counts and write `manifest.json`, atomically: the entry is complete from here.
    With curation, its report (counts removed by each step) is the manifest's `curation`."""
    if counts["train_docs"] == 0:
        raise ValueError("no training documents left after the validation split; use a larger corpus")
    manifest = {
        "format": FORMAT_VERSION,
        "files": [str(p) for p in corpus_files(cfg)],
        "tokenizer": cfg.tokenizer,
        "vocab_size": tokenizer.vocab_size,
        "eod": tokenizer.eod,
        "train_docs": counts["train_docs"],
        "train_tokens": counts["train_tokens"],
        "val_tokens": counts["val_tokens"],
        "val_tokens_per_domain_requested": val_tokens_per_domain,
        "split_seed": cfg.split_seed,
    }
    if curation is not None:
        manifest["curation"] = curation.report()
    write_json(root / "manifest.json", manifest, indent=2)


def _build(cfg: DataConfig, root: Path, val_tokens_per_domain: int, progress: bool) -> None:
    curation = None
    if cfg.curate.enabled:
        from .curate import curate

        curation = curate(cfg, progress)
    is_val, tokenizer = plan_split(cfg, root, val_tokens_per_domain, progress, curation)
    keep = curation.keep if curation is not None else None
    counts = tokenize_range(cfg, tokenizer, is_val, 0, len(is_val), root, progress, keep)
    write_manifest(cfg, root, tokenizer, counts, val_tokens_per_domain, curation)
    if curation is not None and progress:
        from .curate import format_report

        print(format_report(curation.report(), curation.seconds), flush=True)
