"""Read a whole sweep into one table: every scalar point of every run, joined with its run.json.

:func:`load_sweep` discovers runs (:mod:`.discover`), reads only event bytes it has not read
before (:mod:`.cache`), decodes them (:mod:`.events`), applies resume semantics
(:mod:`.dedupe`) and returns a :class:`SweepData`. Damaged, truncated or unreadable inputs
become :class:`Issue` entries (and log warnings), never exceptions.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import dedupe
from .cache import COLUMNS, FileState, ScalarCache, default_cache_dir
from .discover import RunDir, discover
from .events import read_event_file
from .runs import final_metric, runs_frame

log = logging.getLogger(__name__)


@dataclass
class Issue:
    """Something wrong with the inputs that the analysis worked around."""

    run_id: str
    """Run concerned."""
    kind: str
    """Short category: damaged, truncated, run-json, no-events, cache."""
    message: str
    """Human-readable explanation."""

    def __str__(self) -> str:
        return f"{self.run_id}: {self.message}"


@dataclass
class IngestStats:
    """What an ingest did."""

    files: int = 0
    """Event files in the sweep."""
    files_read: int = 0
    """Files read in full."""
    files_appended: int = 0
    """Files read incrementally from where the cache stopped."""
    files_cached: int = 0
    """Files taken from the cache unchanged."""
    bytes_read: int = 0
    """Event bytes decoded in this call."""
    points: int = 0
    """Points in the final table (after resume purging and de-duplication)."""
    raw_points: int = 0
    """Points read before purging and de-duplication."""
    seconds: float = 0.0
    """Wall time of the ingest."""
    cache_dir: str | None = None
    """Cache folder used, if any."""


@dataclass
class SweepData:
    """Everything read from one sweep."""

    root: Path
    """The sweep folder."""
    scalars: pd.DataFrame
    """All scalar points: run (categorical run id), tag (categorical), step, wall_time, value."""
    runs: pd.DataFrame
    """One row per run, indexed by run id (see :mod:`.runs`)."""
    issues: list[Issue] = field(default_factory=list)
    """Problems worked around while reading."""
    stats: IngestStats = field(default_factory=IngestStats)
    """Counters of the ingest."""

    def table(self, tags: list[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """The scalar points (optionally only ``tags``) joined with run columns (default: all)."""
        pts = self.scalars if tags is None else self.scalars[self.scalars["tag"].isin(tags)]
        run_cols = self.runs if columns is None else self.runs[columns]
        return pts.join(run_cols, on="run")

    def tags(self) -> list[str]:
        """Distinct tags that have at least one point."""
        return sorted(self.scalars["tag"].unique().tolist()) if len(self.scalars) else []

    def last_values(self, tag: str) -> pd.Series:
        """Value at the largest step of ``tag`` for each run that logged it."""
        pts = self.scalars[self.scalars["tag"] == tag]
        if pts.empty:
            return pd.Series(dtype=float)
        idx = pts.groupby("run", observed=True)["step"].idxmax()
        last = pts.loc[idx.values]
        return pd.Series(last["value"].values, index=last["run"].astype(str).values)

    def final(self, tag: str = "val/loss") -> pd.DataFrame:
        """Final value of ``tag`` per run (run.json ``final`` first, else last point) with its source."""
        return final_metric(self.runs, self.last_values(tag), tag)

    def curve(self, run_id: str, tag: str) -> pd.DataFrame:
        """Points of one run and tag, sorted by step."""
        pts = self.scalars[(self.scalars["run"] == run_id) & (self.scalars["tag"] == tag)]
        return pts.sort_values("step").reset_index(drop=True)


def _tail(path: str, end: int) -> str:
    """Hex of the 4 bytes before ``end`` in the file (empty when end < 4)."""
    if end < 4:
        return ""
    with open(path, "rb") as f:
        f.seek(end - 4)
        return f.read(4).hex()


def load_sweep(sweep: str | os.PathLike, cache_dir: str | os.PathLike | None | bool = None,
               progress: bool = True, verify: bool = True) -> SweepData:
    """Ingest ``sweep``.

    ``cache_dir``: None picks :func:`.cache.default_cache_dir`, False disables caching, a path
    uses that folder. ``progress`` shows a progress bar on stderr while event bytes are read.
    ``verify`` checks every record checksum (slower by a few tens of percent, catches corruption).
    """
    t_start = time.perf_counter()
    root = Path(sweep).resolve()
    run_dirs = discover(root)
    issues: list[Issue] = []
    stats = IngestStats()

    cache = None
    old_files: dict[str, FileState] = {}
    tags: list[str] = []
    old_cols = None
    if cache_dir is not False:
        cache = ScalarCache(default_cache_dir(root) if cache_dir in (None, True) else cache_dir, root)
        old_files, tags, old_cols = cache.load()
        if cache.problem:
            issues.append(Issue(".", "cache", cache.problem))
        stats.cache_dir = str(cache.directory)
    tag_index = {t: i for i, t in enumerate(tags)}

    plan = []  # (run, event file, action, old state)
    to_read = 0
    for run in run_dirs:
        for ef in run.event_files:
            old = old_files.get(ef.rel) if old_cols is not None else None
            full = str(root / ef.rel)
            if old and old.prefix == ef.prefix and old.run_id == run.run_id:
                if old.size == ef.size and old.mtime_ns == ef.mtime_ns:
                    plan.append((run, ef, "cached", old))
                    continue
                if ef.size >= old.end and not old.damage and _tail(full, old.end) == old.tail:
                    plan.append((run, ef, "append", old))
                    to_read += ef.size - old.end
                    continue
            plan.append((run, ef, "read", None))
            to_read += ef.size
    stats.files = len(plan)

    # Nothing new (same files, same order, all unchanged): the cached columns are the table.
    changed = (old_cols is None or any(action != "cached" for _, _, action, _ in plan)
               or [ef.rel for _, ef, _, _ in plan] != list(old_files))
    states: list[FileState] = []
    if not changed:
        states = [old for _, _, _, old in plan]
        stacked = {name: old_cols[name] for name, _ in COLUMNS}
        stats.files_cached = len(plan)
    else:
        # Points go straight into one growing allocation (pages beyond what is written are never
        # touched), so the peak is about one copy of the table.
        store = _Store(capacity=sum(old.n for _, _, a, old in plan if a != "read") + to_read // 24 + 1024)
        bar = _progress(to_read, progress)
        for run, ef, action, old in plan:
            full = str(root / ef.rel)
            if action == "cached":
                row0 = store.n
                store.append([old_cols[name][old.row0 : old.row0 + old.n] for name, _ in COLUMNS])
                old.row0 = row0
                states.append(old)
                stats.files_cached += 1
                continue
            start = old.end if action == "append" else 0
            try:
                chunk = read_event_file(full, start=start, verify=verify)
            except OSError as exc:
                issues.append(Issue(run.run_id, "damaged", f"{ef.rel}: cannot read ({exc})"))
                continue
            read_bytes = max(0, ef.size - start)
            stats.bytes_read += read_bytes
            if bar is not None:
                bar.update(read_bytes)
            remap = np.array([tag_index.setdefault(ef.prefix + t, len(tag_index)) for t in chunk.tags], dtype=np.int32)
            new = [remap[chunk.tag] if chunk.tag.size else chunk.tag.astype(np.int32), chunk.step, chunk.wall_time, chunk.value]
            row0 = store.n
            if action == "append":
                store.append([old_cols[name][old.row0 : old.row0 + old.n] for name, _ in COLUMNS])
                starts = list(old.starts) + [[p + old.n, s] for p, s in chunk.starts]
                stats.files_appended += 1
            else:
                starts = [[p, s] for p, s in chunk.starts]
                stats.files_read += 1
            store.append(new)
            n = store.n - row0
            cols = store.rows(row0, n)
            states.append(FileState(
                rel=ef.rel, run_id=run.run_id, prefix=ef.prefix, size=ef.size, mtime_ns=ef.mtime_ns,
                end=chunk.end, tail=_tail(full, chunk.end), n=n, row0=row0, starts=starts,
                monotone=dedupe.monotone(cols["tag"], cols["step"]), truncated=chunk.truncated, damage=chunk.damage,
            ))
        if bar is not None:
            bar.close()
        stacked = store.rows(0, store.n)
    tags = list(tag_index)
    stats.raw_points = int(stacked["step"].size)
    if cache is not None and changed:
        try:
            cache.save(states, tags, stacked)
        except OSError as exc:
            issues.append(Issue(".", "cache", f"could not write the cache at {cache.directory}: {exc}"))

    for state in states:
        if state.damage:
            issues.append(Issue(state.run_id, "damaged", f"{state.rel}: {state.damage}; read up to the damage"))
            log.warning("%s: %s; read up to the damage", state.rel, state.damage)
        elif state.truncated:
            issues.append(Issue(state.run_id, "truncated", f"{state.rel}: ends inside a record (still being written?)"))

    run_codes, keep = _resolve_runs(run_dirs, states, stacked)
    scalars = _frame(stacked, run_codes, keep, [r.run_id for r in run_dirs], tags)
    n_points = scalars.groupby("run", observed=False).size().to_dict() if len(scalars) else {}
    runs = runs_frame(run_dirs, n_points)
    for run in run_dirs:
        if run.meta_error:
            issues.append(Issue(run.run_id, "run-json", run.meta_error))
        elif not run.has_run_json:
            issues.append(Issue(run.run_id, "run-json", "no run.json (configuration unknown)"))
        if not run.event_files:
            issues.append(Issue(run.run_id, "no-events", "no TensorBoard event files"))
    stats.points = len(scalars)
    stats.seconds = time.perf_counter() - t_start
    return SweepData(root=root, scalars=scalars, runs=runs, issues=issues, stats=stats)


def _resolve_runs(run_dirs: list[RunDir], states: list[FileState], stacked) -> tuple[np.ndarray, np.ndarray | None]:
    """Run code of every row, and the keep-mask after resume purging / de-duplication (None if
    every row is kept)."""
    code_of = {r.run_id: i for i, r in enumerate(run_dirs)}
    n = stacked["step"].size
    run_codes = np.empty(n, dtype=np.int32)
    by_run: dict[str, list[FileState]] = {}
    for state in states:
        run_codes[state.row0 : state.row0 + state.n] = code_of[state.run_id]
        by_run.setdefault(state.run_id, []).append(state)
    keep = None
    for run_id, states in by_run.items():
        simple = len(states) == 1 and states[0].monotone and all(p <= 0 for p, _ in states[0].starts)
        if simple:
            continue
        rows = np.concatenate([np.arange(s.row0, s.row0 + s.n) for s in states])
        offset = 0
        starts = []
        for s in states:
            starts += [(p + offset, st) for p, st in s.starts]
            offset += s.n
        mask = dedupe.keep_mask(np.asarray(stacked["tag"][rows]), np.asarray(stacked["step"][rows]), starts)
        if not mask.all():
            if keep is None:
                keep = np.ones(n, dtype=bool)
            keep[rows[~mask]] = False
    return run_codes, keep


class _Store:
    """Append-only columns in one allocation that grows by copying only when a guess was short."""

    def __init__(self, capacity: int):
        """``capacity``: expected rows (an over-estimate costs address space, not memory)."""
        self.n = 0
        self.cols = {name: np.empty(max(int(capacity), 16), dtype) for name, dtype in COLUMNS}

    def append(self, arrays) -> None:
        """Append one array per column (same length)."""
        k = len(arrays[1])
        need = self.n + k
        cap = self.cols["step"].size
        if need > cap:
            new_cap = max(need, int(cap * 1.5))
            for name, dtype in COLUMNS:
                grown = np.empty(new_cap, dtype)
                grown[: self.n] = self.cols[name][: self.n]
                self.cols[name] = grown
        for (name, _), a in zip(COLUMNS, arrays):
            self.cols[name][self.n : need] = a
        self.n = need

    def rows(self, start: int, n: int) -> dict[str, np.ndarray]:
        """Views of rows [start, start + n) of every column."""
        return {name: col[start : start + n] for name, col in self.cols.items()}


def _frame(stacked, run_codes, keep, run_ids, tags) -> pd.DataFrame:
    """The scalar table with categorical run and tag columns."""
    cols = {name: np.asarray(stacked[name]) for name, _ in COLUMNS}
    if keep is not None:
        cols = {k: v[keep] for k, v in cols.items()}
        run_codes = run_codes[keep]
    return pd.DataFrame(
        {
            "run": pd.Categorical.from_codes(run_codes, categories=run_ids) if run_ids else pd.Categorical([]),
            "tag": pd.Categorical.from_codes(cols["tag"], categories=tags) if tags else pd.Categorical([]),
            "step": cols["step"],
            "wall_time": cols["wall_time"],
            "value": cols["value"],
        },
        copy=False,
    )


def _progress(total: int, enabled: bool):
    """A tqdm byte counter on stderr, or None when disabled or nothing is to be read."""
    if not enabled or total <= 0:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc="reading events", file=sys.stderr, leave=False)
