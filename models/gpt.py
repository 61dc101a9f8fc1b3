"""Build this rank's Megatron-Core GPTModel chunk(s) for a ModelConfig and parallel layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import cpu_compat
from .config import ModelConfig, ParallelConfig


def use_transformer_engine(cfg: ModelConfig) -> bool:
    """Resolve `model.spec`: TransformerEngine only where it imports and CUDA is present."""
    if cfg.spec == "local":
        return False
    have_te = False
    if torch.cuda.is_available():
        try:
            import transformer_engine  # noqa: F401

            have_te = True
        except ImportError:
            pass
    if cfg.spec == "te" and not have_te:
        raise ValueError(
            "model.spec=te needs transformer_engine and a GPU; install the `te` extra on a GPU "
            "node or set model.spec=local"
        )
    return have_te


def head_dim(cfg: ModelConfig) -> int:
    """Size of one attention head: `model.head_dim`, or hidden / heads."""
    return cfg.head_dim or cfg.hidden // cfg.heads


ROPE_SCALINGS = (None, "llama3", "linear")


def rope_scaling(cfg: ModelConfig) -> dict:
    """GPTModel arguments of `model.rope_scaling`: Megatron's Llama-3 frequency scaling (low and
    high frequency factors 1 and 4, original context 8192), or linear position interpolation."""
    if cfg.rope_scaling not in ROPE_SCALINGS:
        raise ValueError(f"model.rope_scaling={cfg.rope_scaling!r}: use null, llama3 or linear")
    if cfg.rope_scaling == "llama3":
        return {"rope_scaling": True, "rope_scaling_factor": float(cfg.rope_scaling_factor)}
    if cfg.rope_scaling == "linear":
        return {"seq_len_interpolation_factor": float(cfg.rope_scaling_factor)}
    return {}


def transformer_config(
    cfg: ModelConfig, parallel: ParallelConfig, bf16: bool
):
    """The Megatron TransformerConfig for a Llama-style model under the given layout."""
    cpu_compat.quiet_megatron_warnings()
    from megatron.core.transformer.transformer_config import TransformerConfig

    on_cpu = not torch.cuda.is_available()
    # Megatron's own default ("full") is deprecated in favour of [] (same meaning: no CUDA graph
    # scope restriction) and warns on every config it builds; pass the current spelling.
    extra = {"cuda_graph_scope": []} if "cuda_graph_scope" in TransformerConfig.__dataclass_fields__ else {}
    return TransformerConfig(
        num_layers=cfg.layers,
        hidden_size=cfg.hidden,
        num_attention_heads=cfg.heads,
        num_query_groups=cfg.kv_heads,
        ffn_hidden_size=cfg.ffn,
        kv_channels=head_dim(cfg),
        normalization="RMSNorm",
        layernorm_epsilon=cfg.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=cfg.qkv_bias,
        hidden_dropout=cfg.dropout,
        attention_dropout=cfg.dropout,
        init_method_std=cfg.init_std,
        # Megatron's init also tags tensor-parallel weights (`tensor_model_parallel`), which the
        # grad-norm needs: with False, TP ranks > 0 drop out of the norm. The values are then
        # overwritten by asymptote.models.init, identically under every layout.
        perform_initialization=True,
        tensor_model_parallel_size=parallel.tp,
        pipeline_model_parallel_size=parallel.pp,
        virtual_pipeline_model_parallel_size=parallel.vpp,
        sequence_parallel=False,
        bf16=bf16,
        params_dtype=torch.float32,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        autocast_dtype=torch.bfloat16 if bf16 else torch.float32,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        # gloo: batched isend/irecv gives wrong gradients with interleaving, and there is no
        # CUDA stream to synchronise.
        batch_p2p_comm=not on_cpu,
        batch_p2p_sync=not on_cpu,
        **extra,
    )


def layer_spec(cfg: ModelConfig):
    """The transformer layer spec: local (pure PyTorch) or TransformerEngine."""
    cpu_compat.quiet_megatron_warnings()
    if use_transformer_engine(cfg):
        from megatron.core.models.gpt.gpt_layer_specs import (
            get_gpt_layer_with_transformer_engine_spec,
        )

        return get_gpt_layer_with_transformer_engine_spec()
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    return get_gpt_layer_local_spec(normalization="RMSNorm")


def build_model_chunks(
    cfg: ModelConfig, parallel: ParallelConfig, vocab_size: int, bf16: bool = False
) -> list[torch.nn.Module]:
    """This rank's model chunks (one, or `vpp` with interleaved pipelining), uninitialised.

    Call after ``parallel_state.initialize_model_parallel``; `vocab_size` is already padded.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    tcfg = transformer_config(cfg, parallel, bf16)
    spec = layer_spec(cfg)
    stages = parallel.vpp or 1
    chunks = []
    for vp_stage in range(stages):
        vp = vp_stage if parallel.vpp else None
        model = GPTModel(
            config=tcfg,
            transformer_layer_spec=spec,
            vocab_size=vocab_size,
            max_sequence_length=cfg.seq_len,
            pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp),
            post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp),
            share_embeddings_and_output_weights=cfg.tie_embeddings,
            position_embedding_type="rope",
            rotary_base=int(cfg.rope_base) if float(cfg.rope_base).is_integer() else cfg.rope_base,
            **rope_scaling(cfg),
            vp_stage=vp,
        )
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        chunks.append(model)
    return chunks
