"""Megatron's optimizer (AdamW, optionally the distributed optimizer) and cosine scheduler."""

from __future__ import annotations

import math

import torch


def build_optimizer(chunks, optim, bf16: bool, distributed: bool):
    """Megatron optimizer over the DDP-wrapped chunks. `optim` is an OptimConfig."""
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    config = OptimizerConfig(
        optimizer="adam",  # AdamW: decoupled weight decay
        lr=optim.lr,
        min_lr=optim.lr * optim.min_lr_ratio,
        weight_decay=optim.weight_decay,
        adam_beta1=optim.beta1,
        adam_beta2=optim.beta2,
        adam_eps=optim.eps,
        clip_grad=optim.clip,
        bf16=bf16,
        params_dtype=torch.float32,
        use_distributed_optimizer=distributed,
    )
    return get_megatron_optimizer(config, chunks)


def build_scheduler(optimizer, optim, total_steps: int):
    """Linear warmup from 0 then cosine to lr x min_lr_ratio at `total_steps`; constant wd."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    warmup = max(1, math.ceil(optim.warmup_frac * total_steps))
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=optim.lr,
        min_lr=optim.lr * optim.min_lr_ratio,
        lr_warmup_steps=min(warmup, total_steps),
        lr_decay_steps=total_steps,
        lr_decay_style="cosine",
        start_wd=optim.weight_decay,
        end_wd=optim.weight_decay,
        wd_incr_steps=total_steps,
        wd_incr_style="constant",
    )


def untie_adam_steps(optimizer) -> int:
    """Give every parameter its own AdamW `step` tensor; returns how many were untied.

    After a distributed-optimizer checkpoint is loaded, all parameters can share ONE `step`
    tensor; torch's AdamW then increments it once per parameter per update, so bias
    correction runs ahead and resumed losses drift. (Measured with torch AdamW, no TE/Apex.)
    """
    untied = 0
    seen: set[int] = set()
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        if inner is None:
            continue
        for state in inner.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                if id(step) in seen:
                    state["step"] = step.clone()
                    untied += 1
                seen.add(id(state["step"]))
    return untied
