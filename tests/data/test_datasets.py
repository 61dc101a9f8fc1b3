"""The fixed budget: exactly S = D // seq sequences, every epoch a seeded permutation of them,
disjoint per-domain validation sets of a fixed size, and clear errors for budgets that cannot
work."""

from __future__ import annotations

import numpy as np
import pytest

from asymptote.data.datasets import BudgetError, TrainBudget, budget_sequences, validation_sets
from asymptote.data.prepare import prepare
from asymptote.launch.config import RunConfig
from asymptote.launch.checks import plan_steps
from asymptote.launch.errors import ConfigError

from .conftest import SEQ, VAL_SEQUENCES, WORDS, data_config, val_tokens, write_corpus

D = 2048  # S = 64 sequences of 32 tokens


def _rows(budget: TrainBudget, positions, seed: int) -> list[bytes]:
    return [budget.tokens(p, seed).tobytes() for p in positions]


@pytest.fixture(scope="module")
def budget(small_prepared) -> TrainBudget:
    return TrainBudget(small_prepared, D, SEQ)


def test_budget_is_exactly_s_sequences(budget):
    s = D // SEQ
    assert budget_sequences(D, SEQ) == s == budget.num_sequences == 64
    assert budget_sequences(D + SEQ - 1, SEQ) == s  # a partial sequence is not bought
    rows = [budget.tokens(p, 0) for p in range(s)]
    assert all(r.shape == (SEQ + 1,) for r in rows)
    # One epoch = S sequences of seq_len input tokens = S x seq tokens (<= D).
    assert sum(len(r) - 1 for r in rows) == s * SEQ <= D
    # ... and they are S different windows of text, not the same window repeated.
    assert len({r.tobytes() for r in rows}) == s
    assert budget.tokens(s, 0).tobytes() in {r.tobytes() for r in rows}  # epoch 2 wraps


def test_steps_follow_d_e_over_batch_times_seq():
    cfg = RunConfig()
    cfg.model.seq_len = SEQ
    cfg.train.global_batch = 8
    for d, epochs in ((D, 1), (D, 3), (D + 17, 4), (4 * 8 * SEQ, 2)):
        cfg.data.seed_tokens, cfg.train.epochs = d, epochs
        steps = plan_steps(cfg, budget_sequences(d, SEQ))
        assert steps == (d // SEQ) * epochs // 8
        if d % SEQ == 0:
            assert steps == d * epochs // (8 * SEQ)
    cfg.data.seed_tokens, cfg.train.epochs = D, 3
    assert plan_steps(cfg, budget_sequences(D, SEQ)) == 24


def test_each_epoch_is_a_permutation_of_the_same_sequences(budget):
    s, epochs = budget.num_sequences, 3
    indices = [[budget.sample_index(e * s + i, 0) for i in range(s)] for e in range(epochs)]
    for epoch in indices:
        assert sorted(epoch) == list(range(s))
    assert len({tuple(e) for e in indices}) == epochs, "epochs must be ordered differently"
    contents = [sorted(_rows(budget, range(e * s, (e + 1) * s), 0)) for e in range(epochs)]
    assert contents[0] == contents[1] == contents[2]
    # The loop's consumption (step k takes positions k*gb .. (k+1)*gb - 1) visits every
    # sequence exactly E times.
    gb = 8
    steps = s * epochs // gb
    seen = np.bincount([budget.sample_index(p, 0) for p in range(steps * gb)], minlength=s)
    assert (seen == epochs).all()


def test_order_depends_on_data_seed_and_is_reproducible(small_prepared, budget):
    s = budget.num_sequences
    order = lambda b, seed: [b.sample_index(p, seed) for p in range(2 * s)]  # noqa: E731
    again = TrainBudget(small_prepared, D, SEQ)  # a fresh object, as a resumed run builds
    assert order(budget, 0) == order(again, 0)
    assert _rows(budget, range(s), 5) == _rows(again, range(s), 5)
    assert order(budget, 0) != order(budget, 1)
    # The data seed only reorders: the same S sequences under every seed.
    assert sorted(_rows(budget, range(s), 0)) == sorted(_rows(budget, range(s), 1))


def _decoded_docs(prepared, prefix) -> list[str]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    index = IndexedDataset(prefix, mmap=True)
    eod = prepared.tokenizer.eod
    docs = []
    for i in range(len(index)):
        ids = np.asarray(index[i])
        assert ids[-1] == eod  # every document ends with EOD
        docs.append(prepared.tokenizer.decode(ids[:-1]))
    del index
    return docs


def test_validation_documents_are_disjoint_and_per_domain(small_prepared, small_corpus):
    import json

    corpus = [json.loads(line) for line in small_corpus.read_text().splitlines()]
    domain_of = {d["text"]: d["domain"] for d in corpus}
    train = _decoded_docs(small_prepared, small_prepared.train_prefix)
    assert small_prepared.domains == ["alpha", "beta"]
    held_out = []
    for domain in small_prepared.domains:
        docs = _decoded_docs(small_prepared, small_prepared.val_prefix(domain))
        assert docs and {domain_of[t] for t in docs} == {domain}
        held_out += docs
    assert not set(train) & set(held_out)
    # Every document is in exactly one of the two (nothing lost, nothing duplicated).
    assert sorted(train + held_out) == sorted(domain_of)

    sets = validation_sets(small_prepared, SEQ, VAL_SEQUENCES)
    assert sorted(sets) == ["alpha", "beta"]
    for domain, rows in sets.items():
        assert rows.shape == (VAL_SEQUENCES, SEQ + 1)
        words = set(small_prepared.tokenizer.decode(rows.reshape(-1)).split())
        other = "beta" if domain == "alpha" else "alpha"
        assert words & set(WORDS[domain]) and not words & set(WORDS[other])
    # Fixed size: the same rows however many are asked for (a prefix of a larger request).
    assert np.array_equal(validation_sets(small_prepared, SEQ, 2)["alpha"], sets["alpha"][:2])


def test_validation_set_larger_than_the_corpus_is_a_clear_error(small_prepared):
    with pytest.raises(BudgetError, match=r"too small for the validation set.*data\.val_sequences"):
        validation_sets(small_prepared, SEQ, 10_000)


def test_corpus_without_held_out_documents_is_a_clear_error(tmp_path):
    import json

    from asymptote.data.prepare import _is_validation

    # A few documents, chosen so that the 1-in-8 split holds none of them out.
    kept = []
    for i in range(100):
        text = f"doc{i:04d} river stone maple cloud ember lantern harbor"
        if not _is_validation(text, len(kept), 1234):
            kept.append(text)
        if len(kept) == 5:
            break
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "domain": "alpha"}) + "\n" for t in kept))
    prepared = prepare(data_config(corpus, tmp_path / "cache"), val_tokens(), progress=False)
    assert prepared.domains == []
    with pytest.raises(BudgetError, match="too small for the validation set.*add documents"):
        validation_sets(prepared, SEQ, VAL_SEQUENCES)


def test_budgets_that_cannot_work_are_clear_errors(small_prepared):
    with pytest.raises(BudgetError, match="less than one sequence"):
        TrainBudget(small_prepared, SEQ - 1, SEQ)
    with pytest.raises(BudgetError, match="lower data.seed_tokens or add data"):
        TrainBudget(small_prepared, 10**9, SEQ)
    cfg = RunConfig()
    cfg.model.seq_len, cfg.train.global_batch = SEQ, 8
    cfg.data.seed_tokens = 7 * SEQ  # S = 7 < one global batch of 8
    with pytest.raises(ConfigError, match="less than one global batch.*raise data.seed_tokens"):
        plan_steps(cfg, budget_sequences(cfg.data.seed_tokens, SEQ))
    cfg.train.epochs = 2  # 14 sequences over two epochs: one step
    assert plan_steps(cfg, budget_sequences(cfg.data.seed_tokens, SEQ)) == 1


def test_fast_window_read_equals_megatron_getitem(small_prepared, budget):
    from asymptote.data.datasets import window

    def via_getitem(ds, i):
        item = ds[i]
        return np.concatenate([item["tokens"].numpy(), item["labels"].numpy()[-1:]])

    for i in range(budget.num_sequences):
        fast = window(budget.dataset, i)
        assert fast.dtype == np.int64 and np.array_equal(fast, via_getitem(budget.dataset, i))
    assert np.array_equal(budget.tokens(3, 0), via_getitem(budget.dataset, budget.sample_index(3, 0)))
