"""Split-run analysis: points from job=split run.json files, a fitted L(N, D, D') recovering a
known law, the optimal split and the break-even budget, the loss-vs-D' plot, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from asymptote.analysis.errors import AnalysisError
from asymptote.analysis.split_runs import aggregate, analyze_split, split_example, split_points

TRUE = dict(E=2.0, A=0.0, alpha=0.0, B=40.0, beta=0.3, G=0.3, K=2e6, gamma=0.8)
FIXED = {"A": 0.0, "alpha": 0.0}  # one model size: N's term is not identifiable
DS = [1e6, 2e6, 4e6, 8e6]
DPS = [5e5, 1e6, 2e6, 4e6, 8e6]
OFFSETS = {"c0": -0.1, "c1": 0.0, "c2": 0.1}  # cluster difficulty; averages out


def law(D, Dp):
    return float(split_example.func(1e6, D, Dp, **TRUE))


def write_sweep(root, noise=0.002, seed=0, drop=()):
    """Run folders shaped like job=split's (run.json keys as SplitTrainer records them)."""
    rng = np.random.default_rng(seed)
    for D in DS:
        for c, off in OFFSETS.items():
            start = law(D, 0) + off
            for Dp in DPS:
                if (c, D, Dp) in drop:
                    continue
                run = root / f"split-tiny-{c}-D{int(D)}-Dp{int(Dp)}"
                run.mkdir(parents=True)
                final = (law(D, Dp) + off) * (1 + noise * rng.standard_normal())
                others = {f"val/{o}/loss": final + 0.5 for o in OFFSETS if o != c}
                (run / "run.json").write_text(json.dumps({
                    "job": "split", "status": "done", "params": 1e6, "non_embedding_params": 9e5,
                    "cluster": c, "base_run": "/runs/base", "pretrain_tokens": D, "split_tokens": Dp,
                    "start": {f"val/{c}/loss": start, "val_loss": start},
                    "final": {f"val/{c}/loss": final, "val_loss": final, **others},
                }))
    (root / "pretrain-base").mkdir()
    (root / "pretrain-base" / "run.json").write_text(json.dumps({"job": "pretrain", "status": "done"}))


def test_points_and_aggregation(tmp_path):
    write_sweep(tmp_path, noise=0.0, drop={("c2", 8e6, 8e6)})
    points = split_points(tmp_path)
    assert len(points[points["kind"] == "final"]) == 4 * 3 * 5 - 1
    starts = points[points["kind"] == "start"]
    assert len(starts) == 4 * 3 and (starts["Dp"] == 0).all()  # one D'=0 point per (D, cluster)
    table, notes = aggregate(points)
    assert len(table) == 4 * 6 - 1 and "missing clusters ['c2']" in notes[0]
    row = table[(table["D"] == 2e6) & (table["Dp"] == 1e6)].iloc[0]
    assert row["loss"] == pytest.approx(law(2e6, 1e6)) and row["n_clusters"] == 3
    one, _ = aggregate(points, "c2")
    assert one.loc[(one["D"] == 1e6) & (one["Dp"] == 0), "loss"].item() == pytest.approx(law(1e6, 0) + 0.1)
    with pytest.raises(AnalysisError, match="cluster 'c9' has no split runs"):
        aggregate(points, "c9")
    with pytest.raises(AnalysisError, match="no finished job=split runs"):
        split_points(tmp_path / "pretrain-base")


def test_fit_recovers_the_law_and_the_split(tmp_path):
    write_sweep(tmp_path)
    out = analyze_split(tmp_path, "split_example", out_dir=tmp_path / "report", fixed=FIXED,
                        totals=[1e6, 4e6, 1.6e7], n_boot=10)
    fit = out.fit
    assert fit.r2 > 0.99
    for name in ("E", "beta", "G"):
        assert fit.params[name] == pytest.approx(TRUE[name], rel=0.15), (name, fit.params)
    # the true optimum of each budget, by brute force on the true law
    for s in out.splits:
        grid = np.linspace(0, s.total, 20001)
        true = np.array([law(s.total - x, x) if s.total - x > 0 else np.inf for x in grid])
        assert s.loss == pytest.approx(true.min(), abs=0.01)
    # break-even of the true law: d/dD' at D'=0 changes sign at T* = (beta B K / (G gamma))^(1/(1+beta))
    t_star = (TRUE["beta"] * TRUE["B"] * TRUE["K"] / (TRUE["G"] * TRUE["gamma"])) ** (1 / 1.3)
    assert out.break_even["1000000.0"]["total"] == pytest.approx(t_star, rel=0.25)
    assert out.splits[0].fraction < out.splits[-1].fraction  # larger budgets specialize more
    saved = json.loads((tmp_path / "report" / "split_fit.json").read_text())
    assert saved["fit"]["law"] == "split_example" and len(saved["splits"]) == 3
    png = (tmp_path / "report" / "loss_vs_dprime.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "splitting pays from a total of" in out.summary()


def test_user_law_and_cli(tmp_path):
    write_sweep(tmp_path)
    law_file = tmp_path / "mylaw.py"
    law_file.write_text(
        "from asymptote.analysis.laws import law\n"
        "@law('my_split', inputs=('N', 'D', 'Dp'), log_scale=('B',))\n"
        "def my_split(N, D, Dp, E, B, beta, rho):\n"
        "    return E + B / (D + rho * Dp) ** beta\n")
    cmd = [sys.executable, "-m", "asymptote.launch.app.cli", "analyze-split", str(tmp_path),
           "--law-file", str(law_file), "--law", "my_split", "--total", "4e6", "--boot", "0",
           "--out", str(tmp_path / "mine")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "split law my_split" in done.stdout and "total=4,000,000" in done.stdout
    saved = json.loads((tmp_path / "mine" / "split_fit.json").read_text())
    assert saved["fit"]["params"]["rho"] > 0
    bad = subprocess.run(cmd[:5] + ["--law", "power"], capture_output=True, text=True)
    assert bad.returncode == 1 and "a split law takes (N, D, Dp)" in bad.stderr
