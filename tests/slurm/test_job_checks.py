"""Job types on the real local cluster: a bad sweep is refused before any sbatch (every problem at
once, nothing written into existing runs), and `asymptote status` tells the truth about jobs
that write elsewhere (generate, ensemble_eval) and about runs whose tasks are still leaving
the queue."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import run_train

pytestmark = pytest.mark.slurm

TINY = ["model=tiny", "train.global_batch=8", "train.micro_batch=4", "train.eval_every=0",
        "data.seed_tokens=8192", "data.val_sequences=4"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.timeout_min=5"]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the hash of its content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def members(data_cache, tmp_path_factory) -> dict[str, list[Path]]:
    """Two tiny runs on one tokenizer (`same`) and one on another (`other`)."""
    out = tmp_path_factory.mktemp("members")
    run_train(data_cache, "-m", f"out={out / 'same'}", *TINY, "seed.train=0,1")
    run_train(data_cache, f"out={out / 'other'}", *TINY, "data.vocab_size=1024")
    return {k: sorted(p.parent for p in (out / k).glob("*/run.json")) for k in ("same", "other")}


def _submissions(out: Path) -> list[Path]:
    return list(out.glob(".hydra/*/.submitit/*/*_submission.sh"))


def test_bad_sweeps_are_refused_before_any_sbatch(slurm_env, data_cache, members, tmp_path):
    same, other = members["same"], members["other"]
    before = {str(m): _snapshot(m) for m in same + other}
    out = tmp_path / "out"
    # A mistyped distillation mode and a teacher that does not exist, in one sweep.
    proc = run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM, "job=distill",
                     "distill.mode=logits,logit", f"distill.teacher=[{tmp_path / 'nope'}]",
                     check=False)
    assert proc.returncode != 0
    assert "nothing was launched: 2 problem(s)" in proc.stdout
    assert "distill.mode='logits': use one of sequence, logit" in proc.stdout
    assert f"{tmp_path / 'nope'} is not a run folder" in proc.stdout
    # Members trained with different tokenizers cannot form an ensemble.
    pair = f"[{same[0]},{other[0]}]"
    proc2 = run_train(data_cache, "-m", f"out={out}", *SLURM, "job=ensemble_eval",
                      f"ensemble.members={pair}", "ensemble.batch=0,4", check=False)
    assert proc2.returncode != 0
    assert "nothing was launched: 2 problem(s)" in proc2.stdout
    assert "different tokenizers" in proc2.stdout and "ensemble.batch >= 1" in proc2.stdout
    assert _submissions(out) == [] and not list(out.glob(".hydra/*/sweep.json"))
    assert {str(m): _snapshot(m) for m in same + other} == before


def _status(out: Path) -> list[str]:
    from asymptote.launch.app.status import sweep_status

    rows, notes = sweep_status(out)
    assert not notes, notes
    return [r.state for r in rows]


def test_status_of_generate_and_ensemble_eval_sweeps_is_done(slurm_env, data_cache, members,
                                                             tmp_path):
    same = members["same"]
    gen = tmp_path / "gen"
    run_train(data_cache, "-m", f"out={gen}", *SLURM, "job=generate",
              f"generate.teacher=[{same[0]}]", "generate.sequences=4", "generate.length=8",
              "generate.shards=2", "generate.shard=0,1")
    (folder,) = gen.glob("generate-*")
    assert sorted(p.name for p in folder.glob("shard_*.json")) == ["shard_00000.json",
                                                                   "shard_00001.json"]
    assert _status(gen) == ["DONE", "DONE"]
    assert not (gen / "manifest.json").exists()  # no run folder is expected of generate

    ens = tmp_path / "ens"
    run_train(data_cache, "-m", f"out={ens}", *SLURM, "job=ensemble_eval",
              f"ensemble.members=[{same[0]},{same[1]}]", "ensemble.name=a,b")
    assert sorted(p.name.split("-")[1] for p in ens.glob("ensemble_eval-*")) == ["a", "b"]
    assert _status(ens) == ["DONE", "DONE"]
    manifest = json.loads((ens / "manifest.json").read_text())["runs"]
    assert sorted(m.split("-")[1] for m in manifest) == ["a", "b"]


def test_status_right_after_a_blocking_sweep_trusts_the_run_records(slurm_env, data_cache,
                                                                   tmp_path):
    run_train(data_cache, "-m", f"out={tmp_path}", *TINY, *SLURM, "optim.weight_decay=0.1,0.2")
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*/run.json")]
    assert [r["status"] for r in records] == ["done", "done"]
    assert _status(tmp_path) == ["DONE", "DONE"]  # at once, whatever squeue still shows
