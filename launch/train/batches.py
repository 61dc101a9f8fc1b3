"""Batch sources of the Trainer: which token window sits at each position of the sample stream.

Position p of the stream is row p of the run (step s reads positions s x global_batch ...); a
source maps it to seq_len + 1 tokens, and says how many steps the run takes.

- `PlainBatches`: the D seed tokens, every epoch a permutation seeded by (seed.data, epoch).
- `TeacherTextMix`: real data mixed with teacher text at weight w (job=distill, mode sequence).
- `ReplayMix`: domain data mixed with replayed general data (job=cpt).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..checks import plan_steps
from ..errors import ConfigError


class PlainBatches:
    """The run's own D seed tokens, E epochs."""

    def setup(self, trainer) -> None:
        """Bind to the trainer's budget (after its data is prepared)."""
        self.budget = trainer.budget
        self.data_seed = trainer.cfg.seed.data
        self.base_steps = plan_steps(trainer.cfg, self.budget.num_sequences)

    def steps(self) -> int:
        """Optimizer steps of the run."""
        return self.base_steps

    def row(self, position: int) -> np.ndarray:
        """seq_len + 1 tokens at a stream position."""
        return self.budget.tokens(position, self.data_seed)

    def index(self, position: int) -> int | None:
        """Which of the S seed sequences sits at `position` (None: not a seed sequence)."""
        return self.budget.sample_index(position, self.data_seed)

    def step_logs(self, step: int, global_batch: int) -> dict[str, float]:
        """Extra train/* scalars of a step."""
        return {}


def real_fraction(w: float) -> Fraction:
    """1 - w, exactly (the share of real sequences under teacher weight w)."""
    return 1 - Fraction(str(w))


def is_real(position: int, w: float) -> bool:
    """Whether sample-stream position `position` is a real sequence under teacher weight w:
    floor((p + 1)(1 - w)) > floor(p (1 - w)), so every batch holds the mix."""
    r = real_fraction(w)
    return math.floor((position + 1) * r) > math.floor(position * r)


class TeacherTextMix(PlainBatches):
    """Real sequences interleaved with teacher text; the real D tokens still pass E times, so
    steps = base steps / (1 - w) (the seed paper's rule)."""

    def __init__(self, synthetic_folders: list[str], weight: float):
        self.folders, self.weight = list(synthetic_folders), weight

    def setup(self, trainer) -> None:
        from ...models.inference import tokenizer_sha
        from ...data.synthetic import load_synthetic

        super().setup(trainer)
        stream = load_synthetic(self.folders, tokenizer_sha(trainer.prepared.root / "tokenizer.json"))
        seq = trainer.cfg.model.seq_len
        n = (len(stream) - 1) // seq
        if n < 1:
            raise ConfigError(f"distill.synthetic holds {len(stream)} tokens, less than one "
                              f"sequence of {seq}; generate more teacher text")
        self.synthetic = np.lib.stride_tricks.sliding_window_view(stream, seq + 1)[::seq][:n]

    def steps(self) -> int:
        return math.ceil(self.base_steps / float(real_fraction(self.weight)))

    def _real_position(self, position: int) -> int | None:
        if not is_real(position, self.weight):
            return None
        return math.floor(position * real_fraction(self.weight))

    def row(self, position: int) -> np.ndarray:
        real = self._real_position(position)
        if real is not None:
            return self.budget.tokens(real, self.data_seed)
        s = position - math.floor(position * real_fraction(self.weight))
        epoch, offset = divmod(s, len(self.synthetic))
        perm = np.random.default_rng([self.data_seed, 7919, epoch]).permutation(len(self.synthetic))
        return self.synthetic[perm[offset]].astype(np.int64)

    def index(self, position: int) -> int | None:
        real = self._real_position(position)
        return None if real is None else self.budget.sample_index(real, self.data_seed)


class ReplayMix(PlainBatches):
    """Domain sequences with a share `fraction` replayed from general data; the domain data
    still gets E passes (steps grow by 1 / (1 - fraction)). Also validates on the general data
    (`val/general/...`), so forgetting shows."""

    def __init__(self, replay_data, fraction: float, tokenizer_check):
        self.replay_data, self.fraction = replay_data, fraction
        self.tokenizer_check = tokenizer_check  # callable(path, what) raising on a mismatch

    def setup(self, trainer) -> None:
        from ...data.datasets import TrainBudget, validation_sets
        from ...data.replay import ReplayMixture, mixture_positions
        from ...data.sources import prepare_data

        cfg, seq = trainer.cfg, trainer.cfg.model.seq_len
        self.tokenizer_check(trainer.prepared.root / "tokenizer.json", "the domain data")
        replay = prepare_data(self.replay_data, cfg.data.val_sequences * seq + 1,
                              progress=trainer.info.rank == 0)
        self.tokenizer_check(replay.root / "tokenizer.json", "the replay data")
        trainer.extra_val["general"] = validation_sets(replay, seq, cfg.data.val_sequences)
        positions = mixture_positions(trainer.budget.num_sequences, cfg.train.epochs,
                                      self.fraction, cfg.train.global_batch)
        self.mix_steps = positions // cfg.train.global_batch
        replay_budget = TrainBudget(replay, self.replay_data.seed_tokens, seq)
        trainer.budget = ReplayMixture(trainer.budget, replay_budget, self.fraction, positions,
                                       cfg.seed.data)
        super().setup(trainer)

    def steps(self) -> int:
        return self.mix_steps

    def index(self, position: int) -> int | None:
        kind, rank = self.budget.source(position)
        return self.budget.domain.sample_index(rank, self.data_seed) if kind == "domain" else None

    def step_logs(self, step: int, global_batch: int) -> dict[str, float]:
        share = self.budget.replay_share((step - 1) * global_batch, step * global_batch)
        return {"train/replay_fraction": share}
