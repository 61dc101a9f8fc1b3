"""Ensemble combinations against direct computations on small tensors."""

from __future__ import annotations

import pytest
import torch

from asymptote.models.ensemble import combined_log_probs


def _members(k=3, shape=(2, 5, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) * 3 for _ in range(k)]


def test_logit_mean_is_softmax_of_the_average_logits():
    members = _members()
    expected = torch.softmax((members[0] + members[1] + members[2]) / 3, dim=-1)
    assert torch.allclose(combined_log_probs(members, "logit_mean").exp(), expected, atol=1e-6)


def test_prob_mean_is_the_average_probability():
    members = _members()
    expected = sum(torch.softmax(m, dim=-1) for m in members) / 3
    assert torch.allclose(combined_log_probs(members, "prob_mean").exp(), expected, atol=1e-6)


@pytest.mark.parametrize("combine", ["logit_mean", "prob_mean"])
def test_k_copies_of_one_model_equal_the_model(combine):
    one = _members(k=1)[0]
    assert torch.allclose(combined_log_probs([one] * 4, combine), torch.log_softmax(one, -1),
                          atol=1e-6)


def test_prob_mean_survives_extreme_logits():
    a = torch.tensor([[1000.0, 0.0]])
    b = torch.tensor([[0.0, 1000.0]])
    out = combined_log_probs([a, b], "prob_mean")
    assert torch.allclose(out, torch.log(torch.tensor([[0.5, 0.5]])), atol=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same vocabulary"):
        combined_log_probs([torch.zeros(1, 3), torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="combine='median'"):
        combined_log_probs([torch.zeros(1, 3)], "median")
    with pytest.raises(ValueError, match="at least one member"):
        combined_log_probs([])
