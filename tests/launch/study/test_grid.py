"""The certificate-driven grid extension on a synthetic objective: the loop of decide() and
"run what it asks" must end certified at the objective's known minimum, wherever that minimum
lies relative to the initial grid, or say "not certified" when the budget runs out."""

from __future__ import annotations

import math

import pytest

from asymptote.launch.study.grid import Axis, decide, norm


def objective(lr_star: float, wd_star: float, ep_star: float, diverge_above: float = math.inf):
    """A bowl in (log10 lr, log2 wd, log2 epochs) whose grid minimum is (lr*, wd*, ep*);
    learning rates above `diverge_above` diverge (loss nan)."""
    def f(lr: float, wd: float, ep: float) -> float:
        if lr > diverge_above:
            return math.nan
        return (3.0 + (math.log10(lr) - math.log10(lr_star)) ** 2
                + 0.3 * (math.log2(wd) - math.log2(wd_star)) ** 2
                + 0.2 * (math.log2(ep) - math.log2(ep_star)) ** 2)
    return f


def axes(lr=(1e-3, 3e-3, 1e-2), wd=(0.2, 0.8, 3.2), ep=(4, 8, 16), ep_min=1.0):
    return [Axis("optim.lr", tuple(lr), "half_decade"),
            Axis("optim.weight_decay", tuple(wd), "double", 0.0),
            Axis("train.epochs", tuple(ep), "double", ep_min, integer=True)]


def loop(ax, f, budget=None, rounds=50):
    """Run what each decision asks until the cell is decided; (decision, points run, rounds)."""
    finished: dict[tuple, float] = {}
    for n in range(rounds):
        d = decide(ax, finished, budget=budget)
        if d.state in ("certified", "not_certified"):
            return d, finished, n
        assert d.state == "extend" and d.to_run
        for p in d.to_run:
            key = tuple(p[a.name] for a in ax)
            assert key not in finished, f"{key} asked twice"
            finished[key] = f(*key)
    raise AssertionError("the loop did not end")


def test_spacing_continues_the_papers_grids():
    lr, wd, ep = axes()
    assert lr.beyond(1e-2, +1) == 3e-2 and lr.beyond(3e-2, +1) == 0.1
    assert lr.beyond(1e-4, -1) == 3e-5 and lr.beyond(3e-3, -1) == 1e-3
    assert wd.beyond(3.2, +1) == 6.4 and wd.beyond(0.1, -1) == 0.05
    assert ep.beyond(64, +1) == 128 and ep.beyond(2, -1) == 1 and ep.beyond(1, -1) is None
    assert Axis("x", (1.0,), "double", max=4.0).beyond(3.0, +1) == 4.0
    assert norm(3 * 1e-3) == 0.003


def test_minimum_inside_the_grid_is_certified_without_extra_runs():
    ax = axes()
    d, runs, _ = loop(ax, objective(3e-3, 0.8, 8))
    assert d.state == "certified"
    assert d.best == {"optim.lr": 3e-3, "optim.weight_decay": 0.8, "train.epochs": 8}
    assert len(runs) == 27  # the initial grid, nothing more


def test_minimum_on_the_edge_grows_the_grid_to_certify_it():
    ax = axes(lr=(1e-3, 3e-3), wd=(0.2, 0.8), ep=(4, 8))
    d, runs, _ = loop(ax, objective(3e-3, 0.8, 8))
    assert d.state == "certified"
    assert d.best == {"optim.lr": 3e-3, "optim.weight_decay": 0.8, "train.epochs": 8}
    assert 1e-2 in d.grids["optim.lr"] and 1.6 in d.grids["optim.weight_decay"]
    assert 16 in d.grids["train.epochs"]
    assert len(runs) == 8 + 3  # one neighbour past each edge


def test_minimum_outside_the_initial_grid_is_found_and_certified():
    # The miniature's start: one lr, three weight decays, one epoch count.
    ax = axes(lr=(3e-3,), wd=(0.8, 1.6, 3.2), ep=(16,))
    d, runs, rounds = loop(ax, objective(3e-2, 12.8, 64))
    assert d.state == "certified", d.reasons
    assert d.best == {"optim.lr": 3e-2, "optim.weight_decay": 12.8, "train.epochs": 64}
    for name, value in d.best.items():  # every neighbour was run and is not lower
        grid = d.grids[name]
        i = grid.index(value)
        for j in (i - 1, i + 1):
            p = dict(d.best, **{name: grid[j]})
            assert runs[tuple(p[a.name] for a in ax)] >= d.loss
    assert rounds > 2 and len(runs) < 60


def test_budget_exhausted_is_not_certified_and_says_why():
    ax = axes(lr=(3e-3,), wd=(0.8, 1.6, 3.2), ep=(16,))
    d, runs, _ = loop(ax, objective(3e-2, 12.8, 64), budget=10)
    assert d.state == "not_certified"
    assert len(runs) == 10
    assert any("budget of 10" in r for r in d.reasons)
    assert d.best is not None and d.loss == min(runs.values())


def test_a_hard_bound_certifies_its_side():
    ax = axes(ep=(1, 2, 4))
    d, runs, _ = loop(ax, objective(3e-3, 0.8, 0.25))
    assert d.state == "certified"
    assert d.best["train.epochs"] == 1
    assert any("train.epochs=1 is at its bound" in n for n in d.notes)


def test_diverged_runs_count_as_worse_not_as_missing():
    ax = axes(lr=(3e-3, 1e-2, 3e-2), ep=(8,))
    d, runs, _ = loop(ax, objective(1e-1, 0.8, 8, diverge_above=1.5e-2))
    assert d.state == "certified"
    assert d.best["optim.lr"] == 1e-2
    assert any(math.isnan(v) for v in runs.values())


def test_running_and_failed_points():
    ax = axes(lr=(1e-3, 3e-3), wd=(0.8,), ep=(8,))
    f = objective(1e-3, 0.8, 8)
    first = decide(ax, {})
    assert first.state == "extend" and len(first.to_run) == 2
    # Both started: one finished, one still running -> nothing new to decide yet.
    d = decide(ax, {(1e-3, 0.8, 8): f(1e-3, 0.8, 8)}, running=[(3e-3, 0.8, 8)])
    assert d.state == "extend"  # the best's missing neighbours (3e-4, wd, epochs) go now
    assert {"optim.lr": 3e-4, "optim.weight_decay": 0.8, "train.epochs": 8} in d.to_run
    assert all(p["optim.lr"] != 3e-3 for p in d.to_run)  # the running point is not asked again
    # A failed point of the grid is asked again, and costs no new budget.
    d = decide(ax, {(1e-3, 0.8, 8): f(1e-3, 0.8, 8)}, failed=[(3e-3, 0.8, 8)], budget=2)
    assert d.state == "extend"
    assert d.to_run == [{"optim.lr": 3e-3, "optim.weight_decay": 0.8, "train.epochs": 8}]
    # Every missing neighbour running: wait.
    done = {(1e-3, 0.8, 8): 3.0, (3e-3, 0.8, 8): 3.5}
    live = [(3e-4, 0.8, 8), (1e-3, 0.4, 8), (1e-3, 1.6, 8), (1e-3, 0.8, 4), (1e-3, 0.8, 16)]
    assert decide(ax, done, running=live).state == "waiting"


def test_points_may_be_mappings_and_values_need_not_be_normalised():
    ax = axes(lr=(1e-3, 3e-3, 1e-2), wd=(0.8,), ep=(8,))
    f = objective(3e-3, 0.8, 8)
    finished = {}
    for lr in (1e-3, 3 * 1e-3, 1e-2):
        finished[(lr, 0.8, 8)] = f(lr, 0.8, 8)
    d = decide(ax, finished)
    assert d.state == "extend"
    assert {tuple(p.values()) for p in d.to_run} == {(3e-3, 0.4, 8), (3e-3, 1.6, 8),
                                                     (3e-3, 0.8, 4), (3e-3, 0.8, 16)}


@pytest.mark.parametrize("budget", [3, 4])
def test_budget_cut_mid_round_runs_what_fits(budget):
    ax = axes(lr=(3e-3,), wd=(0.8,), ep=(8,))
    f = objective(3e-3, 0.8, 8)
    d = decide(ax, {(3e-3, 0.8, 8): f(3e-3, 0.8, 8)}, budget=budget)
    assert d.state == "extend" and len(d.to_run) == budget - 1
    assert any("budget" in n for n in d.notes)
