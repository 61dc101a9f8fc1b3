"""A small miniature study and a synthetic objective for its fabricated runs (tests of the
study's plan, status and run loop under tests/launch/study/)."""

from __future__ import annotations

import math

from asymptote.launch.run_dir import RunDir

SMALL = ["models=[tiny_s,tiny_m]", "seed_tokens=[65536]", "standard.seed_tokens=[]", "standard.epochs=[8,16]",
         "regularized.lr.grid=[0.003]", "regularized.weight_decay.grid=[0.8,1.6]",
         "regularized.epochs.grid=[16]", "regularized.max_runs=12", "ensemble.k_max=3",
         "distill.teacher=tiny_m", "distill.students=[tiny_s]"]


def loss(overrides: list[str]) -> float:
    """A synthetic final loss of a training point: lowest at lr 3e-3, wd 3.2, 16 epochs."""
    o = dict(x.split("=", 1) for x in overrides)
    lr, wd, ep = float(o["optim.lr"]), float(o["optim.weight_decay"]), float(o["train.epochs"])
    return (5.0 + (math.log10(lr) - math.log10(3e-3)) ** 2
            + 0.3 * (math.log2(wd) - math.log2(3.2)) ** 2 + 0.2 * (math.log2(ep) - 4) ** 2)


def finish(points, failed: set[str] = frozenset()):
    """Write run.json for every MISSING training point: done with its synthetic loss, or failed."""
    for p in points:
        if p.state == "MISSING" and p.job in ("pretrain", "ensemble_member"):
            if p.label in failed:
                RunDir(p.folder).update(status="failed", error="RuntimeError: boom")
            else:
                RunDir(p.folder).update(status="done", step=10, steps=10,
                                        final={"val_loss": loss(p.overrides)})
