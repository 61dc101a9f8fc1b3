"""`asymptote data cluster --stage assign` as a real SLURM array: every task assigns its shard
($SLURM_ARRAY_TASK_ID), and the merged result equals the one-process clustering."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asymptote.slurm.cluster import ClusterInfo

pytestmark = pytest.mark.slurm

WORDS = {
    "garden": "tulip compost seedling trowel hedge mulch orchard blossom soil pruning".split(),
    "harbor": "anchor vessel tide mooring hull sailor cargo wharf rope buoy".split(),
    "circuit": "resistor voltage capacitor diode transistor solder current ohm relay wire".split(),
}


def test_assign_stage_runs_as_an_array(slurm_cluster: ClusterInfo, tmp_path: Path,
                                       array_states):
    from asymptote.data.cluster import ClusterConfig, cluster_corpus

    rng = random.Random(0)
    corpus = tmp_path / "topics.jsonl"
    with open(corpus, "w") as fh:
        for i in range(30):
            for topic, words in WORDS.items():
                text = " ".join(rng.choice(words) for _ in range(50))
                fh.write(json.dumps({"text": f"note {i} {text}", "domain": topic}) + "\n")
    opts = ["--k", "3", "--dim", "8", "--vocab-size", "300", "--val-tokens", "97", "--quiet"]
    cfg = ClusterConfig(corpus=[str(corpus)], k=3, dim=8, vocab_size=300, val_tokens=97)
    one = cluster_corpus(cfg, tmp_path / "one", progress=False)

    out = tmp_path / "array"
    cluster_corpus(cfg, out, stage="fit", progress=False)
    cmd = " ".join([sys.executable, "-m", "asymptote.launch.app.cli", "data", "cluster", str(corpus),
                    *opts, "--out", str(out), "--stage", "assign", "--shards", "3"])
    job = subprocess.run(
        ["sbatch", "--parsable", "--array=0-2", "-o", f"{tmp_path}/%A_%a.log",
         "--export=ALL,OMP_NUM_THREADS=1", "--wrap", cmd],
        env=slurm_cluster.env(), capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip().split(";")[0]
    states = array_states(job, 3)
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert set(states.values()) == {"COMPLETED"}, logs
    assert sorted(p.name for p in (out / "assign").iterdir()) == [
        f"shard_{i:05d}-of-00003.npz" for i in range(3)]
    report = cluster_corpus(cfg, out, stage="write", shards=3, progress=False)
    assert report["clusters"] == one["clusters"] and report["purity"] == 1.0
    a = np.load(tmp_path / "one" / "assignments.npz")["cluster"]
    assert (np.load(out / "assignments.npz")["cluster"] == a).all()
