"""`hydra.sweeper.points_file`: a sweep given as a list of points that are not a grid (what
`asymptote study` submits), each point its own overrides on top of the command line's; a file
that is not such a list, or a command line that sweeps as well, is refused before anything
runs."""

from __future__ import annotations

import json

from conftest import run_train

BASE = ["data.seed_tokens=4096", "train.global_batch=8", "train.micro_batch=8",
        "train.eval_every=0", "train.ckpt_every=0", "data.val_sequences=4"]


def test_points_that_are_not_a_grid_run_as_one_sweep(data_cache, tmp_path):
    points = tmp_path / "points.json"
    points.write_text(json.dumps([["model=tiny_s", "optim.weight_decay=0.1"],
                                  ["model=tiny", "optim.weight_decay=0.8", "train.epochs=2"]]))
    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", *BASE, f"hydra.sweeper.points_file={points}",
              f"hydra.sweep.dir={tmp_path / 'sweep'}")
    runs = {(r["config"]["model"]["name"], r["config"]["optim"]["weight_decay"],
             r["config"]["train"]["epochs"], r["status"])
            for r in (json.loads(p.read_text()) for p in out.glob("*/run.json"))}
    assert runs == {("tiny_s", 0.1, 1, "done"), ("tiny", 0.8, 2, "done")}
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len(record["points"]) == 2


def test_bad_points_files_are_refused_before_anything_runs(data_cache, tmp_path):
    out = tmp_path / "runs"
    bad = tmp_path / "bad.json"
    for text, message in (("not json", "cannot be read as JSON"),
                          ('[["model=tiny"], "x"]', "expected a non-empty JSON list")):
        bad.write_text(text)
        proc = run_train(data_cache, "-m", f"out={out}", *BASE,
                         f"hydra.sweeper.points_file={bad}", check=False)
        assert proc.returncode != 0 and message in proc.stdout
    bad.write_text('[["model=tiny"]]')
    proc = run_train(data_cache, "-m", f"out={out}", *BASE, "optim.lr=1e-3,3e-3",
                     f"hydra.sweeper.points_file={bad}", check=False)
    assert proc.returncode != 0 and "may not sweep too" in proc.stdout
    assert not out.exists() or not list(out.glob("*/run.json"))
