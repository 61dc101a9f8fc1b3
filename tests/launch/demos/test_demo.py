"""`make demo`'s code path end to end at small sizes: the size sweep, its table and fit, and the
ensemble stage (members, L(K), plain and distilled students, plot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SMALL = ["optim.weight_decay=0.1", "data.seed_tokens=16384", "train.epochs=1",
         "train.eval_every=0", "train.ckpt_every=0", "data.val_sequences=4"]


def test_demo_runs_end_to_end_at_small_sizes(data_cache, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", ASYMPTOTE_CACHE=str(data_cache),
               PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
        env.pop(key, None)
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "demo", "--out",
                           str(out), *SMALL], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    records = [json.loads(p.read_text()) for p in out.glob("*/run.json")]
    assert sorted(r["config"]["model"]["name"] for r in records) == ["tiny", "tiny_l", "tiny_m"]
    assert all(r["status"] == "done" for r in records)
    assert "Final validation loss per run" in done.stdout
    assert (out / "analysis").is_dir() and list((out / "analysis").glob("*.png"))
    ens = tmp_path / "demo_ensemble"
    results = json.loads((ens / "eval" / "ensemble.json").read_text())
    assert results["K"] == [1, 2, 3]
    assert "student tiny_s (distilled)" in done.stdout and (ens / "ensemble.png").is_file()
