"""Where a run's ranks come from: an outside launcher (torchrun, SLURM tasks), or processes this
machine spawns itself, so no extra tool is needed on a laptop."""

from __future__ import annotations

import json
import os
import socket

from omegaconf import DictConfig, OmegaConf

from .. import jobs
from ..checks import raise_problems


def under_launcher() -> bool:
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
    cfg = jobs.typed(OmegaConf.create(cfg_yaml))  # already derived and checked by the parent
    jobs.get(cfg.job).run(cfg)


def prepared_config(cfg: DictConfig, world: int | None = None):
    """The typed, derived and checked config of a composed one (ConfigError lists problems)."""
    body = OmegaConf.create({k: v for k, v in cfg.items() if k != "hydra"})
    OmegaConf.resolve(body)
    typed = jobs.typed(body)
    typed = jobs.derive(typed)
    raise_problems(jobs.check_config(typed, world))
    return typed


def launch(cfg: DictConfig) -> dict:
    """Check, then run the job on this process or on locally spawned ranks."""
    if under_launcher():
        world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
        run_cfg = prepared_config(cfg, world)
        from ...slurm import env as slurm_env  # sets RANK/WORLD_SIZE/MASTER_* from SLURM

        slurm_env.export_torch_env()
        return jobs.get(run_cfg.job).run(run_cfg)
    run_cfg = prepared_config(cfg)
    p = run_cfg.parallel
    world = p.tp * p.pp * p.dp
    if world == 1:
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        return jobs.get(run_cfg.job).run(run_cfg)
    import torch.multiprocessing as mp

    mp.start_processes(
        _rank_main, args=(OmegaConf.to_yaml(OmegaConf.structured(run_cfg)), world, free_port()),
        nprocs=world, join=True, start_method="spawn",
    )
    out = jobs.outputs(run_cfg)
    if out.record is None or not out.record.is_file():
        return {}
    return json.loads(out.record.read_text()).get("final", {})
