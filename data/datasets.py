"""The fixed seed-token budget as packed sequences, its per-epoch order, validation sets.

A run trains on S = D // seq_len packed sequences (D = `data.seed_tokens`). They are the same
S sequences for every run that shares the corpus, D and seq_len: documents are drawn in an
order fixed by `data.split_seed` and packed by Megatron's GPTDataset. Epoch e visits all S in
a permutation seeded by (`seed.data`, e), so epochs repeat exactly the same tokens.
"""

from __future__ import annotations

import numpy as np

from .prepare import VAL_EVERY, PreparedData


class BudgetError(ValueError):
    """The requested budget does not fit the corpus or the batch."""


def budget_sequences(seed_tokens: int, seq_len: int) -> int:
    """S: the number of packed training sequences the budget D buys."""
    return seed_tokens // seq_len


def _gpt_config(prepared: PreparedData, seq_len: int, seed: int):
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    return GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_len,
        blend=None,
        blend_per_split=[None, None, None],
        split=None,
        path_to_cache=None,  # tiny index arrays: every rank builds its own in memory
        tokenizer=prepared.tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mmap_bin_files=True,
    )


def _gpt_dataset(prefix: str, doc_ids: np.ndarray, num_samples: int, config, split):
    from megatron.core.datasets.gpt_dataset import GPTDataset
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    indexed = IndexedDataset(prefix, mmap=True)
    return GPTDataset(indexed, prefix, doc_ids.astype(np.int32), num_samples, split, config)


class TrainBudget:
    """The S training sequences of budget D and the sample order over E epochs."""

    def __init__(self, prepared: PreparedData, seed_tokens: int, seq_len: int):
        from megatron.core.datasets.indexed_dataset import IndexedDataset
        from megatron.core.datasets.utils import Split

        self.seq_len = seq_len
        self.num_sequences = budget_sequences(seed_tokens, seq_len)
        if self.num_sequences < 1:
            raise BudgetError(
                f"data.seed_tokens={seed_tokens} is less than one sequence of {seq_len} tokens"
            )
        # Keep `index` alive while reading: its lengths are a view into an mmap that the
        # object closes when it is freed (reading them after that segfaults).
        index = IndexedDataset(prepared.train_prefix, mmap=True)
        lengths = np.array(index.sequence_lengths)
        del index
        order = np.random.default_rng(prepared.manifest["split_seed"]).permutation(len(lengths))
        cumulative = np.cumsum(lengths[order], dtype=np.int64)
        needed = self.num_sequences * seq_len + 1
        if cumulative[-1] < needed:
            raise BudgetError(
                f"data.seed_tokens={seed_tokens} needs {needed} tokens but the corpus has only "
                f"{int(cumulative[-1])} training tokens; lower data.seed_tokens or add data"
            )
        n_docs = int(np.searchsorted(cumulative, needed)) + 1
        config = _gpt_config(prepared, seq_len, prepared.manifest["split_seed"])
        self.dataset = _gpt_dataset(
            prepared.train_prefix, order[:n_docs], self.num_sequences, config, Split.train
        )
        if len(self.dataset) < self.num_sequences:
            raise BudgetError(f"packing gave {len(self.dataset)} < {self.num_sequences} sequences")

    def sample_index(self, position: int, data_seed: int) -> int:
        """Which of the S sequences sits at global training position `position`."""
        epoch, offset = divmod(position, self.num_sequences)
        return int(self._permutation(epoch, data_seed)[offset])

    def _permutation(self, epoch: int, data_seed: int) -> np.ndarray:
        cached = getattr(self, "_perm_cache", None)
        if cached is None or cached[0] != (epoch, data_seed):
            perm = np.random.default_rng([data_seed, epoch]).permutation(self.num_sequences)
            self._perm_cache = ((epoch, data_seed), perm)
        return self._perm_cache[1]

    def tokens(self, position: int, data_seed: int) -> np.ndarray:
        """The seq_len + 1 tokens (inputs and shifted labels) at a global position."""
        return window(self.dataset, self.sample_index(position, data_seed))


def window(dataset, index: int) -> np.ndarray:
    """Sample `index` of a GPTDataset as seq_len + 1 token ids, what `dataset[index]` holds as
    tokens + the last label. Reads the window directly: `__getitem__` also builds torch masks
    and position ids the loop does not use, which cost ~0.4 ms per sequence (4% of a tiny CPU
    step, more on a GPU)."""
    query = getattr(dataset, "_query_document_sample_shuffle_indices", None)
    if query is None or not dataset.config.add_extra_token_to_sequence:
        item = dataset[index]
        return np.concatenate([item["tokens"].numpy(), item["labels"].numpy()[-1:]])
    text = np.array(query(index)[0], dtype=np.int64)
    text[text == dataset._pad_token_id] = 0  # as __getitem__ does for padding
    return text


def validation_sets(prepared: PreparedData, seq_len: int, sequences: int) -> dict[str, np.ndarray]:
    """Per domain with held-out documents, an array [sequences, seq_len + 1] of token windows.

    Raises BudgetError when no document was held out, or a domain's held-out documents do not
    fill `sequences` windows (the validation set has a fixed size, comparable across runs).
    """
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import Split

    out = {}
    if sequences < 1:
        return out
    if not prepared.domains:
        raise BudgetError(
            f"the corpus is too small for the validation set: none of its documents was held out "
            f"(1 in {VAL_EVERY} per domain is); add documents to data.corpus"
        )
    for domain in prepared.domains:
        prefix = prepared.val_prefix(domain)
        n_docs = len(IndexedDataset(prefix, mmap=True))
        config = _gpt_config(prepared, seq_len, prepared.manifest["split_seed"])
        tokens = prepared.manifest["val_tokens"][domain]
        available = (tokens - 1) // seq_len
        if available < sequences:
            raise BudgetError(
                f"the corpus is too small for the validation set: domain {domain!r} has "
                f"{tokens} held-out tokens, {available} sequences of {seq_len}, but "
                f"data.val_sequences={sequences} asks for {sequences}; lower data.val_sequences "
                f"(or model.seq_len), or add documents to this domain"
            )
        n = sequences
        ds = _gpt_dataset(prefix, np.arange(n_docs), n, config, Split.valid)
        out[domain] = np.stack([window(ds, i) for i in range(n)])
    return out
