"""Several points per array task (`hydra.launcher.points_per_task`) on the real local cluster
(CPU/gloo, tiny runs): 4 points packed 2 per task are an array of 2 tasks whose 4 runs end DONE
with the final losses of the same points run unpacked; a task preempted with USR2 while its
second point trains is requeued, skips its finished point and resumes the interrupted one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import run_train, tb_scalars

pytestmark = [pytest.mark.slurm, pytest.mark.extended]

TINY = ["model=tiny", "train.global_batch=8", "train.micro_batch=4", "train.eval_every=0"]
PACKED = ["hydra/launcher=slurm", "hydra.launcher.timeout_min=5",
          "hydra.launcher.signal_delay_s=30", "hydra.launcher.detach=true",
          "hydra.launcher.points_per_task=2"]


def _helpers():
    """test_sweeps' polling helpers, loaded by path (test files are not importable by name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_sweeps",
                                                  Path(__file__).with_name("test_sweeps.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_sweeps = _helpers()
states, wait_until, sweep_record = _sweeps.states, _sweeps.wait_until, _sweeps.sweep_record


def run_json(entry: dict) -> dict:
    path = Path(entry["outputs"]["record"])
    return json.loads(path.read_text()) if path.is_file() else {}


def test_four_points_two_per_task_match_unpacked_runs(slurm_env, data_cache, tmp_path,
                                                      array_states):
    sweep = ["data.seed_tokens=4096", "optim.weight_decay=0.1,0.2,0.3,0.4"]
    packed, alone = tmp_path / "packed", tmp_path / "alone"
    proc = run_train(data_cache, "-m", f"out={packed}", *TINY, *PACKED, *sweep)
    assert "points #0-#3 in 2 tasks of up to 2 points" in proc.stdout
    record = sweep_record(packed)
    (array,) = record["arrays"]
    assert (array["size"], array["points"]) == (2, 4)
    assert [p["job_id"] for p in record["points"]] == [f"{array['job_id']}_{t}"
                                                       for t in (0, 0, 1, 1)]
    wait_until(lambda: states(packed) == {0: "DONE", 1: "DONE", 2: "DONE", 3: "DONE"}, 420,
               "all 4 points DONE")
    assert set(array_states(array["job_id"], 2).values()) == {"COMPLETED"}
    # Four run folders, each with its own record, the same losses as the points run unpacked.
    run_train(data_cache, "-m", f"out={alone}", *TINY, *sweep)
    for entry in record["points"]:
        got = run_json(entry)
        assert got["status"] == "done" and got.get("restarts", 0) == 0
        (want,) = [json.loads(p.read_text()) for p in alone.glob(f"{entry['run_name']}/run.json")]
        assert got["final"]["val_loss"] == pytest.approx(want["final"]["val_loss"], rel=1e-6)


def test_usr2_requeues_the_task_which_skips_done_points_and_resumes(slurm_env, data_cache,
                                                                     tmp_path):
    # Point #0: 4 steps; point #1: 64 steps, a checkpoint every 4.
    cfg = [*TINY, "train.ckpt_every=4"]
    out, local = tmp_path / "packed", tmp_path / "local"
    run_train(data_cache, "-m", f"out={out}", *cfg, *PACKED, "data.seed_tokens=4096,65536")
    first, second = sweep_record(out)["points"]
    assert first["job_id"] == second["job_id"]
    wait_until(lambda: run_json(first).get("status") == "done"
               and run_json(second).get("step", 0) >= 8, 300, "point #0 done, #1 at step 8")
    subprocess.run(["scancel", "--signal=USR2", first["job_id"]], check=True)
    wait_until(lambda: run_json(second).get("restarts") == 1, 240, "point #1 restarted")
    wait_until(lambda: states(out) == {0: "DONE", 1: "DONE"}, 300, "both points DONE")
    done, resumed = run_json(first), run_json(second)
    assert done.get("restarts", 0) == 0  # not run again after the requeue
    assert resumed["resumed_from"] >= 8 and resumed["status"] == "done"
    assert [s for s, _ in tb_scalars(Path(first["run_dir"]), "train/loss")] == [1, 2, 3, 4]
    # The interrupted point: every step once, the losses of an uninterrupted run.
    got = tb_scalars(Path(second["run_dir"]), "train/loss")
    run_train(data_cache, f"out={local}", *cfg, "data.seed_tokens=65536")
    (want_dir,) = [p.parent for p in local.glob("*/run.json")]
    want = tb_scalars(want_dir, "train/loss")
    assert [s for s, _ in got] == list(range(1, 65)) == [s for s, _ in want]
    for (step, x), (_, y) in zip(got, want):
        assert abs(x - y) <= 1e-6 * abs(y), f"step {step}: requeued {x} vs uninterrupted {y}"
