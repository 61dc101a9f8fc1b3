"""A study point's state from what its job left on disk: its run.json, or its output files.

Run locally, the record is all there is (as `asymptote status` reads a local sweep): `done`
is DONE with its final validation loss, `failed` is FAILED with its error, `running` or
`requeued` is RUNNING, `stopped` (a signal ended it) is FAILED until it is run again to resume.
A job that keeps no record (job=generate) is DONE once every file it declares exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..outputs import Outputs

DONE, FAILED, RUNNING, MISSING = "DONE", "FAILED", "RUNNING", "MISSING"
WAITING = "WAITING"  # not known yet: its inputs do not exist (decided by the plan)
BLOCKED = "BLOCKED"  # its inputs exist but its job's checks refuse them (decided by the plan)
STATES = (DONE, RUNNING, MISSING, FAILED, BLOCKED, WAITING)


@dataclass
class PointState:
    """What one point's outputs say."""

    state: str
    """DONE, FAILED, RUNNING or MISSING (WAITING and BLOCKED are decided by the plan)."""
    detail: str = ""
    """The error of a failed run, the step of a running one."""
    loss: float | None = None
    """Final validation loss of a finished run (nan when it finished without a finite one)."""


def read_record(path: Path) -> dict:
    """A run.json as a dict ({} when absent or unreadable: a half-written file is impossible,
    run.json is replaced atomically, but a foreign file may be anything)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return {}


def point_state(outputs: Outputs) -> PointState:
    """The state of a point from its job's declared outputs."""
    if outputs.record is None:
        if outputs.files and all(Path(f).exists() for f in outputs.files):
            return PointState(DONE, "outputs written")
        return PointState(MISSING, "")
    record = read_record(outputs.record)
    status = record.get("status")
    if status == "done":
        if outputs.files and not all(Path(f).exists() for f in outputs.files):
            missing = [Path(f).name for f in outputs.files if not Path(f).exists()]
            return PointState(FAILED, f"run.json says done but {', '.join(missing)} is missing")
        if "final" not in record:  # an evaluation: its results are its files
            return PointState(DONE, "")
        loss = record["final"].get("val_loss")
        loss = float(loss) if isinstance(loss, (int, float)) else math.nan
        return PointState(DONE, "" if math.isfinite(loss) else "diverged: no finite final loss",
                          loss)
    if status == "failed":
        return PointState(FAILED, (record.get("error") or "failed").splitlines()[0])
    if status == "stopped":
        return PointState(FAILED, "stopped by a signal; run again to resume")
    if status in ("running", "requeued"):
        step, steps = record.get("step"), record.get("steps")
        return PointState(RUNNING, f"step {step}/{steps}" if steps else status)
    return PointState(MISSING, "")
