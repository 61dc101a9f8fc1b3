"""Weight initialisation that gives the same model under every TP / PP / VPP / DP layout.

Megatron initialises each shard from the RNG of its own rank, so a TP=2 model is a different
(equally valid) sample than the TP=1 one, and pipeline stages draw layers in another order.
Here every weight is drawn as the full, unsharded tensor from a generator seeded by
(seed, the tensor's global name, its layer index) and each rank keeps its slice. Runs are then
comparable step by step across layouts, and a checkpoint's layout never matters.
"""

from __future__ import annotations

import math
import zlib

import torch

# Weights whose output feeds the residual stream get the depth-scaled std (GPT-2 / Megatron).
_RESIDUAL_OUTPUTS = ("linear_proj.weight", "linear_fc2.weight")


def _sharded_tensors(chunks: list[torch.nn.Module]):
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory
    from megatron.core.dist_checkpointing.dict_utils import nested_values

    for chunk in chunks:
        for item in nested_values(chunk.sharded_state_dict()):
            if isinstance(item, ShardedTensorFactory):
                # Gated MLP weights are stored as [gate; up] per TP rank: the factory splits
                # the local tensor into views, one per global tensor.
                built = item.build_fn(item.key, item.data, item.replica_id, item.flattened_range)
                yield from nested_values(built)
            elif isinstance(item, ShardedTensor):
                yield item


@torch.no_grad()
def init_weights(chunks: list[torch.nn.Module], seed: int, std: float, layers: int) -> int:
    """Fill every matrix of `chunks` in place; returns the number of tensors initialised.

    Vectors (RMSNorm weights) keep their default of ones.
    """
    count = 0
    for st in _sharded_tensors(chunks):
        if st.key.endswith("_extra_state") or st.data.dim() < 2:
            continue
        pre = st.prepend_axis_num
        own_shape = st.global_shape[pre:]
        own_offset = st.global_offset[pre:]
        layer_index = st.global_offset[:pre]
        ident = f"{st.key}|{','.join(map(str, layer_index))}".encode()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(ident))
        scale = std / math.sqrt(2 * layers) if st.key.endswith(_RESIDUAL_OUTPUTS) else std
        full = torch.randn(own_shape, generator=gen, dtype=torch.float32) * scale
        index = tuple(slice(o, o + n) for o, n in zip(own_offset, st.local_shape))
        st.data.copy_(full[index].to(st.data.dtype))
        count += 1
    return count
