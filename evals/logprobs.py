"""Per-token target log-probabilities of ensemble members on the validation set, in HDF5.

With every member's log p_m(target) stored, the probability-mean loss of ANY subset S of
members is -mean_t log( (1/|S|) sum_{m in S} p_m(target_t) ) -- computed from the file, with no
model run. (The logit mean needs the members' full logits, so it is not recoverable here.)

Layout of `logprobs.h5`:
  /tokens         int32 [rows, seq + 1]  validation windows (inputs and shifted targets)
  /row_domain     int16 [rows]            index into attrs["domains"]
  /target_logprob float32 [members, rows, seq]  log p_m(tokens[r, t + 1] | tokens[r, :t + 1])
  attrs: domains, members (run folders), steps, tokenizer_sha, vocab, seq_len
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import replacing


class LogProbStore:
    """Read side of a logprobs.h5 file."""

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            self.target_logprob = f["target_logprob"][...]
            self.tokens = f["tokens"][...]
            self.row_domain = f["row_domain"][...]
            self.attrs = {k: _attr(v) for k, v in f.attrs.items()}
        self.domains = list(self.attrs["domains"])
        self.members = list(self.attrs["members"])

    @property
    def num_members(self) -> int:
        return self.target_logprob.shape[0]

    def subset_token_logprob(self, subset: Sequence[int]) -> np.ndarray:
        """[rows, seq] log of the mean probability the members in `subset` give each target."""
        subset = list(subset)
        if not subset:
            raise ValueError("a subset needs at least one member")
        bad = [i for i in subset if not 0 <= i < self.num_members]
        if bad:
            raise ValueError(f"member index {bad[0]} is outside 0..{self.num_members - 1}")
        lp = self.target_logprob[subset].astype(np.float64)
        top = lp.max(axis=0)
        return top + np.log(np.exp(lp - top).sum(axis=0)) - math.log(len(subset))

    def prob_mean_loss(self, subset: Sequence[int], domain: str | None = None) -> float:
        """Validation loss (nats/token) of the probability mean of `subset` (optionally one
        domain's rows only)."""
        lp = self.subset_token_logprob(subset)
        if domain is not None:
            lp = lp[self.row_domain == self.domains.index(domain)]
        return float(-lp.mean())


def _attr(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def write_store(path: str | Path, tokens: np.ndarray, row_domain: np.ndarray,
                target_logprob: np.ndarray, attrs: dict) -> Path:
    """Write a logprobs.h5 atomically (to a temporary name, then renamed)."""
    import h5py

    path = Path(path)
    with replacing(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("tokens", data=tokens.astype(np.int32), compression="gzip")
        f.create_dataset("row_domain", data=row_domain.astype(np.int16))
        f.create_dataset("target_logprob", data=target_logprob.astype(np.float32),
                         compression="gzip", chunks=(1, min(64, tokens.shape[0]), tokens.shape[1] - 1))
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return path
