"""`make demo`'s code path end to end at small sizes: the study slice (standard and regularized
stages, an ensemble of one size, L(N) per recipe and L(K), the report), and the separate
ensemble stage of --ensemble (members, L(K), plain and distilled students, plot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# The slice made small: 3 sizes (L(N) exactly determined, said so), 1 epoch of 8,192 tokens.
SMALL_STUDY = ["models=[tiny_s,tiny,tiny_m]", "seed_tokens=[8192]",
               "standard.seed_tokens=[8192]", "standard.epochs=[1]", "regularized.epochs.grid=[1]",
               "regularized.epochs.min=1", "regularized.epochs.max=1", "run.val_sequences=4",
               "regularized.weight_decay.grid=[3.2]", "regularized.weight_decay.max=3.2",
               "regularized.max_runs=1", "ensemble.k_max=3"]
SMALL = ["optim.weight_decay=0.1", "data.seed_tokens=16384", "train.epochs=1",
         "train.eval_every=0", "train.ckpt_every=0", "data.val_sequences=4"]


def test_demo_runs_end_to_end_at_small_sizes(data_cache, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", ASYMPTOTE_CACHE=str(data_cache),
               PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
        env.pop(key, None)
    out = tmp_path / "demo"
    study = [a for o in SMALL_STUDY for a in ("--study", o)]
    done = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "demo", "--out",
                           str(out), "--ensemble", *study, *SMALL], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*/run.json")]
    # standard (wd 0.1), regularized (wd 3.2), and 2 more members of tiny's ensemble
    assert sorted(r["config"]["model"]["name"] for r in records) == sorted(
        ["tiny_s", "tiny", "tiny_m"] * 2 + ["tiny"] * 2)
    assert {r["config"]["optim"]["weight_decay"] for r in records} == {0.1, 3.2}
    assert all(r["status"] == "done" for r in records)
    assert "## Asymptotes" in done.stdout and "regularized (L(N)" in done.stdout
    assert "| ensemble K -> inf at tiny |" in done.stdout
    fits = json.loads((out / "fits" / "fits.json").read_text())
    assert set(fits["laws_in_N"]) == {"standard", "regularized"}
    assert (out / "report" / "summary.md").is_file()
    assert (out / "report" / "loss_vs_n.png").stat().st_size > 0
    ens = tmp_path / "demo_ensemble"
    results = json.loads((ens / "eval" / "ensemble.json").read_text())
    assert results["K"] == [1, 2, 3]
    assert "student tiny_s (distilled)" in done.stdout and (ens / "ensemble.png").is_file()
