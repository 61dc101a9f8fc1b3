"""Clustering a corpus into domains: the shipped corpus's domains are recovered, sharded
assignment equals the one-process result, outputs train, bad inputs are named."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from asymptote.data.cluster import ClusterConfig, ClusterError, cluster_corpus, purity

TOPICS = {
    "garden": "tulip compost seedling trowel hedge mulch orchard blossom soil pruning".split(),
    "harbor": "anchor vessel tide mooring hull sailor cargo wharf rope buoy".split(),
    "circuit": "resistor voltage capacitor diode transistor solder current ohm relay wire".split(),
}


def write_topics(path, docs_per_topic=40, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(docs_per_topic):
            for topic, words in TOPICS.items():
                text = " ".join(rng.choice(words) for _ in range(rng.randint(40, 80)))
                fh.write(json.dumps({"text": f"note {i} {text}.", "domain": topic}) + "\n")
    return path


@pytest.fixture(scope="module")
def shipped_clusters(tmp_path_factory):
    out = tmp_path_factory.mktemp("shipped-k6")
    report = cluster_corpus(ClusterConfig(k=6), out, progress=False)
    return out, report


def test_shipped_corpus_recovers_its_domains(shipped_clusters):
    out, report = shipped_clusters
    # Recorded: purity 0.998 (584 of 585 documents) with TF-IDF + SVD(64) + k-means++, seed 0.
    print(f"shipped corpus k=6 purity {report['purity']:.4f}")
    assert report["purity"] >= 0.8
    majorities = {c["majority"] for c in report["clusters"].values()}
    assert majorities == {"drama", "scripture", "biomedical", "legal", "math", "code"}
    assert json.loads((out / "report.json").read_text())["purity"] == report["purity"]
    sizes = [c["documents"] for c in report["clusters"].values()]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == report["documents"] == 585
    for c in report["clusters"].values():
        assert len(c["top_terms"]) == 10
        assert c["train_documents"] + c["val_documents"] == c["documents"]
    code = next(c for c in report["clusters"].values() if c["majority"] == "code")
    assert {"def", "self", "return"} & set(code["top_terms"])


def test_output_is_a_prepared_folder_with_per_cluster_sets(shipped_clusters):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from asymptote.data.datasets import TrainBudget, validation_sets
    from asymptote.data.sources import DataSourceError, load_prepared

    out, report = shipped_clusters
    mixture = load_prepared(out)
    names = sorted(report["clusters"])
    assert mixture.domains == names
    total = 0
    for name in names:
        one = load_prepared(out, name)
        n = len(IndexedDataset(one.train_prefix, mmap=True))
        assert n == report["clusters"][name]["train_documents"]
        total += n
        assert one.manifest["train_tokens"][name] == report["clusters"][name]["train_tokens"]
        budget = TrainBudget(one, 4096, 128)
        assert budget.num_sequences == 32
    assert len(IndexedDataset(mixture.train_prefix, mmap=True)) == total
    val = validation_sets(mixture, 128, 16)
    assert sorted(val) == names and all(v.shape == (16, 129) for v in val.values())
    with pytest.raises(DataSourceError, match="not a domain"):
        load_prepared(out, "c99")
    with pytest.raises(DataSourceError, match="not a prepared-data folder"):
        load_prepared(out / "model")


def test_sharded_stages_equal_one_process(tmp_path):
    corpus = write_topics(tmp_path / "topics.jsonl")
    cfg = ClusterConfig(corpus=[str(corpus)], k=3, dim=8, vocab_size=300, val_tokens=97)
    one = cluster_corpus(cfg, tmp_path / "one", progress=False)
    assert one["purity"] == 1.0
    sharded = tmp_path / "sharded"
    cluster_corpus(cfg, sharded, stage="fit", progress=False)
    with pytest.raises(ClusterError, match="1 of 3 assignment shards are missing"):
        for shard in (2, 0):
            cluster_corpus(cfg, sharded, stage="assign", shard=shard, shards=3, progress=False)
        cluster_corpus(cfg, sharded, stage="write", shards=3, progress=False)
    cluster_corpus(cfg, sharded, stage="assign", shard=1, shards=3, progress=False)
    report = cluster_corpus(cfg, sharded, stage="write", shards=3, progress=False)
    a = np.load(tmp_path / "one" / "assignments.npz")["cluster"]
    b = np.load(sharded / "assignments.npz")["cluster"]
    assert (a == b).all() and report["clusters"] == one["clusters"]
    for name in ("train_c0.bin", "val_c2.idx", "tokenizer.json"):
        assert (sharded / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_purity():
    assert purity(np.array([0, 0, 1, 1]), np.array(["a", "a", "b", "a"], dtype=object)) == 0.75


def test_bad_inputs_are_named(tmp_path):
    corpus = write_topics(tmp_path / "topics.jsonl", docs_per_topic=2)  # 6 documents
    cfg = ClusterConfig(corpus=[str(corpus)], k=7, dim=4, val_tokens=33)
    with pytest.raises(ClusterError, match=r"--k 7 is larger than the number of documents \(6\)"):
        cluster_corpus(cfg, tmp_path / "a", progress=False)
    dup = tmp_path / "dup.jsonl"
    dup.write_text("".join(json.dumps({"text": f"same text {i % 2}"}) + "\n" for i in range(20)))
    cfg = ClusterConfig(corpus=[str(dup)], k=4, dim=4, val_tokens=33)
    with pytest.raises(ClusterError, match="only 2 distinct documents.*2 cluster.s. empty"):
        cluster_corpus(cfg, tmp_path / "b", progress=False)
    # Clusters that cannot hold a validation set are refused, naming them.
    cfg = ClusterConfig(corpus=[str(corpus)], k=3, dim=4, val_tokens=10_000, vocab_size=300)
    with pytest.raises(ClusterError, match="clusters too small for a 10000-token validation set"):
        cluster_corpus(cfg, tmp_path / "c", progress=False)
    with pytest.raises(ClusterError, match="no fitted model"):
        cluster_corpus(cfg, tmp_path / "nothing", stage="write", progress=False)
    # later stages must use the fit's options
    cfg = ClusterConfig(corpus=[str(corpus)], k=2, dim=4, val_tokens=33)
    cluster_corpus(cfg, tmp_path / "d", stage="fit", progress=False)
    cfg.k = 3
    with pytest.raises(ClusterError, match=r"fitted with other options: --k 2 \(fit\) vs 3"):
        cluster_corpus(cfg, tmp_path / "d", stage="assign", shard=0, progress=False)


def test_unlabelled_corpus_has_no_purity(tmp_path):
    corpus = tmp_path / "plain.jsonl"
    rng = random.Random(1)
    with open(corpus, "w") as fh:
        for i in range(30):
            words = TOPICS["garden" if i % 2 else "harbor"]
            fh.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(60))}) + "\n")
    report = cluster_corpus(ClusterConfig(corpus=[str(corpus)], k=2, dim=4, vocab_size=300,
                                          val_tokens=33), tmp_path / "out", progress=False)
    assert report["purity"] is None and "majority" not in report["clusters"]["c0"]
    assert sorted(c["documents"] for c in report["clusters"].values()) == [15, 15]


def test_cli(tmp_path):
    corpus = write_topics(tmp_path / "topics.jsonl")
    cmd = [sys.executable, "-m", "asymptote.launch.app.cli", "data", "cluster", str(corpus), "--k",
           "3", "--out", str(tmp_path / "out"), "--dim", "8", "--vocab-size", "300",
           "--val-tokens", "97", "--streaming", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 clusters of 120 documents, purity 1.000" in done.stdout
    assert json.loads((tmp_path / "out" / "model" / "meta.json").read_text())["config"]["streaming"]
    bad = subprocess.run(cmd[:7] + ["500"] + cmd[8:], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--k 500 is larger than the number of documents (120)" in bad.stderr


def _tiny_encoder(folder):
    """A small randomly initialised BERT saved as a local model folder (no download)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir()
    words = sorted({w for ws in TOPICS.values() for w in ws} | {"note"})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(specials + words + [str(i) for i in range(50)]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(folder)
    return folder


def test_sentence_embedding_model_from_a_local_folder(tmp_path):
    model = _tiny_encoder(tmp_path / "encoder")
    corpus = write_topics(tmp_path / "topics.jsonl", docs_per_topic=20)
    cfg = ClusterConfig(corpus=[str(corpus)], k=3, embedder=str(model), vocab_size=300,
                        val_tokens=33)
    cluster_corpus(cfg, tmp_path / "out", stage="fit", progress=False)
    for shard in range(2):  # the pickled embedder reloads the model in each assign task
        cluster_corpus(cfg, tmp_path / "out", stage="assign", shard=shard, shards=2, progress=False)
    report = cluster_corpus(cfg, tmp_path / "out", stage="write", shards=2, progress=False)
    assert report["embedder"] == str(model) and report["documents"] == 60
    assert all(len(c["top_terms"]) == 10 for c in report["clusters"].values())
    # the assignment is the nearest centroid of the model's mean-pooled embeddings, computed
    # here directly with transformers (a random model: no claim about the clusters' quality)
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(model)
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(model).eval()(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    emb = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centroids = np.load(tmp_path / "out" / "model" / "centroids.npy")
    nearest = ((emb[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    written = np.load(tmp_path / "out" / "assignments.npz")["cluster"]
    pairs = set(zip(nearest.tolist(), written.tolist()))
    assert len(pairs) == len(set(nearest.tolist())) == len(set(written.tolist())) == 3  # same partition
    with pytest.raises(ClusterError, match="not a local model folder"):
        cluster_corpus(ClusterConfig(corpus=[str(corpus)], k=3, embedder=str(tmp_path)),
                       tmp_path / "bad", progress=False)
