"""Combining the predictions of ensemble members into one distribution over the vocabulary."""

from __future__ import annotations

import math

import torch

COMBINATIONS = ("logit_mean", "prob_mean")


def combined_log_probs(logits: list[torch.Tensor], combine: str = "logit_mean") -> torch.Tensor:
    """Log-probabilities of the ensemble of members' `logits` (each [..., vocab]).

    `logit_mean`: softmax of the mean logits (a normalised geometric mean of the members'
    distributions; what the seed paper evaluates). `prob_mean`: mean of the members'
    probabilities, computed in log space so that no probability underflows."""
    if not logits:
        raise ValueError("an ensemble needs at least one member")
    shapes = {tuple(t.shape) for t in logits}
    if len(shapes) != 1:
        raise ValueError(f"members disagree on logits shape: {sorted(shapes)}; they need the "
                         "same vocabulary (tokenizer and model.vocab_size)")
    if combine == "logit_mean":
        return torch.log_softmax(torch.stack([t.float() for t in logits]).mean(0), dim=-1)
    if combine == "prob_mean":
        members = torch.stack([torch.log_softmax(t.float(), dim=-1) for t in logits])
        return torch.logsumexp(members, dim=0) - math.log(len(logits))
    raise ValueError(f"combine={combine!r}: use one of {', '.join(COMBINATIONS)}")
