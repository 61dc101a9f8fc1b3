"""Downstream accuracy written by job=evaluate reaches the analysis: accuracy-vs-loss plot."""

from __future__ import annotations

import json

from asymptote.analysis.report import analyze_sweep, downstream_columns


def _run(root, name, params, loss, acc, **extra):
    folder = root / name
    folder.mkdir(parents=True)
    record = {"name": name, "status": "done", "params": params, "seed_tokens": 131072,
              "epochs": 2, "config": {"model": {"name": name}, "optim": {"weight_decay": 0.1}},
              "final": {"val_loss": loss, "downstream/asymptote_continuation/acc": acc}, **extra}
    (folder / "run.json").write_text(json.dumps(record))


def test_accuracy_vs_loss_plot_from_downstream_metrics(tmp_path):
    for i, (params, loss, acc) in enumerate([(1e5, 7.0, 0.3), (4e5, 6.6, 0.45),
                                             (1.6e6, 6.3, 0.6)]):
        _run(tmp_path, f"r{i}", params, loss, acc)
    _run(tmp_path, "ens", 3e5, 6.5, 0.5, ensemble_size=3)
    report = analyze_sweep(tmp_path, tmp_path / "analysis", x="params", n_boot=20, progress=False)
    assert downstream_columns(report.runs) == ["final.downstream/asymptote_continuation/acc"]
    png = report.plots["accuracy_vs_loss"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not [n for n in report.notes if "accuracy_vs_loss" in n]


def test_no_downstream_metrics_no_plot(tmp_path):
    for i in range(3):
        folder = tmp_path / f"r{i}"
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps(
            {"status": "done", "params": 10 ** (5 + i), "seed_tokens": 131072, "epochs": 2,
             "final": {"val_loss": 7 - i / 2}}))
    report = analyze_sweep(tmp_path, tmp_path / "analysis", x="params", n_boot=20, progress=False)
    assert "accuracy_vs_loss" not in report.plots
