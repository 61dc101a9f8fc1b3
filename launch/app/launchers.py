"""Hydra launchers of `asymptote-train -m`: every point is validated before anything starts, and
the sweep is recorded in `sweep.json` (and the output root's `manifest.json`).

- `LocalSweepLauncher` (`hydra/launcher=local`): Hydra's basic launcher, one point after another
  in this process.
- `SlurmSweepLauncher` (`hydra/launcher=slurm`): hydra-submitit-launcher's SLURM launcher, plus
  splitting a sweep larger than the cluster's MaxArraySize into several arrays, `detach` (return
  once submitted), and the SLURM ids of every point in sweep.json for `asymptote status` and
  `asymptote resubmit`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from . import sweep_record
from .points import SweepPoint, compose_points

log = logging.getLogger(__name__)


@dataclass
class AsymptoteSlurmConf(SlurmQueueConf):
    """hydra-submitit-launcher's SLURM settings plus asymptote's (see docs/slurm-launch.md)."""

    _target_: str = "hydra_plugins.asymptote_launchers.SlurmSweepLauncher"
    detach: bool = False
    """Return as soon as every array is submitted (follow with `asymptote status <out>`); false
    blocks until all tasks end, as hydra-submitit-launcher does."""
    max_array_size: Optional[int] = None
    """Most tasks per array; null reads MaxArraySize from `scontrol show config`. A larger sweep
    is submitted as several arrays."""


@dataclass
class AsymptoteLocalConf:
    """Run the points one after another in this process (Hydra's basic launcher)."""

    _target_: str = "hydra_plugins.asymptote_launchers.LocalSweepLauncher"


def register_launchers() -> None:
    """Make `hydra/launcher=asymptote_slurm|asymptote_local` available to the YAML presets.

    The classes are registered with Hydra by hand too: Hydra finds plugins by walking the
    `hydra_plugins` namespace on disk, which misses packages of an editable install."""
    from hydra.core.plugins import Plugins
    from hydra_plugins import asymptote_launchers

    for cls in (asymptote_launchers.LocalSweepLauncher, asymptote_launchers.SlurmSweepLauncher):
        Plugins.instance().register(cls)
    cs = ConfigStore.instance()
    cs.store(group="hydra/launcher", name="asymptote_slurm", node=AsymptoteSlurmConf,
             provider="asymptote")
    cs.store(group="hydra/launcher", name="asymptote_local", node=AsymptoteLocalConf,
             provider="asymptote")


def _points(launcher, job_overrides, initial_job_idx) -> list[SweepPoint]:
    def load(overrides):
        return launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)

    points = compose_points(load, job_overrides, initial_job_idx)
    log.info(f"validated {len(points)} sweep point(s)")
    return points


def _open_record(sweep_dir: Path, out: Path, launcher: str, executor: dict | None) -> dict:
    path = sweep_dir / sweep_record.SWEEP_FILE
    if path.is_file():  # a later batch of the same sweep (sweepers may launch in batches)
        return sweep_record.read_sweeps(sweep_dir)[0][1]
    return sweep_record.new_record(sweep_dir, out, launcher, executor)


def _manifests(points: list[SweepPoint]) -> None:
    """Runs the analysis should expect: every point whose job keeps a run record."""
    by_root: dict[Path, list[str]] = {}
    for p in points:
        if p.outputs.record is None:
            continue
        folder = p.outputs.record.parent
        by_root.setdefault(folder.parent, []).append(folder.name)
    for root, names in by_root.items():
        sweep_record.update_manifest(root, names)


class LocalSweepLauncher(BasicLauncher):
    """Hydra's basic launcher with up-front validation and a sweep record."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        points = _points(self, job_overrides, initial_job_idx)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        record = _open_record(sweep_dir, Path(str(self.config.out)), "local", None)
        record["points"] += [sweep_record.point_entry(p) for p in points]
        sweep_record.write_sweep(sweep_dir, record)
        _manifests(points)
        return super().launch(job_overrides, initial_job_idx)


def make_executor(params: dict[str, Any], folder: str):
    """A submitit SLURM executor for the launcher settings `params` (hydra.launcher.*).

    Clears this process's torch.distributed rendezvous variables, which sbatch would export."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    # sbatch exports this process's environment to the tasks; a rendezvous of the submitting
    # process (e.g. submitting from inside a torchrun job) would override the tasks' own.
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(key, None)
    params = dict(params)
    params.pop("submitit_folder", None)
    # The one setting submitit takes at construction rather than in update_parameters.
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout", 0))
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in generic else f"slurm_{k}": v
                                  for k, v in params.items()})
    return executor


def chunks(items: list, size: int | None) -> list[list]:
    """`items` in consecutive pieces of at most `size` (all in one piece when size is None)."""
    if not size or len(items) <= size:
        return [items]
    return [items[i : i + size] for i in range(0, len(items), size)]


class SlurmSweepLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with validation, array chunking, detach and
    sweep.json."""

    def __init__(self, detach: bool = False, max_array_size: int | None = None, **params: Any):
        super().__init__(**params)
        self.detach = detach
        self.max_array_size = max_array_size

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from ...slurm.scheduler import max_array_size

        points = _points(self, job_overrides, initial_job_idx)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        record = _open_record(sweep_dir, Path(str(self.config.out)), "slurm", self.params)
        limit = self.max_array_size or max_array_size()
        pieces = chunks(points, limit)
        if len(pieces) > 1:
            print(f"[asymptote] {len(points)} points exceed the cluster's MaxArraySize={limit}: "
                  f"submitting {len(pieces)} arrays of at most {limit} tasks", flush=True)
        executor = make_executor(self.params, self.params["submitit_folder"])
        jobs = []
        for piece in pieces:
            args = [(p.overrides, "hydra.sweep.dir", p.index, f"job_id_for_{p.index}",
                     Singleton.get_state()) for p in piece]
            submitted = executor.map_array(self, *zip(*args))
            array_id = submitted[0].job_id.split("_")[0]
            record["arrays"].append({"job_id": array_id, "size": len(piece),
                                     "first_index": piece[0].index})
            record["points"] += [
                sweep_record.point_entry(p, job.job_id, str(job.paths.submitted_pickle))
                for p, job in zip(piece, submitted)]
            # Written after each array, so what was submitted is on record even if a later
            # submission fails.
            sweep_record.write_sweep(sweep_dir, record)
            jobs += submitted
            print(f"[asymptote] submitted array {array_id}: points "
                  f"#{piece[0].index}-#{piece[-1].index}", flush=True)
        _manifests(points)
        if self.detach:
            print(f"[asymptote] detached; follow with `asymptote status {sweep_dir}`", flush=True)
            returns = []
            for p in points:
                ret = JobReturn(overrides=p.overrides, status=JobStatus.COMPLETED)
                ret.return_value = None
                returns.append(ret)
            return returns
        return [job.results()[0] for job in jobs]
