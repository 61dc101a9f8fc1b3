"""Explicit registration with Hydra and OmegaConf, called by the entry points (never on import).

- the `job` config group: every job type's schema and YAML (launch/jobs/);
- resolvers `asymptote.tasks_per_node` (SLURM tasks per node of a layout) and `asymptote.pid`;
- the launchers `hydra/launcher=asymptote_local|asymptote_slurm`.
"""

from __future__ import annotations

import os

_done = False


def tasks_per_node(tp: int, pp: int, dp: int, nodes: int) -> int:
    """SLURM tasks per node of one run: its tp x pp x dp ranks spread evenly over `nodes`.

    Resolver ``asymptote.tasks_per_node`` of ``conf/hydra/launcher/slurm.yaml``."""
    world, nodes = int(tp) * int(pp) * int(dp), int(nodes)
    if nodes < 1 or world % nodes:
        raise ValueError(f"tp x pp x dp = {world} ranks cannot be spread evenly over {nodes} "
                         f"node(s); set hydra.launcher.nodes to a divisor of {world}")
    return world // nodes


def register_all() -> None:
    """Register job configs, resolvers and launchers (once per process)."""
    global _done
    if _done:
        return
    from omegaconf import OmegaConf

    from ..jobs import register_configs
    from .launchers import register_launchers

    register_configs()
    OmegaConf.register_new_resolver("asymptote.tasks_per_node", tasks_per_node, replace=True)
    # Part of the sweep folder's name: two sweeps started in the same second get different
    # folders. Cached, and Hydra copies resolver caches into each point's config, so every point
    # (and a SLURM task re-composing its config) sees the launching process's value.
    OmegaConf.register_new_resolver("asymptote.pid", os.getpid, use_cache=True, replace=True)
    register_launchers()
    _done = True


def compose(overrides: list[str], return_hydra_config: bool = True):
    """The composed config of `asymptote-train <overrides>` (one point), for tools and tests."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    register_all()
    with initialize_config_module("asymptote.launch.conf", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides),
                             return_hydra_config=return_hydra_config)
