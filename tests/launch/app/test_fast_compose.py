"""Composing a sweep's points through Hydra once per base (launch/app/points.PointComposer) gives
exactly what a full Hydra compose of every point gives: the same typed configs, run folders and
outputs, the same errors, and (medium route) the same composed config, `hydra` node included."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import pytest
from omegaconf import OmegaConf

from asymptote.launch.app.plan import config_groups, expand_sweep
from asymptote.launch.app.points import PointComposer, check_all, resolve_point
from asymptote.launch.config import to_dict
from asymptote.launch.errors import ConfigError


@contextmanager
def hydra():
    """(full compose of one point, is_group) inside an initialized Hydra, as `asymptote plan`."""
    from hydra import compose, initialize_config_module

    from asymptote.launch.app.register import register_all

    register_all()
    with initialize_config_module("asymptote.launch.conf", version_base="1.3"):
        def load(overrides):
            return compose("config", overrides=list(overrides), return_hydra_config=True)

        yield load, config_groups()


def full_points(load, sweep):
    """Every point composed through Hydra on its own (the reference: how points were composed
    before PointComposer), with the same refusal of a sweep with bad points."""
    points, errors = [], []
    for i, overrides in enumerate(sweep):
        label = f"sweep point #{i} ({' '.join(overrides)})"
        try:
            cfg = load(overrides)
        except Exception as exc:
            errors.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        try:
            points.append(resolve_point(cfg, i, overrides))
        except ConfigError as exc:
            errors.append(str(exc))
    check_all(points, errors)
    return points


def assert_same_points(fast, full):
    assert len(fast) == len(full)
    for a, b in zip(fast, full):
        assert a == b  # index, overrides, typed config, outputs (run folder)
        # Types too (1 vs 1.0 would change nothing above but the JSON a run records).
        assert json.dumps(to_dict(a.config), sort_keys=True, default=str) == \
            json.dumps(to_dict(b.config), sort_keys=True, default=str)


@pytest.mark.parametrize("overrides, route", [
    # two bases (model choices) x value overrides of several types, on the fast route
    (["model=tiny,tiny_m", "optim.weight_decay=0.1,1", "train.epochs=1,3", "seed.train=0,2"],
     "fast"),
    (["optim.lr=1,0.002", "model.rope_scaling=null,linear", "train.peak_flops=1e12",
      "data.streaming=true", "data.vocab_size=512", "out=somewhere"], "fast"),
    # a job with a derive step (seeds from the member index)
    (["job=ensemble_member", "ensemble.member=0,1,2", "optim.weight_decay=0.2"], "fast"),
    # an experiment whose run config interpolates the overridden keys: the medium route
    (["experiment=ensemble_members", "data.seed_tokens=65536,131072", "ensemble.member=0,1"],
     "medium"),
    # overrides that are not plain values (+key, ++key): part of each point's own base
    (["++optim.weight_decay=0.1,0.2", "+tags.sweep=a"], "own base"),
])
def test_points_equal_a_full_compose_of_each(overrides, route):
    sweep = expand_sweep(overrides)
    with hydra() as (load, is_group):
        composer = PointComposer(load, is_group)
        fast = composer.points(sweep)
        full = full_points(load, sweep)
    assert_same_points(fast, full)
    if route == "own base":
        assert composer.counts["bases"] == len(sweep), composer.counts
    else:
        assert composer.counts[route] == len(sweep), composer.counts


def test_bases_are_composed_once_per_group_choice():
    sweep = expand_sweep(["model=tiny,tiny_m", "optim.weight_decay=" + ",".join(
        f"{0.01 * i:.2f}" for i in range(1, 21))])
    with hydra() as (load, is_group):
        calls = []

        def counting(o):
            calls.append(o)
            return load(o)

        composer = PointComposer(counting, is_group)
        points = composer.points(sweep)
        assert_same_points([points[0], points[-1]],
                           [resolve_point(load(sweep[i]), i, sweep[i]) for i in (0, 39)])
    assert len(points) == 40 and len({p.run_dir for p in points}) == 40
    assert sorted(calls) == [["model=tiny"], ["model=tiny_m"]]


def test_composed_config_with_hydra_node_equals_a_full_compose():
    sweep = expand_sweep(["model=tiny_m", "job=ensemble_member", "ensemble.member=3",
                          "optim.weight_decay=0.5", "data.seed_tokens=65536",
                          "hydra/launcher=slurm", "parallel.tp=2"])
    with hydra() as (load, is_group):
        composer = PointComposer(load, is_group)
        (overrides,) = sweep
        fast = composer.compose(overrides)
        full = load(overrides)
        for cfg in (fast, full):
            assert cfg.optim.weight_decay == 0.5 and cfg.parallel.tp == 2
        assert OmegaConf.to_container(fast, resolve=False) == \
            OmegaConf.to_container(full, resolve=False)
        assert fast.hydra.launcher.tasks_per_node == full.hydra.launcher.tasks_per_node == 2
        assert fast.hydra.job.override_dirname == full.hydra.job.override_dirname
        # The shared base is not changed by what the points set on it.
        base = composer._bases[composer.split(overrides)[0]]
        base_before = OmegaConf.to_container(base.cfg, resolve=False)
        composer.points([overrides[:-2] + ["optim.weight_decay=0.9", "parallel.tp=2"]])
        assert OmegaConf.to_container(base.cfg, resolve=False) == base_before
        assert base.cfg.optim.weight_decay != 0.9


@pytest.mark.parametrize("bad", ["optim.weight_decay=abc", "optim.wd=0.1", "model=nope",
                                 "train.epochs=1.5"])
def test_bad_values_give_the_errors_of_a_full_compose(bad):
    sweep = [["model=tiny", "optim.lr=0.001"], ["model=tiny", bad]]
    with hydra() as (load, is_group):
        with pytest.raises(ConfigError) as fast:
            PointComposer(load, is_group).points(sweep)
        with pytest.raises(ConfigError) as full:
            full_points(load, sweep)
    assert "nothing was launched: 1 problem(s)" in str(fast.value)
    assert "sweep point #1" in str(fast.value)
    assert str(fast.value) == str(full.value)


def test_checks_still_refuse_bad_points_on_the_fast_route():
    sweep = expand_sweep(["model=tiny", "optim.weight_decay=0.1,-1", "parallel.tp=1,3"])
    with hydra() as (load, is_group):
        composer = PointComposer(load, is_group)
        with pytest.raises(ConfigError) as exc:
            composer.points(sweep)
        with pytest.raises(ConfigError) as full:
            full_points(load, sweep)
    text = str(exc.value)
    assert text == str(full.value)
    assert "3 problem(s)" in text and "optim.weight_decay=-1.0 must be >= 0" in text
    assert "not divisible by parallel.tp=3" in text
    assert composer.counts["fast"] == 4


@pytest.mark.parametrize("values", [
    ["1e-3", "1_000", "-2", "+3", "0.10", "1.", "inf", "-inf", "true", "True", "FALSE", "null",
     "abc", "a.b", "1e5", "0x10", "1.5e-3", "007"],
])
def test_many_values_parse_as_one_each(values):
    """The batched parse (one choice sweep per key) reads each value as Hydra reads it alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    composer = PointComposer(lambda o: None)
    lines = [f"optim.lr={v}" for v in values]
    composer._parse_all(lines)
    for line in lines:
        (alone,) = OverridesParser.create().parse_overrides([line])
        batched = composer._parsed.get(line)
        assert batched is not None, line
        value = alone.value()
        assert type(batched[2]) is type(value), line
        assert batched[2] == value or (isinstance(value, float) and math.isnan(value)), line
