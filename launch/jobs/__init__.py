"""Job types of `asymptote-train` (`job=<name>`): one module and one YAML each.

A job type is a module `<name>.py` with `<name>.yaml` beside it, in this package or in a folder
listed in $ASYMPTOTE_JOBS_PATH (os.pathsep-separated). The module defines:

- `Config`: the job's schema, RunConfig or a subclass adding the job's own section (so other
  jobs' sections do not exist when this job is chosen);
- `check(cfg, world=None) -> list[str]`: every problem knowable before submission (values,
  referenced runs and checkpoints, tokenizers, layout), each naming the fix; reads, never writes;
- `derive(cfg) -> cfg` (optional): values derived once in the launching process, so validation,
  every rank and the run folder's name agree (an ensemble member's seeds, a base's model);
  idempotent, and may raise ConfigError;
- `outputs(cfg) -> Outputs` (optional; default: the run folder `<out>/<name>/` with run.json):
  what the job produces, asked by the launchers, manifest.json, `asymptote status` and studies;
- `run(cfg) -> dict`: the job on one rank; returns its final metrics.

The YAML (`# @package _global_`) sets `job: <name>` and the defaults of the job's section; it
is the `job` config group option of that name. Checks shared by every job (optimizer, model,
layout, data) live in launch/checks.py and always run first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..checks import check_run
from ..config import RunConfig
from ..errors import ConfigError
from ..outputs import Outputs, run_folder_outputs

JOBS_PATH_ENV = "ASYMPTOTE_JOBS_PATH"


@dataclass(frozen=True)
class JobType:
    """One job type: its module and YAML."""

    name: str
    module: ModuleType
    yaml: Path

    @property
    def Config(self) -> type:  # noqa: N802  (a class, named as in the job modules)
        """The job's config schema."""
        return getattr(self.module, "Config", RunConfig)

    def check(self, cfg, world: int | None = None) -> list[str]:
        """The job's own problems (the shared checks are in `check_config`)."""
        return list(self.module.check(cfg, world)) if hasattr(self.module, "check") else []

    def derive(self, cfg):
        """The config with the job's derived values (idempotent)."""
        return self.module.derive(cfg) if hasattr(self.module, "derive") else cfg

    def outputs(self, cfg) -> Outputs:
        """What the job produces."""
        if hasattr(self.module, "outputs"):
            return self.module.outputs(cfg)
        return run_folder_outputs(cfg)

    def run(self, cfg) -> dict:
        """Run the job on this rank."""
        return self.module.run(cfg)


_registry: dict[str, JobType] | None = None


def _import_external(name: str, path: Path) -> ModuleType:
    module_name = f"asymptote_jobs_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def discover() -> dict[str, JobType]:
    """Every job type: the modules of this package, then those of $ASYMPTOTE_JOBS_PATH."""
    global _registry
    if _registry is not None:
        return _registry
    found: dict[str, JobType] = {}
    here = Path(__file__).parent
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[info.name] = JobType(info.name, module, here / f"{info.name}.yaml")
    for folder in filter(None, os.environ.get(JOBS_PATH_ENV, "").split(os.pathsep)):
        for yaml in sorted(Path(folder).expanduser().glob("*.yaml")):
            source = yaml.with_suffix(".py")
            if source.is_file() and yaml.stem not in found:
                found[yaml.stem] = JobType(yaml.stem, _import_external(yaml.stem, source), yaml)
    _registry = found
    return found


def known() -> list[str]:
    """Job names accepted by `job=`."""
    return sorted(discover())


def get(name: str) -> JobType:
    """The job type `name`; ConfigError listing the known ones otherwise."""
    jobs = discover()
    if name not in jobs:
        raise ConfigError(f"job={name!r} is not a job type; use one of {', '.join(sorted(jobs))}")
    return jobs[name]


def register_configs() -> None:
    """Store every job's schema + YAML as the `job` config group of Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    cs = ConfigStore.instance()
    for name, job in discover().items():
        node = OmegaConf.merge(OmegaConf.structured(job.Config), OmegaConf.load(job.yaml))
        if node.job != name:
            raise ConfigError(f"{job.yaml} sets job: {node.job}; it must say job: {name}")
        cs.store(group="job", name=name, node=node, package="_global_", provider="asymptote")


def typed(cfg) -> RunConfig:
    """The typed config (the job's Config) of a composed DictConfig or a plain dict."""
    from omegaconf import DictConfig, OmegaConf

    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    job = get(node.get("job") or "pretrain")
    merged = OmegaConf.merge(OmegaConf.structured(job.Config), node)
    return OmegaConf.to_object(merged)


def derive(cfg):
    """The job's derive step on a typed config."""
    return get(cfg.job).derive(cfg)


def check_config(cfg, world: int | None = None) -> list[str]:
    """Every problem of a typed config: the shared checks, then the job's own."""
    return check_run(cfg, world) + get(cfg.job).check(cfg, world)


def outputs(cfg) -> Outputs:
    """What the job of this typed config produces."""
    return get(cfg.job).outputs(cfg)
