"""What a job produces: the launchers, manifest.json, `asymptote status` and studies ask."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import to_dict
from .run_dir import RunDir


@dataclass(frozen=True)
class Outputs:
    """What a job produces."""

    folder: Path
    """Where it writes: its own run folder, or an output folder (generate, ensemble_eval)."""
    record: Path | None = None
    """The run.json it keeps (status, step, loss), if any."""
    files: tuple[Path, ...] = field(default_factory=tuple)
    """Files that exist once it has finished (checked when there is no record)."""

    def as_dict(self) -> dict:
        """JSON form (sweep.json keeps it for `asymptote status`)."""
        return {"folder": str(self.folder), "record": str(self.record) if self.record else None,
                "files": [str(f) for f in self.files]}


def run_folder_outputs(cfg) -> Outputs:
    """The default: the run folder `<out>/<name>/` and its run.json."""
    root = RunDir.for_config(to_dict(cfg)).root.expanduser().resolve()
    return Outputs(folder=root, record=root / "run.json")
