"""A (cluster, D) grid of job=split runs through `hydra/launcher=slurm` on the real local
cluster: one array job, every specialist starting from the base's checkpoint after D tokens."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import only_run, run_train, tb_scalars

pytestmark = pytest.mark.slurm

WORDS = {
    "garden": "tulip compost seedling trowel hedge mulch orchard blossom soil pruning".split(),
    "harbor": "anchor vessel tide mooring hull sailor cargo wharf rope buoy".split(),
    "circuit": "resistor voltage capacitor diode transistor solder current ohm relay wire".split(),
}
TINY = ["model=tiny", "train.global_batch=8", "train.micro_batch=4", "data.val_sequences=1",
        "train.ckpt_every=0"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.signal_delay_s=30"]


@pytest.mark.extended
def test_split_grid_is_one_array(slurm_env, data_cache, tmp_path, array_states):
    from asymptote.data.cluster import ClusterConfig, cluster_corpus

    rng = random.Random(0)
    corpus = tmp_path / "topics.jsonl"
    with open(corpus, "w") as fh:
        for i in range(60):
            for topic, words in WORDS.items():
                text = " ".join(rng.choice(words) for _ in range(60))
                fh.write(json.dumps({"text": f"note {i} {text}", "domain": topic}) + "\n")
    clusters = tmp_path / "clusters"
    cluster_corpus(ClusterConfig(corpus=[str(corpus)], k=3, dim=8, vocab_size=300,
                                 val_tokens=300), clusters, progress=False)
    run_train(data_cache, *TINY, f"out={tmp_path / 'base'}", f"data.prepared={clusters}",
              "data.seed_tokens=8192", "train.eval_every=0", "train.keep_at_tokens=[4096]")
    base = only_run(tmp_path / "base")

    out = tmp_path / "specialists"
    proc = run_train(data_cache, "-m", "job=split", *TINY, *SLURM, f"out={out}",
                     f"split.base={base}", "split.cluster=c0,c2", "split.base_tokens=4096,8192",
                     "data.seed_tokens=2048", "train.eval_every=0")
    scripts = sorted(out.glob(".hydra/*/.submitit/*/*_submission.sh"))  # submitit's sbatch files
    assert len(scripts) == 1, (scripts, proc.stdout[-3000:])  # one sbatch call: one array
    job = scripts[0].name.split("_")[0]
    states = array_states(job, 4)
    assert set(states.values()) == {"COMPLETED"}, states
    base_loss = {c: dict(tb_scalars(base, f"val/{c}/loss")) for c in ("c0", "c1", "c2")}
    runs = sorted(p for p in out.iterdir() if (p / "run.json").exists())
    seen = set()
    for run in runs:
        r = json.loads((run / "run.json").read_text())
        assert r["status"] == "done"
        seen.add((r["cluster"], r["pretrain_tokens"]))
        for c in ("c0", "c1", "c2"):
            assert r["start"][f"val/{c}/loss"] == pytest.approx(
                base_loss[c][r["pretrain_tokens"] // 1024], rel=1e-6)
    assert seen == {(c, d) for c in ("c0", "c2") for d in (4096, 8192)}
