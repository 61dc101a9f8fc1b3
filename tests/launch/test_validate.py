"""Bad configs fail before any rank starts, with a message naming the fix."""

from __future__ import annotations

import pytest

from asymptote.launch.config import RunConfig
from asymptote.launch.run_dir import run_name
from asymptote.launch.validate import ConfigError, validate


def _cfg(**changes) -> RunConfig:
    cfg = RunConfig()
    for dotted, value in changes.items():
        group, key = dotted.split("__")
        setattr(getattr(cfg, group), key, value)
    return cfg


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"parallel__tp": 3}, "not divisible by parallel.tp=3"),
        ({"parallel__pp": 4}, "model.layers=2 is not divisible by parallel.pp"),
        ({"train__global_batch": 10}, "train.global_batch=10 is not divisible"),
        ({"data__seed_tokens": 100}, "less than one global batch"),
        ({"data__tokenizer": "/nonexistent/tok"}, "data.tokenizer"),
        ({"data__corpus": ["/nonexistent.jsonl"]}, "does not exist"),
    ],
)
def test_bad_config_is_refused_with_the_fix(changes, needle):
    with pytest.raises(ConfigError, match=None) as err:
        validate(_cfg(**changes))
    assert needle in str(err.value)


def test_world_size_must_fit_the_layout():
    with pytest.raises(ConfigError, match="not a multiple of tp x pp"):
        validate(_cfg(parallel__tp=2), world=3)
    assert validate(_cfg(parallel__tp=2, train__global_batch=16, train__micro_batch=4), world=4) == 2


def test_run_name_ignores_layout_but_not_hyperparameters():
    from omegaconf import OmegaConf

    base = OmegaConf.to_container(OmegaConf.structured(RunConfig()))
    other_layout = {**base, "parallel": {**base["parallel"], "tp": 2}}
    other_wd = {**base, "optim": {**base["optim"], "weight_decay": 0.8}}
    assert run_name(base) == run_name(other_layout)
    assert run_name(base) != run_name(other_wd)


def test_unknown_job_type_is_refused_with_the_known_ones():
    cfg = RunConfig()
    cfg.job = "pretrian"
    with pytest.raises(ConfigError, match="job='pretrian' is not a job type; use one of .*pretrain"):
        validate(cfg)
