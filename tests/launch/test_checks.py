"""Bad configs fail before any rank starts or anything is submitted, every problem at once,
each with a message naming the fix (launch/checks.py and the job registry)."""

from __future__ import annotations

import pytest

from asymptote.launch import jobs
from asymptote.launch.checks import check_run, raise_problems
from asymptote.launch.config import RunConfig
from asymptote.launch.errors import ConfigError
from asymptote.launch.run_dir import run_name


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
        ({"optim__lr": -1.0}, "optim.lr=-1.0 must be > 0"),
        ({"optim__beta2": 1.0}, "optim.beta2=1.0 must be in [0, 1)"),
        ({"optim__warmup_frac": 1.5}, "optim.warmup_frac=1.5 must be in [0, 1)"),
        ({"optim__weight_decay": -0.1}, "optim.weight_decay=-0.1 must be >= 0"),
        ({"optim__eps": 0.0}, "optim.eps=0.0 must be > 0"),
        ({"train__micro_batch": 0}, "train.micro_batch=0 must be >= 1"),
        ({"train__precision": "fp16"}, "train.precision='fp16'"),
        ({"model__dropout": 1.0}, "model.dropout=1.0 must be in [0, 1)"),
        ({"parallel__backend": "mpi"}, "parallel.backend='mpi'"),
    ],
)
def test_bad_config_is_refused_with_the_fix(changes, needle):
    problems = check_run(_cfg(**changes))
    assert any(needle in p for p in problems), problems


def test_every_problem_is_listed_at_once():
    problems = check_run(_cfg(optim__lr=0.0, train__epochs=0, parallel__tp=3))
    assert len(problems) >= 3
    with pytest.raises(ConfigError) as err:
        raise_problems(problems)
    assert "optim.lr" in str(err.value) and "train.epochs" in str(err.value)


def test_a_good_config_has_no_problem():
    assert check_run(_cfg()) == []


def test_world_size_must_fit_the_layout():
    assert any("not a multiple of tp x pp" in p for p in check_run(_cfg(parallel__tp=2), world=3))
    assert check_run(_cfg(parallel__tp=2, train__global_batch=16, train__micro_batch=4),
                     world=4) == []


def test_run_name_ignores_layout_but_not_hyperparameters():
    from omegaconf import OmegaConf

    base = OmegaConf.to_container(OmegaConf.structured(RunConfig()))
    other_layout = {**base, "parallel": {**base["parallel"], "tp": 2}}
    other_wd = {**base, "optim": {**base["optim"], "weight_decay": 0.8}}
    assert run_name(base) == run_name(other_layout)
    assert run_name(base) != run_name(other_wd)


def test_unknown_job_type_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="job='pretrian' is not a job type; use one of .*pretrain"):
        jobs.get("pretrian")


def test_negative_lr_is_refused_before_a_run_folder_exists(tmp_path):
    """The command line: `asymptote-train optim.lr=-1` stops with the fix and writes nothing."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "asymptote.launch.app.main", "model=tiny",
                           "optim.lr=-1", f"out={tmp_path}"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "optim.lr=-1.0 must be > 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name != ".hydra"] == []
