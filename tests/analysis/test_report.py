"""analyze_sweep end to end: outputs, partial sweeps, the demo's 3-size case, ensembles, efficiency."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asymptote.analysis.errors import AnalysisError
from asymptote.analysis.report import analyze_sweep
from asymptote.analysis.synthetic import SweepSpec, make_sweep, run_json, write_run

PNG = b"\x89PNG\r\n\x1a\n"


def test_full_report_on_a_grid_sweep(grid_sweep, tmp_path):
    root, info = grid_sweep
    r = analyze_sweep(root, tmp_path / "out", n_boot=60, progress=False, cache_dir=tmp_path / "cache")
    spec = info["spec"]
    assert set(r.fits) == {100_000_000, 400_000_000}
    for D, fit in r.fits.items():
        truth = spec.E + spec.B / D**spec.beta  # the N -> inf loss at this D
        assert fit.asymptote == pytest.approx(truth, abs=0.15)
        assert fit.boot is not None and fit.boot.meaningful
        assert fit.extrapolation["ok"]
    assert r.main_key == 400_000_000
    assert r.chinchilla is not None and r.chinchilla.n == 8
    assert len(r.best.table) == 8
    assert set(r.missing["name"]) == set(info["failed"])
    assert all(reason.startswith("failed") for reason in r.missing["reason"])
    for name in ("runs.csv", "best_runs.csv", "missing.csv", "issues.csv", "fits.json", "summary.md"):
        assert (r.out_dir / name).exists(), name
    for png in r.plots.values():
        assert png.read_bytes()[:8] == PNG
    assert set(r.plots) >= {"loss_vs_x", "heatmaps", "curves"}
    doc = json.loads((r.out_dir / "fits.json").read_text())
    assert doc["asymptote"] == pytest.approx(r.asymptote)
    lo, hi = doc["asymptote_interval"]
    assert lo <= r.asymptote <= hi
    text = r.summary()
    assert "asymptote E =" in text and "95% interval" in text and str(r.plot_path) in text
    md = (r.out_dir / "summary.md").read_text()
    assert "## Best run per cell" in md and "## Runs not analysed" in md


def test_demo_sized_sweep_is_exactly_determined_and_says_so(demo_sweep, tmp_path):
    root, _ = demo_sweep
    r = analyze_sweep(root, tmp_path / "out", progress=False, cache_dir=False)
    fit = r.main_fit
    assert fit.n == 3 and fit.exactly_determined
    assert r.asymptote is not None and r.asymptote_interval is None
    text = r.summary()
    assert "no meaningful interval" in text and "exactly determined" in text
    assert r.plot_path.exists() and r.plot_path.read_bytes()[:8] == PNG
    assert not r.best.table["certified"].any()
    assert "optim.lr not swept" in r.best.table["reasons"].iloc[0]


def test_partial_sweep_is_analysed_and_missing_runs_listed(tmp_path):
    spec = SweepSpec(sizes=(2e7, 6e7, 1.5e8, 4e8), lrs=(3e-3,), weight_decays=(0.8,), epochs=(8,), steps=20)
    info = make_sweep(tmp_path, spec)
    curves = {"val/loss": (np.array([10, 20]), np.array([5.0, 4.0]))}
    write_run(tmp_path / "running", run_json("running", 10**9, 2 * 10**8, 3e-3, 0.8, 8, 0, 40, "running", None), curves)
    write_run(tmp_path / "diverged", run_json("diverged", 10**9, 2 * 10**8, 3e-3, 0.8, 8, 0, 20, "done",
                                              {"val_loss": float("nan")}), curves)
    no_json = write_run(tmp_path / "nojson", run_json("nojson", 1, 1, 1, 1, 1, 0, 1, "done", None), curves)
    (no_json / "run.json").unlink()
    unsized = run_json("unsized", 10**9, 2 * 10**8, 3e-3, 0.8, 8, 0, 20, "done", {"val_loss": 3.0})
    del unsized["params"]
    write_run(tmp_path / "unsized", unsized, curves)
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": info["runs"] + ["never_started"]}))
    r = analyze_sweep(tmp_path, tmp_path / "out", n_boot=30, progress=False, cache_dir=False)
    reasons = dict(zip(r.missing["name"], r.missing["reason"]))
    assert reasons["running"].startswith("still running")
    assert "no finite val/loss" in reasons["diverged"]
    assert reasons["nojson"] == "no run.json"
    assert reasons["never_started"] == "expected but not found in the sweep"
    assert reasons["unsized"] == "no params in run.json"
    assert r.main_fit is not None and r.main_fit.n == 4
    assert "not analysed: 5 run(s)" in r.summary()


def test_empty_and_hopeless_sweeps(tmp_path):
    with pytest.raises(AnalysisError, match="no runs found"):
        analyze_sweep(tmp_path, write=False, progress=False, cache_dir=False)
    spec = SweepSpec(sizes=(2e7,), lrs=(3e-3,), weight_decays=(0.8,), epochs=(8,), steps=10, failed=1)
    make_sweep(tmp_path, spec)
    with pytest.raises(AnalysisError, match="no finished run with a finite val/loss"):
        analyze_sweep(tmp_path, write=False, progress=False, cache_dir=False)


def test_unknown_columns_and_two_sizes(demo_sweep, tmp_path):
    root, _ = demo_sweep
    with pytest.raises(AnalysisError, match="no run column 'nonsense'"):
        analyze_sweep(root, x="nonsense", write=False, progress=False, cache_dir=False)
    spec = SweepSpec(sizes=(2e7, 6e7), lrs=(3e-3,), weight_decays=(0.8,), epochs=(8,), steps=10)
    make_sweep(tmp_path, spec)
    r = analyze_sweep(tmp_path, write=False, progress=False, cache_dir=False)
    assert not r.fits and any("2 distinct params value(s)" in n for n in r.notes)
    assert "no scaling law fitted" in r.summary()


def test_ensembles_give_the_tiered_asymptote(tmp_path):
    spec = SweepSpec(sizes=(1.5e8, 3e8, 6e8, 1.4e9), lrs=(3e-3,), weight_decays=(0.8,), epochs=(8,), steps=10)
    make_sweep(tmp_path / "pretrain", spec)
    g = np.random.default_rng(0)
    for n in spec.sizes:
        K = np.arange(1, 9)
        loss = (3.17 + 120.0 / n**0.3 + 0.25 / K**0.8) * np.exp(g.normal(0, 3e-4, K.size))
        meta = run_json(f"ens{n:g}", n, 200_000_000, 3e-3, 0.4, 16, 0, 0, "done", {}, job="ensemble_eval")
        write_run(tmp_path / "ensembles" / f"ens{n:g}", meta, {"ensemble/logit_mean/loss": (K, loss)})
    r = analyze_sweep(tmp_path, tmp_path / "out", n_boot=40, progress=False, cache_dir=False)
    t = r.tiered["logit_mean"]
    assert len(t.k_fits) == 4
    assert t.n_fits.iloc[0]["E_NK"] == pytest.approx(3.17, abs=0.05)
    assert "joint N,K -> inf asymptote" in r.summary()
    assert r.plots["loss_vs_k_logit_mean"].exists()


def test_baseline_data_efficiency(tmp_path):
    spec = SweepSpec(sizes=(6e7, 1.5e8), seed_tokens=(100_000_000, 400_000_000, 1_600_000_000), lrs=(3e-3,),
                     weight_decays=(0.1, 0.8), epochs=(8,), steps=10, optimum=lambda n: (3e-3, 0.8, 8))
    make_sweep(tmp_path, spec)
    r = analyze_sweep(tmp_path, tmp_path / "out", n_boot=40, progress=False, cache_dir=False, baseline="wd=0.1")
    eff = r.efficiency
    assert eff is not None
    rows = eff.table[eff.table["label"].str.startswith("best non-baseline")]
    assert len(rows) == 3 and (rows["multiplier"] > 1).all()
    assert r.plots["data_efficiency"].exists()
    assert "data efficiency:" in r.summary()
