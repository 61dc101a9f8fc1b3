"""Configuration of the training data: corpus, tokenizer, seed-token budget, validation set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


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
    cache_dir: str = "${oc.env:ASYMPTOTE_CACHE,'~/.cache/asymptote'}"
    """Prepared tokenizers and indexed datasets, shared by all runs (keyed by a content hash)."""
