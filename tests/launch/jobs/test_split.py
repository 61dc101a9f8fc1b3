"""job=split: specialists start exactly from the base's checkpoint after D tokens, train on one
cluster, log every cluster's loss; a (cluster, D) grid is one multirun; bad bases are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import only_run, run_train, tb_scalars

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[3] / "data" / "corpus"
VAL_SEQ = 4
STEP_TOKENS = 16 * 128  # global batch x seq_len of the tiny runs below
COMMON = ["model=tiny", "train.global_batch=16", "train.micro_batch=8", "train.ckpt_every=0"]


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    from asymptote.data.cluster import ClusterConfig, cluster_corpus

    out = tmp_path_factory.mktemp("clusters")
    files = [str(SHIPPED / f"{d}.jsonl") for d in ("drama", "code", "legal")]
    report = cluster_corpus(ClusterConfig(corpus=files, k=3, val_tokens=VAL_SEQ * 128 + 1),
                            out, progress=False)
    assert report["purity"] >= 0.8
    return out


@pytest.fixture(scope="module")
def base(clusters, data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    run_train(data_cache, *COMMON, f"out={out}", f"data.prepared={clusters}",
              f"data.val_sequences={VAL_SEQ}", f"data.seed_tokens={8 * STEP_TOKENS}",
              "train.eval_every=0", f"train.keep_at_tokens=[{2 * STEP_TOKENS},{4 * STEP_TOKENS}]")
    return only_run(out)


def test_base_keeps_the_d_grid(base):
    from asymptote.models.checkpoint import list_checkpoints

    record = json.loads((base / "run.json").read_text())
    assert list_checkpoints(base / "checkpoints") == [2, 4, 8]  # keep_checkpoints=2 deletes none
    assert record["kept_tokens"] == {str(2 * STEP_TOKENS): 2, str(4 * STEP_TOKENS): 4}
    # evaluated at every kept D (eval_every=0 otherwise evaluates only at the end)
    assert [s for s, _ in tb_scalars(base, "val/c0/loss")] == [2, 4, 8]


def test_split_grid_starts_from_the_base_checkpoint(base, clusters, data_cache, tmp_path):
    ds = [2 * STEP_TOKENS, 4 * STEP_TOKENS]
    run_train(data_cache, "-m", "job=split", *COMMON, f"out={tmp_path}", f"split.base={base}",
              "split.cluster=c0,c2", f"split.base_tokens={ds[0]},{ds[1]}",
              f"data.seed_tokens={2 * STEP_TOKENS}", "train.eval_every=1")
    runs = sorted(p for p in tmp_path.iterdir() if (p / "run.json").exists())
    assert len(runs) == 4
    base_losses = {c: dict(tb_scalars(base, f"val/{c}/loss")) for c in ("c0", "c1", "c2")}
    seen = set()
    for run in runs:
        record = json.loads((run / "run.json").read_text())
        assert record["status"] == "done" and record["job"] == "split"
        D, cluster = record["pretrain_tokens"], record["cluster"]
        seen.add((cluster, D))
        assert record["split_tokens"] == 2 * STEP_TOKENS and record["steps"] == 2
        assert record["config"]["data"]["train_domain"] == cluster
        for c in ("c0", "c1", "c2"):
            points = tb_scalars(run, f"val/{c}/loss")
            assert [s for s, _ in points] == [0, 1, 2]  # every cluster, from step 0
            # step 0 = the base's model after D tokens, on the same validation set: exact
            assert points[0][1] == pytest.approx(base_losses[c][D // STEP_TOKENS], rel=1e-6)
            assert record["start"][f"val/{c}/loss"] == points[0][1]
        own = tb_scalars(run, f"val/{cluster}/loss")
        assert own[-1][1] < own[0][1]  # it learns its cluster
    assert seen == {(c, d) for c in ("c0", "c2") for d in ds}

    # what the analysis and the demo read from these real runs
    from asymptote.analysis.split_runs import split_points
    from asymptote.launch.demos.demo_split import format_split_table, split_table

    points = split_points(tmp_path)
    assert sorted(points["kind"].value_counts().items()) == [("final", 4), ("start", 4)]
    assert set(points.loc[points["kind"] == "start", "Dp"]) == {0.0}
    rows = split_table(base, tmp_path)
    assert [(r["cluster"], r["D"]) for r in rows] == sorted(seen)
    assert all(r["base"] == base_losses[r["cluster"]][r["D"] // STEP_TOKENS] for r in rows)
    assert "c0" in format_split_table(rows)


def _split_cfg(**split):
    from asymptote.launch.jobs.split import Config

    cfg = Config(job="split")
    for key, value in split.items():
        setattr(cfg.split, key, value)
    return cfg


def test_bad_bases_are_named(base, tmp_path):
    from asymptote.launch.errors import BaseRunError
    from asymptote.launch.jobs.split import derive

    def split_config(cfg):
        derived = derive(cfg)
        from asymptote.launch.jobs.split import _base

        return derived, _base(derived)

    with pytest.raises(BaseRunError, match=r"no checkpoint after 6144 tokens \(it has checkpoints "
                                           r"after \[4096, 8192, 16384\] tokens"):
        split_config(_split_cfg(base=str(base), base_tokens=6144, cluster="c0"))
    with pytest.raises(BaseRunError, match="add 1000 to the base's train.keep_at_tokens"):
        split_config(_split_cfg(base=str(base), base_tokens=1000, cluster="c0"))
    with pytest.raises(BaseRunError, match=r"split.cluster='c7': the base's clusters are c0, c1, c2"):
        split_config(_split_cfg(base=str(base), base_tokens=4096, cluster="c7"))
    with pytest.raises(BaseRunError, match="split.base is not set"):
        split_config(_split_cfg(cluster="c0"))
    with pytest.raises(BaseRunError, match="not a run folder"):
        split_config(_split_cfg(base=str(tmp_path), cluster="c0"))
    cfg, ckpt = split_config(_split_cfg(base=str(base), base_tokens=0, cluster="c1"))
    assert ckpt.step == 8 and cfg.split.base_tokens == 8 * STEP_TOKENS
    assert cfg.data.train_domain == "c1" and cfg.name.startswith("split-tiny-c1-D16384-Dp")
    control, _ = split_config(_split_cfg(base=str(base), base_tokens=4096, cluster="mixture"))
    assert control.data.train_domain is None and control.data.prepared == cfg.data.prepared


def test_missing_d_fails_the_command(base, data_cache, tmp_path):
    done = run_train(data_cache, "job=split", *COMMON, f"out={tmp_path}", f"split.base={base}",
                     "split.cluster=c0", "split.base_tokens=6144", check=False)
    assert done.returncode == 2
    assert "has no checkpoint after 6144 tokens" in done.stdout
