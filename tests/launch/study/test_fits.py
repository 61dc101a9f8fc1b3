"""The fits stage on tables drawn from known laws (with a little deterministic noise): the
fitted asymptotes come back near the truth with intervals, the tiered joint asymptote and the
data-efficiency multipliers are computed, and what the tables cannot support is noted, not
filled in."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from asymptote.launch.study.fits import study_fits, tables
from asymptote.launch.study.stages import Stage, StudyPoint

SIZES = [0.025, 0.1, 0.3, 0.75]  # millions of non-embedding parameters
BUDGETS = [32768, 65536, 131072]
rng = np.random.default_rng(0)


def noisy(x: float, scale: float = 0.002) -> float:
    return float(x * (1 + rng.normal(0, scale)))


def synthetic():
    """Standard: E_D = 5 + 20 / D^0.3 (so L(D) has an asymptote), overfits more than the
    regularized recipe (E 5.2 at 65,536); ensembles lower still."""
    standard, regularized, ensembles = [], [], []
    for d in BUDGETS:
        e_d = 5.0 + 20.0 / d ** 0.3 + 0.5
        for n in SIZES:
            for extra in (0.0, 0.05):  # two epochs settings: the best per (N, D) is used
                standard.append({"N": n, "D": d, "loss": noisy(e_d + 1.0 / n ** 0.4 + extra)})
    for n in SIZES:
        regularized.append({"N": n, "D": 65536, "loss": noisy(5.2 + 0.8 / n ** 0.4)})
        e_k = 5.0 + 0.6 / n ** 0.4
        for k in range(1, 7):  # L(K) from a few K is fragile: less noise there
            ensembles.append({"N": n, "D": 65536, "K": k,
                              "loss": noisy(e_k + 0.3 / k ** 0.8, 0.0002)})
    return pd.DataFrame(standard), pd.DataFrame(regularized), pd.DataFrame(ensembles)


def test_fits_recover_the_laws_with_intervals():
    standard, regularized, ensembles = synthetic()
    out = study_fits(standard, regularized, ensembles, n_boot=60, level=0.9)
    json.dumps(out)  # JSON-ready
    reg = out["laws_in_N"]["regularized"]["65536"]
    assert abs(reg["params"]["E"] - 5.2) < 0.1
    assert reg["E_low"] is not None and reg["E_low"] <= reg["params"]["E"] <= reg["E_high"]
    assert set(out["laws_in_N"]["standard"]) == {str(d) for d in BUDGETS}
    joint = out["tiered"]["n_fits"][0]
    assert joint["D"] == 65536 and abs(joint["E_NK"] - 5.0) < 0.15
    labels = {t["label"]: t for t in out["efficiency"]["targets"]}
    # The regularized asymptote (5.2) is below the standard recipe's L(D) asymptote (~6.6): no
    # amount of data gets the standard recipe there (infinite multiplier, null in JSON, noted).
    assert labels["regularized asymptote D=65536"]["multiplier"] is None
    assert any("never reaches it" in n for n in out["notes"])
    # The smallest size's ensemble asymptote (~7.6) is reached with less data than 65,536.
    small = labels["ensemble asymptote N=0.025M D=65536"]
    assert 0.1 < small["multiplier"] < 1 and small["effective_D"] < 65536
    assert out["inputs"]["standard"] and len(out["inputs"]["standard"]) == len(SIZES) * 3


def test_what_the_tables_cannot_support_is_noted():
    standard, regularized, ensembles = synthetic()
    few = regularized[regularized["N"] < 0.2]
    out = study_fits(standard[standard["D"] == 65536], few, ensembles.iloc[0:0], n_boot=0)
    assert "regularized" not in out["laws_in_N"] and out["tiered"] is None
    assert out["efficiency"] is None
    notes = " ".join(out["notes"])
    assert "regularized D=65536: 2 size(s); L(N) needs 3" in notes
    assert "L(D) and data efficiency need 3" in notes


def test_tables_read_the_plan_and_the_evaluations(tmp_path):
    folder = tmp_path / "ensemble_eval-x"
    folder.mkdir()
    (folder / "ensemble.json").write_text(json.dumps(
        {"K": [1, 2, 3], "logit_mean": {"loss": [5.7, 5.5, 5.45]},
         "prob_mean": {"loss": [5.7, 5.48, 5.44]}}))
    meta = {"model": "tiny_m", "D": 65536}
    stages = [
        Stage("standard", [StudyPoint("a", "pretrain", state="DONE", loss=6.1, meta=meta),
                           StudyPoint("b", "pretrain", state="MISSING", meta=meta),
                           StudyPoint("c", "pretrain", state="DONE", loss=math.nan, meta=meta)]),
        Stage("regularized", [StudyPoint("o", "pretrain", state="DONE", loss=5.7,
                                         meta=dict(meta, optimum=True)),
                              StudyPoint("p", "pretrain", state="DONE", loss=5.9, meta=meta)]),
        Stage("ensemble_eval", [StudyPoint("e", "ensemble_eval", folder=folder, state="DONE",
                                           meta=meta)]),
    ]
    standard, regularized, ensembles = tables(stages, lambda m: {"tiny_m": 3e5}[m])
    assert standard.to_dict(orient="records") == [{"N": 0.3, "D": 65536, "loss": 6.1}]
    assert regularized["loss"].tolist() == [5.7]
    assert ensembles["K"].tolist() == [1, 2, 3] and ensembles["loss"].tolist() == [5.7, 5.5, 5.45]


def test_the_fits_stage_writes_fits_json_where_the_plan_looks(tmp_path):
    from asymptote.launch.study.run import write_study_fits
    from asymptote.launch.study.spec import load_spec

    spec = load_spec("miniature", [f"out={tmp_path}", "fits.n_boot=0"])
    stages = [Stage("standard", [StudyPoint(f"{m}", "pretrain", state="DONE", loss=6.0 - i / 10,
                                            meta={"model": m, "D": 65536})
                                 for i, m in enumerate(spec.models)]),
              Stage("regularized", []), Stage("ensemble_eval", [])]
    path = write_study_fits(spec, stages)
    assert path == tmp_path.resolve() / "fits" / "fits.json"
    out = json.loads(path.read_text())
    assert "65536" in out["laws_in_N"]["standard"] and out["tiered"] is None
    # The plan sees fits.json as done while its inputs are the same, stale once they change.
    from asymptote.launch.study.stages import Planner

    assert Planner._fits_fresh(path, stages)
    stages[0].points[0].loss = 5.0
    assert not Planner._fits_fresh(path, stages)
