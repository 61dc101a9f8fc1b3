"""Tokenizers: train a byte-level BPE with HF `tokenizers`, or load a local one."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

EOD = "<|endoftext|>"


class Tokenizer:
    """A HF fast tokenizer with what Megatron's datasets expect (eod, pad, vocab_size,
    unique_identifiers) and what the training loop needs (encode, decode)."""

    def __init__(self, backend, eod_id: int, name: str):
        self._tok = backend
        self.eod = eod_id
        self.pad = eod_id
        self.vocab_size = backend.get_vocab_size()
        self.unique_identifiers = {"class": "asymptote.Tokenizer", "name": name}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no EOD appended)."""
        return self._tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts at once (parallel in the Rust backend)."""
        return [e.ids for e in self._tok.encode_batch(texts)]

    def decode(self, ids) -> str:
        """Text of token ids."""
        return self._tok.decode(list(ids))

    def save(self, path: Path) -> None:
        """Write tokenizer.json to `path`."""
        self._tok.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load a tokenizer.json file, or a local HF tokenizer folder (tokenizer.json inside)."""
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path).expanduser()
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(
                f"no tokenizer at {path}: give a tokenizer.json file or a Hugging Face tokenizer "
                "folder containing one, or set data.tokenizer=train"
            )
        backend = HFTokenizer.from_file(str(file))
        eod_id = _find_eod(backend)
        if eod_id is None:
            raise ValueError(
                f"tokenizer {file} has no end-of-document token ({EOD}, </s>, <|end_of_text|>, "
                "<eos>); add one as a special token"
            )
        return cls(backend, eod_id, str(file.resolve()))


def _find_eod(backend) -> int | None:
    for token in (EOD, "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>"):
        idx = backend.token_to_id(token)
        if idx is not None:
            return idx
    return None


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenisation) with EOD as special token 0."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(backend, backend.token_to_id(EOD), f"bpe-{vocab_size}")
