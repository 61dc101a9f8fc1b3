"""The prepare cache: keyed by content, reused without rebuilding, rebuilt when the corpus
changes; bad corpus inputs fail early with the fix in the message."""

from __future__ import annotations

import json

import pytest

from asymptote.data import prepare as prepare_mod
from asymptote.data.prepare import prepare

from .conftest import data_config, val_tokens, write_corpus


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    real = prepare_mod._build

    def counting(*args, **kwargs):
        calls.append(args[1])  # the entry's root folder
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_mod, "_build", counting)
    return calls


def test_cache_is_reused_and_rebuilt_when_the_corpus_changes(tmp_path, count_builds):
    corpus = write_corpus(tmp_path / "c", docs_per_domain=40)
    cfg = data_config(corpus, tmp_path / "cache")
    first = prepare(cfg, val_tokens(), progress=False)
    assert len(count_builds) == 1 and (first.root / "manifest.json").is_file()
    manifest = json.loads((first.root / "manifest.json").read_text())
    assert manifest["train_docs"] > 0 and sorted(manifest["val_tokens"]) == ["alpha", "beta"]

    second = prepare(cfg, val_tokens(), progress=False)
    assert len(count_builds) == 1, "an unchanged corpus must not be prepared again"
    assert second.root == first.root and second.manifest == first.manifest
    assert second.tokenizer.encode("river stone") == first.tokenizer.encode("river stone")

    # Same path, new content (same size even): a new content hash, a new entry.
    text = corpus.read_text()
    corpus.write_text(text.replace("doc0000alpha", "doc9999alpha"))
    third = prepare(cfg, val_tokens(), progress=False)
    assert len(count_builds) == 2 and third.root != first.root
    assert (first.root / "manifest.json").is_file()  # the old entry is left alone

    # What decides the prepared data is in the key too: the validation quota, the split seed.
    prepare(cfg, val_tokens(val_sequences=4), progress=False)
    prepare(data_config(corpus, tmp_path / "cache", split_seed=7), val_tokens(), progress=False)
    assert len(count_builds) == 4


def test_half_built_entry_is_rebuilt(tmp_path, count_builds):
    corpus = write_corpus(tmp_path / "c", docs_per_domain=40)
    cfg = data_config(corpus, tmp_path / "cache")
    first = prepare(cfg, val_tokens(), progress=False)
    (first.root / "manifest.json").unlink()  # as if the builder crashed before the manifest
    again = prepare(cfg, val_tokens(), progress=False)
    assert len(count_builds) == 2 and again.root == first.root
    assert again.manifest == first.manifest


def test_missing_corpus_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="data.corpus entry .*nope.jsonl.* does not exist"):
        prepare(data_config(missing, tmp_path / "cache"), val_tokens(), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no .jsonl/.json/.txt/.parquet files"):
        prepare(data_config(tmp_path / "empty", tmp_path / "cache"), val_tokens(), progress=False)
    bad = tmp_path / "corpus.csv"
    bad.write_text("text\nhello\n")
    with pytest.raises(ValueError, match="unsupported type"):
        prepare(data_config(bad, tmp_path / "cache"), val_tokens(), progress=False)


def test_wrong_text_field_is_a_clear_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"body": "some text here", "domain": "a"}) + "\n")
    with pytest.raises(KeyError, match="set data.text_key"):
        prepare(data_config(corpus, tmp_path / "cache"), val_tokens(), progress=False)
    cfg = data_config(corpus, tmp_path / "cache", text_key="body")
    assert prepare(cfg, val_tokens(), progress=False).manifest["train_docs"] == 1


def test_text_files_are_one_document_each(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(12):
        (folder / f"notes{i:02d}.txt").write_text(f"note {i}: river stone maple cloud\n" * 5)
    prepared = prepare(data_config(folder, tmp_path / "cache"), val_tokens(), progress=False)
    held_out = sum(1 for _ in prepared.domains)
    assert prepared.manifest["train_docs"] + held_out == 12


def test_unreadable_corpus_files_are_clear_errors(tmp_path):
    from asymptote.data.corpus import CorpusError

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\nnot json at all\n')
    with pytest.raises(CorpusError, match=r"broken.jsonl cannot be read as json.*fix the file"):
        prepare(data_config(broken, tmp_path / "cache"), val_tokens(), progress=False)

    slash = tmp_path / "slash.jsonl"
    slash.write_text(json.dumps({"text": "some text", "domain": "news/sports"}) + "\n")
    with pytest.raises(CorpusError, match="domain 'news/sports' cannot name a file"):
        prepare(data_config(slash, tmp_path / "cache"), val_tokens(), progress=False)

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no non-empty documents; check data.corpus"):
        prepare(data_config(empty, tmp_path / "cache"), val_tokens(), progress=False)
    # An empty file next to real ones is skipped, not an error.
    corpus = write_corpus(tmp_path / "c", docs_per_domain=20)
    cfg = data_config(corpus, tmp_path / "cache")
    cfg.corpus = [str(corpus), str(empty)]
    assert prepare(cfg, val_tokens(), progress=False).manifest["train_docs"] > 0
