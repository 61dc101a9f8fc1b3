"""Checks of a run's config before anything starts, with messages that say what to change."""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig


class ConfigError(ValueError):
    """A run config that cannot work; the message names the fix."""


def plan_steps(cfg: RunConfig, num_sequences: int) -> int:
    """Optimizer steps = S x E / global_batch, S = D // seq_len packed sequences."""
    steps = num_sequences * cfg.train.epochs // cfg.train.global_batch
    if steps < 1:
        need = cfg.train.global_batch * cfg.model.seq_len
        raise ConfigError(
            f"data.seed_tokens={cfg.data.seed_tokens} x train.epochs={cfg.train.epochs} is less "
            f"than one global batch ({cfg.train.global_batch} x {cfg.model.seq_len} = {need} "
            f"tokens); raise data.seed_tokens or train.epochs, or lower train.global_batch"
        )
    return steps


def validate(cfg: RunConfig, world: int | None = None) -> int:
    """Raise ConfigError on the first problem; return the data-parallel size."""
    from .jobs import JOBS, known_jobs

    m, p, t = cfg.model, cfg.parallel, cfg.train
    errors = []
    if cfg.job not in JOBS:
        errors.append(f"job={cfg.job!r} is not a job type; use one of {', '.join(known_jobs())}")
    if m.hidden % m.heads:
        errors.append(f"model.hidden={m.hidden} is not divisible by model.heads={m.heads}")
    if m.heads % m.kv_heads:
        errors.append(f"model.heads={m.heads} is not divisible by model.kv_heads={m.kv_heads}")
    for field, value in (("heads", m.heads), ("kv_heads", m.kv_heads), ("ffn", m.ffn)):
        if value % p.tp:
            errors.append(
                f"model.{field}={value} is not divisible by parallel.tp={p.tp}; pick a tp that "
                f"divides it"
            )
    stages = p.pp * (p.vpp or 1)
    if m.layers % stages:
        errors.append(
            f"model.layers={m.layers} is not divisible by parallel.pp x parallel.vpp = {stages}; "
            f"change pp/vpp or the model"
        )
    if p.vpp is not None and p.pp < 2:
        errors.append("parallel.vpp needs parallel.pp >= 2 (interleaving needs several stages)")
    model_ranks = p.tp * p.pp
    if world is None:
        world = model_ranks * p.dp
    if world % model_ranks:
        errors.append(
            f"world size {world} is not a multiple of tp x pp = {model_ranks}; request "
            f"{model_ranks} x dp ranks"
        )
    dp = max(1, world // model_ranks)
    if t.global_batch % (t.micro_batch * dp):
        errors.append(
            f"train.global_batch={t.global_batch} is not divisible by train.micro_batch x dp = "
            f"{t.micro_batch} x {dp}; adjust one of them"
        )
    if t.epochs < 1:
        errors.append(f"train.epochs={t.epochs} must be >= 1")
    if cfg.data.seed_tokens * t.epochs < t.global_batch * m.seq_len:
        errors.append(
            f"data.seed_tokens={cfg.data.seed_tokens} x train.epochs={t.epochs} is less than one "
            f"global batch ({t.global_batch} x {m.seq_len} tokens); raise D or E, or lower the batch"
        )
    if p.pp > 1 and t.global_batch // (t.micro_batch * dp) < 1:
        errors.append("pipeline parallelism needs at least one microbatch per step")
    if cfg.data.tokenizer != "train" and not Path(cfg.data.tokenizer).expanduser().exists():
        errors.append(
            f"data.tokenizer={cfg.data.tokenizer!r} does not exist; give a tokenizer.json or a "
            "local Hugging Face tokenizer folder, or data.tokenizer=train"
        )
    tokens_per_step = t.global_batch * m.seq_len
    bad = [x for x in t.keep_at_tokens if x <= 0 or x % tokens_per_step]
    if bad:
        errors.append(
            f"train.keep_at_tokens {bad}: each must be a positive multiple of the tokens per step "
            f"(train.global_batch x model.seq_len = {tokens_per_step}) so a checkpoint lands on it"
        )
    if cfg.data.train_domain and not cfg.data.prepared:
        errors.append(
            f"data.train_domain={cfg.data.train_domain!r} needs data.prepared (a folder written by "
            "`asymptote data cluster`, which keeps one training set per domain)"
        )
    if cfg.data.prepared and not (Path(cfg.data.prepared).expanduser() / "manifest.json").is_file():
        errors.append(
            f"data.prepared={cfg.data.prepared!r} is not a prepared-data folder (no manifest.json); "
            "give the --out folder of a finished `asymptote data cluster`"
        )
    if t.precision not in ("auto", "bf16", "fp32"):
        errors.append(f"train.precision={t.precision!r}: use auto, bf16 or fp32")
    if errors:
        raise ConfigError("invalid run config:\n  - " + "\n  - ".join(errors))
    # Corpus paths are checked here too so a sweep fails before any rank starts.
    from ..data.corpus import corpus_files

    try:
        corpus_files(cfg.data)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    return dp
