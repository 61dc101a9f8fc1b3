"""Corpus curation (data/curate.py): planted exact and near duplicates (within training and across
the train/validation boundary) are removed in exactly the planted numbers and no validation
document has a duplicate in training; filters remove planted short and repetitive documents;
curation off leaves the prepared data and run folder names as they were; sharded = serial."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from asymptote.data.config import CurateConfig, DataConfig
from asymptote.data.curate import (REASONS, CurationError, check, filter_reason, normalize,
                                   scan_texts)
from asymptote.data.prepare import FORMAT_VERSION, _is_validation, cache_key, prepare

DOMAINS = ("alpha", "beta")
BASE_DOCS = 60            # per domain
VAL_TOKENS = 10 ** 6      # a quota never met: every document the split rule picks is held out
SPLIT_SEED = 1234


def _vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
                   for _ in range(size)})


def _lines(words: list[str], per_line: int = 14) -> str:
    return "\n".join(" ".join(words[i:i + per_line]) + "." for i in range(0, len(words), per_line))


def _doc(rng, vocab, ident: str) -> list[str]:
    return [ident] + [rng.choice(vocab) for _ in range(rng.randint(100, 160))]


def _exact_variant(text: str, rng) -> str:
    """Equal after normalization: case, whitespace and punctuation changed."""
    words = text.split(" ")
    words = [w.upper() if rng.random() < 0.2 else w for w in words]
    out = "  ".join(words).replace(".", "!")
    return out + " ..."


def _near_variant(words: list[str], rng, vocab) -> list[str]:
    """One word (not the id) replaced: Jaccard of 5-word shingles about 0.92."""
    words = list(words)
    i = rng.randrange(len(words) // 3, 2 * len(words) // 3)
    words[i] = "zz" + rng.choice(vocab)
    return words


def _planted_corpus(folder: Path, seed: int = 0) -> tuple[Path, dict]:
    """Base documents of two domains, then planted copies and junk appended at the end (so the
    split rule's choice among the base documents is what it was without them)."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    rows: list[tuple[str, str]] = []
    base: dict[str, list[tuple[int, list[str]]]] = {d: [] for d in DOMAINS}
    for i in range(BASE_DOCS):
        for domain in DOMAINS:
            words = _doc(rng, vocab, f"id{i:04d}{domain}")
            base[domain].append((len(rows), words))
            rows.append((_lines(words), domain))
    held_out = {i for i, (text, domain) in enumerate(rows)
                if _is_validation(text, i // len(DOMAINS), SPLIT_SEED)}
    planted = {"exact_train": 0, "near_train": 0, "exact_cross": 0, "near_cross": 0}
    for domain in DOMAINS:
        train_docs = [w for i, w in base[domain] if i not in held_out]
        val_docs = [w for i, w in base[domain] if i in held_out]
        assert len(val_docs) >= 4, "the seed must give each domain some validation documents"
        copies = ([("exact_train", w) for w in train_docs[:4]] + [("near_train", w) for w in train_docs[4:8]]
                  + [("exact_cross", w) for w in val_docs[:2]] + [("near_cross", w) for w in val_docs[2:4]])
        for kind, words in copies:
            text = (_exact_variant(_lines(words), rng) if kind.startswith("exact")
                    else _lines(_near_variant(words, rng, vocab)))
            rows.append((text, domain))
            planted[kind] += 1
    # Junk for the filters, one rule each (appended last).
    junk = {
        "min_words": [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(2)],
        "duplicate_lines": ["\n".join([" ".join(rng.choice(vocab) for _ in range(8))] * 4
                                      + [" ".join(rng.choice(vocab) for _ in range(8)) for _ in range(6)]
                                      + ["same closing line here"] * 6) for _ in range(2)],
        "ellipsis_lines": ["\n".join(" ".join(rng.choice(vocab) for _ in range(15)) + " ..."
                                     for _ in range(8)) for _ in range(2)],
    }
    phrases = [[rng.choice(vocab) for _ in range(20)] for _ in range(2)]
    junk["duplicate_ngrams"] = [" ".join([rng.choice(vocab) for _ in range(60)] + p * 4)
                                for p in phrases]
    for texts in junk.values():
        for text in texts:
            rows.append((text, DOMAINS[len(rows) % 2]))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    with open(path, "w") as fh:
        for text, domain in rows:
            fh.write(json.dumps({"text": text, "domain": domain}) + "\n")
    expected = {
        "documents": len(rows),
        "exact": planted["exact_train"] + planted["exact_cross"],
        "near": planted["near_train"] + planted["near_cross"],
        "cross": planted["exact_cross"] + planted["near_cross"],
        "filtered": {rule: len(texts) for rule, texts in junk.items()},
    }
    return path, expected


def _config(corpus: Path, cache: Path, **curate) -> DataConfig:
    return DataConfig(corpus=[str(corpus)], vocab_size=300, cache_dir=str(cache),
                      split_seed=SPLIT_SEED, curate=CurateConfig(**curate))


def _documents(prefix: str, tokenizer) -> list[str]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(prefix)
    return [tokenizer.decode(ds[i][:-1].tolist()) for i in range(len(ds))]


def _shingles(text: str, k: int = 5) -> set:
    words = normalize(text).split()
    return {" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))}


def _entry_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())
            if p.suffix in (".bin", ".idx") or p.name == "tokenizer.json"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    corpus, expected = _planted_corpus(folder)
    prepared = prepare(_config(corpus, folder / "cache", enabled=True), VAL_TOKENS, progress=False)
    return corpus, expected, prepared


def test_planted_duplicates_are_removed_in_the_planted_numbers(planted):
    _, expected, prepared = planted
    report = prepared.manifest["curation"]
    assert report["documents"] == expected["documents"]
    assert report["exact_duplicates"] == expected["exact"] == 12
    assert report["near_duplicates"] == expected["near"] == 12
    filtered = {k: v for k, v in report["filtered"].items() if v}
    assert filtered == expected["filtered"]  # every planted junk document, nothing else
    assert report["removed"] == expected["exact"] + expected["near"] + sum(expected["filtered"].values())
    # The held-out originals of the cross-boundary copies stay in training as the one copy.
    assert report["validation"]["kept_in_training"] == expected["cross"] == 8
    assert report["kept_with_duplicates"] == expected["exact"] + expected["near"]
    assert prepared.manifest["train_docs"] + report["validation"]["documents"] == report["kept"]


def test_no_validation_document_has_a_duplicate_in_training(planted):
    _, _, prepared = planted
    train = _documents(prepared.train_prefix, prepared.tokenizer)
    assert len(train) == prepared.manifest["train_docs"]
    ids = [re.match(r"id\d{4}\w+?(?=\s)", t) for t in train]
    train_ids = [m.group(0) for m in ids if m]
    assert len(train_ids) == len(set(train_ids)), "a base document is twice in training"
    train_shingles = [_shingles(t) for t in train]
    train_norm = {normalize(t) for t in train}
    n_val = 0
    for domain in prepared.domains:
        for text in _documents(prepared.val_prefix(domain), prepared.tokenizer):
            n_val += 1
            assert normalize(text) not in train_norm
            s = _shingles(text)
            worst = max(len(s & t) / len(s | t) for t in train_shingles)
            assert worst < 0.5, f"validation document near training (Jaccard {worst:.2f})"
            assert text.split()[0] not in train_ids
    assert n_val == prepared.manifest["curation"]["validation"]["documents"] > 0
    assert sorted(prepared.domains) == list(DOMAINS)


def test_filters_remove_planted_documents_one_rule_each():
    rng = random.Random(3)
    vocab = _vocabulary(rng)
    c = CurateConfig(enabled=True)
    good = [_lines(_doc(rng, vocab, f"id{i}")) for i in range(20)]
    word = lambda: rng.choice(vocab)  # noqa: E731
    planted = {
        "min_words": " ".join(word() for _ in range(30)),
        "max_words": " ".join(word() for _ in range(400)),
        "min_mean_word_length": " ".join(rng.choice(["a", "of", "to", "in"]) for _ in range(80)),
        "max_mean_word_length": " ".join(word() * 3 for _ in range(80)),
        "symbol_word_ratio": " ".join(word() + (" #" if i % 5 == 0 else "") for i in range(80)),
        "ellipsis_lines": "\n".join(" ".join(word() for _ in range(15)) + " ..." for _ in range(8)),
        "duplicate_lines": "\n".join([" ".join(word() for _ in range(8)) for _ in range(6)]
                                     + ["the same short line"] * 5),
        "duplicate_line_chars": "\n".join([" ".join(word() for _ in range(6)) for _ in range(8)]
                                          + [" ".join(word() for _ in range(30))] * 2),
        "top_ngram": " ".join([word() for _ in range(60)] + ["quite", "often"] * 12),
        "duplicate_ngrams": " ".join([word() for _ in range(60)] + [word() for _ in range(20)] * 3),
    }
    c.max_words = 300
    reasons = scan_texts(good + list(planted.values()), c).reason
    assert reasons[:len(good)].tolist() == [0] * len(good)
    assert [REASONS[r] for r in reasons[len(good):]] == list(planted)
    # null switches a rule off: the document passes (or fails a later rule)
    c.min_words = None
    assert filter_reason(planted["min_words"], c) == 0


def test_exact_and_near_duplicate_detection_on_texts():
    rng = random.Random(5)
    vocab = _vocabulary(rng)
    c = CurateConfig(enabled=True, min_words=None, max_top_ngram_char_fraction=[],
                     max_duplicate_ngram_char_fraction=[])
    docs = [_doc(rng, vocab, f"id{i}") for i in range(50)]
    texts = [_lines(w) for w in docs]
    texts += [_exact_variant(texts[1], rng), _lines(_near_variant(docs[2], rng, vocab)),
              _lines(docs[3][:70] + [rng.choice(vocab) for _ in range(70)])]  # ~0.3: kept
    from asymptote.data.curate import deduplicate

    plan = deduplicate(scan_texts(texts, c), c)
    assert [REASONS[r] for r in plan.reason[-3:]] == ["exact_duplicate", "near_duplicate", "kept"]
    assert (plan.reason[:50] == 0).all()
    assert np.flatnonzero(plan.clustered).tolist() == [1, 2]
    assert plan.duplicate_of[-3:].tolist() == [1, 2, -1]  # the kept copy each one matched


def test_curation_off_changes_neither_the_cache_key_nor_the_data(tmp_path):
    from asymptote.data.corpus import corpus_files

    corpus, _ = _planted_corpus(tmp_path / "c")
    off = _config(corpus, tmp_path / "cache")
    # The key formula from before curation existed.
    h = hashlib.sha256()
    for path in corpus_files(off):
        h.update(str(path.resolve()).encode())
        h.update(hashlib.md5(path.read_bytes()).digest())
    h.update(json.dumps([FORMAT_VERSION, off.text_key, off.domain_key, off.tokenizer,
                         off.vocab_size, 999, off.split_seed]).encode())
    assert cache_key(off, 999) == h.hexdigest()[:16]
    # Settings of a disabled section decide nothing.
    assert cache_key(_config(corpus, tmp_path / "cache", min_words=7, near_dedup=False), 999) \
        == cache_key(off, 999)
    assert cache_key(_config(corpus, tmp_path / "cache", enabled=True), 999) != cache_key(off, 999)

    plain = prepare(off, 999, progress=False)
    assert "curation" not in plain.manifest
    # Curation on with every step off: a different entry with byte-identical data, so the
    # hook itself perturbs neither the split nor the tokenization.
    idle = prepare(_config(corpus, tmp_path / "cache", enabled=True, exact_dedup=False,
                           near_dedup=False, min_words=None, max_words=None,
                           min_mean_word_length=None, max_mean_word_length=None,
                           max_symbol_word_ratio=None, max_ellipsis_line_fraction=None,
                           max_duplicate_line_fraction=None, max_duplicate_line_char_fraction=None,
                           max_top_ngram_char_fraction=[], max_duplicate_ngram_char_fraction=[]),
                   999, progress=False)
    assert idle.root != plain.root and idle.manifest["curation"]["removed"] == 0
    assert _entry_files(idle.root) == _entry_files(plain.root)
    assert {k: v for k, v in idle.manifest.items() if k != "curation"} == plain.manifest


def test_run_folder_names_do_not_change_while_curation_is_off():
    from asymptote.launch.run_dir import config_hash

    cfg = {"job": "pretrain", "data": {"seed_tokens": 1024, "curate": {"enabled": False, "min_words": 50}},
           "cpt": {"replay": {"corpus": [], "curate": {"enabled": False}}}}
    before = {"job": "pretrain", "data": {"seed_tokens": 1024}, "cpt": {"replay": {"corpus": []}}}
    assert config_hash(cfg) == config_hash(before)
    cfg["data"]["curate"]["enabled"] = True
    assert config_hash(cfg) != config_hash(before)


def test_sharded_curation_equals_the_serial_one(tmp_path, planted):
    from asymptote.data.shards import prepare_sharded, submit_local

    corpus, _, serial = planted
    sharded = prepare_sharded(_config(corpus, tmp_path / "cache", enabled=True), VAL_TOKENS, 3,
                              submit_local(2), progress=False)
    assert sharded.root.name == serial.root.name
    assert sharded.manifest == serial.manifest
    assert _entry_files(sharded.root) == _entry_files(serial.root)
    assert not (sharded.root / "shards").exists()


def test_bad_settings_are_refused_before_reading_listing_every_problem(tmp_path):
    bad = CurateConfig(enabled=True, jaccard_threshold=1.5, lsh_bands=40, lsh_rows=8,
                       max_duplicate_line_fraction=2.0)
    problems = check(bad)
    assert len(problems) == 3 and any("lsh_bands=40" in p for p in problems)
    cfg = DataConfig(corpus=[str(tmp_path / "missing.jsonl")], cache_dir=str(tmp_path), curate=bad)
    with pytest.raises(CurationError, match="jaccard_threshold=1.5"):
        prepare(cfg, 100, progress=False)  # refused before the (missing) corpus is looked at
    assert check(CurateConfig()) == []


def test_curation_that_removes_every_document_says_which_rule(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": f"short doc {i}"}) + "\n" for i in range(5)))
    cfg = DataConfig(corpus=[str(path)], cache_dir=str(tmp_path / "cache"),
                     curate=CurateConfig(enabled=True))
    with pytest.raises(CurationError, match="removed all 5 documents \\(min_words 5\\)"):
        prepare(cfg, 100, progress=False)


def test_filter_verdicts_do_not_depend_on_the_hash_seed():
    """Tied most-frequent n-grams of different lengths: the verdict is the same whichever the
    (per-process, seeded) string hash puts first; shards in other processes must agree."""
    import os
    import subprocess
    import sys

    rng = random.Random(9)
    vocab = _vocabulary(rng)
    filler = [rng.choice(vocab) for _ in range(70)]
    text = " ".join(filler + ["ab", "cd"] * 6 + ["extraordinarily", "lengthy"] * 6)
    code = ("import json, sys; from asymptote.data.config import CurateConfig; "
            "from asymptote.data.curate import filter_reason; "
            "print(filter_reason(json.loads(sys.stdin.read()), CurateConfig(enabled=True)))")
    verdicts = {subprocess.run([sys.executable, "-c", code], input=json.dumps(text), text=True,
                               capture_output=True, check=True,
                               env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
                for seed in ("1", "2", "3", "4")}
    assert verdicts == {str(REASONS.index("top_ngram"))}
