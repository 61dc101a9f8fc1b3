"""Hugging Face import: small random Llama-family models built with transformers' own config
classes (GQA; tied and untied; Mistral; Qwen2 with q/k/v biases; Llama-3 RoPE scaling; sharded
safetensors) give transformers' logits at TP=1 and TP=2 (fp32, rel < 1e-4); `asymptote
import-hf` writes a run folder that job=cpt starts from (its step-0 loss is transformers' loss
on the same batch); bad folders are refused with the problem named and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hf_models
from conftest import only_run, run_train, train_env

TOL = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One saved model per kind (+ a sharded copy of the untied Llama)."""
    root = tmp_path_factory.mktemp("hf-models")
    out = {kind: hf_models.make_model(root / kind, kind) for kind in hf_models.KINDS}
    out["llama_sharded"] = hf_models.make_model(root / "llama_sharded", "llama",
                                                max_shard_size="60KB")
    return out


def _megatron_logits(source, tokens, tp: int = 1):
    from asymptote.models import gpt, hf
    from asymptote.models.config import ParallelConfig
    from asymptote.models.inference import ensure_distributed

    ensure_distributed(ParallelConfig(tp=tp))
    chunks = gpt.build_model_chunks(source.model, ParallelConfig(tp=tp), source.vocab)
    hf.load_weights(chunks, source)
    model = chunks[0].eval()
    pos = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
    with torch.no_grad():
        return model(tokens, pos, None, runtime_gather_output=True).float(), chunks


@pytest.mark.parametrize("kind", [*hf_models.KINDS, "llama_sharded"])
def test_import_at_tp1_gives_transformers_logits(folders, kind):
    from asymptote.models import hf

    source = hf.read_hf_folder(folders[kind])
    m = source.model
    assert (m.heads, m.kv_heads, m.vocab_size) == (4, 2, hf_models.VOCAB)  # GQA, unpadded
    assert m.tie_embeddings == (kind in ("llama_tied", "qwen2"))
    assert m.qkv_bias == (kind == "qwen2")
    assert m.rope_scaling == ("llama3" if kind == "llama3_rope" else None)
    if kind == "llama_sharded":
        assert len({p.name for p in source.weights.values()}) > 1
    tokens = hf_models.tokens()
    ours, chunks = _megatron_logits(source, tokens)
    theirs = hf_models.hf_logits(folders[kind], tokens)
    assert hf.rel_error(ours, theirs) < TOL
    # export mapping: the same tensors back, bit for bit
    back = hf.hf_state_dict(chunks, m, hf.export_arch(m, source.config["model_type"]))
    from safetensors import safe_open

    original = {}
    for name, path in source.weights.items():
        with safe_open(str(path), framework="pt") as f:
            original[name] = f.get_tensor(name)
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in back)


def test_llama3_rope_scaling_matters_at_this_size(folders):
    """The Llama-3 RoPE case is a real test: without the scaling the logits differ."""
    import dataclasses

    from asymptote.models import hf

    source = hf.read_hf_folder(folders["llama3_rope"])
    plain = dataclasses.replace(source, model=dataclasses.replace(source.model, rope_scaling=None))
    tokens = hf_models.tokens(length=128)
    theirs = hf_models.hf_logits(folders["llama3_rope"], tokens)
    assert hf.rel_error(_megatron_logits(source, tokens)[0], theirs) < TOL
    assert hf.rel_error(_megatron_logits(plain, tokens)[0], theirs) > 10 * TOL


def _tp2_rank(rank: int, port: int, folder: str, run_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import warnings

    warnings.filterwarnings("ignore")
    from asymptote.models import hf
    from asymptote.models.inference import load_run

    tokens = hf_models.tokens()
    result = {}
    # straight from the Hugging Face folder, each rank loading its own shards
    logits, chunks = _megatron_logits(hf.read_hf_folder(folder), tokens, tp=2)
    result["direct"] = logits
    result["local_rows"] = chunks[0].embedding.word_embeddings.weight.shape[0]
    # and through the run folder `asymptote import-hf` wrote (saved at tp=1, resharded)
    result["run"] = load_run(run_dir).logits(tokens)
    torch.save(result, f"{out}.{rank}")
    from asymptote.models import parallel

    parallel.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_import_at_tp2_gives_transformers_logits(folders, kind, tmp_path):
    import torch.multiprocessing as mp

    from asymptote.launch.app.import_hf import import_hf
    from asymptote.launch.app.spawn import free_port
    from asymptote.models.hf import rel_error

    run_dir = import_hf(folders[kind], tmp_path / "run", check=False)
    out = str(tmp_path / "tp2")
    mp.start_processes(_tp2_rank, args=(free_port(), str(folders[kind]), str(run_dir), out),
                       nprocs=2, join=True, start_method="spawn")
    theirs = hf_models.hf_logits(folders[kind], hf_models.tokens())
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}")
        assert got["local_rows"] == hf_models.VOCAB // 2  # really split over the two ranks
        assert rel_error(got["direct"], theirs) < TOL
        assert rel_error(got["run"], theirs) < TOL


def test_import_hf_writes_a_run_folder(folders, tmp_path):
    """The CLI: a run folder with the layout asymptote-train writes, loadable as a run, whose
    tokenizer AutoTokenizer's agrees with."""
    from transformers import AutoTokenizer

    from asymptote.models.hf import rel_error
    from asymptote.models.inference import load_run, tokenizer_sha

    out = tmp_path / "imported"
    proc = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "import-hf",
                           str(folders["qwen2"]), "--out", str(out), "--seq-len", "96"],
                          env=train_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {"run.json", "tokenizer.json", "checkpoints", "hf"}
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done" and record["job"] == "import_hf"
    assert record["tokenizer_sha"] == tokenizer_sha(out / "tokenizer.json")
    assert record["config"]["model"]["seq_len"] == 96 and record["vocab"] == hf_models.VOCAB
    assert record["imported_from"]["logits_rel_error_vs_transformers"] < TOL
    assert (out / "checkpoints" / "latest").read_text().strip() == "0"
    loaded = load_run(out)
    tokens = hf_models.tokens(length=96)
    assert rel_error(loaded.logits(tokens), hf_models.hf_logits(folders["qwen2"], tokens)) < TOL
    text = "The court held that the statute applied. x = 3 * y + 1"
    # (the tokenizer files are the folder's; transformers 5 loads a model_type qwen2 folder with
    # its Qwen2Tokenizer whatever tokenizer_config.json says, which re-splits this test BPE's
    # digits, so the agreement is checked on the tokenizer with its generic class)
    shutil.copytree(out / "hf", tmp_path / "tok", ignore=shutil.ignore_patterns("config.json"))
    assert AutoTokenizer.from_pretrained(str(tmp_path / "tok"))(text)["input_ids"] == \
        loaded.tokenizer.encode(text)


# ------------------------------------------------------------------------------ bad input


def _refused(folder, tmp_path, *fragments, **kwargs):
    from asymptote.launch.app.import_hf import import_hf
    from asymptote.models.hf import HFError

    out = tmp_path / "never"
    with pytest.raises(HFError) as info:
        import_hf(folder, out, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]
    return message


def test_unsupported_architecture_is_named(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=512)).save_pretrained(
        str(folder))
    hf_models.save_tokenizer(folder)
    _refused(folder, tmp_path, "unsupported architecture", "'gpt2'", "GPT2LMHeadModel",
             "llama, mistral, qwen2")


def test_options_that_do_not_map_are_named(tmp_path):
    folder = hf_models.make_model(tmp_path / "biased", "llama", attention_bias=True)
    _refused(folder, tmp_path, "attention_bias=true with nonzero o_proj biases")
    folder = hf_models.make_model(tmp_path / "yarn", "llama", rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32})
    _refused(folder, tmp_path, "rope scaling 'yarn' is not supported")
    folder = hf_models.make_model(tmp_path / "window", "mistral", sliding_window=32)
    _refused(folder, tmp_path, "sliding_window=32", "--seq-len 32")


def test_missing_weight_is_named(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "missing"
    shutil.copytree(folders["llama"], folder)
    state = load_file(str(folder / "model.safetensors"))
    del state["model.layers.1.mlp.down_proj.weight"]
    save_file(state, str(folder / "model.safetensors"), {"format": "pt"})
    _refused(folder, tmp_path, "missing weight(s): model.layers.1.mlp.down_proj.weight")
    # a shard of a sharded checkpoint that was not copied
    folder = tmp_path / "shard_gone"
    shutil.copytree(folders["llama_sharded"], folder)
    (folder / "model-00002-of-00007.safetensors").unlink()
    _refused(folder, tmp_path, "model-00002-of-00007.safetensors", "is missing")


def test_tokenizer_that_does_not_fit_the_embedding_is_named(folders, tmp_path):
    folder = hf_models.make_model(tmp_path / "small_vocab", "llama", vocab_size=384)
    _refused(folder, tmp_path, f"the tokenizer has {hf_models.TOK_VOCAB} token ids but the "
             "embedding has 384 rows")
    folder = tmp_path / "no_tokenizer"
    shutil.copytree(folders["llama"], folder)
    (folder / "tokenizer.json").unlink()
    _refused(folder, tmp_path, "no tokenizer.json")


def test_corrupt_safetensors_is_named(folders, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(folders["llama_sharded"], folder)
    shard = folder / "model-00003-of-00007.safetensors"
    shard.write_bytes(shard.read_bytes()[:-1000])  # truncated copy
    _refused(folder, tmp_path, "model-00003-of-00007.safetensors is not a readable safetensors",
             "corrupt or truncated")


def test_every_problem_is_listed_at_once_and_the_cli_exits_2(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = hf_models.make_model(tmp_path / "two", "llama", vocab_size=384)
    state = load_file(str(folder / "model.safetensors"))
    del state["model.norm.weight"]
    save_file(state, str(folder / "model.safetensors"), {"format": "pt"})
    message = _refused(folder, tmp_path, "2 problems", "model.norm.weight", "384 rows")
    assert message.count("\n  - ") == 2
    out = tmp_path / "cli_out"
    proc = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "import-hf",
                           str(folder), "--out", str(out)], env=train_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "asymptote import-hf: cannot import" in proc.stderr
    assert not out.exists()
    # an existing output folder is never touched
    out.mkdir()
    (out / "keep").write_text("x")
    from asymptote.launch.app.import_hf import import_hf

    with pytest.raises(FileExistsError, match="already exists"):
        import_hf(folders["llama"], out)
    assert [p.name for p in out.iterdir()] == ["keep"]


# ------------------------------------------------------------------------------ job=cpt


@pytest.mark.slow
def test_cpt_from_an_imported_model_starts_at_transformers_loss(folders, data_cache, tmp_path,
                                                                monkeypatch):
    from asymptote.data.datasets import validation_sets
    from asymptote.data.prepare import prepare
    from asymptote.launch.app.import_hf import import_hf
    from asymptote.models.hf import load_transformers
    from asymptote.models.inference import load_run

    base = import_hf(folders["llama_tied"], tmp_path / "base", seq_len=64, check=False)
    common = ["job=cpt", f"cpt.base={base}", "data.seed_tokens=4096", "train.global_batch=8",
              "train.micro_batch=4", "data.val_sequences=4", "train.eval_every=0"]
    # without replay data of its own, the base cannot serve until some is given
    proc = run_train(data_cache, *common, f"out={tmp_path / 'no'}", check=False)
    assert proc.returncode != 0 and "cpt.replay.corpus=[...]" in proc.stdout
    run_train(data_cache, *common, f"out={tmp_path / 'cpt'}", "cpt.replay.corpus=[shipped]",
              "cpt.replay_fraction=0.25")
    run = only_run(tmp_path / "cpt")
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done" and record["steps"] >= 3 and record["base_step"] == 0
    # the run's own validation batch, scored by transformers
    loaded = load_run(run)
    monkeypatch.setenv("ASYMPTOTE_CACHE", str(data_cache))
    cfg = loaded.cfg
    prepared = prepare(cfg.data, cfg.data.val_sequences * cfg.model.seq_len + 1, progress=False)
    sets = validation_sets(prepared, cfg.model.seq_len, cfg.data.val_sequences)
    model = load_transformers(folders["llama_tied"])
    total = count = 0.0
    with torch.no_grad():
        for rows in sets.values():
            t = torch.from_numpy(rows.astype(np.int64))
            logits = model(t[:, :-1]).logits
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), reduction="sum").item()
            count += t[:, 1:].numel()
    assert record["start"]["val_loss"] == pytest.approx(total / count, rel=TOL)
    assert record["final"]["val_loss"] < record["start"]["val_loss"]  # and it trains
    # the same continuation under TP=2 x PP=2 (tied embeddings across pipeline stages)
    run_train(data_cache, *common, f"out={tmp_path / 'cpt22'}", "cpt.replay.corpus=[shipped]",
              "cpt.replay_fraction=0.25", "parallel.tp=2", "parallel.pp=2")
    other = json.loads((only_run(tmp_path / "cpt22") / "run.json").read_text())
    assert other["layout"] == {"tp": 2, "pp": 2, "dp": 1}
    for key in ("start", "final"):
        assert other[key]["val_loss"] == pytest.approx(record[key]["val_loss"], rel=TOL)
