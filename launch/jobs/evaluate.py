"""`job=evaluate`: downstream accuracy of runs, checkpoints and ensembles through lm-eval
(asymptote.evals.evaluate does the work).

    asymptote-train job=evaluate 'evaluate.runs=[runs/a]' evaluate.tasks=[asymptote_continuation]

Results go into the evaluated runs' own folders (downstream.json, run.json `downstream`, tb/),
or, for an ensemble, into a folder `<out>/<name>` of its own with a run.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..config import RunConfig
from ..outputs import Outputs

COMBINE = ("logit_mean", "prob_mean")


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


@dataclass
class Config(RunConfig):
    """The shared config (its layout is used) plus what to evaluate."""

    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    """Runs, tasks and lm-eval settings."""


def _targets(cfg: Config) -> list[list[str]]:
    from ...evals.evaluate import expand_runs

    specs = expand_runs(cfg.evaluate.runs)
    return [[s] for s in specs] if cfg.evaluate.each else [specs]


def check(cfg: Config, world: int | None = None) -> list[str]:
    """Runs (globs match, checkpoints exist at the steps asked), tasks and settings."""
    from ...evals.ensemble import EnsembleEvalError, check_members
    from ...models.inference import RunLoadError, checkpoint_path

    ev, errors = cfg.evaluate, []
    if ev.combine not in COMBINE:
        errors.append(f"evaluate.combine={ev.combine!r}: use one of {', '.join(COMBINE)}")
    if not ev.tasks:
        errors.append("evaluate.tasks is empty; name lm-eval tasks, e.g. [asymptote_continuation]")
    if ev.batch_size < 1:
        errors.append(f"evaluate.batch_size={ev.batch_size} must be >= 1")
    if ev.limit is not None and not ev.limit > 0:
        errors.append(f"evaluate.limit={ev.limit} must be > 0 (or null)")
    if cfg.parallel.pp != 1:
        errors.append("job=evaluate runs without pipeline stages: set parallel.pp=1")
    if not ev.runs:
        return errors + ["job=evaluate needs evaluate.runs: a run folder, several (an ensemble), "
                         "or globs with evaluate.each=true"]
    try:
        targets = _targets(cfg)
    except FileNotFoundError as exc:
        return errors + [str(exc)]
    if ev.all_checkpoints and any(len(t) > 1 for t in targets):
        errors.append("evaluate.all_checkpoints evaluates single runs: use it with one run or "
                      "with evaluate.each=true")
    for target in targets:
        for spec in target:
            run, at, step = spec.partition("@")
            try:
                checkpoint_path(run, int(step) if at else ev.step)
            except (RunLoadError, ValueError) as exc:
                errors.append(f"evaluate.runs: {exc}")
        if len(target) > 1:
            try:
                check_members([s.partition("@")[0] for s in target])
            except EnsembleEvalError as exc:
                errors.append(f"evaluate.runs (an ensemble): {exc}")
    return errors


def outputs(cfg: Config) -> Outputs:
    """The evaluated runs' downstream.json (single runs) or the ensemble's own folder."""
    from types import SimpleNamespace

    from ...evals.evaluate import ensemble_folder
    from ...models.inference import RunLoadError, checkpoint_path

    try:
        targets = _targets(cfg)
    except FileNotFoundError:
        targets = []
    if len(targets) == 1 and len(targets[0]) > 1:  # an ensemble: a folder of its own
        members = []
        for spec in targets[0]:
            run, at, step = spec.partition("@")
            try:
                _, step = checkpoint_path(run, int(step) if at else cfg.evaluate.step)
            except (RunLoadError, ValueError):
                step = None
            members.append(SimpleNamespace(run_dir=Path(run).expanduser(), step=step))
        folder = ensemble_folder(cfg, members).resolve()
        return Outputs(folder=folder, record=folder / "run.json")
    files = tuple(Path(t[0].partition("@")[0]).expanduser().resolve() / "downstream.json"
                  for t in targets if len(t) == 1)
    folder = files[0].parent if files else Path(cfg.out).expanduser().resolve()
    return Outputs(folder=folder, files=files)


def run(cfg: Config) -> dict:
    """Evaluate on this rank (rank 0 writes)."""
    from ...evals.evaluate import run_evaluate

    return run_evaluate(cfg)
