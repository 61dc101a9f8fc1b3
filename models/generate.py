"""Autoregressive generation from one run or an ensemble of runs, with a KV cache.

`generate(members, prompts, max_new_tokens, ...)` returns the new tokens of every prompt. An
ensemble is combined at every step (`combine="logit_mean"`: softmax of the members' mean
logits, what the seed paper uses for its teachers; or `prob_mean`), then a token is chosen
greedily (temperature 0) or sampled with temperature, top-k and top-p from a generator seeded
with `seed`, so a call is reproducible.

KV cache: Megatron-Core's `StaticInferenceContext` (one per member, passed to GPTModel as
`inference_context`). It works on CPU as it is: the prompt is prefilled once, then each step
feeds one token per sequence. `use_cache=False` recomputes the whole prefix at every step (the
reference the cache is tested against, and the baseline of bench/generation/).

Prompts of different lengths run in lock-step, as Megatron's static engine does: the batch is
prefilled up to the shortest prompt; at later positions a sequence whose prompt is not yet
exhausted is fed its next prompt token instead of the sampled one. Every sequence thus sees
exactly its own prefix, with no padding and no attention mask.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .ensemble import COMBINATIONS, combined_log_probs


class GenerationError(ValueError):
    """Generation arguments or members that cannot work (the message says what to change)."""


def check_members(members: Sequence) -> None:
    """Members of one ensemble must share a tokenizer and a (padded) vocabulary."""
    if not members:
        raise GenerationError("generation needs at least one model (a LoadedRun)")
    first = members[0]
    for other in members[1:]:
        if other.tokenizer_id != first.tokenizer_id:
            raise GenerationError(
                f"{other.run_dir} uses tokenizer {other.tokenizer_id} but {first.run_dir} uses "
                f"{first.tokenizer_id}; an ensemble needs members trained with one tokenizer")
        if other.vocab != first.vocab:
            raise GenerationError(
                f"{other.run_dir} has vocabulary {other.vocab} but {first.run_dir} has "
                f"{first.vocab}; an ensemble needs members of one vocabulary (model.vocab_size)")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """[b, vocab] scores with everything outside the top-k and the top-p nucleus set to -inf.

    top_k 0 and top_p 1.0 keep everything. The nucleus is the smallest set of most probable
    tokens whose probability reaches top_p (the most probable token is always kept)."""
    out = logits.clone()
    if top_k and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out[out < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # mass strictly before each token; drop tokens once the mass before them reaches top_p
        before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out[drop] = float("-inf")
    return out


def choose_tokens(log_probs: torch.Tensor, temperature: float, top_k: int, top_p: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """[b, vocab] log-probabilities -> [b] token ids (argmax at temperature 0, else sampled)."""
    if temperature <= 0.0:
        return log_probs.argmax(dim=-1)
    scores = filter_logits(log_probs / temperature, top_k, top_p)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class _Stepper:
    """Next-token logits of one member for a batch growing one position per call."""

    def __init__(self, member, batch: int, max_len: int, use_cache: bool):
        self.member = member
        self.use_cache = use_cache
        self.context = None
        if use_cache:
            from megatron.core.inference.contexts import StaticInferenceContext

            self.context = StaticInferenceContext(batch, max_len)

    @torch.no_grad()
    def next_logits(self, tokens: torch.Tensor, length: int) -> torch.Tensor:
        """Logits [b, vocab] for position `length` given tokens[:, :length] (all gathered)."""
        device = self.member.device
        if not self.use_cache:
            return self.member.logits(tokens[:, :length])[:, -1]
        ctx = self.context
        start = ctx.sequence_len_offset
        new = tokens[:, start:length].to(device)
        if start > 0:
            ctx.enable_decode_mode()
        positions = torch.arange(start, length, device=device).unsqueeze(0).expand_as(new)
        out = self.member.model(new, positions, None, inference_context=ctx,
                                runtime_gather_output=True)
        ctx.increment_sequence_len_offset(length - start)
        return out[:, -1].float()


def _broadcast_from_tp_source(tokens: torch.Tensor) -> torch.Tensor:
    """Make every tensor-parallel rank continue with the same tokens (those of tp rank 0)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    if not dist.is_initialized() or not ps.model_parallel_is_initialized():
        return tokens
    if ps.get_tensor_model_parallel_world_size() == 1:
        return tokens
    dist.broadcast(tokens, ps.get_tensor_model_parallel_src_rank(),
                   group=ps.get_tensor_model_parallel_group())
    return tokens


def _validate(members, prompts, max_new_tokens, temperature, top_k, top_p, combine) -> int:
    check_members(members)
    if combine not in COMBINATIONS:
        raise GenerationError(f"combine={combine!r}: use one of {', '.join(COMBINATIONS)}")
    if max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens={max_new_tokens} must be >= 0")
    if temperature < 0:
        raise GenerationError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if top_k < 0:
        raise GenerationError(f"top_k={top_k} must be >= 0 (0 = no top-k filter)")
    if not 0.0 < top_p <= 1.0:
        raise GenerationError(f"top_p={top_p} must be in (0, 1]")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise GenerationError(f"prompt {i} is empty; start it with a token (e.g. the "
                                  "tokenizer's eod, which begins every document)")
    limit = min(m.cfg.model.seq_len for m in members)
    longest = max((len(p) for p in prompts), default=0)
    if longest + max_new_tokens > limit:
        raise GenerationError(
            f"the longest prompt ({longest} tokens) + max_new_tokens={max_new_tokens} exceeds "
            f"the members' trained length model.seq_len={limit}; shorten the prompt (keep its "
            "last tokens) or ask for fewer tokens")
    vocab = members[0].vocab
    bad = [t for p in prompts for t in p if not 0 <= t < vocab]
    if bad:
        raise GenerationError(f"prompt token {bad[0]} is outside the vocabulary [0, {vocab})")
    return limit


def _generate_batch(members, prompts, max_new_tokens, temperature, top_k, top_p, generator,
                    stop, use_cache, combine) -> list[list[int]]:
    b = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts])
    total = int(lengths.max()) + max_new_tokens
    tokens = torch.zeros(b, total, dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = torch.tensor(p, dtype=torch.long)
    steppers = [_Stepper(m, b, total, use_cache) for m in members]
    usable = members[0].tokenizer.vocab_size  # padded rows are no tokens: never choose them
    stop_set = set(stop or [])
    stops = torch.tensor(sorted(stop_set), dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool)
    length = int(lengths.min())
    while length < total and not bool(done.all()):
        logits = [s.next_logits(tokens, length) for s in steppers]
        log_probs = combined_log_probs(logits, combine) if len(logits) > 1 else \
            torch.log_softmax(logits[0].float(), dim=-1)
        if usable < log_probs.shape[-1]:
            log_probs[:, usable:] = float("-inf")
        chosen = _broadcast_from_tp_source(
            choose_tokens(log_probs.cpu(), temperature, top_k, top_p, generator))
        generating = (lengths <= length) & ~done & (length < lengths + max_new_tokens)
        tokens[generating, length] = chosen[generating]
        if len(stops):
            done |= generating & torch.isin(chosen, stops)
        done |= length + 1 >= lengths + max_new_tokens
        length += 1
    out = []
    for i, p in enumerate(prompts):
        new = tokens[i, len(p): len(p) + max_new_tokens].tolist()
        for j, t in enumerate(new):
            if t in stop_set:
                new = new[: j + 1]
                break
        out.append(new)
    return out


def generate(members: list, prompts: list[list[int]], max_new_tokens: int,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             stop: list[int] | None = None, use_cache: bool = True,
             combine: str = "logit_mean", batch_size: int = 64) -> list[list[int]]:
    """New tokens (prompt excluded) for every prompt, from one model or an ensemble.

    members: LoadedRun objects (asymptote.models.inference.load_run) sharing a tokenizer and
        vocabulary; several are combined at every step with `combine`.
    prompts: token ids, at least one per prompt.
    max_new_tokens: tokens to add to each prompt (fewer when a stop token comes first).
    temperature: 0 picks the most probable token (greedy); > 0 samples from softmax(logp / T).
    top_k, top_p: sample only among the k most probable tokens (0: all) and within the nucleus
        of probability top_p (1.0: all).
    seed: seeds the sampling generator; equal arguments give equal output.
    stop: token ids that end a sequence; the stop token is kept as its last new token.
    use_cache: keep keys and values (Megatron's static KV cache) instead of recomputing the
        whole prefix at every step. Greedy output is the same either way.
    batch_size: prompts decoded together (in order; the generator runs on across batches).
    """
    _validate(members, prompts, max_new_tokens, temperature, top_k, top_p, combine)
    if batch_size < 1:
        raise GenerationError(f"batch_size={batch_size} must be >= 1")
    if max_new_tokens == 0:
        return [[] for _ in prompts]
    generator = torch.Generator().manual_seed(int(seed))
    for m in members:
        m.model.eval()
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        out += _generate_batch(members, prompts[start: start + batch_size], max_new_tokens,
                               temperature, top_k, top_p, generator, stop, use_cache, combine)
    return out
