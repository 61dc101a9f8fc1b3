"""`asymptote study run` on the real local SLURM cluster: a small study goes through every stage
as arrays chained by controller jobs (afterany), with nothing left running on the submitting
side; a stage made to fail (a teacher member's checkpoint damaged on disk) is reported FAILED
with its error in `study status` and stops the chain; after the fix, `study run` again runs only
what was missing and the study completes (fits and report written on the cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.extended]

STUDY = """\
base: miniature
name: chain
out: {out}
seed_tokens: [8192]
models: [tiny_s, tiny]
run: {{val_sequences: 4}}
standard: {{seed_tokens: [8192], epochs: [1]}}
regularized:
  lr: {{grid: [3e-3], min: 3e-3, max: 3e-3}}
  weight_decay: {{grid: [0.8], min: 0.8, max: 0.8}}
  epochs: {{grid: [1], min: 1, max: 1}}
  max_runs: 2
ensemble: {{k_max: 3}}
distill: {{teacher: tiny, students: [tiny_s], sequence: {{sequences: 16, weights: [0.5]}}}}
fits: {{n_boot: 0}}
launcher: {{kind: slurm, slurm: {{timeout_min: 15}}}}
"""


def study(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "study", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def wait_for_chain(out: Path, timeout: float = 900) -> dict:
    """The chain record once its last controller has stopped it."""
    path = out / "slurm" / "chain.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            chain = json.loads(path.read_text())
            if chain.get("stopped"):
                return chain
        time.sleep(3)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((out / "slurm").glob("*.log")))
    raise AssertionError(f"the chain did not stop within {timeout:.0f} s; controller logs:\n{logs}")


def status(path: Path) -> dict:
    proc = study("status", str(path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {s["name"]: s for s in json.loads(proc.stdout)["stages"]}


def test_study_runs_every_stage_as_chained_jobs(slurm_env, tmp_path):
    out = tmp_path / "study"
    path = tmp_path / "chain.yaml"
    path.write_text(STUDY.format(out=out))

    # 1. The stages up to the ensemble members; `study run` returns at once (submitted).
    start = time.time()
    proc = study("run", str(path), "--only", "standard,regularized,ensemble")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.time() - start < 60 and "controller job" in proc.stdout
    chain = wait_for_chain(out)
    assert chain["stopped"] == "done", chain["stopped"]
    assert [b["stage"] for b in chain["batches"]] == ["standard", "regularized", "ensemble"]
    # Each controller waited for its batch's arrays (afterany) and ran as its own job.
    assert all(c["after"] == b["arrays"] for c, b in zip(chain["controllers"], chain["batches"]))
    stages = status(path)
    assert stages["ensemble"]["state"] == "DONE" and stages["ensemble_eval"]["state"] == "MISSING"

    # 2. A teacher member's checkpoint is damaged: the evaluation stage fails, the chain stops
    # and says so, and `study status` shows the point FAILED with its error.
    member = next(p for p in stages["ensemble"]["points"] if p["label"] == "tiny D=8192 member 2")
    shard = next(Path(member["folder"]).glob("checkpoints/step_*/__0_0.distcp"))
    shard.write_bytes(shard.read_bytes()[:1000])
    done_before = {p["folder"]: Path(p["folder"], "run.json").stat().st_mtime_ns
                   for s in ("standard", "regularized", "ensemble") for p in stages[s]["points"]}
    proc = study("run", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    chain = wait_for_chain(out)
    assert "failed" in chain["stopped"] and "ensemble_eval" in chain["stopped"], chain["stopped"]
    stages = status(path)
    failed = [p for p in stages["ensemble_eval"]["points"] if p["state"] == "FAILED"]
    assert [p["label"] for p in failed] == ["tiny D=8192 K=1..3"]
    assert failed[0]["detail"], "the error is shown"
    text = study("status", str(path)).stdout
    assert "FAILED   tiny D=8192 K=1..3" in text and "SLURM chain stopped" in text
    assert stages["teacher_text"]["state"] != "DONE"  # nothing past the failure ran

    # 3. The fix (train the damaged member again): `study run` again does only what is missing.
    import shutil

    shutil.rmtree(member["folder"])
    proc = study("run", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    chain = wait_for_chain(out)
    assert chain["stopped"] == "done", chain["stopped"]
    stages = status(path)
    assert all(s["state"] == "DONE" for s in stages.values()), \
        {n: s["state"] for n, s in stages.items()}
    for folder, mtime in done_before.items():
        if folder != member["folder"]:  # finished runs were not run again
            assert Path(folder, "run.json").stat().st_mtime_ns == mtime, folder
    later = [b["stage"] for b in chain["batches"][4:]]
    assert later[0] == "ensemble" and len(chain["batches"][4]["points"]) == 1
    assert {"ensemble_eval", "teacher_text", "distill"} <= set(later)
    report = json.loads((out / "report" / "report.json").read_text())
    assert {f["id"] for f in report["findings"]} == set("abcde")
    assert (out / "report" / "loss_vs_n.png").stat().st_size > 0
    assert json.loads((out / "fits" / "fits.json").read_text())["inputs_digest"]
