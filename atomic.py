"""Replace files atomically: a reader sees the old file or the new one, never part of one.

Every writer in asymptote that replaces a file others may read at the same time (run records,
manifests, the checkpoint ``latest`` pointer, caches, log-prob stores) goes through here:

- :func:`write_text`, :func:`write_bytes`, :func:`write_json`: the whole content at once;
- :func:`replacing`: for writers that need a path of their own (``np.savez``, ``h5py``,
  ``tokenizer.save``, ``torch.save``): the block writes the temporary path it is given, which is
  moved onto the target only if the block finishes without an exception;
- :func:`replacing_all`: the same for several files written together (an indexed dataset's
  ``.bin`` and ``.idx``, a folder of them).

The temporary file is ``.<name>.tmp<pid>-<random>`` in the target's folder (so ``os.replace``
never crosses a file system, and two processes or threads writing the same target never share
one). On an exception it is removed and the old target is left as it was; a crash (SIGKILL, power
loss) can leave such a hidden temporary behind, never a torn target. ``fsync=True`` also flushes
the file and its folder to disk before and after the rename, for files that must survive a power
loss (not only a process crash).

Standard library only: imported from ``asymptote.analysis``, which never imports torch.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["temporary_path", "replacing", "replacing_all", "write_bytes", "write_text", "write_json"]

_NAME_MAX = 255


def temporary_path(path: PathLike) -> Path:
    """A fresh temporary name next to `path`: ``.<name>.tmp<pid>-<random>`` (hidden, unique per
    process and call, so concurrent writers of the same target never collide)."""
    path = Path(path)
    tail = f".tmp{os.getpid()}-{secrets.token_hex(4)}"
    name = path.name[: _NAME_MAX - len(tail) - 1]
    return path.with_name(f".{name}{tail}")


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms/file systems cannot open a folder: best effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except IsADirectoryError:  # the block made a folder there; not ours to recurse into
        pass


def _commit(pairs: list[tuple[Path, Path]], fsync: bool) -> None:
    missing = [str(tmp) for tmp, _ in pairs if not tmp.exists()]
    if missing:
        raise FileNotFoundError(
            f"nothing was written to the temporary path(s) {missing}: write exactly the path "
            "the block was given (a writer that appends a suffix, like numpy.savez, must be "
            "given an open file instead)")
    if fsync:
        for tmp, _ in pairs:
            _fsync_path(tmp)
    for tmp, target in pairs:
        os.replace(tmp, target)
    if fsync:
        for folder in dict.fromkeys(target.parent for _, target in pairs):
            _fsync_path(folder, directory=True)


@contextmanager
def replacing(path: PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block ends normally, move the file written
    there onto `path` (``os.replace``: atomic on POSIX). If the block raises, the temporary is
    removed, `path` keeps its old content (or stays absent) and the exception propagates.

    The folder of `path` must exist. The block must create the file at exactly the yielded path."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        _commit([(tmp, path)], fsync)
    except BaseException:
        _discard(tmp)
        raise


@contextmanager
def replacing_all(paths: Iterable[PathLike], *, fsync: bool = False) -> Iterator[list[Path]]:
    """:func:`replacing` for files that are written together: yields one temporary path per
    target (same order). Only when the block ends normally and every file was written is each
    moved onto its target, in the order given; if the block raises, all temporaries are removed
    and every target keeps its old content.

    Each file is replaced atomically, the group is not: a crash between two renames leaves some
    targets new and some old. A reader that must see a consistent group needs a marker written
    last (e.g. the ``manifest.json`` of a prepared-data folder), which is the usual design here."""
    targets = [Path(p) for p in paths]
    if len(set(targets)) != len(targets):
        raise ValueError(f"replacing_all: a target is named twice in {[str(t) for t in targets]}")
    tmps = [temporary_path(t) for t in targets]
    try:
        yield list(tmps)
        _commit(list(zip(tmps, targets)), fsync)
    except BaseException:
        for tmp in tmps:
            _discard(tmp)
        raise


def write_bytes(path: PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Replace `path` with `data` atomically. Returns `path` as a Path."""
    path = Path(path)
    with replacing(path, fsync=fsync) as tmp:
        with open(tmp, "xb") as fh:
            fh.write(data)
    return path


def write_text(path: PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = False) -> Path:
    """Replace `path` with `text` atomically. Returns `path` as a Path."""
    return write_bytes(path, text.encode(encoding), fsync=fsync)


def write_json(path: PathLike, obj, *, fsync: bool = False, **json_kwargs) -> Path:
    """Replace `path` with ``json.dumps(obj, **json_kwargs)`` atomically (serialised first, so an
    object that cannot be serialised leaves `path` untouched). Returns `path` as a Path."""
    return write_text(path, json.dumps(obj, **json_kwargs), fsync=fsync)
