"""A trained run loads for inference and reproduces the training loop's validation loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import only_run, run_train

TINY = ["model=tiny", "data.seed_tokens=16384", "train.epochs=1", "train.global_batch=8",
        "train.micro_batch=4"]


@pytest.fixture(scope="module")
def trained(data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("inference-runs")
    run_train(data_cache, *TINY, f"out={out}")
    return only_run(out)


def test_logits_reproduce_the_recorded_validation_loss(trained, data_cache, monkeypatch):
    from asymptote.data.datasets import validation_sets
    from asymptote.data.prepare import prepare
    from asymptote.models.inference import load_run

    monkeypatch.setenv("ASYMPTOTE_CACHE", str(data_cache))
    loaded = load_run(trained)
    cfg = loaded.cfg
    prepared = prepare(cfg.data, cfg.data.val_sequences * cfg.model.seq_len + 1, progress=False)
    total = count = 0.0
    for rows in validation_sets(prepared, cfg.model.seq_len, cfg.data.val_sequences).values():
        tokens = torch.from_numpy(rows.astype(np.int64))
        logits = loaded.logits(tokens[:, :-1])
        assert logits.shape[-1] == loaded.vocab
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="sum").item()
        count += tokens[:, 1:].numel()
    recorded = json.loads((trained / "run.json").read_text())["final"]["val_loss"]
    assert total / count == pytest.approx(recorded, rel=1e-5)


def test_run_folder_keeps_its_tokenizer(trained):
    from asymptote.models.inference import tokenizer_sha

    record = json.loads((trained / "run.json").read_text())
    assert (trained / "tokenizer.json").is_file()
    assert record["tokenizer_sha"] == tokenizer_sha(trained / "tokenizer.json")
    from asymptote.data.tokenizer import Tokenizer

    assert record["vocab"] >= Tokenizer.load(trained / "tokenizer.json").vocab_size


def test_bad_run_folders_are_named(tmp_path, trained):
    from asymptote.models.inference import RunLoadError, checkpoint_path, read_record

    with pytest.raises(RunLoadError, match="not a run folder"):
        read_record(tmp_path)
    with pytest.raises(RunLoadError, match="no checkpoint at step 999"):
        checkpoint_path(trained, 999)
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(RunLoadError, match="no checkpoint yet"):
        checkpoint_path(tmp_path)
