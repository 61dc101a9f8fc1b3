"""job=generate: sharded teacher text as indexed datasets with provenance, reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import only_run, run_train

TINY = ["model=tiny", "data.seed_tokens=16384", "train.epochs=1", "train.global_batch=8",
        "train.micro_batch=4"]


@pytest.fixture(scope="module")
def teacher(data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen-teacher")
    run_train(data_cache, *TINY, f"out={out}")
    return only_run(out)


def _generate(cache, teacher, folder, *extra):
    run_train(cache, "job=generate", f"generate.teacher=[{teacher}]", "generate.sequences=6",
              "generate.shards=2", "generate.length=40", "generate.batch=3",
              f"generate.output={folder}", f"out={folder.parent}", *extra)


def test_shards_are_datasets_with_provenance_and_reproducible(teacher, data_cache, tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from asymptote.data.synthetic import load_synthetic

    run_train(data_cache, "-m", "job=generate", f"generate.teacher=[{teacher}]",
              "generate.sequences=6", "generate.shards=2", "generate.length=40",
              "generate.batch=3", f"generate.output={tmp_path / 'a'}", f"out={tmp_path}",
              "generate.shard=0,1")
    meta = [json.loads((tmp_path / "a" / f"shard_0000{i}.json").read_text()) for i in (0, 1)]
    record = json.loads((teacher / "run.json").read_text())
    eod = meta[0]["eod"]
    for i, m in enumerate(meta):
        assert m["sequences"] == 3 and m["teacher"][0]["step"] == record["step"]
        assert m["tokenizer_sha"] == record["tokenizer_sha"]
        ds = IndexedDataset(str(tmp_path / "a" / f"shard_0000{i}"))
        docs = [np.asarray(ds[j]) for j in range(len(ds))]
        assert len(docs) == 3
        assert all(d[-1] == eod and 1 <= len(d) <= 41 for d in docs)
        assert sum(len(d) for d in docs) >= m["tokens"]
    stream = load_synthetic([str(tmp_path / "a")], record["tokenizer_sha"])
    assert (stream == eod).sum() == 6
    # the same shard again: identical bytes; another seed: different text
    _generate(data_cache, teacher, tmp_path / "b", "generate.shard=1")
    assert (tmp_path / "b" / "shard_00001.bin").read_bytes() == \
        (tmp_path / "a" / "shard_00001.bin").read_bytes()
    _generate(data_cache, teacher, tmp_path / "c", "generate.shard=1", "generate.seed=5")
    assert (tmp_path / "c" / "shard_00001.bin").read_bytes() != \
        (tmp_path / "a" / "shard_00001.bin").read_bytes()
    with pytest.raises(ValueError, match="tokenizer"):
        load_synthetic([str(tmp_path / "a")], "another")


def test_bad_requests_fail_before_work(teacher, data_cache, tmp_path):
    proc = run_train(data_cache, "job=generate", f"generate.teacher=[{teacher}]",
                     "generate.shards=2", "generate.shard=2", f"out={tmp_path}", check=False)
    assert proc.returncode != 0 and "generate.shard=2" in proc.stdout
    proc = run_train(data_cache, "job=generate", f"generate.teacher=[{tmp_path}]",
                     f"out={tmp_path}", check=False)
    assert proc.returncode != 0 and "not a run folder" in proc.stdout
