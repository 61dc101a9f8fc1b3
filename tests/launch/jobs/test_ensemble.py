"""Ensemble members (seeds, tags, the paper's rule) and ensemble evaluation for every K."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import run_train, train_env

SMALL = ["data.seed_tokens=16384", "train.epochs=1", "train.global_batch=8", "train.micro_batch=4"]


@pytest.fixture(scope="module")
def members(data_cache, tmp_path_factory):
    """Three tiny members of one ensemble, trained as one Hydra sweep (as an array would)."""
    out = tmp_path_factory.mktemp("ensemble-members")
    run_train(data_cache, "-m", "experiment=tiny_ensemble", *SMALL, f"out={out}",
              "ensemble.member=0,1,2")
    runs = sorted(p.parent for p in out.glob("*/run.json"))
    assert len(runs) == 3
    return sorted(runs, key=lambda p: json.loads((p / "run.json").read_text())["tags"]["member"])


@pytest.fixture(scope="module")
def evaluated(members, data_cache, tmp_path_factory):
    from asymptote.evals.ensemble import evaluate_ensemble

    mp = pytest.MonkeyPatch()
    mp.setenv("ASYMPTOTE_CACHE", str(data_cache))
    out = tmp_path_factory.mktemp("ensemble-eval") / "tiny"
    results = evaluate_ensemble(members, out, subsets=2, name="tiny")
    yield results, out
    mp.undo()


def test_members_derive_seeds_tags_and_the_paper_rule(members):
    for i, run in enumerate(members):
        r = json.loads((run / "run.json").read_text())
        assert r["status"] == "done"
        assert r["tags"] == {"ensemble": "tiny", "member": i, "vary": "both", "paper_rule": True}
        assert r["config"]["seed"] == {"train": i, "data": i}
        # tiny_ensemble gives E=1, wd=0.2 (the single-model point); the rule doubles/halves
        assert r["epochs"] == 2 and r["config"]["optim"]["weight_decay"] == pytest.approx(0.1)
    assert len({p.name for p in members}) == 3


def test_derive_is_idempotent_and_varies_only_what_is_asked():
    from asymptote.launch.jobs.ensemble_member import Config, check, derive

    cfg = Config(job="ensemble_member")
    cfg.seed.train, cfg.seed.data = 10, 20
    cfg.ensemble.member, cfg.ensemble.vary = 3, "train"
    once = derive(cfg)
    assert (once.seed.train, once.seed.data) == (13, 20)
    twice = derive(once)
    assert (twice.seed.train, twice.seed.data, twice.train.epochs) == (13, 20, 1)
    bad = Config(job="ensemble_member")
    bad.ensemble.vary = "init"
    assert any("ensemble.vary" in p for p in check(bad))


def test_k1_equals_the_member_and_losses_fall_with_k(evaluated, members):
    results, _ = evaluated
    recorded = json.loads((members[0] / "run.json").read_text())["final"]["val_loss"]
    for c in ("logit_mean", "prob_mean"):
        assert results[c]["loss"][0] == pytest.approx(recorded, rel=1e-5)
        assert len(results[c]["loss"]) == 3
    # on these members the 3-ensemble beats the single model under both rules
    assert results["logit_mean"]["loss"][2] < results["logit_mean"]["loss"][0]
    assert results["prob_mean"]["loss"][2] < results["prob_mean"]["loss"][0]


def test_k_copies_of_one_model_equal_that_model(members, data_cache, monkeypatch):
    from asymptote.evals.ensemble import evaluate_ensemble

    monkeypatch.setenv("ASYMPTOTE_CACHE", str(data_cache))
    results = evaluate_ensemble([members[1]] * 3, write=False)
    single = results["logit_mean"]["loss"][0]
    for c in ("logit_mean", "prob_mean"):
        assert results[c]["loss"] == pytest.approx([single] * 3, rel=1e-6)


def test_hdf5_subset_losses_equal_live_computation(evaluated, members, data_cache, monkeypatch):
    from asymptote.data.datasets import validation_sets
    from asymptote.data.prepare import prepare
    from asymptote.evals.logprobs import LogProbStore
    from asymptote.models.ensemble import combined_log_probs
    from asymptote.models.inference import load_run

    results, out = evaluated
    store = LogProbStore(out / "logprobs.h5")
    assert store.num_members == 3
    for k in (1, 2, 3):
        assert store.prob_mean_loss(range(k)) == pytest.approx(results["prob_mean"]["loss"][k - 1],
                                                               rel=1e-6)
    # a subset the evaluation never formed as a prefix: members 0 and 2, live from the models
    monkeypatch.setenv("ASYMPTOTE_CACHE", str(data_cache))
    loaded = [load_run(members[i]) for i in (0, 2)]
    cfg = loaded[0].cfg
    prepared = prepare(cfg.data, cfg.data.val_sequences * cfg.model.seq_len + 1, progress=False)
    total = count = 0.0
    for rows in validation_sets(prepared, cfg.model.seq_len, cfg.data.val_sequences).values():
        tokens = torch.from_numpy(rows.astype(np.int64))
        logp = combined_log_probs([m.logits(tokens[:, :-1]) for m in loaded], "prob_mean")
        total -= logp.gather(-1, tokens[:, 1:].unsqueeze(-1)).sum().item()
        count += tokens[:, 1:].numel()
    assert store.prob_mean_loss([0, 2]) == pytest.approx(total / count, rel=1e-6)
    assert store.prob_mean_loss([2, 0]) == pytest.approx(store.prob_mean_loss([0, 2]), rel=1e-12)
    for domain in store.domains:
        assert math.isfinite(store.prob_mean_loss([0, 2], domain))


def test_outputs_are_read_by_the_analysis(evaluated):
    from asymptote.analysis.ingest import load_sweep
    from asymptote.analysis.report import ensemble_points

    results, out = evaluated
    rows = (out / "ensemble.csv").read_text().splitlines()
    assert rows[0] == "combine,K,loss" and len(rows) == 7
    assert json.loads((out / "ensemble.json").read_text())["K"] == [1, 2, 3]
    subsets = results["logit_mean"]["subsets"]
    assert set(subsets) == {"2", "3"} and len(subsets["2"]["members"]) == 2
    data = load_sweep(out.parent, cache_dir=False, progress=False)
    points = ensemble_points(data, data.runs)
    assert set(points) == {"logit_mean", "prob_mean"}
    got = points["logit_mean"].sort_values("K")
    assert got["K"].tolist() == [1, 2, 3]
    assert got["loss"].to_numpy() == pytest.approx(results["logit_mean"]["loss"], rel=1e-6)
    assert (got["D"] == 16384).all() and (got["N"] > 0).all()


def test_bad_members_fail_before_any_work(members, tmp_path):
    from asymptote.evals.ensemble import EnsembleEvalError, check_members

    with pytest.raises(EnsembleEvalError, match="K_max=4 but 3 member"):
        check_members(members, k_max=4)
    other = tmp_path / "other-tokenizer"
    shutil.copytree(members[2], other)
    record = json.loads((other / "run.json").read_text())
    record["tokenizer_sha"] = "0000deadbeef"
    (other / "run.json").write_text(json.dumps(record))
    with pytest.raises(EnsembleEvalError, match="different tokenizers"):
        check_members([members[0], other])
    record["tokenizer_sha"] = json.loads((members[0] / "run.json").read_text())["tokenizer_sha"]
    record["vocab"] += 128
    (other / "run.json").write_text(json.dumps(record))
    with pytest.raises(EnsembleEvalError, match="different vocabularies"):
        check_members([members[0], other])
    shutil.rmtree(other / "checkpoints")
    with pytest.raises(EnsembleEvalError, match="no checkpoint"):
        check_members([members[0], other])
    with pytest.raises(EnsembleEvalError, match="not a run folder"):
        check_members([members[0], tmp_path])


def test_cli_prints_results_and_rejects_bad_input(members, data_cache, tmp_path):
    env = train_env(data_cache)
    bad = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "ensemble-eval",
                          str(members[0]), "--k-max", "2"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "K_max=2 but 1 member" in bad.stderr
    # the job under asymptote-train at TP=2 (members were saved at TP=1): same losses
    run_train(data_cache, "job=ensemble_eval", "parallel.tp=2", f"out={tmp_path}",
              f"ensemble.members=[{','.join(str(m) for m in members[:2])}]",
              f"ensemble.eval_out={tmp_path / 'tp2'}")
    tp2 = json.loads((tmp_path / "tp2" / "ensemble.json").read_text())
    good = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "ensemble-eval",
                           str(members[0]), str(members[1]), "--out", str(tmp_path / "cli")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr[-3000:]
    printed = json.loads(good.stdout[good.stdout.index("{"):])
    for c in ("logit_mean", "prob_mean"):
        assert len(printed[c]["loss"]) == 2
        assert tp2[c]["loss"] == pytest.approx(printed[c]["loss"], rel=1e-5)
    assert (tmp_path / "cli" / "logprobs.h5").is_file()
