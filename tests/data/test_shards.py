"""Sharded tokenization builds the same prepared entry as the one-process build, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from asymptote.data.config import DataConfig
from asymptote.data.prepare import prepare
from asymptote.data.shards import prepare_sharded, shard_bounds, submit_local

VAL_TOKENS = 16 * 128 + 1


def entry_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())
            if p.suffix in (".bin", ".idx", ".json") and p.name != "manifest.json"}


def test_shard_bounds_cover_every_document_once():
    bounds = shard_bounds(10, 3)
    assert bounds == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(2, 2) == [(0, 1), (1, 2)]


@pytest.mark.parametrize("shards", [3])
def test_sharded_entry_equals_the_serial_one(tmp_path, shards):
    serial = prepare(DataConfig(cache_dir=str(tmp_path / "serial")), VAL_TOKENS, progress=False)
    sharded = prepare_sharded(DataConfig(cache_dir=str(tmp_path / "sharded")), VAL_TOKENS, shards,
                              submit_local(2), progress=False)
    assert serial.root.name == sharded.root.name  # the same cache key
    assert serial.manifest == sharded.manifest
    a, b = entry_files(serial.root), entry_files(sharded.root)
    assert sorted(a) == sorted(b) and "train.bin" in a and "val_drama.idx" in a
    for name in a:
        assert a[name] == b[name], f"{name} differs"
    assert not (sharded.root / "shards").exists()  # shard files are removed after the merge


def test_zero_shards_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        prepare_sharded(DataConfig(cache_dir=str(tmp_path)), VAL_TOKENS, 0, submit_local(1))
