"""asymptote.atomic: a replaced file appears whole, a failure leaves the old one, writers never
tear each other's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from asymptote import atomic


def _leftovers(folder, keep=()):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_writers_replace_whole_files(tmp_path):
    target = tmp_path / "a.json"
    assert atomic.write_json(target, {"x": [1, 2]}, indent=2) == target
    assert target.read_text() == json.dumps({"x": [1, 2]}, indent=2)
    atomic.write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    atomic.write_bytes(str(target), b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == ["a.json"]


def test_replacing_moves_the_file_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "data.npz"
    target.write_text("old")
    with atomic.replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".data.npz.tmp")
        assert not tmp.exists()
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible before the block ends
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == ["data.npz"]


def test_exception_inside_replacing_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.replacing(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == ["manifest.json"]

    # An object json cannot serialise: the target is untouched, nothing is left behind.
    with pytest.raises(TypeError):
        atomic.write_json(target, {"x": object()})
    assert target.read_text() == "old"
    # A new target stays absent.
    with pytest.raises(KeyboardInterrupt):
        with atomic.replacing(tmp_path / "new") as tmp:
            tmp.write_text("x")
            raise KeyboardInterrupt
    assert _leftovers(tmp_path) == ["manifest.json"]


def test_block_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic.replacing(tmp_path / "x"):
            pass
    assert _leftovers(tmp_path) == []


def test_temporary_names_are_unique_and_short_enough(tmp_path):
    names = {atomic.temporary_path(tmp_path / "f").name for _ in range(200)}
    assert len(names) == 200
    assert all(n.startswith(f".f.tmp{os.getpid()}-") for n in names)
    long = atomic.temporary_path(tmp_path / ("n" * 255))
    assert len(long.name) <= 255
    atomic.write_text(tmp_path / ("n" * 255), "ok")  # the file system accepts the name
    assert (tmp_path / ("n" * 255)).read_text() == "ok"


def test_fsync_variant(tmp_path):
    atomic.write_text(tmp_path / "latest", "12\n", fsync=True)
    assert (tmp_path / "latest").read_text() == "12\n"


def test_replacing_all_is_all_or_nothing(tmp_path):
    bin_, idx = tmp_path / "train.bin", tmp_path / "train.idx"
    bin_.write_bytes(b"old-bin")
    idx.write_bytes(b"old-idx")
    with pytest.raises(ValueError):
        with atomic.replacing_all([bin_, idx]) as (tb, ti):
            tb.write_bytes(b"new-bin")
            ti.write_bytes(b"new-")
            raise ValueError("validation failed")
    assert (bin_.read_bytes(), idx.read_bytes()) == (b"old-bin", b"old-idx")
    assert _leftovers(tmp_path) == ["train.bin", "train.idx"]

    with pytest.raises(FileNotFoundError):  # one file missing: none replaced
        with atomic.replacing_all([bin_, idx]) as (tb, _):
            tb.write_bytes(b"new-bin")
    assert (bin_.read_bytes(), idx.read_bytes()) == (b"old-bin", b"old-idx")
    assert _leftovers(tmp_path) == ["train.bin", "train.idx"]

    with atomic.replacing_all([bin_, idx, tmp_path / "val.bin"]) as (tb, ti, tv):
        tb.write_bytes(b"new-bin")
        ti.write_bytes(b"new-idx")
        tv.write_bytes(b"val")
    assert (bin_.read_bytes(), idx.read_bytes()) == (b"new-bin", b"new-idx")
    assert _leftovers(tmp_path) == ["train.bin", "train.idx", "val.bin"]
    with pytest.raises(ValueError, match="twice"):
        with atomic.replacing_all([bin_, bin_]):
            pass


def test_concurrent_writers_and_readers_never_see_a_torn_file(tmp_path):
    target = tmp_path / "record.json"
    atomic.write_json(target, {"writer": 9, "payload": "9" * 50_000})
    stop = threading.Event()
    errors: list[str] = []

    def writer(i: int):
        for n in range(40):
            atomic.write_json(target, {"writer": i, "n": n, "payload": str(i) * 50_000})

    def reader():
        while not stop.is_set():
            text = target.read_text()
            try:
                data = json.loads(text)
            except ValueError as exc:  # a half-written file
                errors.append(f"{exc}: {text[:40]!r}...{text[-40:]!r}")
                continue
            if len(data["payload"]) != 50_000 or set(data["payload"]) != {str(data["writer"])[-1]}:
                errors.append(repr(data)[:80])

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert json.loads(target.read_text())["n"] == 39
    assert _leftovers(tmp_path) == ["record.json"]


def test_stdlib_only():
    """Imported from asymptote.analysis, which must not import torch (nor other heavy deps)."""
    code = ("import sys, asymptote.atomic as a; "
            "heavy = {'torch', 'numpy', 'megatron'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
