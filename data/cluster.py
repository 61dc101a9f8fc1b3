"""Cluster a corpus into domains and write one training set per cluster.

Pipeline (``asymptote data cluster <corpus> --k K --out DIR``), in three stages that can also
run separately, so the expensive middle one runs as array tasks over shards of a large corpus:

1. ``fit``: draw a sample of documents (reservoir, seeded), fit the embedder on it (TF-IDF +
   truncated SVD by default; or a sentence-embedding model from a local folder, mean-pooled),
   embed the sample, run k-means (k-means++ initialisation) and save the embedder and the
   centroids under ``DIR/model/``.
2. ``assign``: shard ``i`` of ``n`` embeds every document whose corpus index is ``i`` modulo
   ``n`` and assigns it to its nearest centroid (``DIR/assign/shard_<i>-of-<n>.npz``). Shards are
   independent: ``--shard`` defaults to ``$SLURM_ARRAY_TASK_ID``.
3. ``write``: merge the shards, name clusters ``c0..c<k-1>`` (largest first), hold out per
   cluster validation documents, train (or load) the tokenizer on training text, and write a
   prepared-data folder: ``train.bin/.idx`` (the whole mixture), ``train_<c>.bin/.idx`` per
   cluster, ``val_<c>.bin/.idx`` per cluster, ``tokenizer.json``, ``manifest.json`` and
   ``report.json`` (sizes, top terms, purity against the source labels when the corpus has them).

Training reads the folder with ``data.prepared=DIR`` (the mixture; validation per cluster) and
``data.train_domain=<c>`` (one cluster), see :mod:`asymptote.data.sources`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..atomic import replacing, replacing_all, write_bytes, write_json
from .config import DataConfig
from .corpus import corpus_files, iter_documents
from .prepare import TOKENIZER_SAMPLE_CHARS, _is_validation

FORMAT = 1
STAGES = ("all", "fit", "assign", "write")
# Options of the fit that the later stages must share.
FIT_KEYS = ("k", "text_key", "embedder", "dim", "max_features", "sample", "n_init", "seed")


class ClusterError(ValueError):
    """Clustering cannot go on as asked; the message says what to change."""


@dataclass
class ClusterConfig:
    """Everything that decides a clustering (saved in ``model/meta.json``)."""

    corpus: list[str] = field(default_factory=lambda: ["shipped"])
    """Corpus files or folders, or ``shipped`` (as ``data.corpus``)."""
    k: int = 6
    """Number of clusters."""
    text_key: str = "text"
    """Field holding a document's text."""
    label_key: str = "domain"
    """Field with a source label, used only for purity in the report (absent: no purity)."""
    streaming: bool = False
    """Read the corpus as a stream (HF `datasets` streaming) instead of converting it to an
    Arrow cache first: for corpora larger than the disk cache, or many array tasks at once."""
    embedder: str = "tfidf"
    """``tfidf`` (TF-IDF + truncated SVD, no model needed) or a local sentence-embedding model
    folder (Hugging Face format; mean-pooled last hidden states)."""
    dim: int = 64
    """Embedding dimension of TF-IDF + SVD."""
    max_features: int = 50_000
    """TF-IDF vocabulary size (most frequent terms of the sample)."""
    sample: int = 20_000
    """Documents the embedder and k-means are fitted on (all, when the corpus is smaller)."""
    n_init: int = 4
    """k-means restarts (k-means++ seeding each time); the best inertia wins."""
    seed: int = 0
    """Seed of the sample, SVD and k-means."""
    tokenizer: str = "train"
    """``train`` (byte-level BPE on the training documents) or a tokenizer.json / HF folder."""
    vocab_size: int = 4096
    """Vocabulary size when the tokenizer is trained here."""
    val_tokens: int = 16 * 128 + 1
    """Held-out validation tokens wanted per cluster (training needs data.val_sequences x
    model.seq_len + 1)."""
    split_seed: int = 1234
    """Seed of the train/validation document split and of document packing."""
    batch: int = 256
    """Documents embedded per batch."""


# ----------------------------------------------------------------------------- corpus
def _data_config(cfg: ClusterConfig) -> DataConfig:
    return DataConfig(corpus=list(cfg.corpus), text_key=cfg.text_key, domain_key=cfg.label_key,
                      streaming=cfg.streaming)


def _documents(cfg: ClusterConfig) -> Iterator[tuple[str, Optional[str]]]:
    """(text, source label or None) per non-empty document, in corpus order."""
    import datasets

    from .corpus import _builder

    datasets.disable_progress_bars()
    dcfg = _data_config(cfg)
    for path in corpus_files(dcfg):
        if _builder(path) == "text":
            yield path.read_text(errors="replace"), path.stem.split(".")[0]
            continue
        for doc in iter_documents(dcfg, [path]):
            yield doc.text, doc.domain


def _corpus_identity(cfg: ClusterConfig) -> str:
    h = hashlib.sha256()
    for path in corpus_files(_data_config(cfg)):
        st = path.stat()
        h.update(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- embedders
class TfidfEmbedder:
    """TF-IDF (sublinear tf) -> truncated SVD -> unit length."""

    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg
        self.vectorizer = None
        self.svd = None

    def fit(self, texts: list[str]) -> "TfidfEmbedder":
        from sklearn.decomposition import TruncatedSVD

        self.vectorizer = _vectorizer(self.cfg, len(texts))
        X = self.vectorizer.fit_transform(texts)
        dim = min(self.cfg.dim, X.shape[1] - 1, X.shape[0] - 1)
        if dim < 1:
            raise ClusterError(f"the sample has too few documents or terms ({X.shape}) to embed")
        self.svd = TruncatedSVD(n_components=dim, random_state=self.cfg.seed).fit(X)
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        return _unit(self.svd.transform(self.vectorizer.transform(texts)))


class SentenceEmbedder:
    """A local Hugging Face encoder: mean of the last hidden states over real tokens."""

    def __init__(self, path: str, max_length: int = 256):
        p = Path(path).expanduser()
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ClusterError(f"--embedder {path}: not a local model folder with config.json; "
                               "give `tfidf` or a downloaded sentence-embedding model folder")
        self.path = str(p.resolve())
        self.max_length = max_length
        self._model = None

    def fit(self, texts: list[str]) -> "SentenceEmbedder":
        return self  # pretrained: nothing to fit

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
            positions = getattr(self._model.config, "max_position_embeddings", None)
            if positions:  # never longer than the model's positions
                self.max_length = min(self.max_length, int(positions))

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        self._load()
        with torch.no_grad():
            enc = self._tok(texts, padding=True, truncation=True, max_length=self.max_length,
                            return_tensors="pt")
            hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return _unit(pooled.float().numpy())

    def __getstate__(self):  # pickle the path, not the weights
        return {"path": self.path, "max_length": self.max_length, "_model": None}


def _vectorizer(cfg: ClusterConfig, n_docs: int):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        sublinear_tf=True, max_features=cfg.max_features, stop_words="english",
        token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b", min_df=2 if n_docs >= 20 else 1,
        max_df=0.9 if n_docs >= 20 else 1.0, dtype=np.float32,
    )


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def make_embedder(cfg: ClusterConfig):
    """The embedder named by ``cfg.embedder`` (unfitted)."""
    return TfidfEmbedder(cfg) if cfg.embedder == "tfidf" else SentenceEmbedder(cfg.embedder)


def _batched(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----------------------------------------------------------------------------- stage 1: fit
def _reservoir(cfg: ClusterConfig) -> tuple[list[int], list[str], int]:
    """(indices, texts) of a seeded uniform sample of documents, and the document count."""
    rng = random.Random(cfg.seed)
    idx: list[int] = []
    texts: list[str] = []
    n = 0
    for n, (text, _) in enumerate(_documents(cfg), start=1):
        if len(idx) < cfg.sample:
            idx.append(n - 1)
            texts.append(text)
        else:
            j = rng.randrange(n)
            if j < cfg.sample:
                idx[j], texts[j] = n - 1, text
    return idx, texts, n


def fit(cfg: ClusterConfig, out: Path, progress: bool = True) -> dict:
    """Stage 1: fit the embedder and k-means on a sample; save them under ``out/model``."""
    from sklearn.cluster import KMeans

    if cfg.k < 1:
        raise ClusterError(f"--k {cfg.k}: the number of clusters must be at least 1")
    if cfg.sample < cfg.k:
        raise ClusterError(f"--sample {cfg.sample} is smaller than --k {cfg.k}; "
                           "k-means needs at least k sampled documents")
    _log(progress, f"sampling up to {cfg.sample} documents")
    idx, texts, n_docs = _reservoir(cfg)
    if n_docs == 0:
        raise ClusterError("the corpus has no non-empty documents; check the corpus and --text-key")
    if cfg.k > n_docs:
        raise ClusterError(f"--k {cfg.k} is larger than the number of documents ({n_docs}); "
                           f"use at most {n_docs} clusters")
    distinct = len(set(texts))
    if cfg.k > distinct:
        raise ClusterError(f"--k {cfg.k} but the sample has only {distinct} distinct documents: "
                           f"k-means would leave {cfg.k - distinct} cluster(s) empty; lower --k "
                           "(or deduplicate the corpus)")
    _log(progress, f"fitting {cfg.embedder} embeddings on {len(texts)} of {n_docs} documents")
    embedder = make_embedder(cfg).fit(texts)
    X = np.concatenate([embedder.embed(b) for b in _batched(texts, cfg.batch)])
    _log(progress, f"k-means (k={cfg.k}, k-means++, {cfg.n_init} restarts) on {X.shape}")
    km = KMeans(n_clusters=cfg.k, init="k-means++", n_init=cfg.n_init, random_state=cfg.seed)
    labels = km.fit_predict(X)
    sizes = np.bincount(labels, minlength=cfg.k)
    if (sizes == 0).any():
        raise ClusterError(f"k-means left {(sizes == 0).sum()} of {cfg.k} clusters empty on the "
                           "sample (too few distinct documents); lower --k")
    model = out / "model"
    model.mkdir(parents=True, exist_ok=True)
    np.save(model / "centroids.npy", km.cluster_centers_.astype(np.float32))
    write_bytes(model / "embedder.pkl", pickle.dumps(embedder))
    # A term model for the report's top terms, whatever the embedder.
    terms = embedder.vectorizer if isinstance(embedder, TfidfEmbedder) else _vectorizer(cfg, len(texts)).fit(texts)
    tf = terms.transform(texts)
    centroid_terms = np.vstack([np.asarray(tf[labels == c].mean(axis=0)).ravel() for c in range(cfg.k)])
    np.save(model / "term_centroids.npy", centroid_terms.astype(np.float32))
    (model / "terms.json").write_text(json.dumps(terms.get_feature_names_out().tolist()))
    meta = {"format": FORMAT, "config": cfg.__dict__, "documents": n_docs, "sampled": len(texts),
            "corpus_id": _corpus_identity(cfg), "inertia": float(km.inertia_),
            "sample_sizes": sizes.tolist()}
    _atomic_json(model / "meta.json", meta)
    return meta


# ----------------------------------------------------------------------------- stage 2: assign
def _load_model(out: Path, cfg: ClusterConfig | None = None):
    model = Path(out) / "model"
    if not (model / "meta.json").is_file():
        raise ClusterError(f"{out} has no fitted model (model/meta.json); run the fit stage first")
    meta = json.loads((model / "meta.json").read_text())
    if cfg is not None and meta["corpus_id"] != _corpus_identity(cfg):
        raise ClusterError(f"{out}/model was fitted on another corpus (or the files changed); "
                           "rerun the fit stage or use another --out")
    if cfg is not None:
        fitted = meta["config"]
        differ = [f"--{k.replace('_', '-')} {fitted[k]} (fit) vs {getattr(cfg, k)}"
                  for k in FIT_KEYS if k in fitted and fitted[k] != getattr(cfg, k)]
        if differ:
            raise ClusterError(f"{out}/model was fitted with other options: {'; '.join(differ)}; "
                               "give every stage the same options (or rerun the fit stage)")
    with open(model / "embedder.pkl", "rb") as fh:
        embedder = pickle.load(fh)
    return meta, embedder, np.load(model / "centroids.npy")


def shard_path(out: Path, shard: int, shards: int) -> Path:
    """File of one assignment shard."""
    return Path(out) / "assign" / f"shard_{shard:05d}-of-{shards:05d}.npz"


def assign(cfg: ClusterConfig, out: Path, shard: int = 0, shards: int = 1,
           progress: bool = True) -> Path:
    """Stage 2: assign documents ``i`` with ``i % shards == shard`` to their nearest centroid."""
    if not 0 <= shard < shards:
        raise ClusterError(f"--shard {shard} is not in [0, --shards {shards})")
    meta, embedder, centroids = _load_model(out, cfg)
    index, cluster, dist, labels = [], [], [], []

    def mine():
        for i, (text, label) in enumerate(_documents(cfg)):
            if i % shards == shard:
                yield i, text, label

    for batch in _batched(mine(), cfg.batch):
        X = embedder.embed([t for _, t, _ in batch])
        d2 = (X * X).sum(1, keepdims=True) - 2 * X @ centroids.T + (centroids * centroids).sum(1)
        c = d2.argmin(1)
        index.extend(i for i, _, _ in batch)
        cluster.extend(c.tolist())
        dist.extend(np.sqrt(np.maximum(d2[np.arange(len(c)), c], 0)).tolist())
        labels.extend("" if lab is None else lab for _, _, lab in batch)
        _log(progress and len(index) % (cfg.batch * 20) == 0, f"shard {shard}: {len(index)} documents")
    path = shard_path(out, shard, shards)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "xb") as fh:  # a file object: savez adds no suffix
        np.savez(fh, index=np.asarray(index, np.int64), cluster=np.asarray(cluster, np.int32),
                 dist=np.asarray(dist, np.float32), label=np.asarray(labels, dtype=str))
    return path


def merged_assignment(out: Path, shards: int, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster, distance, source label) per document, from all ``shards`` shard files."""
    missing = [i for i in range(shards) if not shard_path(out, i, shards).is_file()]
    if missing:
        raise ClusterError(f"{len(missing)} of {shards} assignment shards are missing "
                           f"({missing[:10]}{'...' if len(missing) > 10 else ''}); run the assign "
                           "stage for them (same --shards)")
    cluster = np.full(n_docs, -1, np.int32)
    dist = np.zeros(n_docs, np.float32)
    labels = np.empty(n_docs, dtype=object)
    for i in range(shards):
        with np.load(shard_path(out, i, shards)) as z:
            cluster[z["index"]] = z["cluster"]
            dist[z["index"]] = z["dist"]
            labels[z["index"]] = z["label"]
    if (cluster < 0).any():
        raise ClusterError(f"{int((cluster < 0).sum())} documents have no assignment; the corpus "
                           "changed after the fit, or shards come from another --shards")
    return cluster, dist, labels


# ----------------------------------------------------------------------------- stage 3: write
def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of documents whose cluster's most frequent source label is their own."""
    total = 0
    for c in np.unique(clusters):
        _, counts = np.unique(labels[clusters == c], return_counts=True)
        total += counts.max()
    return total / len(clusters)


def write(cfg: ClusterConfig, out: Path, shards: int = 1, progress: bool = True) -> dict:
    """Stage 3: merge the assignments and write the per-cluster indexed datasets and report."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from .tokenizer import Tokenizer, train_bpe

    out = Path(out)
    meta, _, _ = _load_model(out, cfg)
    raw, dist, labels = merged_assignment(out, shards, meta["documents"])
    k = cfg.k
    raw_sizes = np.bincount(raw, minlength=k)
    empty = [c for c in range(k) if raw_sizes[c] == 0]
    if empty:
        raise ClusterError(f"{len(empty)} of {k} clusters received no documents (raw ids {empty}); "
                           "lower --k or fit on a larger --sample")
    # Names c0..c<k-1>, largest cluster first (ties: lower raw id first): stable across reruns.
    order = sorted(range(k), key=lambda c: (-raw_sizes[c], c))
    rename = np.empty(k, np.int32)
    rename[order] = np.arange(k)
    cluster = rename[raw]
    names = [f"c{i}" for i in range(k)]

    # Pass 1: the train/validation split per cluster, and the tokenizer's training sample.
    val_chars = np.zeros(k, np.int64)
    seen = np.zeros(k, np.int64)
    is_val = np.zeros(len(cluster), bool)
    sample, sample_chars = [], 0
    for i, (text, _) in enumerate(_documents(cfg)):
        c = cluster[i]
        if val_chars[c] < 6 * cfg.val_tokens and _is_validation(text, int(seen[c]), cfg.split_seed):
            is_val[i] = True
            val_chars[c] += len(text)
        elif cfg.tokenizer == "train" and sample_chars < TOKENIZER_SAMPLE_CHARS:
            sample.append(text)
            sample_chars += len(text)
        seen[c] += 1
    _log(progress, "training the tokenizer" if cfg.tokenizer == "train" else "loading the tokenizer")
    tokenizer = train_bpe(sample, cfg.vocab_size) if cfg.tokenizer == "train" else Tokenizer.load(cfg.tokenizer)
    del sample
    with replacing(out / "tokenizer.json") as tmp:
        tokenizer.save(tmp)

    # Pass 2: tokenize into the mixture, per-cluster training and per-cluster validation sets.
    dtype = np.uint16 if tokenizer.vocab_size < 65500 else np.int32
    # Every .bin/.idx is written under a temporary name and put in place only once all are
    # complete and checked (manifest.json, written last, marks the folder usable).
    prefixes = ["train"] + [f"train_{n}" for n in names] + [f"val_{n}" for n in names]
    targets = [out / f"{prefix}{ext}" for prefix in prefixes for ext in (".bin", ".idx")]
    with replacing_all(targets) as tmps:
        tmp_of = dict(zip((t.name for t in targets), map(str, tmps)))
        mixture = IndexedDatasetBuilder(tmp_of["train.bin"], dtype=dtype)
        train_b = [IndexedDatasetBuilder(tmp_of[f"train_{n}.bin"], dtype=dtype) for n in names]
        val_b = [IndexedDatasetBuilder(tmp_of[f"val_{n}.bin"], dtype=dtype) for n in names]
        train_tokens = np.zeros(k, np.int64)
        val_tokens = np.zeros(k, np.int64)
        train_docs = np.zeros(k, np.int64)
        val_docs = np.zeros(k, np.int64)
        for batch in _batched(enumerate(_documents(cfg)), cfg.batch):
            for (i, _), ids in zip(batch, tokenizer.encode_batch([t for _, (t, _) in batch])):
                ids.append(tokenizer.eod)
                arr = np.asarray(ids, dtype=dtype)
                c = cluster[i]
                if is_val[i]:
                    val_b[c].add_document(arr, [len(arr)])
                    val_tokens[c] += len(arr)
                    val_docs[c] += 1
                else:
                    mixture.add_document(arr, [len(arr)])
                    train_b[c].add_document(arr, [len(arr)])
                    train_tokens[c] += len(arr)
                    train_docs[c] += 1
        mixture.finalize(tmp_of["train.idx"])
        for n, b in zip(names, train_b):
            b.finalize(tmp_of[f"train_{n}.idx"])
        for n, b in zip(names, val_b):
            b.finalize(tmp_of[f"val_{n}.idx"])
        short = [f"{names[c]} ({int(val_tokens[c])} held-out, {int(train_docs[c])} training docs)"
                 for c in range(k) if val_tokens[c] < cfg.val_tokens or train_docs[c] == 0]
        if short:
            raise ClusterError(
                f"clusters too small for a {cfg.val_tokens}-token validation set plus training "
                f"data: {', '.join(short)}; lower --k or --val-tokens, or add documents")

    # Purity needs source labels: documents without one read as `all` (or ""), and a single
    # label says nothing about the clusters.
    has_labels = len(set(labels) - {""}) > 1 and "" not in set(labels)
    label_arr = np.asarray(labels, dtype=object)
    top_terms = _top_terms(out, order)
    report = {
        "k": k, "documents": int(len(cluster)), "embedder": cfg.embedder,
        "sampled": meta["sampled"], "shards": shards, "inertia_sample": meta["inertia"],
        "purity": float(purity(cluster, label_arr)) if has_labels else None,
        "clusters": {},
    }
    for c, n in enumerate(names):
        members = cluster == c
        entry = {
            "documents": int(members.sum()), "train_documents": int(train_docs[c]),
            "val_documents": int(val_docs[c]), "train_tokens": int(train_tokens[c]),
            "val_tokens": int(val_tokens[c]), "mean_distance": float(dist[members].mean()),
            "top_terms": top_terms[c],
        }
        if has_labels:
            labs, counts = np.unique(label_arr[members].astype(str), return_counts=True)
            entry["labels"] = {str(a): int(b) for a, b in sorted(zip(labs, counts), key=lambda x: -x[1])}
            entry["majority"] = str(labs[counts.argmax()])
            entry["purity"] = float(counts.max() / members.sum())
        report["clusters"][n] = entry
    np.savez(out / "assignments.npz", cluster=cluster, dist=dist)
    manifest = {
        "format": FORMAT, "kind": "clusters", "files": [str(p) for p in corpus_files(_data_config(cfg))],
        "tokenizer": cfg.tokenizer, "vocab_size": tokenizer.vocab_size, "eod": tokenizer.eod,
        "train_docs": int(train_docs.sum()),
        "train_tokens": {n: int(train_tokens[c]) for c, n in enumerate(names)},
        "val_tokens": {n: int(val_tokens[c]) for c, n in enumerate(names)},
        "val_tokens_per_domain_requested": cfg.val_tokens, "split_seed": cfg.split_seed,
        "clusters": names, "key": hashlib.sha256(json.dumps(
            [meta["corpus_id"], cfg.__dict__], sort_keys=True).encode()).hexdigest()[:16],
    }
    _atomic_json(out / "report.json", report)
    _atomic_json(out / "manifest.json", manifest)  # the folder is usable only from here on
    return report


def _top_terms(out: Path, order: list[int], n: int = 10) -> list[list[str]]:
    """Per (renamed) cluster, the terms whose sample TF-IDF mean exceeds the overall mean most."""
    model = Path(out) / "model"
    terms = np.array(json.loads((model / "terms.json").read_text()))
    cent = np.load(model / "term_centroids.npy")
    lift = cent - cent.mean(axis=0, keepdims=True)
    return [terms[np.argsort(-lift[raw])[:n]].tolist() if len(terms) else [] for raw in order]


# ----------------------------------------------------------------------------- driver
def cluster_corpus(cfg: ClusterConfig, out: str | Path, stage: str = "all", shard: int | None = None,
                   shards: int = 1, progress: bool = True) -> dict:
    """Run one stage (or all three) of the clustering; returns what the stage produced."""
    out = Path(out).expanduser()
    if stage not in STAGES:
        raise ClusterError(f"--stage {stage!r}: use one of {', '.join(STAGES)}")
    if shards < 1:
        raise ClusterError(f"--shards {shards} must be >= 1")
    if stage == "all":
        fit(cfg, out, progress)
        for i in range(shards):
            assign(cfg, out, i, shards, progress)
        return write(cfg, out, shards, progress)
    if stage == "fit":
        return fit(cfg, out, progress)
    if stage == "assign":
        if shard is None:
            env = os.environ.get("SLURM_ARRAY_TASK_ID")
            if env is None:
                raise ClusterError("--stage assign needs --shard (or $SLURM_ARRAY_TASK_ID)")
            shard = int(env)
        return {"shard": str(assign(cfg, out, shard, shards, progress))}
    return write(cfg, out, shards, progress)


def _log(on: bool, msg: str) -> None:
    if on:
        print(f"[asymptote data cluster] {msg}", flush=True)


def _atomic_json(path: Path, obj) -> None:
    write_json(path, obj, indent=2)
