"""`asymptote demo --cpt` end to end at small sizes: a general base through Hugging Face export and
import-hf, curated domain data, CPT with and without replay, lm-eval before and after, the
report; its numbers checked against the run folders and the real effects checked where they
hold at this size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Base and CPT: 16,384 tokens, 1 epoch each (16 and 8 steps); 8 lm-eval documents per task.
SMALL = ["data.seed_tokens=16384", "train.epochs=1"]


def _record(folder) -> dict:
    return json.loads((Path(folder) / "run.json").read_text())


@pytest.mark.extended
def test_cpt_recipe_runs_and_reports_what_the_runs_recorded(data_cache, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", ASYMPTOTE_CACHE=str(data_cache),
               PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "demo", "--cpt",
                           "--out", str(tmp_path / "demo"), "--replay", "0,0.5",
                           "--eval-limit", "8", *SMALL],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    out = tmp_path / "demo_cpt"
    report = json.loads((out / "cpt_report.json").read_text())
    assert report["target"] == "code"
    assert report["general"] == ["biomedical", "drama", "legal", "math", "scripture"]

    # the CPT base is the import of the exported base, and the trip changed nothing
    imported = _record(out / "imported")
    assert imported["job"] == "import_hf"
    assert Path(imported["imported_from"]["folder"]) == out / "hf" / "general"
    assert report["pretrain"]["roundtrip_max_diff"] < 1e-5

    # curation ran on the target domain and removed documents (Gopher filters on code)
    c = report["curation"]
    assert c["kept"] + c["removed"] == c["documents"] == 77 and c["removed"] > 0

    assert [r["replay_fraction"] for r in report["runs"]] == [0.0, 0.5]
    tag = "val/code/loss"
    for row in report["runs"]:
        r = _record(row["run"])
        assert r["job"] == "cpt" and r["status"] == "done"
        assert Path(r["base_run"]) == out / "imported"
        assert r["replay_fraction"] == row["replay_fraction"]
        assert r["config"]["data"]["curate"]["enabled"] is True
        # the report's numbers are the run's own
        assert row["target_loss"] == r["final"][tag]
        assert row["target_gain"] == pytest.approx(r["start"][tag] - r["final"][tag])
        assert report["before"]["target_loss"] == r["start"][tag]
        assert row["forgetting"] == pytest.approx(
            r["final"]["val/general/loss"] - r["start"]["val/general/loss"])
        for g in report["general"]:
            key = f"val/general/{g}/loss"
            assert row["domains"][g] == pytest.approx(r["final"][key] - r["start"][key])
        assert row["downstream"]["continuation_acc"] == (
            r["downstream"]["asymptote_continuation"]["acc"])
        assert row["downstream"]["target_bpb"] == (
            r["downstream"]["asymptote_ppl_code"]["bits_per_byte"])
        # continued pre-training on code lowers the loss on code (here by far more than noise)
        assert row["target_loss"] < report["before"]["target_loss"] - 0.05
        assert row["downstream"]["target_bpb"] < report["before"]["downstream"]["target_bpb"]
    assert report["before"]["downstream"]["continuation_acc"] == (
        imported["downstream"]["asymptote_continuation"]["acc"])
    # more replay means more steps for the same domain tokens
    plain, replayed = report["runs"]
    assert plain["domain_tokens"] == replayed["domain_tokens"]
    assert replayed["steps"] > plain["steps"]

    assert (out / "hf" / "cpt-r0.5" / "config.json").is_file()
    md = (out / "cpt_report.md").read_text()
    assert f"| cpt | 0.5 | {replayed['steps']} |" in md and "forgetting" in md
    assert "wall time" in done.stdout and (out / "cpt_report.png").is_file()


def test_cpt_demo_refuses_bad_arguments_before_training(tmp_path):
    for args, says in ((["--domain", "poetry"], "the shipped corpus has"),
                       (["--replay", "0,1"], "in [0, 1)"),
                       (["--eval-limit", "-1"], "positive")):
        done = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "demo", "--cpt",
                               "--out", str(tmp_path / "demo"), *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and says in done.stdout, done.stdout
    assert not (tmp_path / "demo_cpt").exists()
