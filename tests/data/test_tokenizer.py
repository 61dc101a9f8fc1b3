"""Tokenizers: a byte-level BPE trained here, a local tokenizer.json or tokenizer folder, and
clear errors for a missing or unusable tokenizer."""

from __future__ import annotations

import json

import pytest

from asymptote.data.prepare import prepare
from asymptote.data.tokenizer import EOD, Tokenizer, train_bpe

from .conftest import WORDS, data_config, val_tokens

TEXTS = [" ".join(WORDS["alpha"][i:] + WORDS["beta"][:i]) for i in range(10)] * 20


@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    return train_bpe(TEXTS, vocab_size=300)


def test_trained_bpe_round_trips_any_text(trained):
    assert trained.eod == 0 and trained.pad == 0
    assert trained._tok.id_to_token(0) == EOD
    assert 257 <= trained.vocab_size <= 300  # byte alphabet + EOD + merges
    for text in ("river stone maple", "unseen wörds, ünïcode ✓ and\ttabs\n", ""):
        ids = trained.encode(text)
        assert trained.decode(ids) == text
        assert trained.eod not in ids
    # Merges were learnt: a frequent word is shorter than its bytes.
    assert len(trained.encode("lantern")) < len("lantern")
    assert trained.encode_batch(["river", "stone"]) == [trained.encode("river"),
                                                         trained.encode("stone")]


def test_local_tokenizer_file_and_folder_load_the_same(trained, tmp_path):
    trained.save(tmp_path / "tokenizer.json")
    from_file = Tokenizer.load(tmp_path / "tokenizer.json")
    from_folder = Tokenizer.load(tmp_path)
    for tok in (from_file, from_folder):
        assert tok.vocab_size == trained.vocab_size and tok.eod == trained.eod
        assert tok.encode("ember harbor quartz") == trained.encode("ember harbor quartz")
    assert from_file.unique_identifiers == from_folder.unique_identifiers


def test_prepare_with_a_local_tokenizer_uses_it(trained, small_corpus, tmp_path):
    trained.save(tmp_path / "tokenizer.json")
    cfg = data_config(small_corpus, tmp_path / "cache", tokenizer=str(tmp_path),
                      vocab_size=999)  # vocab_size only applies to a trained tokenizer
    prepared = prepare(cfg, val_tokens(), progress=False)
    assert prepared.manifest["vocab_size"] == trained.vocab_size
    assert prepared.tokenizer.encode("maple cloud") == trained.encode("maple cloud")
    # Another tokenizer is another cache entry.
    trained_here = prepare(data_config(small_corpus, tmp_path / "cache"), val_tokens(),
                           progress=False)
    assert trained_here.root != prepared.root


def test_prepare_trains_the_requested_vocabulary(small_prepared):
    assert small_prepared.manifest["tokenizer"] == "train"
    assert small_prepared.tokenizer.vocab_size <= 320
    assert small_prepared.manifest["vocab_size"] == small_prepared.tokenizer.vocab_size


def test_unknown_tokenizer_path_is_a_clear_error_before_reading_the_corpus(tmp_path, monkeypatch):
    from asymptote.data import prepare as prepare_mod

    def no_reading(*a, **k):
        raise AssertionError("the corpus was read before the tokenizer was checked")

    monkeypatch.setattr(prepare_mod, "iter_documents", no_reading)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "hello"}) + "\n")
    for missing in (tmp_path / "nope" / "tokenizer.json", tmp_path):  # a folder without one
        cfg = data_config(corpus, tmp_path / "cache", tokenizer=str(missing))
        with pytest.raises(FileNotFoundError, match="data.tokenizer=.*data.tokenizer=train"):
            prepare(cfg, val_tokens(), progress=False)
    with pytest.raises(FileNotFoundError, match="no tokenizer at"):
        Tokenizer.load(tmp_path / "nope")


def test_tokenizer_without_end_of_document_token_is_refused(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    HFTokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(
        str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="no end-of-document token"):
        Tokenizer.load(tmp_path / "tokenizer.json")
