"""`asymptote export`: a run trained at TP=2 x PP=2 becomes a transformers folder whose logits
equal the run's (fp32, rel < 1e-4), with a model card; lm-eval's `hf` model scores it as the
`asymptote` model scores the run; importing the export gives back the same weights; ensembles
export member by member; tied embeddings and q/k/v biases export too; bad input writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import hf_models
from conftest import only_run, run_train, train_env

pytestmark = [pytest.mark.slow, pytest.mark.extended]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
TOL = 1e-4
# 16 steps of 8 x 128 tokens, checkpoints at steps 8 and 16
TRAIN = ["model=tiny", "data.seed_tokens=16384", "train.global_batch=8", "train.micro_batch=4",
         "train.eval_every=0", "train.ckpt_every=8"]


def _cli(tmp_path, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", *args],
                          env=train_env(tmp_path), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_tp2pp2(data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("tp2pp2")
    run_train(data_cache, *TRAIN, "parallel.tp=2", "parallel.pp=2", f"out={out}")
    return only_run(out)


@pytest.fixture(scope="module")
def exported(run_tp2pp2, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "hf"
    proc = _cli(out.parent, "export", str(run_tp2pp2), "--hf", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _logits_of_run(run, tokens, step=None):
    from asymptote.models.inference import load_run

    return load_run(run, step).logits(tokens)


def test_transformers_loads_the_export_and_its_logits_are_the_runs(run_tp2pp2, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asymptote.models.hf import rel_error

    record = json.loads((run_tp2pp2 / "run.json").read_text())
    assert record["layout"] == {"tp": 2, "pp": 2, "dp": 1} and record["status"] == "done"
    model = AutoModelForCausalLM.from_pretrained(str(exported), dtype=torch.float32).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == record["vocab"]
    tok = AutoTokenizer.from_pretrained(str(exported))
    text = "In the beginning was the Word. def f(x): return 2 * x"
    from asymptote.data.tokenizer import Tokenizer

    ids = Tokenizer.load(run_tp2pp2 / "tokenizer.json").encode(text)
    assert tok(text)["input_ids"] == ids and tok.decode(ids) == text
    tokens = torch.randint(0, 4000, (2, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = model(tokens).logits
    assert rel_error(_logits_of_run(run_tp2pp2, tokens), theirs) < TOL
    # (a cross-entropy over the padded vocabulary: the same numbers the run's val/loss uses)
    assert (exported / "tokenizer.json").read_bytes() == (run_tp2pp2 / "tokenizer.json").read_bytes()


def test_model_card_records_d_epochs_config_and_final_metrics(run_tp2pp2, exported):
    record = json.loads((run_tp2pp2 / "run.json").read_text())
    card = (exported / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers")
    assert "| D (seed tokens) | 16384 |" in card
    assert f"| epochs E | {record['epochs']} |" in card
    assert f"| checkpoint step | {record['steps']} of {record['steps']} |" in card
    assert f"| val_loss | {record['final']['val_loss']:.6g} |" in card
    assert "## Configuration of the run" in card and "tp: 2" in card and "seed_tokens: 16384" in card
    assert "max relative logit difference vs the run (export check)" in card


def test_import_of_the_export_gives_back_the_same_weights(run_tp2pp2, exported, tmp_path):
    from asymptote.launch.app.import_hf import import_hf
    from asymptote.models.inference import load_run

    back = import_hf(exported, tmp_path / "again")
    a, b = load_run(run_tp2pp2), load_run(back)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    weights = [k for k, v in sa.items() if isinstance(v, torch.Tensor)]
    assert weights and {k for k, v in sb.items() if isinstance(v, torch.Tensor)} == set(weights)
    assert all(torch.equal(sa[k], sb[k]) for k in weights)
    record = json.loads((back / "run.json").read_text())
    assert record["tokenizer_sha"] == a.record["tokenizer_sha"]  # the same tokenizer, byte for byte
    assert record["config"]["model"]["seq_len"] == a.cfg.model.seq_len


def test_lm_eval_hf_model_scores_the_export_as_asymptote_scores_the_run(run_tp2pp2, exported):
    import lm_eval

    from asymptote.evals import lm_model  # noqa: F401  (registers `asymptote`)
    from asymptote.evals.tasks import task_manager

    tasks = ["asymptote_continuation", "asymptote_ppl_legal"]
    common = dict(tasks=tasks, task_manager=task_manager(), bootstrap_iters=0, limit=12,
                  log_samples=True)
    ours = lm_eval.simple_evaluate(model="asymptote", model_args={"run": str(run_tp2pp2)},
                                   **common)
    theirs = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(exported), "dtype": "float32",
                                "device": "cpu"}, batch_size=4, **common)
    for task in tasks:
        a = sorted((s["doc_id"], s["resps"]) for s in ours["samples"][task])
        b = sorted((s["doc_id"], s["resps"]) for s in theirs["samples"][task])
        assert a and [d for d, _ in a] == [d for d, _ in b]
        for (_, ra), (_, rb) in zip(a, b):
            flat_a = [x[0] if isinstance(x[0], (int, float)) else x[0][0] for x in ra]
            flat_b = [x[0] if isinstance(x[0], (int, float)) else x[0][0] for x in rb]
            assert flat_a == pytest.approx(flat_b, rel=TOL, abs=1e-3), task
    for task in tasks:
        for metric, value in ours["results"][task].items():
            if isinstance(value, float) and "stderr" not in metric:
                assert theirs["results"][task][metric] == pytest.approx(value, rel=TOL), \
                    (task, metric)


def test_an_ensemble_exports_member_by_member(run_tp2pp2, data_cache, tmp_path):
    from transformers import AutoModelForCausalLM

    from asymptote.launch.app.export import export
    from asymptote.models.hf import rel_error

    other = tmp_path / "other"
    run_train(data_cache, *TRAIN, "seed.train=1", "data.seed_tokens=8192", f"out={other}")
    member_b = only_run(other)
    out = export([f"{run_tp2pp2}@8", member_b], tmp_path / "ens", max_shard_size="100KB")
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == sorted([f"{run_tp2pp2.name}-step8", member_b.name])
    assert member_b.name in (out / "README.md").read_text()
    tokens = torch.randint(0, 4000, (1, 64), generator=torch.Generator().manual_seed(3))
    for name, run, step in ((f"{run_tp2pp2.name}-step8", run_tp2pp2, 8), (member_b.name, member_b,
                                                                          None)):
        folder = out / name
        assert (folder / "model.safetensors.index.json").is_file()  # sharded as asked
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
        with torch.no_grad():
            assert rel_error(_logits_of_run(run, tokens, step), model(tokens).logits) < TOL
        assert "| checkpoint step | " + str(step or json.loads(
            (run / "run.json").read_text())["steps"]) in (folder / "README.md").read_text()


def test_tied_embeddings_and_qkv_biases_export(data_cache, tmp_path):
    """A run trained here with tied embeddings and q/k/v biases exports as a Llama with
    attention_bias (zero o_proj biases); imported back, the same weights."""
    from transformers import AutoModelForCausalLM

    from asymptote.launch.app.export import export
    from asymptote.launch.app.import_hf import import_hf
    from asymptote.models.hf import rel_error
    from asymptote.models.inference import load_run

    run_train(data_cache, *TRAIN, "data.seed_tokens=4096", "model.tie_embeddings=true",
              "model.qkv_bias=true", "parallel.tp=2", f"out={tmp_path / 'runs'}")
    run = only_run(tmp_path / "runs")
    out = export(run, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["attention_bias"]
    assert config["tie_word_embeddings"]
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert not any(n == "lm_head.weight" for n, _ in model.named_parameters())
    assert model.model.layers[0].self_attn.q_proj.bias.abs().sum() > 0  # trained biases
    tokens = torch.randint(0, 4000, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_error(_logits_of_run(run, tokens), model(tokens).logits) < TOL
    back = load_run(import_hf(out, tmp_path / "back"))
    assert back.cfg.model.qkv_bias and back.cfg.model.tie_embeddings
    sa, sb = load_run(run).model.state_dict(), back.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k, v in sa.items() if isinstance(v, torch.Tensor))


def test_an_imported_qwen2_exports_as_qwen2_with_its_files(tmp_path):
    from safetensors import safe_open

    from asymptote.launch.app.export import export
    from asymptote.launch.app.import_hf import import_hf
    from asymptote.models.hf import rel_error

    src = hf_models.make_model(tmp_path / "qwen", "qwen2")
    run = import_hf(src, tmp_path / "run")
    # (no export check: transformers 5 reads any model_type qwen2 folder with Qwen2Tokenizer,
    # which re-splits this test BPE's digits; a real Qwen2 tokenizer is that tokenizer)
    out = export(run, tmp_path / "out", check=False)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["tie_word_embeddings"]
    assert (out / "tokenizer_config.json").read_text() == \
        (src / "tokenizer_config.json").read_text()
    with safe_open(str(src / "model.safetensors"), "pt") as a, \
            safe_open(str(out / "model.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    tokens = hf_models.tokens()
    assert rel_error(hf_models.hf_logits(out, tokens), hf_models.hf_logits(src, tokens)) < TOL


def test_bad_input_writes_nothing(run_tp2pp2, exported, tmp_path):
    from asymptote.launch.app.export import export
    from asymptote.models.inference import RunLoadError

    out = tmp_path / "x"
    proc = _cli(tmp_path, "export", f"{run_tp2pp2}@3", "--hf", str(out))
    assert proc.returncode == 2 and "has no checkpoint at step 3" in proc.stderr, proc.stderr
    for runs, error, fragment in (
            ([str(tmp_path)], RunLoadError, "is not a run folder"),
            ([str(run_tp2pp2), f"{run_tp2pp2}@5"], RunLoadError, "no checkpoint at step 5"),
            ([f"{run_tp2pp2}@last"], ValueError, "@last is not a step number")):
        with pytest.raises(error, match=fragment):
            export(runs, out)
        assert not out.exists()
    before = sorted(p.name for p in exported.iterdir())
    with pytest.raises(FileExistsError, match="already exists"):
        export(run_tp2pp2, exported)
    assert sorted(p.name for p in exported.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x")]
