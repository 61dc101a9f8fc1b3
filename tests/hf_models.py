"""Small random Hugging Face Llama-family models, built offline with transformers' own config
classes and saved with save_pretrained, each with its own tokenizer (a byte-level BPE trained on
the shipped corpus, saved as a PreTrainedTokenizerFast so AutoTokenizer loads it)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

VOCAB = 512       # embedding rows (divisible by 2: the model splits over tp=2 unpadded)
TOK_VOCAB = 480   # tokens of the tokenizer (fewer than the rows, as in real checkpoints)
EOD = "<|endoftext|>"

# name -> (transformers config class, its options)
KINDS = {
    "llama": ("LlamaConfig", {}),
    "llama_tied": ("LlamaConfig", {"tie_word_embeddings": True}),
    "llama3_rope": ("LlamaConfig", {"rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}, "rope_theta": 10000.0}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", {"tie_word_embeddings": True}),
}


@lru_cache(maxsize=1)
def tokenizer_backend():
    """A tokenizers.Tokenizer of TOK_VOCAB tokens, trained once per process."""
    from asymptote.data.shipped import shipped_corpus_files
    from asymptote.data.tokenizer import train_bpe

    texts = []
    for path in shipped_corpus_files().values():
        for line in Path(path).read_text().splitlines()[:40]:
            texts.append(json.loads(line)["text"])
    return train_bpe(texts, TOK_VOCAB)._tok


def save_tokenizer(folder: Path, max_length: int = 128) -> None:
    """The shared BPE as a transformers fast tokenizer (tokenizer.json + tokenizer_config.json)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer_backend(), eos_token=EOD,
                                  bos_token=EOD, pad_token=EOD, model_max_length=max_length)
    tok.save_pretrained(str(folder))


def make_config(kind: str = "llama", **overrides):
    import transformers

    cls_name, options = KINDS[kind]
    cfg = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128,
               rms_norm_eps=1e-5, rope_theta=50000.0, bos_token_id=0, eos_token_id=0)
    cfg.update(options)
    cfg.update(overrides)
    return getattr(transformers, cls_name)(**cfg)


def make_model(folder: Path, kind: str = "llama", seed: int = 0, max_shard_size=None,
               tokenizer: bool = True, **overrides) -> Path:
    """Save a random `kind` model (+ tokenizer) to `folder`; norms and biases are randomised
    too (their defaults, ones and zeros, would hide a mis-mapping)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(kind, **overrides)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in name else
                        0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.08)
    folder = Path(folder)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(folder), **kwargs)
    if tokenizer:
        save_tokenizer(folder, model.config.max_position_embeddings)
    return folder


def hf_logits(folder: Path, tokens: torch.Tensor) -> torch.Tensor:
    """transformers' fp32 logits of the model in `folder`."""
    from asymptote.models.hf import load_transformers

    with torch.no_grad():
        return load_transformers(folder)(tokens).logits.float()


def tokens(batch: int = 2, length: int = 96, high: int = TOK_VOCAB, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, high, (batch, length), generator=torch.Generator().manual_seed(seed))
