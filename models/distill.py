"""Logit-level distillation loss, correct when the student's vocabulary is split over TP ranks.

    loss_t = (1 - alpha) CE(student, target_t) + alpha T^2 KL(teacher_T || student_T)

with p_T = softmax(logits / T). The student's logits arrive vocab-parallel ([..., V / tp] on
each TP rank, what GPTModel returns without labels); the teacher's either as full-vocabulary
logits (an online teacher, gathered) or as its top-k (ids, logits) from an offline cache, in
which case the teacher distribution is the softmax over its top-k and the KL runs over those k.

Tensor parallelism uses Megatron's pieces: `vocab_parallel_cross_entropy` for the CE, the
vocab range of this rank (`VocabUtility`), and `reduce_from_tensor_model_parallel_region`
(all-reduce forward, identity backward) for every sum over the vocabulary, so loss and
gradients equal the unsplit computation. (megatron-core has no distillation loss of its own.)
"""

from __future__ import annotations

import torch


def _tp():
    """(world, rank) of the tensor-parallel group; (1, 0) without Megatron's groups."""
    from megatron.core import parallel_state as ps

    if not ps.model_parallel_is_initialized():
        return 1, 0
    return ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()


def _sum_over_tp(x: torch.Tensor) -> torch.Tensor:
    if _tp()[0] == 1:
        return x
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

    return reduce_from_tensor_model_parallel_region(x)


def _max_over_tp(x: torch.Tensor) -> torch.Tensor:
    if _tp()[0] == 1:
        return x
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.MAX, group=ps.get_tensor_model_parallel_group())
    return x


def vocab_range(local_vocab: int) -> tuple[int, int]:
    """[first, last) vocabulary ids held by this TP rank."""
    from megatron.core.tensor_parallel.utils import VocabUtility

    world, rank = _tp()
    return VocabUtility.vocab_range_from_per_partition_vocab_size(local_vocab, rank, world)


def parallel_logsumexp(local_logits: torch.Tensor) -> torch.Tensor:
    """log sum_v exp(x_v) over the full vocabulary of vocab-parallel logits ([...] per token).

    The sum over ranks is an all-reduce whose backward is the identity: a loss that uses the
    result ONCE (replicated on every rank) then gets d/dx_v = softmax_v on the rank holding v.
    (Used per vocabulary entry and summed over ranks, it would miss the other ranks' terms.)"""
    x = local_logits.float()
    top = _max_over_tp(x.detach().max(dim=-1, keepdim=True).values)
    norm = _sum_over_tp((x - top).exp().sum(dim=-1, keepdim=True))
    return (norm.log() + top).squeeze(-1)


def kl_full(student_local: torch.Tensor, teacher_full: torch.Tensor, temperature: float = 1.0
            ) -> torch.Tensor:
    """Per-token T^2 KL(teacher_T || student_T); teacher logits over the full vocabulary.

    KL = sum_v p_v (log p_v - x_v) + logsumexp(x), x = student logits / T (sum_v p_v = 1)."""
    first, last = vocab_range(student_local.shape[-1])
    with torch.no_grad():
        t = teacher_full[..., first:last].float() / temperature
        t_log = t - parallel_logsumexp(t).unsqueeze(-1)
    x = student_local.float() / temperature
    local = (t_log.exp() * (t_log - x)).sum(dim=-1)
    return (_sum_over_tp(local) + parallel_logsumexp(x)) * temperature ** 2


def kl_topk(student_local: torch.Tensor, teacher_ids: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """Per-token T^2 KL(teacher_T || student_T) with the teacher given as its top-k (ids [..., k],
    logits [..., k]); the teacher distribution is the softmax over those k tokens."""
    first, last = vocab_range(student_local.shape[-1])
    t_log = torch.log_softmax(teacher_logits.float().detach() / temperature, dim=-1)
    x = student_local.float() / temperature
    mine = (teacher_ids >= first) & (teacher_ids < last)
    local_ids = (teacher_ids - first).clamp(0, last - first - 1).long()
    # each id lives on exactly one rank: its term is counted there only
    terms = torch.where(mine, t_log - x.gather(-1, local_ids), torch.zeros_like(t_log))
    local = (t_log.exp() * terms).sum(dim=-1)
    return (_sum_over_tp(local) + parallel_logsumexp(x)) * temperature ** 2


def cross_entropy(student_local: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token CE of vocab-parallel logits (Megatron's vocab_parallel_cross_entropy)."""
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    if _tp()[0] == 1:
        return torch.nn.functional.cross_entropy(
            student_local.float().flatten(0, -2), targets.flatten(), reduction="none"
        ).view(targets.shape)
    return vocab_parallel_cross_entropy(student_local.float().clone(), targets)


def distill_loss(student_local: torch.Tensor, targets: torch.Tensor, alpha: float,
                 temperature: float, teacher_full: torch.Tensor | None = None,
                 teacher_ids: torch.Tensor | None = None,
                 teacher_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token (1 - alpha) CE + alpha T^2 KL, with a full or a top-k teacher."""
    ce = cross_entropy(student_local, targets)
    if alpha == 0:
        return ce
    if teacher_full is not None:
        kl = kl_full(student_local, teacher_full, temperature)
    else:
        kl = kl_topk(student_local, teacher_ids, teacher_logits, temperature)
    return (1 - alpha) * ce + alpha * kl
