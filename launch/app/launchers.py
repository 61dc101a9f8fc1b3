"""Hydra launchers of `asymptote-train -m`: every point is validated before anything starts, and
the sweep is recorded in `sweep.json` (and the output root's `manifest.json`).

- `LocalSweepLauncher` (`hydra/launcher=local`): Hydra's basic launcher, one point after another
  in this process.
- `SlurmSweepLauncher` (`hydra/launcher=slurm`): hydra-submitit-launcher's SLURM launcher, plus
  splitting a sweep larger than the cluster's MaxArraySize into several arrays, `detach` (return
  once submitted), and the SLURM ids of every point in sweep.json for `asymptote status` and
  `asymptote resubmit`.
- `AsymptoteSweeper` (`hydra/sweeper=asymptote`, the default): Hydra's basic sweeper, without
  its own compose of every point before an asymptote launcher composes and checks them again.

At scale (thousands of points): points are composed through Hydra once per distinct
config-group choice (`points.PointComposer`), one sbatch per array (retried with backoff while
the controller is busy), and the launcher and Hydra's state are pickled once per launch, not
once per task (`ArrayTask`).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from . import packing, sweep_record
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
    sbatch_attempts: int = 6
    """Tries of each sbatch while the controller answers as busy ("Socket timed out",
    "Resource temporarily unavailable"...), waiting 2, 4, 8... s (at most 60) in between."""
    sbatch_backoff_s: float = 2.0
    """The first wait between sbatch attempts (doubled after each failure)."""
    points_per_task: int = 1
    """Sweep points run by one array task: 1 is one task per point; k > 1 packs k consecutive
    points of one rank each into a task, run one after another, or at once one per GPU when
    the task has several (`gpus_per_node`); each keeps its own run folder and status
    (launch/app/packing.py)."""


@dataclass
class AsymptoteLocalConf:
    """Run the points one after another in this process (Hydra's basic launcher)."""

    _target_: str = "hydra_plugins.asymptote_launchers.LocalSweepLauncher"


@dataclass
class AsymptoteSweeperConf(BasicSweeperConf):
    """Hydra's basic sweeper (`a=1,2 b=x,y`: every combination), see AsymptoteSweeper."""

    _target_: str = "hydra_plugins.asymptote_launchers.AsymptoteSweeper"
    points_file: Optional[str] = None
    """A JSON list of points, each a list of overrides, launched as one batch instead of the
    combinations of the command line's sweeps (points that are not a grid, e.g. the stages of
    `asymptote study`); the command line's own overrides apply to every point."""


def register_launchers() -> None:
    """Make `hydra/launcher=asymptote_slurm|asymptote_local` and `hydra/sweeper=asymptote`
    available to the YAML presets.

    The classes are registered with Hydra by hand too: Hydra finds plugins by walking the
    `hydra_plugins` namespace on disk, which misses packages of an editable install."""
    from hydra.core.plugins import Plugins
    from hydra_plugins import asymptote_launchers

    for cls in (asymptote_launchers.LocalSweepLauncher, asymptote_launchers.SlurmSweepLauncher,
                asymptote_launchers.AsymptoteSweeper):
        Plugins.instance().register(cls)
    cs = ConfigStore.instance()
    cs.store(group="hydra/launcher", name="asymptote_slurm", node=AsymptoteSlurmConf,
             provider="asymptote")
    cs.store(group="hydra/launcher", name="asymptote_local", node=AsymptoteLocalConf,
             provider="asymptote")
    cs.store(group="hydra/sweeper", name="asymptote", node=AsymptoteSweeperConf,
             provider="asymptote")


class AsymptoteSweeper(Sweeper):
    """Hydra's basic sweeper, minus its compose of every point before launching when the
    launcher is one of asymptote's: those compose, type and check every point themselves
    (listing every problem at once), much faster than Hydra's one full compose per point.
    With any other launcher (e.g. `hydra/launcher=submitit_slurm`) it is the basic sweeper.

    It wraps a BasicSweeper rather than subclassing it: Hydra's plugin scan re-imports its
    core plugins, so a subclass of the class imported here would not be one of the class its
    methods refer to."""

    def __init__(self, max_batch_size: Optional[int] = None,
                 params: Optional[dict[str, str]] = None, points_file: Optional[str] = None):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        self.basic = BasicSweeper(max_batch_size=max_batch_size, params=params)
        self.points_file = points_file

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.basic.setup(hydra_context=hydra_context, task_function=task_function,
                         config=config)
        if isinstance(self.basic.launcher, (LocalSweepLauncher, SlurmSweepLauncher)):
            self.basic.validate_batch_is_legal = lambda batch: None

    def sweep(self, arguments: list[str]) -> Any:
        import sys

        from ..errors import ConfigError

        try:
            return self._sweep(arguments)
        except ConfigError as exc:
            # Hydra would print the sweeper's traceback around the message; a bad sweep is
            # the user's input, answered like a bad single run (asymptote-train exits 2).
            print(f"asymptote-train: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    def _sweep(self, arguments: list[str]) -> Any:
        if self.points_file is None:
            return self.basic.sweep(arguments)
        import json

        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        from ..errors import ConfigError

        sweeps = [o.input_line for o in OverridesParser.create().parse_overrides(arguments)
                  if o.is_sweep_override()]
        if sweeps:
            raise ConfigError(f"hydra.sweeper.points_file lists the points: the command line "
                              f"may not sweep too ({' '.join(sweeps)})")
        try:
            points = json.loads(Path(self.points_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"hydra.sweeper.points_file={self.points_file}: cannot be read "
                              f"as JSON ({exc})") from None
        if not (isinstance(points, list) and points
                and all(isinstance(p, list) and all(isinstance(o, str) for o in p)
                        for p in points)):
            raise ConfigError(f"{self.points_file}: expected a non-empty JSON list of points, "
                              "each a list of override strings")
        config = self.basic.config
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        return [self.basic.launcher.launch([list(arguments) + p for p in points],
                                           initial_job_idx=0)]


def _points(launcher, job_overrides, initial_job_idx, check=None) -> list[SweepPoint]:
    loader = launcher.hydra_context.config_loader

    def load(overrides):
        return loader.load_sweep_config(launcher.config, overrides)

    repository = getattr(loader, "repository", None)
    points = compose_points(load, job_overrides, initial_job_idx,
                            is_group=getattr(repository, "group_exists", None), check=check)
    log.info(f"validated {len(points)} sweep point(s)")
    return points


def layout_problems(points: list[SweepPoint], nodes: int, tasks_per_node: int,
                    derived: bool = True) -> list[str]:
    """Points whose ranks the array's tasks would not give them.

    One array has one resource request, made from the sweep's base config: nodes x
    tasks_per_node ranks per task. With tasks_per_node derived from the layout, every point
    must need exactly that many (tp x pp x dp); set by hand, the layout checks must pass for
    that world size."""
    from ..checks import check_layout

    ranks = int(nodes) * int(tasks_per_node)
    problems = []
    for p in points:
        label = f"sweep point #{p.index} ({' '.join(p.overrides) or 'no overrides'})"
        par = p.config.parallel
        if derived and p.world != ranks:
            problems.append(
                f"{label}: parallel.tp x pp x dp = {par.tp} x {par.pp} x {par.dp} = {p.world} "
                f"ranks, but the array's tasks get hydra.launcher.nodes x tasks_per_node = "
                f"{nodes} x {tasks_per_node} = {ranks} (one array has one layout, taken from "
                "the sweep's base config): launch one `-m` per layout")
        elif not derived:
            problems += [f"{label}: {msg} (hydra.launcher.nodes x tasks_per_node = {nodes} x "
                         f"{tasks_per_node})" for msg in check_layout(p.config, ranks)]
    return problems


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


#: Launcher settings of asymptote's own (not sbatch flags): kept out of the executor.
OWN_SETTINGS = ("detach", "max_array_size", "sbatch_attempts", "sbatch_backoff_s",
                "points_per_task")


def make_executor(params: dict[str, Any], folder: str):
    """A submitit SLURM executor (`SlurmArrayExecutor`) for the launcher settings `params`
    (hydra.launcher.*).

    Clears this process's torch.distributed rendezvous variables, which sbatch would export."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from ...slurm.scheduler import Backoff

    # sbatch exports this process's environment to the tasks; a rendezvous of the submitting
    # process (e.g. submitting from inside a torchrun job) would override the tasks' own.
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(key, None)
    params = dict(params)
    params.pop("submitit_folder", None)
    backoff = Backoff(attempts=max(1, int(params.get("sbatch_attempts") or 6)),
                      first_s=float(params.get("sbatch_backoff_s") or 2.0))
    for key in OWN_SETTINGS:
        params.pop(key, None)
    # submitit's AutoExecutor translates the generic settings into sbatch's; the executor that
    # submits is ours, with those parameters.
    max_num_timeout = params.pop("max_num_timeout", 0)
    auto = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                 slurm_max_num_timeout=max_num_timeout)
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    auto.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
    executor = slurm_array_executor(folder, max_num_timeout, backoff)
    executor.update_parameters(**auto._executor.parameters)
    return executor


_EXECUTOR_CLASS: type | None = None


def slurm_array_executor(folder, max_num_timeout: int = 3, backoff=None):
    """A `SlurmArrayExecutor` (submitit is imported only here, when something is submitted)."""
    global _EXECUTOR_CLASS
    if _EXECUTOR_CLASS is None:
        from submitit.slurm.slurm import SlurmExecutor

        _EXECUTOR_CLASS = type("SlurmArrayExecutor", (ArraySubmission, SlurmExecutor), {})
    executor = _EXECUTOR_CLASS(folder, max_num_timeout=max_num_timeout)
    if backoff is not None:
        executor.backoff = backoff
    return executor


class ArraySubmission:
    """Mixed into submitit's SLURM executor (`slurm_array_executor`): every batch of jobs (a
    sweep, a resubmission) is one sbatch call, an array of n tasks (or one job for n = 1), and
    sbatch is retried with backoff while the controller is busy
    (`asymptote.slurm.scheduler.sbatch`). Job folders, pickles and the batch script are where
    submitit puts them, so its jobs and tasks work unchanged."""

    backoff = None  # a scheduler.Backoff; None: its defaults

    def _internal_process_submissions(self, delayed_submissions):
        from submitit.core.utils import JobPaths
        from submitit.slurm.slurm import SlurmJob

        from ...slurm.scheduler import sbatch

        n = len(delayed_submissions)
        staging = JobPaths.get_first_id_independent_folder(self.folder)
        staging.mkdir(parents=True, exist_ok=True)
        timeout_min = self.parameters.get("time", 5)
        pickles = []
        for delayed in delayed_submissions:
            delayed.set_timeout(timeout_min, self.max_num_timeout)
            path = staging / f"{uuid.uuid4().hex}.pkl"
            delayed.dump(path)
            pickles.append(path)
        uid = uuid.uuid4().hex
        script = staging / f".submission_file_{uid}.sh"
        if n > 1:
            self.parameters["map_count"] = n  # --array=0-(n-1)%parallelism
        try:
            script.write_text(self._make_submission_file_text(self._submitit_command_str, uid))
        finally:
            self.parameters.pop("map_count", None)
        from ...slurm.scheduler import Backoff

        output = sbatch(self._make_submission_command(script), self.backoff or Backoff())
        job_id = self._get_job_id_from_submission_command(output)
        tasks = list(range(self._num_tasks()))
        # The script goes into the (first) job's folder, a link to it stays where it was.
        JobPaths(self.folder, job_id=job_id).move_temporary_file(script, "submission_file",
                                                                keep_as_symlink=True)
        self._write_job_id(job_id, uid)
        ids = [job_id] if n == 1 else [f"{job_id}_{i}" for i in range(n)]
        jobs = [SlurmJob(folder=self.folder, job_id=i, tasks=tasks) for i in ids]
        for job, path in zip(jobs, pickles):
            job.paths.move_temporary_file(path, "submitted_pickle")
        self._set_job_permissions(jobs[0].paths.folder)
        return jobs


class ArrayTask:
    """What each task of a sweep's array runs: the sweep's launcher, with Hydra's state, called
    with its point's arguments (as hydra-submitit-launcher's tasks call the launcher itself).

    The launcher and Hydra's state are pickled once per launch into `shared`, instead of into
    every task's submission (a large part of submitting thousands of tasks); each task's own
    pickle holds only this object and its point's overrides, so `asymptote resubmit` and
    submitit's requeue on preemption (`checkpoint`) work as before."""

    def __init__(self, shared: str):
        self.shared = str(shared)

    @staticmethod
    def write(folder: Path, launcher, state) -> "ArrayTask":
        """Pickle (launcher, Hydra state) once into `folder` (submitit's job-independent folder,
        seen by every task) and return the task that loads it."""
        import cloudpickle

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"launcher-{uuid.uuid4().hex[:12]}.pkl"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            cloudpickle.dump((launcher, state), f)
        tmp.replace(path)
        return ArrayTask(str(path))

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id):
        from submitit.core.utils import pickle_load

        launcher, state = pickle_load(Path(self.shared))
        return launcher(sweep_overrides, job_dir_key, job_num, job_id, state)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same call (submitit asks on preemption or time-out)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def chunks(items: list, size: int | None) -> list[list]:
    """`items` in consecutive pieces of at most `size` (all in one piece when size is None)."""
    if not size or len(items) <= size:
        return [items]
    return [items[i : i + size] for i in range(0, len(items), size)]


class SlurmSweepLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with validation, array chunking, detach and
    sweep.json."""

    def __init__(self, detach: bool = False, max_array_size: int | None = None,
                 sbatch_attempts: int = 6, sbatch_backoff_s: float = 2.0,
                 points_per_task: int = 1, **params: Any):
        super().__init__(**params)
        self.detach = detach
        self.max_array_size = max_array_size
        self.points_per_task = points_per_task
        self.params["sbatch_attempts"] = sbatch_attempts
        self.params["sbatch_backoff_s"] = sbatch_backoff_s
        if points_per_task != 1:  # kept out of the default's record: sweep.json as before
            self.params["points_per_task"] = points_per_task

    def _layout(self) -> tuple[int, int, bool]:
        """(nodes, tasks_per_node, derived) of the array's tasks: derived when tasks_per_node
        is still the preset's `asymptote.tasks_per_node` of the layout, not set by hand."""
        from omegaconf import OmegaConf

        node = self.config.hydra.launcher
        derived = "tasks_per_node" in node and OmegaConf.is_interpolation(node, "tasks_per_node")
        return int(self.params["nodes"]), int(self.params["tasks_per_node"]), derived

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from submitit.core.utils import JobPaths

        from ...slurm.scheduler import max_array_size

        layout = self._layout()
        k = self.points_per_task

        def check(pts):
            return layout_problems(pts, *layout) + packing.packing_problems(pts, k)

        points = _points(self, job_overrides, initial_job_idx, check=check)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        record = _open_record(sweep_dir, Path(str(self.config.out)), "slurm", self.params)
        limit = self.max_array_size or max_array_size()
        units = packing.pack(points, k)  # the points of each array task
        pieces = chunks(units, limit)
        if len(pieces) > 1:
            print(f"[asymptote] {len(units)} tasks exceed the cluster's MaxArraySize={limit}: "
                  f"submitting {len(pieces)} arrays of at most {limit} tasks", flush=True)
        executor = make_executor(self.params, self.params["submitit_folder"])
        shared = ArrayTask.write(JobPaths.get_first_id_independent_folder(executor.folder), self,
                                 Singleton.get_state())
        task = shared if k == 1 else packing.PackedTask(shared.shared)
        jobs = []
        for piece in pieces:
            if k == 1:
                args = [(u[0].overrides, "hydra.sweep.dir", u[0].index,
                         f"job_id_for_{u[0].index}") for u in piece]
            else:
                args = [([packing.member(p) for p in u],) for u in piece]
            submitted = executor.map_array(task, *zip(*args))
            array_id = submitted[0].job_id.split("_")[0]
            first, last = piece[0][0].index, piece[-1][-1].index
            array = {"job_id": array_id, "size": len(piece), "first_index": first}
            if k > 1:
                array.update(points=sum(len(u) for u in piece), points_per_task=k)
            record["arrays"].append(array)
            for unit, job in zip(piece, submitted):
                for position, p in enumerate(unit):
                    entry = sweep_record.point_entry(p, job.job_id,
                                                     str(job.paths.submitted_pickle))
                    if k > 1:
                        entry["task_position"] = position
                    record["points"].append(entry)
            # Written after each array, so what was submitted is on record even if a later
            # submission fails.
            sweep_record.write_sweep(sweep_dir, record)
            jobs.append((piece, submitted))
            packed = f" in {len(piece)} tasks of up to {k} points" if k > 1 else ""
            print(f"[asymptote] submitted array {array_id}: points #{first}-#{last}{packed}",
                  flush=True)
        _manifests(points)
        if self.detach:
            print(f"[asymptote] detached; follow with `asymptote status {sweep_dir}`", flush=True)
            returns = []
            for p in points:
                ret = JobReturn(overrides=p.overrides, status=JobStatus.COMPLETED)
                ret.return_value = None
                returns.append(ret)
            return returns
        if k == 1:
            return [job.results()[0] for _, submitted in jobs for job in submitted]
        return packing.job_returns([(unit, job.results()[0]) for piece, submitted in jobs
                                    for unit, job in zip(piece, submitted)])
