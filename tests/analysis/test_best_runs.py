"""Best run per cell and the local optimality certificate."""

import numpy as np
import pandas as pd
import pytest

from asymptote.analysis.best_runs import best_runs, heatmap
from asymptote.analysis.errors import AnalysisError

LRS = [1e-3, 3e-3, 1e-2]
WDS = [0.1, 0.8, 3.2]
EPS = [4, 8, 16]


def table(opt=(1, 1, 1), drop=(), fail=(), seeds=1):
    rows = []
    for n in (1e8, 3e8):
        for i, lr in enumerate(LRS):
            for j, wd in enumerate(WDS):
                for k, ep in enumerate(EPS):
                    for s in range(seeds):
                        name = f"n{n:g}-{lr}-{wd}-{ep}-{s}"
                        if (n, lr, wd, ep) in drop:
                            continue
                        loss = 3.0 + 0.1 * ((i - opt[0]) ** 2 + (j - opt[1]) ** 2 + (k - opt[2]) ** 2) + 0.001 * s
                        status = "failed" if (n, lr, wd, ep) in fail else "done"
                        rows.append({"run_id": name, "params": n, "seed_tokens": 1e9, "optim.lr": lr,
                                     "optim.weight_decay": wd, "epochs": ep, "status": status,
                                     "loss": np.nan if status == "failed" else loss})
    return pd.DataFrame(rows).set_index("run_id")


def test_interior_optimum_is_certified_and_seeds_are_averaged():
    b = best_runs(table(seeds=2))
    assert len(b.table) == 2 and b.table["certified"].all()
    row = b.table.iloc[0]
    assert (row["optim.lr"], row["optim.weight_decay"], row["epochs"]) == (3e-3, 0.8, 8)
    assert row["n_seeds"] == 2 and row["loss"] == pytest.approx(3.0005)
    assert set(row["neighbours"]) == {"optim.lr=0.001", "optim.lr=0.01", "optim.weight_decay=0.1",
                                      "optim.weight_decay=3.2", "epochs=4", "epochs=16"}


def test_optimum_on_the_grid_edge_is_not_certified():
    b = best_runs(table(opt=(2, 1, 1)))
    assert not b.table["certified"].any()
    assert "optim.lr=0.01 is at the top of the grid" in b.table["reasons"].iloc[0]


def test_missing_or_failed_neighbour_is_not_certified():
    b = best_runs(table(drop=[(1e8, 1e-3, 0.8, 8)], fail=[(3e8, 3e-3, 0.8, 16)]))
    t = b.table.set_index("params")
    assert not t.loc[1e8, "certified"] and "optim.lr=0.001 has no finished run" in t.loc[1e8, "reasons"]
    assert not t.loc[3e8, "certified"] and "epochs=16 has no finished run" in t.loc[3e8, "reasons"]
    assert len(b.uncertified) == 2


def test_unswept_axis_makes_certificate_impossible():
    t = table()
    t = t[t["optim.lr"] == 3e-3]
    b = best_runs(t)
    assert not b.table["certified"].any()
    assert "optim.lr not swept" in b.table["reasons"].iloc[0]


def test_no_usable_runs():
    t = table()
    t["status"] = "failed"
    with pytest.raises(AnalysisError, match="no finished run"):
        best_runs(t)


def test_heatmap_is_min_over_other_axes():
    h = heatmap(table(), "loss", "epochs", "optim.weight_decay", over=["optim.lr", "params"])
    assert h.shape == (3, 3)
    assert h.loc[8, 0.8] == pytest.approx(3.0)
    assert h.loc[4, 0.1] == pytest.approx(3.2)
