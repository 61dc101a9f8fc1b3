"""`asymptote-train -m` with the local launcher: the sweep record, the manifest, and a sweep with
an invalid point refused before any point runs."""

from __future__ import annotations

import json

from conftest import run_train

TINY = ["model=tiny", "data.seed_tokens=8192", "train.global_batch=8", "train.micro_batch=4",
        "train.eval_every=0"]


def test_local_sweep_writes_sweep_json_and_manifest(data_cache, tmp_path):
    run_train(data_cache, "-m", f"out={tmp_path}", *TINY, "optim.weight_decay=0.1,0.2")
    (sweep_file,) = tmp_path.glob(".hydra/*/sweep.json")
    record = json.loads(sweep_file.read_text())
    assert record["launcher"] == "local" and record["arrays"] == []
    points = record["points"]
    assert [p["index"] for p in points] == [0, 1]
    assert [p["overrides"][-1] for p in points] == ["optim.weight_decay=0.1",
                                                    "optim.weight_decay=0.2"]
    for p in points:
        run = json.loads((tmp_path / p["run_name"] / "run.json").read_text())
        assert run["status"] == "done" and p["job_id"] is None
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["runs"] == sorted(p["run_name"] for p in points)

    from asymptote.launch.app.status import sweep_status

    rows, notes = sweep_status(tmp_path)
    assert [r.state for r in rows] == ["DONE", "DONE"] and notes == []
    assert all(r.step == r.steps == 8 and r.loss > 0 for r in rows)


def test_sweep_with_an_invalid_point_launches_nothing(data_cache, tmp_path):
    proc = run_train(data_cache, "-m", f"out={tmp_path}", *TINY, "parallel.tp=1,3", check=False)
    assert proc.returncode != 0
    assert "nothing was launched: 1 problem(s) in the sweep" in proc.stdout
    assert "sweep point #1" in proc.stdout and "not divisible by parallel.tp=3" in proc.stdout
    assert not [p for p in tmp_path.iterdir() if (p / "run.json").exists()]
    assert not list(tmp_path.glob(".hydra/*/sweep.json"))


def test_two_points_with_the_same_run_are_refused(data_cache, tmp_path):
    # The layout is not part of a run's identity: both points would train one folder.
    proc = run_train(data_cache, "-m", f"out={tmp_path}", *TINY, "parallel.dp=1,2", check=False)
    assert proc.returncode != 0
    assert "sweep points #0 and #1 compute the same run" in proc.stdout
