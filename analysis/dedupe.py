"""Resume semantics for one run's points: purge orphaned steps, then keep the newest duplicate.

A requeued job resumes from its last checkpoint, so steps after that checkpoint were logged twice.
Writers opened with ``purge_step=s`` record a ``SessionLog.START`` at step ``s``; like TensorBoard,
every point logged *before* that marker with step >= ``s`` is dropped (for all tags, even ones
the resumed run never logs again). Any remaining repeated (tag, step) keeps its newest point.
"""

from __future__ import annotations

import numpy as np


def monotone(tag: np.ndarray, step: np.ndarray) -> bool:
    """True when, within every tag, steps strictly increase in file order (nothing to dedupe)."""
    if step.size < 2:
        return True
    order = np.argsort(tag, kind="stable")
    t = tag[order]
    s = step[order]
    return bool(np.all((np.diff(s) > 0) | (np.diff(t) != 0)))


def keep_mask(tag: np.ndarray, step: np.ndarray, starts: list[tuple[int, int]]) -> np.ndarray:
    """Which points of a run survive, given points in stream order and START markers.

    ``starts`` holds (number of points before the marker, purge step) pairs in the same stream.
    """
    n = step.size
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    if starts:
        # threshold[q] = smallest purge step among markers after point q
        g = np.full(n + 1, np.iinfo(np.int64).max, dtype=np.int64)
        pos = np.array([p for p, _ in starts], dtype=np.int64)
        val = np.array([s for _, s in starts], dtype=np.int64)
        np.minimum.at(g, np.clip(pos, 0, n), val)
        suffix = np.minimum.accumulate(g[::-1])[::-1]
        keep &= step < suffix[1:]
    # newest wins: among equal (tag, step), only the last surviving point
    idx = np.flatnonzero(keep)
    order = np.lexsort((idx, step[idx], tag[idx]))
    t = tag[idx][order]
    s = step[idx][order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (t[1:] != t[:-1]) | (s[1:] != s[:-1])
    out = np.zeros(n, dtype=bool)
    out[idx[order[last]]] = True
    return out
