"""A run stopped by USR2 checkpoints first and resumes exactly; one run folder is trained by one
process at a time; restarts are bounded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from conftest import only_run, run_train, tb_scalars, train_env

CFG = ["model=tiny", "data.seed_tokens=98304", "train.global_batch=8", "train.micro_batch=4",
       "train.eval_every=0", "train.ckpt_every=50"]  # 96 steps; no periodic save before the signal


def _start(cache, out):
    return subprocess.Popen([sys.executable, "-m", "asymptote.launch.app.main", f"out={out}", *CFG],
                            env=train_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_training(out, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list(out.glob("*/run.json"))
        if runs and json.loads(runs[0].read_text()).get("status") == "running":
            return runs[0].parent
        time.sleep(0.2)
    raise AssertionError("the run never started")


def test_usr2_checkpoints_then_the_rerun_resumes_exactly(data_cache, tmp_path):
    out = tmp_path / "stopped"
    proc = _start(data_cache, out)
    run = _wait_for_training(out)
    time.sleep(1.0)
    proc.send_signal(signal.SIGUSR2)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, log[-3000:]
    assert "run the same command again to resume" in log
    record = json.loads((run / "run.json").read_text())
    stopped_at = record["step"]
    assert record["status"] == "stopped" and 0 < stopped_at < 96
    assert (run / "checkpoints" / "latest").read_text().strip() == str(stopped_at)

    run_train(data_cache, f"out={out}", *CFG)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done" and record["resumed_from"] == stopped_at
    run_train(data_cache, f"out={tmp_path / 'straight'}", *CFG)
    got = tb_scalars(run, "train/loss")
    want = tb_scalars(only_run(tmp_path / "straight"), "train/loss")
    assert [s for s, _ in got] == list(range(1, 97))
    for (step, x), (_, y) in zip(got, want):
        assert abs(x - y) <= 1e-6 * abs(y), f"step {step}: {x} vs {y}"


def test_a_run_folder_in_use_is_refused_without_touching_it(data_cache, tmp_path):
    first = _start(data_cache, tmp_path)
    run = _wait_for_training(tmp_path)
    second = run_train(data_cache, f"out={tmp_path}", *CFG, check=False)
    assert second.returncode == 2
    assert "is being trained by another job" in second.stdout
    first.send_signal(signal.SIGUSR2)
    first.communicate(timeout=120)
    # The refused start neither failed the run nor counted as a restart.
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "stopped" and record["restarts"] == 0


def test_restarts_are_bounded(data_cache, tmp_path):
    small = ["model=tiny", "data.seed_tokens=8192", "train.global_batch=8",
             "train.micro_batch=4", "train.eval_every=0", "train.max_restarts=1"]
    run_train(data_cache, f"out={tmp_path}", *small)
    run_train(data_cache, f"out={tmp_path}", *small)  # restart 1: allowed
    proc = run_train(data_cache, f"out={tmp_path}", *small, check=False)
    assert proc.returncode != 0
    assert "restarted 2 times (limit train.max_restarts=1)" in proc.stdout
    assert json.loads((only_run(tmp_path) / "run.json").read_text())["status"] == "failed"
