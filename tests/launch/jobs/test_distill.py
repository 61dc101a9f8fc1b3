"""job=distill: sequence-level mixing (steps / (1 - w)) and logit-level KD online and offline."""

from __future__ import annotations

import json
import math

import pytest

from conftest import only_run, run_train

TINY = ["model=tiny", "data.seed_tokens=16384", "train.epochs=1", "train.global_batch=8",
        "train.micro_batch=4"]


@pytest.fixture(scope="module")
def teacher(data_cache, tmp_path_factory):
    """A teacher run and 16 sequences of its text."""
    out = tmp_path_factory.mktemp("distill-teacher")
    run_train(data_cache, *TINY, f"out={out}")
    run = only_run(out)
    text = out / "text"
    run_train(data_cache, "job=generate", f"generate.teacher=[{run}]", "generate.sequences=16",
              f"generate.output={text}", f"out={out}")
    return run, text


def test_mixing_rule():
    from asymptote.launch.train.batches import is_real

    for w in (0.0, 0.5, 0.75, 0.9):
        real = sum(is_real(p, w) for p in range(1000))
        assert real == math.floor(1000 * (1 - w) + 1e-9)
        # every window of 1/(1-w) positions holds one real sequence
        assert all(any(is_real(p + i, w) for i in range(round(1 / (1 - w)))) for p in range(50))


def test_sequence_level_student(teacher, data_cache, tmp_path):
    _, text = teacher
    run_train(data_cache, *TINY, "job=distill", "distill.mode=sequence", "distill.weight=0.75",
              f"distill.synthetic=[{text}]", f"out={tmp_path}")
    r = json.loads((only_run(tmp_path) / "run.json").read_text())
    assert r["status"] == "done" and r["steps"] == 16 * 4  # base 16 steps / (1 - 0.75)
    assert math.isfinite(r["final"]["val_loss"])


def test_logit_level_online_and_offline(teacher, data_cache, tmp_path):
    """Self-distillation (teacher = a run of the student's own preset); alpha=1 at T=1 with the
    full vocabulary cached: the offline top-k loss equals the online one step by step."""
    from conftest import tb_scalars

    run, _ = teacher
    common = [*TINY, "job=distill", "distill.mode=logit", f"distill.teacher=[{run}]",
              "distill.alpha=1.0", "distill.temperature=1.0"]
    run_train(data_cache, *common, f"out={tmp_path / 'on'}")
    vocab = json.loads((run / "run.json").read_text())["vocab"]
    run_train(data_cache, *common, "distill.offline=true", f"distill.top_k={vocab}",
              f"out={tmp_path / 'off'}")
    on, off = only_run(tmp_path / "on"), only_run(tmp_path / "off")
    assert (off / "teacher_topk.h5").is_file()
    a = [v for _, v in tb_scalars(on, "train/loss")]
    b = [v for _, v in tb_scalars(off, "train/loss")]
    assert len(a) == 16 and a == pytest.approx(b, rel=2e-4)
    assert a[-1] < a[0]


def test_bad_configs_are_named(teacher, data_cache, tmp_path):
    run, _ = teacher
    proc = run_train(data_cache, *TINY, "job=distill", "distill.mode=sequence", f"out={tmp_path}",
                     check=False)
    assert proc.returncode != 0 and "distill.synthetic" in proc.stdout
    proc = run_train(data_cache, *TINY, "job=distill", "distill.mode=logit",
                     f"distill.teacher=[{run},{tmp_path}]", f"out={tmp_path}", check=False)
    assert proc.returncode != 0 and "not a run folder" in proc.stdout
