"""torch.distributed and Megatron parallel state for one rank (NCCL on GPU, gloo on CPU)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import cpu_compat
from .config import ParallelConfig


@dataclass
class RankInfo:
    """Where this process sits in the job."""

    rank: int
    world: int
    local_rank: int
    tp: int
    pp: int
    dp: int
    tp_rank: int
    pp_rank: int
    dp_rank: int
    device: torch.device

    @property
    def is_logger(self) -> bool:
        """The one rank that writes TensorBoard, run.json and logs: last stage, tp 0, dp 0
        (it is the rank that holds the loss)."""
        return self.tp_rank == 0 and self.dp_rank == 0 and self.pp_rank == self.pp - 1


def resolve_backend(parallel: ParallelConfig) -> str:
    """`parallel.backend`, with `auto` meaning nccl when CUDA is present and gloo otherwise."""
    if parallel.backend != "auto":
        return parallel.backend
    return "nccl" if torch.cuda.is_available() else "gloo"


def env_rank_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the environment (torchrun or our own launcher)."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def initialize(parallel: ParallelConfig, seed: int, timeout_minutes: int = 30) -> RankInfo:
    """Start torch.distributed from the environment and Megatron's TP/PP/DP groups."""
    rank, world, local_rank = env_rank_world()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        cpu_compat.enable()  # first, so Megatron is imported with the CPU layer in place
        device = torch.device("cpu")
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    if not dist.is_initialized():
        # One rank needs no rendezvous: an in-process store, so runs started side by side
        # cannot race for a TCP port (a free port picked, released and taken by another run).
        store = {"store": dist.HashStore()} if world == 1 else {}
        dist.init_process_group(
            backend=resolve_backend(parallel),
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(minutes=timeout_minutes),
            **store,
        )
    ps.initialize_model_parallel(
        tensor_model_parallel_size=parallel.tp,
        pipeline_model_parallel_size=parallel.pp,
        virtual_pipeline_model_parallel_size=parallel.vpp,
    )
    model_parallel_cuda_manual_seed(seed)
    return RankInfo(
        rank=rank,
        world=world,
        local_rank=local_rank,
        tp=parallel.tp,
        pp=parallel.pp,
        dp=ps.get_data_parallel_world_size(),
        tp_rank=ps.get_tensor_model_parallel_rank(),
        pp_rank=ps.get_pipeline_model_parallel_rank(),
        dp_rank=ps.get_data_parallel_rank(),
        device=device,
    )


def global_rank() -> int:
    """This process's rank in the default process group (0 when none is initialized)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def shutdown() -> None:
    """Tear down Megatron's groups and the process group (safe to call twice)."""
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
