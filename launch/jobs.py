"""Job types of `asymptote-train` (`job=<name>`): each names the function every rank runs.

A job function takes the typed RunConfig and returns the run's final metrics (a dict; the
Hydra app returns its `val_loss` to sweepers). Modules are imported only when their job runs.
Add a job type by adding a row here.
"""

from __future__ import annotations

import importlib
from typing import Callable

# name -> "module:function"
JOBS: dict[str, str] = {
    "pretrain": "asymptote.launch.loop:run_training",
    "evaluate": "asymptote.evals.evaluate:run_evaluate",
    "split": "asymptote.launch.split:run_split",
    "cpt": "asymptote.launch.cpt:run_cpt",
    "ensemble_member": "asymptote.launch.ensemble:run_member",
    "ensemble_eval": "asymptote.launch.ensemble:run_eval",
    "generate": "asymptote.launch.generate:run_generate",
    "distill": "asymptote.launch.distill:run_distill",
}

#: Jobs that write into other runs' folders (evaluate writes into the runs it evaluates), so
#: their own config-hash folder never exists: sweeps do not list it as an expected run, and
#: `asymptote status` judges them by the scheduler alone.
NO_RUN_FOLDER = {"evaluate"}


def known_jobs() -> list[str]:
    """Job names accepted by `job=`."""
    return sorted(JOBS)


def job_function(name: str) -> Callable:
    """The function that runs job `name` on one rank."""
    if name not in JOBS:
        from .validate import ConfigError

        raise ConfigError(f"job={name!r} is not a job type; use one of {', '.join(known_jobs())}")
    module, func = JOBS[name].split(":")
    return getattr(importlib.import_module(module), func)


def prepare_config(cfg):
    """Apply the job's config derivation, if its module defines ``prepare_config(DictConfig)``.

    Runs once, before validation and before the run folder is named, in the process that
    launches (its result is what spawned ranks receive), so every rank and the folder name see
    the same derived values (e.g. an ensemble member's seeds)."""
    if cfg.get("job") not in JOBS:
        return cfg
    module = importlib.import_module(JOBS[cfg.job].split(":")[0])
    hook = getattr(module, "prepare_config", None)
    return hook(cfg) if hook is not None else cfg


def derive_once(cfg, job: str, derive: Callable):
    """A job module's `prepare_config` body for jobs whose config is derived from another run
    (split, cpt): apply `derive(RunConfig) -> RunConfig` once in the launching process, so
    validation, every rank and the run folder's name see the same values. Other jobs' configs
    pass through unchanged."""
    if cfg.get("job") != job:
        return cfg
    from omegaconf import OmegaConf

    from .train import to_run_config

    derived = derive(to_run_config(cfg))
    return OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(derived)))
