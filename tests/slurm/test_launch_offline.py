"""The slurm launcher preset without a cluster: resources follow the run's layout."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from asymptote.launch.app.register import register_all, tasks_per_node


def _launcher(*overrides: str):
    register_all()  # the `job` group and the launchers live in Hydra's ConfigStore
    with initialize_config_module("asymptote.launch.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", *overrides],
                      return_hydra_config=True)
    return cfg.hydra.launcher


def test_tasks_follow_layout_and_settings_pass_through():
    la = _launcher("parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "hydra.launcher.nodes=2",
                   "hydra.launcher.partition=gpu", "hydra.launcher.account=acc",
                   "hydra.launcher.qos=high", "hydra.launcher.constraint=h100",
                   "+hydra.launcher.additional_parameters.reservation=r1")
    assert la.nodes == 2 and la.tasks_per_node == 4
    assert (la.partition, la.account, la.qos, la.constraint) == ("gpu", "acc", "high", "h100")
    assert OmegaConf.to_container(la.additional_parameters) == {"reservation": "r1"}
    assert la.signal_delay_s == 120 and la.max_num_timeout == 3
    assert _launcher().tasks_per_node == 1


def test_uneven_layout_is_an_error():
    assert tasks_per_node(2, 1, 3, 3) == 2
    with pytest.raises(ValueError, match="cannot be spread evenly over 4"):
        tasks_per_node(2, 1, 3, 4)
