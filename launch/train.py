"""`asymptote-train`: the Hydra app. One run, or a sweep with `-m`.

A run that needs several ranks (tp x pp x dp > 1) and is not already under torchrun or SLURM
spawns its ranks itself on this machine, so no extra tool is needed on a laptop.
"""

from __future__ import annotations

import os
import socket
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from .config import RunConfig, register_schema
from .jobs import job_function, prepare_config
from .launchers import register_launchers
from .validate import ConfigError, validate

register_schema()


def tasks_per_node(tp: int, pp: int, dp: int, nodes: int) -> int:
    """SLURM tasks per node of one run: its tp x pp x dp ranks spread evenly over `nodes`.

    Resolver ``asymptote.tasks_per_node`` of ``conf/hydra/launcher/slurm.yaml``."""
    world, nodes = int(tp) * int(pp) * int(dp), int(nodes)
    if nodes < 1 or world % nodes:
        raise ValueError(f"tp x pp x dp = {world} ranks cannot be spread evenly over {nodes} "
                         f"node(s); set hydra.launcher.nodes to a divisor of {world}")
    return world // nodes


OmegaConf.register_new_resolver("asymptote.tasks_per_node", tasks_per_node, replace=True)
# Part of the sweep folder's name: two sweeps started in the same second get different folders.
# Cached, and Hydra copies resolver caches into each point's config, so every point (and a SLURM
# task re-composing its config) sees the launching process's value.
OmegaConf.register_new_resolver("asymptote.pid", os.getpid, use_cache=True, replace=True)
register_launchers()


def _under_launcher() -> bool:
    """True when ranks are provided from outside (torchrun, or SLURM with several tasks)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1


def free_port() -> int:
    """A TCP port nobody listens on now (for a local rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(local_rank: int, cfg_yaml: str, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_cfg = to_run_config(OmegaConf.create(cfg_yaml))
    job_function(run_cfg.job)(run_cfg)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """The typed RunConfig of a composed (and resolved) Hydra config."""
    merged = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
    return OmegaConf.to_object(merged)


def launch(cfg: DictConfig) -> dict:
    """Validate, then train on this process or on locally spawned ranks."""
    OmegaConf.resolve(cfg)
    cfg = prepare_config(cfg)  # job-specific derivations (e.g. an ensemble member's seeds)
    run_cfg = to_run_config(cfg)
    p = run_cfg.parallel
    if _under_launcher():
        validate(run_cfg, world=int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1))))
        from ..slurm import env as slurm_env  # sets RANK/WORLD_SIZE/MASTER_* from SLURM

        slurm_env.export_torch_env()
        return job_function(run_cfg.job)(run_cfg)
    validate(run_cfg)
    world = p.tp * p.pp * p.dp
    if world == 1:
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        return job_function(run_cfg.job)(run_cfg)
    import torch.multiprocessing as mp

    mp.start_processes(
        _rank_main, args=(OmegaConf.to_yaml(cfg), world, free_port()), nprocs=world,
        join=True, start_method="spawn",
    )
    from .run_dir import RunDir

    return RunDir.for_config(OmegaConf.to_container(cfg)).read().get("final", {})


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry: returns the final validation loss (what a sweeper would minimise)."""
    from .preemption import Preempted, RunBusyError

    try:
        final = launch(cfg)
    except (ConfigError, RunBusyError) as exc:
        print(f"asymptote-train: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except Preempted as exc:
        print(f"asymptote-train: {exc}; run the same command again to resume", file=sys.stderr)
        raise SystemExit(3) from None
    except Exception:
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ:
            # Hydra's run_job would catch the error and return it, so the SLURM task would exit
            # 0 and sacct would say COMPLETED. run.json already holds status failed and the
            # traceback; print it to the task's log and exit non-zero: sacct says FAILED.
            import traceback

            traceback.print_exc()
            raise SystemExit(1) from None
        raise
    return (final or {}).get("val_loss")


def main() -> None:
    """Console-script entry point."""
    hydra_main()


if __name__ == "__main__":
    main()
