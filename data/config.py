"""Configuration of the training data: corpus, tokenizer, seed-token budget, validation set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class CurateConfig:
    """Corpus curation before tokenization (`data/curate.py`, `docs/data-curation.md`): quality
    filters, exact and near-duplicate removal, and validation documents that no training document
    duplicates. Off by default; a disabled section changes neither the prepared data nor any run
    folder's name. A threshold set to null switches that rule off."""

    enabled: bool = False
    """Curate the corpus before tokenization (every step below that is not switched off)."""
    min_words: Optional[int] = 50
    """Remove documents with fewer whitespace-separated words than this (Gopher: 50)."""
    max_words: Optional[int] = 100000
    """Remove documents with more words than this (Gopher: 100,000)."""
    min_mean_word_length: Optional[float] = 3.0
    """Remove documents whose mean word length (characters) is below this (Gopher: 3)."""
    max_mean_word_length: Optional[float] = 10.0
    """Remove documents whose mean word length (characters) is above this (Gopher: 10)."""
    max_symbol_word_ratio: Optional[float] = 0.1
    """Remove documents with more than this many `#` or ellipsis (`...`, `…`) per word (Gopher: 0.1)."""
    max_ellipsis_line_fraction: Optional[float] = 0.3
    """Remove documents in which more than this fraction of non-empty lines end with an ellipsis
    (Gopher: 0.3)."""
    max_duplicate_line_fraction: Optional[float] = 0.3
    """Remove documents in which more than this fraction of non-empty lines repeat an earlier line
    of the same document (Gopher: 0.3)."""
    max_duplicate_line_char_fraction: Optional[float] = 0.2
    """Remove documents in which repeated lines hold more than this fraction of the characters of
    all non-empty lines (Gopher: 0.2)."""
    max_top_ngram_char_fraction: List[float] = field(default_factory=lambda: [0.20, 0.18, 0.16])
    """Word n-grams for n = 2, 3, 4, ... in order: remove a document whose most frequent n-gram
    (all its occurrences) covers more than this fraction of its word characters (Gopher: 0.20,
    0.18, 0.16 for n = 2, 3, 4). Empty: off."""
    max_duplicate_ngram_char_fraction: List[float] = field(
        default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])
    """Word n-grams for n = 5, 6, 7, ... in order: remove a document whose word n-grams that occur
    more than once cover more than this fraction of its word characters (each character counted
    once; Gopher: 0.15 to 0.10 for n = 5 to 10). Empty: off."""
    exact_dedup: bool = True
    """Remove documents whose normalized text (lowercase, punctuation removed, whitespace
    collapsed) equals an earlier kept document's (compared by a 128-bit hash)."""
    near_dedup: bool = True
    """Remove documents whose estimated Jaccard similarity to an earlier kept document is at
    least `jaccard_threshold` (MinHash signatures, LSH candidates; datasketch)."""
    jaccard_threshold: float = 0.8
    """Near-duplicate threshold on the Jaccard similarity of word-shingle sets, estimated from
    the MinHash signatures."""
    shingle_words: int = 5
    """Words per shingle (normalized words, overlapping) of the near-duplicate comparison."""
    num_perm: int = 128
    """MinHash permutations (signature length); the estimate's standard error is about
    sqrt(J (1 - J) / num_perm), 0.035 at J = 0.8 with 128."""
    lsh_bands: Optional[int] = None
    """LSH bands b (b x rows <= num_perm); null: datasketch's optimum for the threshold with
    false negatives weighted 0.95 (16 bands of 8 rows at 0.8 and 128 permutations, which find
    95% of pairs at J = 0.8 as candidates)."""
    lsh_rows: Optional[int] = None
    """LSH rows per band r; set together with `lsh_bands`."""
    seed: int = 1
    """Seed of the MinHash permutations."""


@dataclass
class DataConfig:
    """Where tokens come from and how many of them a run may see."""

    corpus: List[str] = field(default_factory=lambda: ["shipped"])
    """Corpus files or folders (.jsonl/.json/.txt/.parquet, optionally .gz), or `shipped` for the
    small multi-domain corpus inside the package. Read through HF `datasets`."""
    text_key: str = "text"
    """Field holding a document's text (JSON/parquet)."""
    domain_key: str = "domain"
    """Field naming a document's domain; documents without it belong to domain `all`."""
    streaming: bool = False
    """Stream the corpus instead of loading it into memory (for corpora larger than RAM)."""
    tokenizer: str = "train"
    """`train` (a byte-level BPE trained on the training documents) or a path to a
    tokenizer.json file or a local Hugging Face tokenizer folder."""
    vocab_size: int = 4096
    """Vocabulary size when the tokenizer is trained here."""
    seed_tokens: int = 262144
    """D: the fixed budget of distinct training tokens; every epoch repeats exactly these."""
    val_sequences: int = 16
    """Held-out validation sequences per domain (documents disjoint from training)."""
    split_seed: int = 1234
    """Seed of the train/validation document split and of how documents pack into sequences;
    fixed across runs so every run of a sweep sees the same D tokens."""
    prepared: Optional[str] = None
    """A prepared-data folder used instead of preparing `corpus` (the output of
    `asymptote data cluster`): its tokenizer, training documents and per-cluster validation sets."""
    train_domain: Optional[str] = None
    """Train only on this domain's documents (a cluster name of the `prepared` folder, e.g. `c0`);
    null: the whole mixture. Validation still covers every domain."""
    curate: CurateConfig = field(default_factory=CurateConfig)
    """Corpus curation before tokenization (filters, deduplication, clean validation); off by
    default."""
    cache_dir: str = "${oc.env:ASYMPTOTE_CACHE,'~/.cache/asymptote'}"
    """Prepared tokenizers and indexed datasets, shared by all runs (keyed by a content hash)."""
