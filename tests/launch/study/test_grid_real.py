"""The certificate-driven grid extension on real runs (the synthetic objective is in
test_grid.py): a one-size study whose weight-decay grid starts with two values trains them,
asks for the neighbours the certificate is missing, trains those, and ends with a best run
whose every neighbour finished and is not lower (or the budget spent, said so)."""

from __future__ import annotations

import math

import pytest

from asymptote.launch.study.place import Placer
from asymptote.launch.study.run import run_study, train_subprocess
from asymptote.launch.study.spec import load_spec

pytestmark = pytest.mark.slow

STUDY = [
    "seed_tokens=[8192]", "models=[tiny_s]", "run.val_sequences=4",
    "standard.seed_tokens=[8192]", "standard.epochs=[1]",
    "regularized.lr.grid=[0.003]", "regularized.lr.min=0.003", "regularized.lr.max=0.003",
    "regularized.epochs.grid=[1]", "regularized.epochs.min=1", "regularized.epochs.max=1",
    "regularized.weight_decay.grid=[0.1,0.2]", "regularized.weight_decay.min=0.025",
    "regularized.weight_decay.max=1.6", "regularized.max_runs=6",
    "distill.teacher=tiny_s", "distill.students=[]",
]


def test_extension_on_real_runs(tmp_path, data_cache, monkeypatch):
    monkeypatch.setenv("ASYMPTOTE_CACHE", str(data_cache))  # the runs' tokenizer, trained once
    spec = load_spec("miniature", [f"out={tmp_path}", *STUDY])
    with Placer() as placer:
        out = run_study(spec, placer, train_subprocess(tmp_path / "logs"),
                        only={"standard", "regularized"}, say=lambda s: None, parallel=2)
    assert not out.failed, [p.label for p in out.failed]
    regularized = next(s for s in out.stages if s.name == "regularized")
    ran = {p.label for p in regularized.points if p.state == "DONE"}
    initial = {"tiny_s D=8192 lr=0.003 wd=0.1 E=1", "tiny_s D=8192 lr=0.003 wd=0.2 E=1"}
    assert initial <= ran and len(ran) > len(initial), "the grid grew past its initial values"
    losses = {float(p.label.split("wd=")[1].split()[0]): p.loss for p in regularized.points
              if p.state == "DONE"}
    assert all(math.isfinite(v) for v in losses.values())
    head = regularized.notes[0]
    best = min(losses, key=losses.get)
    if "certified, best" in head:
        assert f"wd={best:g}" in head
        # The certificate's own condition, read back from the real losses: each existing
        # one-step neighbour on the doubling grid finished and is not lower.
        for neighbour in (best / 2, best * 2):
            if spec.regularized.weight_decay.min <= neighbour <= spec.regularized.weight_decay.max:
                assert neighbour in losses and losses[neighbour] >= losses[best]
    else:
        assert "NOT certified (budget spent)" in head and len(ran) == spec.regularized.max_runs
