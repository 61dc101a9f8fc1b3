"""Small synthetic corpora written into tmp folders, and configs that prepare them fast."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from asymptote.data.config import DataConfig

SEQ = 32
VAL_SEQUENCES = 3
WORDS = {
    "alpha": "river stone maple cloud ember lantern harbor violet meadow quartz".split(),
    "beta": "matrix vector kernel tensor gradient scalar lemma proof axiom field".split(),
}


def write_corpus(folder: Path, docs_per_domain: int = 120, seed: int = 0,
                 domains=("alpha", "beta")) -> Path:
    """A JSONL corpus: per domain `docs_per_domain` documents of 20-60 words, each starting
    with a unique id so every document can be recognised after tokenization."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    with open(path, "w") as fh:
        for i in range(docs_per_domain):
            for domain in domains:
                words = [rng.choice(WORDS[domain]) for _ in range(rng.randint(20, 60))]
                text = f"doc{i:04d}{domain} " + " ".join(words) + "."
                fh.write(json.dumps({"text": text, "domain": domain}) + "\n")
    return path


def data_config(corpus, cache: Path, **changes) -> DataConfig:
    cfg = DataConfig(corpus=[str(corpus)], vocab_size=320, cache_dir=str(cache),
                     val_sequences=VAL_SEQUENCES)
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def val_tokens(val_sequences: int = VAL_SEQUENCES, seq: int = SEQ) -> int:
    """The validation-token quota the training loop asks `prepare` for."""
    return val_sequences * seq + 1


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def small_prepared(small_corpus, data_cache):
    """The small corpus prepared once (BPE trained) in the session's data cache."""
    from asymptote.data.prepare import prepare

    return prepare(data_config(small_corpus, data_cache), val_tokens(), progress=False)
