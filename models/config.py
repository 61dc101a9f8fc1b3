"""Configuration of the model architecture and of its parallel layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ModelConfig:
    """A Llama-style decoder: RMSNorm, SwiGLU, RoPE, grouped-query attention; by default no
    biases and untied embeddings (the Llama-family options below cover imported models)."""

    name: str = "tiny"
    """Preset name (a file in launch/conf/model/); part of the run's folder name."""
    hidden: int = 64
    """Hidden size (model width)."""
    layers: int = 2
    """Number of transformer layers."""
    heads: int = 4
    """Attention (query) heads; must divide `hidden` and be divisible by `parallel.tp`."""
    kv_heads: int = 2
    """Key/value heads (grouped-query attention); divides `heads`, divisible by `parallel.tp`."""
    ffn: int = 176
    """SwiGLU inner size (per gate); divisible by `parallel.tp`."""
    seq_len: int = 128
    """Training sequence length in tokens."""
    vocab_size: Optional[int] = None
    """Vocabulary size; null takes it from the tokenizer (padded to a multiple of `vocab_multiple`)."""
    vocab_multiple: int = 128
    """Pad the vocabulary to a multiple of this (the same under every layout; it must be
    divisible by `parallel.tp` so embeddings split evenly)."""
    init_std: float = 0.02
    """Std of the normal init; output projections use std / sqrt(2 * layers)."""
    rope_base: float = 10000.0
    """RoPE base (theta)."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    rope_scaling: Optional[str] = None
    """RoPE frequency scaling: null (none), `llama3` (Llama 3.1/3.2: low and high frequency
    factors 1 and 4, original context 8192) or `linear` (positions divided by the factor)."""
    rope_scaling_factor: float = 1.0
    """Factor of `rope_scaling` (unused without it)."""
    head_dim: Optional[int] = None
    """Size of one attention head; null: hidden / heads."""
    tie_embeddings: bool = False
    """Share the input embedding matrix with the output layer (e.g. Llama-3.2-1B, Qwen2-0.5B)."""
    qkv_bias: bool = False
    """Biases on the query, key and value projections (Qwen2); no other layer has biases."""
    dropout: float = 0.0
    """Hidden and attention dropout (the papers train without dropout)."""
    spec: str = "auto"
    """Layer implementation: `local` (pure PyTorch, works everywhere), `te` (TransformerEngine,
    GPU only), or `auto` (te when transformer_engine imports and CUDA is present, else local)."""


@dataclass
class ParallelConfig:
    """How ranks split the model: world = tp x pp x dp."""

    tp: int = 1
    """Tensor-parallel size."""
    pp: int = 1
    """Pipeline-parallel size."""
    vpp: Optional[int] = None
    """Virtual pipeline stages per pipeline rank (interleaved schedule); null disables it."""
    dp: int = 1
    """Data-parallel size for runs this process spawns itself. Under torchrun/SLURM the world
    size decides and dp = world / (tp x pp)."""
    distributed_optimizer: bool = False
    """Shard optimizer state across data-parallel ranks (Megatron's distributed optimizer)."""
    backend: str = "auto"
    """torch.distributed backend: `nccl`, `gloo`, or `auto` (nccl with CUDA, else gloo)."""
