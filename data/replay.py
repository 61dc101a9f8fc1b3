"""Replay: a training stream that mixes a domain budget with general (replay) data.

Every global training position is, independently with probability `fraction`, a replay
sequence (seeded by the data seed, so every rank and every restart agrees). Domain positions
walk through the domain budget in its usual per-epoch order (epoch after epoch), replay
positions through the replay budget's, each counting only its own positions.
"""

from __future__ import annotations

import math

import numpy as np

from .datasets import TrainBudget


def mixture_positions(domain_sequences: int, epochs: int, fraction: float, global_batch: int) -> int:
    """Training positions (whole batches) that give the domain data `epochs` passes on average
    when a share `fraction` of them is replay: ceil(S x E / (1 - fraction)), rounded down to
    whole batches."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"replay fraction {fraction} must be in [0, 1)")
    total = math.ceil(domain_sequences * epochs / (1.0 - fraction))
    return total // global_batch * global_batch


class ReplayMixture:
    """`tokens(position, data_seed)` over a fixed plan of which positions replay."""

    def __init__(self, domain: TrainBudget, replay: TrainBudget, fraction: float, positions: int,
                 data_seed: int):
        self.domain, self.replay, self.fraction = domain, replay, fraction
        self.seq_len = domain.seq_len
        self.num_sequences = domain.num_sequences
        rng = np.random.default_rng([data_seed, 0x7E91A7])
        self.is_replay = rng.random(positions) < fraction
        self._rank = np.where(self.is_replay, np.cumsum(self.is_replay) - 1,
                              np.cumsum(~self.is_replay) - 1)

    @property
    def positions(self) -> int:
        return len(self.is_replay)

    def replay_share(self, start: int, stop: int) -> float:
        """Share of replay sequences among positions [start, stop) (one batch: one step)."""
        return float(self.is_replay[start:stop].mean())

    def source(self, position: int) -> tuple[str, int]:
        """(`replay` or `domain`, index within that source's own stream) of a position."""
        return ("replay" if self.is_replay[position] else "domain"), int(self._rank[position])

    def tokens(self, position: int, data_seed: int) -> np.ndarray:
        """The seq_len + 1 tokens at a global position."""
        kind, rank = self.source(position)
        budget = self.replay if kind == "replay" else self.domain
        return budget.tokens(rank, data_seed)
