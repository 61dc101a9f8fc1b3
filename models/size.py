"""Parameter and FLOP counts computed from a ModelConfig, without building the model."""

from __future__ import annotations

from .config import ModelConfig


def padded_vocab_size(vocab_size: int, multiple: int) -> int:
    """The vocabulary rounded up to a multiple of `multiple`.

    Deliberately independent of the TP size: padded rows take part in the softmax, so a
    layout-dependent padding would make TP=2 a different model than TP=1.
    """
    return ((vocab_size + multiple - 1) // multiple) * multiple


def layer_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer layer (attention, SwiGLU MLP, two RMSNorm weights)."""
    head_dim = cfg.head_dim or cfg.hidden // cfg.heads
    qkv = (cfg.hidden + int(cfg.qkv_bias)) * (cfg.heads + 2 * cfg.kv_heads) * head_dim
    proj = cfg.heads * head_dim * cfg.hidden
    mlp = 3 * cfg.hidden * cfg.ffn  # gate, up and down projections
    norms = 2 * cfg.hidden
    return qkv + proj + mlp + norms


def non_embedding_params(cfg: ModelConfig) -> int:
    """Parameters outside the input embedding and output layer (Kaplan's N)."""
    return cfg.layers * layer_params(cfg) + cfg.hidden  # + final norm


def total_params(cfg: ModelConfig, vocab_size: int) -> int:
    """All parameters, with an input embedding and output layer of `vocab_size` rows (one shared
    matrix with `model.tie_embeddings`)."""
    return non_embedding_params(cfg) + (1 if cfg.tie_embeddings else 2) * vocab_size * cfg.hidden


def flops_per_token(cfg: ModelConfig, vocab_size: int, training: bool = True) -> float:
    """Matmul FLOPs per token: 2 x (weights used in matmuls) + attention scores and values.

    Attention counts the full seq x seq products (what the kernels compute; causal masking does
    not skip them in the local spec). Training is three forward passes' worth (forward + backward).
    """
    head_dim = cfg.head_dim or cfg.hidden // cfg.heads
    biases = cfg.layers * int(cfg.qkv_bias) * (cfg.heads + 2 * cfg.kv_heads) * head_dim
    matmul_weights = non_embedding_params(cfg) - cfg.layers * 2 * cfg.hidden - cfg.hidden - biases
    matmul_weights += vocab_size * cfg.hidden  # output layer; the embedding is a lookup
    attention = 2 * 2 * cfg.layers * cfg.seq_len * cfg.heads * head_dim
    forward = 2 * matmul_weights + attention
    return float(3 * forward if training else forward)
