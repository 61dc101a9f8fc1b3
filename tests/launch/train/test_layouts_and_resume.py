"""Real multi-process CPU/gloo runs: every layout trains the same model step by step, and a
killed run resumes (also under another layout) with the same losses and no duplicate steps."""

from __future__ import annotations

import json

import pytest

from conftest import only_run, run_train, tb_scalars

pytestmark = pytest.mark.slow

STEPS = 12
# 4 layers so PP=2 with 2 virtual stages fits; 4 microbatches per step for the pipeline.
BASE = [
    "model=tiny", "model.layers=4", "train.global_batch=8", "train.micro_batch=2",
    f"data.seed_tokens={STEPS * 8 * 128}", "train.epochs=1", "train.eval_every=6",
    "train.ckpt_every=0", "optim.lr=3e-3", "optim.warmup_frac=0.1",
]


def _losses(run_dir):
    points = tb_scalars(run_dir, "train/loss")
    steps = [s for s, _ in points]
    assert steps == sorted(set(steps)), f"duplicate or unordered steps: {steps}"
    return [v for _, v in points]


def _assert_close(a, b, rtol=1e-4):
    assert len(a) == len(b) >= 10
    for i, (x, y) in enumerate(zip(a, b)):
        assert abs(x - y) / abs(x) < rtol, f"step {i + 1}: {x} vs {y}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_cache):
    out = tmp_path_factory.mktemp("ref")
    run_train(data_cache, f"out={out}", *BASE)
    return _losses(only_run(out))


@pytest.mark.parametrize(
    "layout",
    [
        ["parallel.tp=2"],
        ["parallel.pp=2"],
        ["parallel.tp=2", "parallel.pp=2"],
        ["parallel.dp=2"],
        ["parallel.pp=2", "parallel.vpp=2"],
        ["parallel.dp=2", "parallel.distributed_optimizer=true"],
    ],
    ids=["tp2", "pp2", "tp2pp2", "dp2", "pp2vpp2", "dp2-distopt"],
)
def test_layout_matches_single_rank(layout, reference, tmp_path, data_cache):
    run_train(data_cache, f"out={tmp_path}", *BASE, *layout)
    run = only_run(tmp_path)
    _assert_close(_losses(run), reference)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done" and record["final"]["val_loss"] > 0


@pytest.mark.parametrize(
    "first, second",
    [
        ([], []),
        (["parallel.tp=2"], []),  # a TP=2 checkpoint resumes at TP=1
        (["parallel.dp=2", "parallel.distributed_optimizer=true"],
         ["parallel.dp=2", "parallel.distributed_optimizer=true"]),
    ],
    ids=["tp1", "tp2-to-tp1", "dp2-distopt"],
)
@pytest.mark.extended
def test_killed_run_resumes_exactly(first, second, reference, tmp_path, data_cache):
    args = [f"out={tmp_path}", *BASE, "train.ckpt_every=4"]
    killed = run_train(data_cache, *args, *first, "train.crash_at_step=6", check=False)
    assert killed.returncode != 0  # SIGKILL after step 6: steps 5-6 are logged, not saved
    run = only_run(tmp_path)
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    run_train(data_cache, *args, *second)
    assert only_run(tmp_path) == run  # same folder: the layout is not part of the identity
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done" and record["resumed_from"] == 4
    _assert_close(_losses(run), reference)
    # val/loss too: one point per eval step, none twice
    val_steps = [s for s, _ in tb_scalars(run, "val/loss")]
    assert val_steps == [6, 12]
