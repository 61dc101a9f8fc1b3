"""Checks of the configuration every job shares, before anything starts or is submitted.

Each check returns the list of problems it finds (empty: fine), each a sentence that names the
key and the fix, so a sweep can list every problem of every point at once. Job types add their
own checks (launch/jobs/<job>.py `check`); `asymptote.launch.jobs.check_config` runs both.
"""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
BACKENDS = ("auto", "nccl", "gloo")
SPECS = ("auto", "local", "te")


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


def _positive(errors: list[str], values: dict[str, float], minimum: float = 1) -> None:
    for key, value in values.items():
        if value is None or value < minimum:
            errors.append(f"{key}={value} must be >= {minimum}")


def check_optim(cfg: RunConfig) -> list[str]:
    """The optimizer and its schedule: values AdamW and the cosine schedule accept."""
    o, errors = cfg.optim, []
    if not o.lr > 0:
        errors.append(f"optim.lr={o.lr} must be > 0 (a peak learning rate such as 3e-3)")
    if not 0 <= o.min_lr_ratio <= 1:
        errors.append(f"optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1]")
    if not 0 <= o.warmup_frac < 1:
        errors.append(f"optim.warmup_frac={o.warmup_frac} must be in [0, 1)")
    if o.weight_decay < 0:
        errors.append(f"optim.weight_decay={o.weight_decay} must be >= 0")
    for key, beta in (("beta1", o.beta1), ("beta2", o.beta2)):
        if not 0 <= beta < 1:
            errors.append(f"optim.{key}={beta} must be in [0, 1)")
    if not o.eps > 0:
        errors.append(f"optim.eps={o.eps} must be > 0")
    if o.clip < 0:
        errors.append(f"optim.clip={o.clip} must be >= 0 (0 disables clipping)")
    return errors


def check_train(cfg: RunConfig) -> list[str]:
    """Length, batch, cadence and precision."""
    t, errors = cfg.train, []
    _positive(errors, {"train.epochs": t.epochs, "train.global_batch": t.global_batch,
                       "train.micro_batch": t.micro_batch, "train.keep_checkpoints":
                       t.keep_checkpoints, "train.log_every": t.log_every})
    _positive(errors, {"train.eval_every": t.eval_every, "train.ckpt_every": t.ckpt_every,
                       "train.max_restarts": t.max_restarts}, minimum=0)
    if t.precision not in PRECISIONS:
        errors.append(f"train.precision={t.precision!r}: use one of {', '.join(PRECISIONS)}")
    if t.peak_flops is not None and not t.peak_flops > 0:
        errors.append(f"train.peak_flops={t.peak_flops} must be > 0 (FLOP/s), or null")
    return errors


def check_model(cfg: RunConfig) -> list[str]:
    """Architecture sizes and their divisibility under the parallel layout."""
    m, p, errors = cfg.model, cfg.parallel, []
    _positive(errors, {"model.hidden": m.hidden, "model.layers": m.layers, "model.heads": m.heads,
                       "model.kv_heads": m.kv_heads, "model.ffn": m.ffn,
                       "model.seq_len": m.seq_len, "model.vocab_multiple": m.vocab_multiple,
                       "parallel.tp": p.tp, "parallel.pp": p.pp, "parallel.dp": p.dp})
    if errors:
        return errors  # the divisibility checks below would divide by these
    if not 0 <= m.dropout < 1:
        errors.append(f"model.dropout={m.dropout} must be in [0, 1)")
    if not m.init_std > 0:
        errors.append(f"model.init_std={m.init_std} must be > 0")
    if m.spec not in SPECS:
        errors.append(f"model.spec={m.spec!r}: use one of {', '.join(SPECS)}")
    if m.hidden % m.heads:
        errors.append(f"model.hidden={m.hidden} is not divisible by model.heads={m.heads}")
    if m.heads % m.kv_heads:
        errors.append(f"model.heads={m.heads} is not divisible by model.kv_heads={m.kv_heads}")
    for key, value in (("heads", m.heads), ("kv_heads", m.kv_heads), ("ffn", m.ffn)):
        if value % p.tp:
            errors.append(f"model.{key}={value} is not divisible by parallel.tp={p.tp}; pick a "
                          "tp that divides it")
    if m.vocab_size is not None and m.vocab_size % p.tp:
        errors.append(f"model.vocab_size={m.vocab_size} is not divisible by parallel.tp={p.tp}")
    stages = p.pp * (p.vpp or 1)
    if m.layers % stages:
        errors.append(f"model.layers={m.layers} is not divisible by parallel.pp x parallel.vpp = "
                      f"{stages}; change pp/vpp or the model")
    if p.vpp is not None and p.pp < 2:
        errors.append("parallel.vpp needs parallel.pp >= 2 (interleaving needs several stages)")
    if p.backend not in BACKENDS:
        errors.append(f"parallel.backend={p.backend!r}: use one of {', '.join(BACKENDS)}")
    return errors


def check_layout(cfg: RunConfig, world: int | None = None) -> list[str]:
    """The world size against tp x pp, and the batch against micro batch x dp."""
    p, t, errors = cfg.parallel, cfg.train, []
    model_ranks = p.tp * p.pp
    world = model_ranks * p.dp if world is None else world
    if model_ranks < 1 or t.micro_batch < 1:
        return errors  # reported by check_model / check_train
    if world % model_ranks:
        errors.append(f"world size {world} is not a multiple of tp x pp = {model_ranks}; "
                      f"request {model_ranks} x dp ranks")
    dp = max(1, world // model_ranks)
    if t.global_batch % (t.micro_batch * dp):
        errors.append(f"train.global_batch={t.global_batch} is not divisible by train.micro_batch "
                      f"x dp = {t.micro_batch} x {dp}; adjust one of them")
    return errors


def check_data(cfg: RunConfig) -> list[str]:
    """Budget, tokenizer, prepared data and corpus paths (read, never written)."""
    d, t, m, errors = cfg.data, cfg.train, cfg.model, []
    _positive(errors, {"data.seed_tokens": d.seed_tokens, "data.val_sequences": d.val_sequences,
                       "data.vocab_size": d.vocab_size})
    if d.seed_tokens * t.epochs < t.global_batch * m.seq_len:
        errors.append(
            f"data.seed_tokens={d.seed_tokens} x train.epochs={t.epochs} is less than one global "
            f"batch ({t.global_batch} x {m.seq_len} tokens); raise D or E, or lower the batch")
    if d.tokenizer != "train" and not Path(d.tokenizer).expanduser().exists():
        errors.append(f"data.tokenizer={d.tokenizer!r} does not exist; give a tokenizer.json or "
                      "a local Hugging Face tokenizer folder, or data.tokenizer=train")
    tokens_per_step = t.global_batch * m.seq_len
    bad = [x for x in t.keep_at_tokens if x <= 0 or (tokens_per_step and x % tokens_per_step)]
    if bad:
        errors.append(f"train.keep_at_tokens {bad}: each must be a positive multiple of the tokens "
                      f"per step (train.global_batch x model.seq_len = {tokens_per_step}) so a "
                      "checkpoint lands on it")
    if d.train_domain and not d.prepared:
        errors.append(f"data.train_domain={d.train_domain!r} needs data.prepared (a folder written "
                      "by `asymptote data cluster`, which keeps one training set per domain)")
    if d.prepared and not (Path(d.prepared).expanduser() / "manifest.json").is_file():
        errors.append(f"data.prepared={d.prepared!r} is not a prepared-data folder (no "
                      "manifest.json); give the --out folder of a finished `asymptote data cluster`")
    if not d.prepared:
        from ..data.corpus import corpus_files

        try:
            corpus_files(d)
        except (FileNotFoundError, ValueError) as exc:
            errors.append(str(exc))
    return errors


def check_run(cfg: RunConfig, world: int | None = None) -> list[str]:
    """Every shared check: optimizer, training, model, layout and data."""
    return (check_optim(cfg) + check_train(cfg) + check_model(cfg) + check_layout(cfg, world)
            + check_data(cfg))


def raise_problems(problems: list[str], what: str = "invalid run config") -> None:
    """ConfigError listing every problem, if any."""
    if problems:
        raise ConfigError(f"{what}:\n  - " + "\n  - ".join(problems))
