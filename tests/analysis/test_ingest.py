"""Sweep ingest: discovery, resume semantics, cache, incremental reads, damaged inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from asymptote.analysis.ingest import load_sweep
from asymptote.analysis.synthetic import (event_file_name, header_payloads, interleave, run_json, scalar_payloads,
                                          write_event_file, write_run)


def _run(root, name, steps=20, tags=("train/loss", "val/loss"), t0=1000.0, **meta):
    curves = {t: (np.arange(1, steps + 1), np.arange(1, steps + 1) * (i + 1) * 0.25) for i, t in enumerate(tags)}
    doc = run_json(name, 10_000_000, 100_000, 1e-3, 0.1, 1, 0, steps, meta.pop("status", "done"), {"val_loss": 1.0})
    doc.update(meta)
    return write_run(root / name, doc, curves, t0=t0)


def test_one_table_with_every_point_joined_to_its_config(grid_sweep):
    root, info = grid_sweep
    data = load_sweep(root, cache_dir=False, progress=False)
    assert len(data.runs) == len(info["runs"]) + len(info["failed"])
    assert set(data.runs.loc[data.runs["status"] == "failed", "name"]) == set(info["failed"])
    table = data.table(tags=["val/loss"], columns=["params", "optim.lr", "status"])
    assert {"run", "tag", "step", "value", "params", "optim.lr"} <= set(table.columns)
    assert table["params"].notna().all()
    # every point of every tag is kept: 40 steps x 3 per-step tags + 4 val points per finished run
    finished = data.scalars[data.scalars["run"].isin(info["runs"])]
    assert len(finished) == len(info["runs"]) * (3 * 40 + 4)


def test_resumed_run_is_deduplicated_newest_wins(grid_sweep):
    root, _ = grid_sweep
    name = "N20000000_D100000000_lr0.003_wd0.8_ep8_s0"
    data = load_sweep(root, cache_dir=False, progress=False)
    pts = data.scalars[data.scalars["run"] == name]
    assert not pts.duplicated(["tag", "step"]).any()
    acc = EventAccumulator(str(root / name / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        want = [(e.step, e.value) for e in acc.Scalars(tag)]
        got = pts[pts["tag"] == tag].sort_values("step")
        assert list(zip(got["step"], got["value"])) == want


def test_duplicates_without_purge_marker_keep_the_newest(tmp_path):
    run = tmp_path / "r"
    write_event_file(run / "tb" / event_file_name(1), header_payloads(1) + scalar_payloads("a", [1, 2, 3], [1, 2, 3], [1, 1, 1]))
    write_event_file(run / "tb" / event_file_name(2), header_payloads(2) + scalar_payloads("a", [2, 3, 3, 4], [20, 30, 31, 40], [2] * 4))
    (run / "run.json").write_text(json.dumps({"name": "r", "status": "done"}))
    data = load_sweep(tmp_path, cache_dir=False, progress=False)
    got = data.scalars.sort_values("step")
    assert list(zip(got["step"], got["value"])) == [(1, 1.0), (2, 20.0), (3, 31.0), (4, 40.0)]


def test_run_record_fields_win_over_same_named_config_keys(tmp_path):
    run = _run(tmp_path, "r0", job="pretrain")
    doc = json.loads((run / "run.json").read_text())
    doc["config"].update(name=None, job="pretrain", out="/somewhere")  # as the training loop writes
    (run / "run.json").write_text(json.dumps(doc))
    runs = load_sweep(tmp_path, cache_dir=False, progress=False).runs
    assert runs.loc["r0", "name"] == "r0" and runs.loc["r0", "out"] == "/somewhere"


def test_discovery_nested_orphans_hidden_and_checkpoints(tmp_path):
    _run(tmp_path / "multirun" / "0", "a")          # Hydra-style nesting
    _run(tmp_path, "b")
    write_event_file(tmp_path / "lost" / "tb" / event_file_name(5),  # events without run.json
                     header_payloads(5) + scalar_payloads("val/loss", [1, 2], [3.0, 2.0], [5, 6]))
    _run(tmp_path / ".hidden", "c")                 # hidden folders are not searched
    _run(tmp_path / "b" / "checkpoints", "d")       # nor checkpoint folders
    sub = tmp_path / "b" / "tb" / "loss_extra"      # a sub-folder of a run's events: prefixed tags
    write_event_file(sub / event_file_name(9), header_payloads(9) + scalar_payloads("loss", [1], [9.0], [9]))
    data = load_sweep(tmp_path, cache_dir=False, progress=False)
    assert sorted(data.runs.index) == ["b", "lost", "multirun/0/a"]
    assert data.runs.loc["lost", "status"] == "unknown"
    assert any(i.run_id == "lost" and i.kind == "run-json" for i in data.issues)
    assert "loss_extra/loss" in data.tags()


def test_cache_makes_second_read_free_and_picks_up_new_events(tmp_path):
    for i in range(6):
        _run(tmp_path, f"r{i}", steps=50)
    first = load_sweep(tmp_path, progress=False)
    assert first.stats.files_read == 6 and (tmp_path / ".asymptote_cache" / "manifest.json").exists()
    second = load_sweep(tmp_path, progress=False)
    assert second.stats.files_cached == 6 and second.stats.bytes_read == 0
    assert second.scalars.equals(first.scalars)
    # a running job appends events to one file; a new run appears; a run is deleted
    (f,) = (tmp_path / "r0" / "tb").iterdir()
    size = f.stat().st_size
    with open(f, "ab") as fh:
        from asymptote.analysis.tfrecord import frame_records

        fh.write(frame_records(interleave({"train/loss": (np.array([51, 52]), np.array([7.0, 8.0]))}, 2000.0)))
    _run(tmp_path, "r6", steps=5)
    shutil.rmtree(tmp_path / "r5")
    third = load_sweep(tmp_path, progress=False)
    assert third.stats.files_appended == 1 and third.stats.files_read == 1 and third.stats.files_cached == 4
    assert third.stats.bytes_read < size  # only the new bytes of r0 (plus the small new run)
    fresh = load_sweep(tmp_path, cache_dir=False, progress=False)
    key = ["run", "tag", "step"]
    a = third.scalars.astype({"run": str, "tag": str}).sort_values(key).reset_index(drop=True)
    b = fresh.scalars.astype({"run": str, "tag": str}).sort_values(key).reset_index(drop=True)
    assert a.equals(b)
    r0 = a[(a["run"] == "r0") & (a["tag"] == "train/loss")]
    assert r0["value"].tolist()[-2:] == [7.0, 8.0]
    assert "r5" not in set(a["run"])


def test_corrupt_cache_is_rebuilt(tmp_path):
    _run(tmp_path, "r0")
    load_sweep(tmp_path, progress=False)
    manifest = tmp_path / ".asymptote_cache" / "manifest.json"
    manifest.write_text("{not json")
    data = load_sweep(tmp_path, progress=False)
    assert data.stats.files_read == 1
    assert any(i.kind == "cache" for i in data.issues)
    assert load_sweep(tmp_path, progress=False).stats.files_cached == 1


def test_damaged_files_and_bad_run_json_are_reported_not_fatal(tmp_path):
    _run(tmp_path, "good")
    _run(tmp_path, "cut")
    (f,) = (tmp_path / "cut" / "tb").iterdir()
    f.write_bytes(f.read_bytes()[:-7])
    _run(tmp_path, "flipped")
    (g,) = (tmp_path / "flipped" / "tb").iterdir()
    raw = bytearray(g.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    g.write_bytes(bytes(raw))
    _run(tmp_path, "badjson")
    (tmp_path / "badjson" / "run.json").write_text("{oops")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "run.json").write_text(json.dumps({"name": "empty", "status": "running"}))
    data = load_sweep(tmp_path, cache_dir=False, progress=False)
    kinds = {(i.run_id, i.kind) for i in data.issues}
    assert ("cut", "truncated") in kinds and ("flipped", "damaged") in kinds
    assert ("badjson", "run-json") in kinds and ("empty", "no-events") in kinds
    assert data.runs.loc["badjson", "status"] == "unreadable"
    n = data.scalars.groupby("run", observed=False).size()
    assert n["good"] == 40 and 0 < n["flipped"] < 40 and n["cut"] == 39


def test_missing_sweep_folder():
    with pytest.raises(FileNotFoundError):
        load_sweep("/nonexistent/sweep", progress=False)
