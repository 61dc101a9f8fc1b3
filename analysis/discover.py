"""Find the runs of a sweep folder and their TensorBoard event files.

A run is a folder holding ``run.json`` (at any depth: Hydra may nest run folders). Its event files
are the files with ``tfevents`` in their name anywhere below it, except inside nested runs. Event
files that belong to no ``run.json`` still form runs (named by their folder, ``tb/`` stripped), so
a sweep whose runs died before writing ``run.json`` is still read. Hidden folders (the cache) and
checkpoint folders are not searched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

RUN_FILE = "run.json"
SKIP_DIRS = ("ckpt", "checkpoint", "checkpoints", "__pycache__", "wandb")
"""Folder names (and name prefixes ``ckpt``/``checkpoint``) never searched for runs or events."""


@dataclass
class EventFile:
    """One event file of a run."""

    rel: str
    """Path relative to the sweep folder (the file's identity in the cache)."""
    size: int
    """Size in bytes when discovered."""
    mtime_ns: int
    """Modification time when discovered."""
    prefix: str
    """Tag prefix: '' for files in the run's main event folder, else ``<subfolder>/``."""


@dataclass
class RunDir:
    """One run found in the sweep."""

    run_id: str
    """Folder path relative to the sweep (unique; '.' when the sweep folder itself is the run)."""
    path: Path
    """Absolute folder path."""
    meta: dict | None = None
    """Parsed ``run.json``, or None when absent or unreadable."""
    meta_error: str | None = None
    """Why ``run.json`` could not be used, when it exists but is unreadable."""
    has_run_json: bool = False
    """Whether the folder has a ``run.json`` file."""
    event_files: list[EventFile] = field(default_factory=list)
    """Event files in reading order (main folder first, each folder by file name)."""


def _skipped(name: str) -> bool:
    """Whether a folder name is excluded from the search."""
    return name.startswith(".") or name in SKIP_DIRS or name.startswith(("ckpt", "checkpoint"))


def discover(sweep: str | os.PathLike) -> list[RunDir]:
    """All runs under ``sweep``, sorted by run id. Raises FileNotFoundError if it is not a folder."""
    root = Path(sweep).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {sweep}")
    run_dirs: dict[str, RunDir] = {}
    orphan_events: dict[str, list[tuple[str, os.DirEntry]]] = {}

    def walk(folder: Path, owner: str | None):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        names = {e.name for e in entries}
        if RUN_FILE in names:
            rel = os.path.relpath(folder, root)
            owner = rel
            run_dirs[rel] = RunDir(run_id=rel, path=folder, has_run_json=True)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if not _skipped(e.name):
                    walk(Path(e.path), owner)
            elif "tfevents" in e.name and e.is_file():
                key = owner if owner is not None else _orphan_run(os.path.relpath(folder, root))
                orphan_events.setdefault(key, []).append((os.path.relpath(e.path, root), e))
                if owner is None and key not in run_dirs:
                    run_dirs[key] = RunDir(run_id=key, path=root / key if key != "." else root)

    walk(root, None)
    for run_id, files in orphan_events.items():
        run = run_dirs[run_id]
        run.event_files = _order(run_id, files)
    for run in run_dirs.values():
        if run.has_run_json:
            run.meta, run.meta_error = read_run_json(run.path / RUN_FILE)
    return [run_dirs[k] for k in sorted(run_dirs)]


def _orphan_run(rel_folder: str) -> str:
    """Run id for event files outside any run.json folder: their folder, minus a trailing ``tb``."""
    parts = Path(rel_folder).parts
    if parts and parts[-1] == "tb":
        parts = parts[:-1]
    return str(Path(*parts)) if parts else "."


def _order(run_id: str, files: list[tuple[str, os.DirEntry]]) -> list[EventFile]:
    """Event files sorted by folder depth, folder and name; tag prefixes relative to the
    shallowest folder."""
    folders = sorted({os.path.dirname(rel) for rel, _ in files}, key=lambda f: (f.count(os.sep), f))
    main = folders[0]
    out = []
    for rel, entry in sorted(files, key=lambda t: (t[0].count(os.sep), os.path.dirname(t[0]), os.path.basename(t[0]))):
        folder = os.path.dirname(rel)
        prefix = "" if folder == main else os.path.relpath(folder, main).replace(os.sep, "/") + "/"
        st = entry.stat()
        out.append(EventFile(rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, prefix=prefix))
    return out


def read_run_json(path: Path) -> tuple[dict | None, str | None]:
    """Parse a run.json; returns (document, None) or (None, reason)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        return None, f"unreadable run.json ({exc.__class__.__name__}: {exc})"
    if not isinstance(doc, dict):
        return None, "run.json is not a JSON object"
    return doc, None
