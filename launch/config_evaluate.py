"""Configuration of job=evaluate (downstream evaluation through lm-eval, asymptote.evals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class EvaluateConfig:
    """What job=evaluate evaluates, on which tasks, and how."""

    runs: List[str] = field(default_factory=list)
    """Run folders to evaluate. Several form ONE ensemble (unless `each`); `DIR@STEP` picks a
    checkpoint; globs (e.g. `runs/demo/*`) expand to the run folders they match."""
    each: bool = False
    """Evaluate every entry of `runs` as its own single-run target, one after another, instead
    of one ensemble of all of them."""
    step: Optional[int] = None
    """Checkpoint step for runs without `@STEP`; null: each run's latest checkpoint."""
    all_checkpoints: bool = False
    """Evaluate every checkpoint each run kept (single runs only), e.g. accuracy over training."""
    combine: str = "logit_mean"
    """How ensemble members combine: `logit_mean` (softmax of mean logits) or `prob_mean`."""
    tasks: List[str] = field(default_factory=lambda: ["asymptote_continuation", "asymptote_ppl"])
    """lm-eval tasks or groups: the offline task pack (asymptote_continuation, asymptote_ppl),
    recipe tasks read from local snapshots (arc_easy, piqa, sciq, hellaswag, mmlu; see
    `snapshots`), or any task lm-eval knows (include_path adds more)."""
    limit: Optional[float] = None
    """lm-eval's limit: at most this many documents per task (a fraction if < 1); null: all."""
    num_fewshot: Optional[int] = None
    """Few-shot examples per prompt; null: each task's default (0 for the task pack)."""
    batch_size: int = 32
    """Sequences per forward pass."""
    include_path: List[str] = field(default_factory=list)
    """Extra folders of lm-eval task YAMLs."""
    snapshots: Optional[str] = None
    """Folder of local dataset snapshots (`asymptote eval snapshot ... --out DIR`) for the recipe
    tasks; null: $ASYMPTOTE_EVAL_DATA."""
    offline: bool = True
    """Set HF_HUB_OFFLINE / HF_DATASETS_OFFLINE (compute nodes have no internet): a task without
    local data fails at once with advice instead of waiting on the network."""
    name: Optional[str] = None
    """Folder name (under `out`) of an ensemble's results; null derives one from the members."""
    bf16: bool = False
    """Load weights in bf16 (GPU only)."""
