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
    if distributed:
        patch_distributed_optimizer_step()
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
    for inner in _inner_optimizers(optimizer):
        for state in inner.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                if id(step) in seen:
                    state["step"] = step.clone()
                    untied += 1
                seen.add(id(state["step"]))
    return untied


def _inner_optimizers(optimizer):
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        if inner is not None:
            yield inner


def prime_adam_state(optimizer) -> int:
    """Create zero AdamW state (moments and a `step` of 0) for parameters that have none.

    A fresh distributed optimizer has no state, and Megatron's `state_dict()` then asserts
    (`len(steps) == 1`) while building the template a checkpoint is loaded into. Returns the
    number of parameters primed.
    """
    primed = 0
    for inner in _inner_optimizers(optimizer):
        for group in inner.param_groups:
            for p in group["params"]:
                if len(inner.state[p]) == 0:
                    inner.state[p]["step"] = torch.zeros((), dtype=torch.float32)
                    inner.state[p]["exp_avg"] = torch.zeros_like(p.data)
                    inner.state[p]["exp_avg_sq"] = torch.zeros_like(p.data)
                    primed += 1
    return primed


def patch_distributed_optimizer_step() -> None:
    """Megatron's fully-reshardable distributed-optimizer load copies every state key of a
    parameter from the checkpoint, but torch AdamW's `step` is stored apart (with the common
    state) and is missing there: `KeyError: 'step'`. Keep the already-loaded step instead.
    Not CPU specific; applied whenever the distributed optimizer runs on torch's AdamW."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    original = DistributedOptimizer._set_main_param_and_optimizer_states
    if getattr(original, "_asymptote_patched", False):
        return

    def set_states(self, model_param, tensors):
        if not self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8 and "step" not in tensors:
            group_index, group_order = self.model_param_group_index_map[model_param]
            main_param = self.optimizer.param_groups[group_index]["params"][group_order]
            state = self.optimizer.state[main_param]
            if "step" in state:
                tensors = {**tensors, "step": state["step"]}
        return original(self, model_param, tensors)

    set_states._asymptote_patched = True
    DistributedOptimizer._set_main_param_and_optimizer_states = set_states
