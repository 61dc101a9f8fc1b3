"""The per-run table: one row per run, its status, flattened configuration and final metrics.

Column names follow ``run.json``: top-level numbers (``params``, ``seed_tokens``, ``epochs``...),
the resolved configuration flattened with dots and without the ``config.`` prefix
(``optim.lr``, ``optim.weight_decay``, ``model.hidden``...) and final metrics as
``final.<key>``. :data:`ALIASES` gives the short names used by the command line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .discover import RunDir

ALIASES = {
    "N": "params",
    "D": "seed_tokens",
    "E": "epochs",
    "lr": "optim.lr",
    "wd": "optim.weight_decay",
    "weight_decay": "optim.weight_decay",
    "seed": "seed.train",
}
"""Short names accepted wherever a run column is expected."""

TOP_LEVEL = ("name", "status", "error", "job", "params", "non_embedding_params", "flops_per_token",
             "seed_tokens", "epochs", "steps", "step")


def resolve(column: str, columns) -> str:
    """The run-table column meant by ``column`` (an alias, a full name, or a unique suffix)."""
    if column in columns:
        return column
    if column in ALIASES and ALIASES[column] in columns:
        return ALIASES[column]
    matches = [c for c in columns if str(c).endswith("." + column)]
    if len(matches) == 1:
        return matches[0]
    hint = f" (candidates: {', '.join(matches)})" if matches else ""
    raise KeyError(f"no run column {column!r}{hint}; available: {', '.join(map(str, columns))}")


def flatten(doc: dict, prefix: str = "") -> dict:
    """Nested dicts to one level with dotted keys; lists become tuples (hashable for grouping)."""
    out = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            out[name] = tuple(value)
        else:
            out[name] = value
    return out


def runs_frame(runs: list[RunDir], n_points: dict[str, int]) -> pd.DataFrame:
    """One row per run, indexed by run id."""
    rows = []
    for run in runs:
        meta = run.meta or {}
        row = {
            "run_id": run.run_id,
            "path": str(run.path),
            "has_run_json": run.has_run_json,
            "meta_error": run.meta_error,
            "n_event_files": len(run.event_files),
            "n_points": int(n_points.get(run.run_id, 0)),
        }
        for key in TOP_LEVEL:
            row[key] = meta.get(key)
        if not run.has_run_json:
            row["status"] = "unknown"
        elif run.meta is None:
            row["status"] = "unreadable"
        row["name"] = row["name"] or run.run_id
        config = meta.get("config")
        if isinstance(config, dict):
            # Top-level record fields win over same-named config keys (e.g. config.name = null).
            for key, value in flatten(config).items():
                if row.get(key) is None:
                    row[key] = value
        final = meta.get("final")
        if isinstance(final, dict):
            flat = flatten(final, "final.")
            row.update(flat)
            # A NaN final value (diverged) differs from an absent or null one (not evaluated).
            row["final_keys"] = tuple(k for k, v in flat.items() if v is not None)
        for key, value in meta.items():
            if key not in TOP_LEVEL and key not in ("config", "final") and not isinstance(value, (dict, list)):
                row.setdefault(key, value)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["run_id", *TOP_LEVEL]).set_index("run_id")
    frame = pd.DataFrame(rows).set_index("run_id")
    for col in frame.columns:
        if frame[col].dtype == object:
            converted = pd.to_numeric(frame[col], errors="coerce")
            if converted.notna().sum() == frame[col].notna().sum() and frame[col].notna().any():
                frame[col] = converted
    return frame


def final_key_candidates(tag: str) -> list[str]:
    """Names under which ``run.json``'s ``final`` may hold the final value of ``tag``."""
    return [f"final.{tag}", f"final.{tag.replace('/', '_')}"]


def final_metric(runs: pd.DataFrame, last_values: pd.Series, tag: str) -> pd.DataFrame:
    """The final value of ``tag`` per run: from ``run.json`` ``final`` when present, else the
    last logged point. Returns columns ``value`` and ``source`` ('run.json', 'events' or None)."""
    value = pd.Series(np.nan, index=runs.index, dtype=float)
    source = pd.Series(None, index=runs.index, dtype=object)
    present_keys = runs["final_keys"] if "final_keys" in runs.columns else pd.Series([()] * len(runs), index=runs.index)
    for key in final_key_candidates(tag):
        if key in runs.columns:
            col = pd.to_numeric(runs[key], errors="coerce")
            present = present_keys.map(lambda keys, k=key: isinstance(keys, tuple) and k in keys)
            take = source.isna() & present
            value[take] = col[take]
            source[take] = "run.json"
    if len(last_values):
        ev = last_values.reindex(runs.index)
        take = source.isna() & ev.notna()
        value[take] = ev[take]
        source[take] = "events"
    return pd.DataFrame({"value": value, "source": source})


def is_finite_number(x) -> bool:
    """True for a finite int/float (not None, NaN or infinite)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
