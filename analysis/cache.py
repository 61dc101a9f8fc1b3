"""On-disk cache of a sweep's raw scalar points, so re-analysis only reads what is new.

Layout of a cache folder: ``manifest.json`` (one entry per event file: size, mtime, how far it was
read, its row range, its resume markers) and four column files ``<generation>.<column>.npy``
(tag code, step, wall time, value) that are memory-mapped when loaded. Points are stored as read,
before resume purging and de-duplication, so appending to a file never invalidates earlier rows.

Writes are atomic: the columns of a new generation are written first, then the manifest is
replaced, then the previous generation is deleted (readers that already mapped it keep it alive).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_json

CACHE_VERSION = 1
COLUMNS = (("tag", np.int32), ("step", np.int64), ("wall_time", np.float64), ("value", np.float64))
"""Stored columns and their dtypes."""


@dataclass
class FileState:
    """What the cache knows about one event file."""

    rel: str
    """Path relative to the sweep folder."""
    run_id: str
    """Run the file belongs to."""
    prefix: str
    """Tag prefix applied to the file's tags."""
    size: int
    """File size when last read."""
    mtime_ns: int
    """Modification time when last read."""
    end: int
    """Byte offset after the last usable record (where an incremental read resumes)."""
    tail: str
    """Hex of the 4 bytes before ``end``: a changed value means the file was rewritten."""
    n: int
    """Number of points."""
    row0: int = 0
    """First row of this file's points in the cached columns."""
    starts: list = field(default_factory=list)
    """Resume markers as [points before it, purge step]."""
    monotone: bool = True
    """Whether steps strictly increase within every tag of this file."""
    truncated: bool = False
    """The file ended inside a record when last read."""
    damage: str | None = None
    """Damage found when last read, if any."""


def default_cache_dir(sweep: str | os.PathLike) -> Path:
    """``<sweep>/.asymptote_cache`` when the sweep is writable, else a per-user cache folder."""
    root = Path(sweep).resolve()
    if os.access(root, os.W_OK):
        return root / ".asymptote_cache"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asymptote"
    return base / hashlib.sha1(str(root).encode()).hexdigest()[:16]


class ScalarCache:
    """Read and write the cache folder of one sweep."""

    def __init__(self, directory: str | os.PathLike, sweep: str | os.PathLike):
        """``directory`` holds the cache; ``sweep`` is recorded so a cache is never reused for
        another sweep."""
        self.directory = Path(directory)
        self.sweep = str(Path(sweep).resolve())
        self.problem: str | None = None
        """Why an existing cache was ignored, if it was."""

    def load(self) -> tuple[dict[str, FileState], list[str], dict[str, np.ndarray] | None]:
        """(file states by path, tag names, memory-mapped columns); empty when there is no
        usable cache."""
        manifest_path = self.directory / "manifest.json"
        if not manifest_path.exists():
            return {}, [], None
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("version") != CACHE_VERSION or manifest.get("sweep") != self.sweep:
                self.problem = "cache belongs to another sweep or version; rebuilding"
                return {}, [], None
            gen = manifest["generation"]
            cols = {name: np.load(self.directory / f"{gen}.{name}.npy", mmap_mode="r") for name, _ in COLUMNS}
            files = {f["rel"]: FileState(**f) for f in manifest["files"]}
            total = sum(f.n for f in files.values())
            if any(c.shape != (manifest["rows"],) for c in cols.values()) or total != manifest["rows"]:
                raise ValueError("column lengths do not match the manifest")
            return files, list(manifest["tags"]), cols
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.problem = f"unreadable cache ignored ({exc.__class__.__name__}: {exc})"
            return {}, [], None

    def save(self, files: list[FileState], tags: list[str], cols: dict[str, np.ndarray]) -> None:
        """Write a new generation (columns, then manifest) and remove the previous one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        old = self._generation()
        gen = uuid.uuid4().hex[:12]
        rows = int(cols["step"].size)
        for name, dtype in COLUMNS:
            np.save(self.directory / f"{gen}.{name}.npy", np.ascontiguousarray(cols[name], dtype=dtype))
        manifest = {
            "version": CACHE_VERSION, "sweep": self.sweep, "generation": gen, "rows": rows, "tags": tags,
            "files": [asdict(f) for f in files],
        }
        write_json(self.directory / "manifest.json", manifest)
        if old and old != gen:
            for name, _ in COLUMNS:
                try:
                    (self.directory / f"{old}.{name}.npy").unlink()
                except OSError:
                    pass

    def _generation(self) -> str | None:
        """Generation id of the current manifest, if readable."""
        try:
            return json.loads((self.directory / "manifest.json").read_text()).get("generation")
        except (OSError, ValueError):
            return None
