"""The study specification: one YAML file, every field documented, checked before anything runs.

A study YAML may start from a preset (`base: miniature` or `base: paper`, presets/*.yaml) and
override any field; `key=value` overrides on the command line go on top. Loading refuses, with
every problem listed at once: unknown keys (named, with the valid ones and the closest match),
values of the wrong type, empty grids, unknown model presets, a student larger than its
teacher, a run budget smaller than the initial grid, and values no run could use.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import StudyError

PRESETS_DIR = Path(__file__).parent / "presets"
MODEL_PRESETS_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
SPACINGS = ("half_decade", "double")
ENSEMBLE_RECIPES = ("paper_rule", "optimum")
VARY = ("train", "data", "both")
LAUNCHERS = ("local", "slurm")


@dataclass
class AxisSpec:
    """One hyper-parameter axis of the regularized sweep and how it grows past its edge."""

    grid: List[float] = field(default_factory=list)
    """Initial values, all run for every (N, D) cell; the certificate may add more."""
    spacing: str = "double"
    """How the grid continues past an edge: `half_decade` (1, 3, 10, 30, ... x a power of ten,
    the paper's learning rates) or `double` (x2 up, /2 down: weight decay, epochs)."""
    min: Optional[float] = None
    """Smallest value the axis may take (e.g. 1 epoch); an optimum there is certified on that
    side by the bound itself. Null: unbounded."""
    max: Optional[float] = None
    """Largest value the axis may take; null: unbounded."""


@dataclass
class RunSpec:
    """Settings shared by every training run of the study (asymptote-train keys)."""

    corpus: List[str] = field(default_factory=lambda: ["shipped"])
    """data.corpus: corpus files or folders, or `shipped` (the small corpus in the package)."""
    tokenizer: str = "train"
    """data.tokenizer: `train` (BPE trained on the corpus) or a tokenizer path."""
    vocab_size: int = 4096
    """data.vocab_size when the tokenizer is trained here."""
    val_sequences: int = 16
    """data.val_sequences: held-out validation sequences per domain."""
    global_batch: int = 16
    """train.global_batch: sequences per optimizer step."""
    micro_batch: int = 8
    """train.micro_batch: sequences per forward pass on one rank."""
    eval_every: int = 0
    """train.eval_every: validation every this many steps (0: only at the end)."""
    ckpt_every: int = 0
    """train.ckpt_every: checkpoint every this many steps (0: only at the end)."""
    overrides: List[str] = field(default_factory=list)
    """Any other asymptote-train overrides given to every run (e.g. `parallel.tp=2`)."""


@dataclass
class StandardSpec:
    """The standard recipe: a fixed weight decay, tuned learning rate and epochs."""

    weight_decay: float = 0.1
    """The standard weight decay (the paper: 0.1)."""
    seed_tokens: List[int] = field(default_factory=list)
    """D values of the standard recipe; empty: the study's D grid. L(D) of the standard recipe
    (the data-efficiency baseline) needs at least 3."""
    lr: List[float] = field(default_factory=lambda: [3e-3])
    """Learning rates tried per (N, D)."""
    epochs: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    """Epochs tried per (N, D)."""


@dataclass
class RegularizedSpec:
    """The regularized recipe: lr x weight decay x epochs per (N, D), certified."""

    lr: AxisSpec = field(default_factory=lambda: AxisSpec([1e-3, 3e-3, 1e-2], "half_decade"))
    """Learning-rate axis."""
    weight_decay: AxisSpec = field(default_factory=lambda: AxisSpec([0.1, 0.8, 3.2], "double", 0.0))
    """Weight-decay axis."""
    epochs: AxisSpec = field(default_factory=lambda: AxisSpec([4, 8, 16], "double", 1.0))
    """Epochs axis (whole numbers)."""
    max_runs: int = 64
    """Run budget of one (N, D) cell, the initial grid included: the certificate's grid
    extension stops here and the cell is reported not certified."""


@dataclass
class EnsembleSpec:
    """Ensemble members at each certified optimum, and their evaluation."""

    k_max: int = 8
    """Members per ensemble; L(K) is evaluated for K = 1..k_max (a fit needs >= 3)."""
    recipe: str = "paper_rule"
    """`paper_rule`: 2x epochs and 1/2 weight decay of the optimum (the paper); `optimum`: the
    certified optimum itself, its run being member 0 (science.md: the rule overfits at CPU
    scale)."""
    vary: str = "both"
    """Seeds that differ between members: `train`, `data` or `both`."""
    models: Optional[List[str]] = None
    """The sizes that get ensembles (each one of `models`); null: every size. The distillation
    teacher must be one of them."""


@dataclass
class SequenceDistillSpec:
    """Sequence-level distillation: teacher text mixed into the student's data."""

    enabled: bool = True
    """Train sequence-level students."""
    weights: List[float] = field(default_factory=lambda: [0.75, 0.9])
    """Fractions w of training sequences that are teacher text (one student each)."""
    sequences: int = 1024
    """Synthetic sequences the teacher ensemble writes (job=generate)."""
    shards: int = 1
    """Generation shards (array tasks)."""
    temperature: float = 1.0
    """Sampling temperature of the teacher."""


@dataclass
class LogitDistillSpec:
    """Logit-level distillation: (1 - alpha) CE + alpha T^2 KL to the teacher ensemble."""

    enabled: bool = True
    """Train logit-level students."""
    alpha: float = 0.5
    """Weight of the KL term."""
    temperature: float = 1.0
    """Softening temperature T."""
    offline: bool = False
    """Read the teacher from a cache of its top-k logits instead of running it every step."""


@dataclass
class DistillSpec:
    """Students trained plainly and distilled from an ensemble teacher."""

    teacher: Optional[str] = None
    """Model preset of the teacher ensemble (one of `models`); null: the largest model."""
    students: List[str] = field(default_factory=list)
    """Student model presets, each no larger than the teacher; empty: no distillation."""
    seed_tokens: Optional[int] = None
    """The D (one of `seed_tokens`) at which students are trained; null: the smallest."""
    sequence: SequenceDistillSpec = field(default_factory=SequenceDistillSpec)
    """Sequence-level settings."""
    logit: LogitDistillSpec = field(default_factory=LogitDistillSpec)
    """Logit-level settings."""


@dataclass
class FitSpec:
    """The scaling-law fits of the study."""

    n_boot: int = 1000
    """Bootstrap resamples of every interval."""
    level: float = 0.95
    """Confidence level of the intervals."""


@dataclass
class SlurmSpec:
    """SLURM resources of one array task (hydra.launcher.* of launch/conf/hydra/launcher/slurm.yaml)."""

    partition: Optional[str] = None
    """--partition; null: the cluster's default."""
    account: Optional[str] = None
    """--account; null: the default."""
    qos: Optional[str] = None
    """--qos; null: the default."""
    timeout_min: int = 60
    """Walltime of one run in minutes."""
    nodes: int = 1
    """Nodes per run."""
    gpus_per_node: Optional[int] = None
    """GPUs per node; null requests none (CPU clusters)."""
    cpus_per_task: Optional[int] = None
    """CPUs per rank; null: the default."""
    mem_gb: Optional[int] = None
    """Memory per node in GB; null: the default."""
    array_parallelism: int = 256
    """Most tasks of one array running at once."""
    setup: List[str] = field(default_factory=list)
    """Shell lines run before srun (module loads, venv activation)."""
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    """Any other sbatch flag, without the dashes."""


@dataclass
class LauncherSpec:
    """Where the study's runs go."""

    kind: str = "local"
    """`local` (runs one after another here) or `slurm` (arrays chained by dependencies)."""
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    """SLURM settings (kind=slurm)."""


@dataclass
class StudySpec:
    """A whole data-constrained study: grids, recipes, ensembles, distillation, budgets."""

    name: str = "study"
    """Label of the study (ensemble names, report titles)."""
    out: str = "runs/study"
    """Output folder: runs/ (every run, content-addressed), ensembles/, fits/, report/."""
    seed_tokens: List[int] = field(default_factory=list)
    """The D grid: seed-token budgets."""
    models: List[str] = field(default_factory=list)
    """Model sizes N: presets of launch/conf/model/."""
    run: RunSpec = field(default_factory=RunSpec)
    """Settings shared by every run."""
    standard: StandardSpec = field(default_factory=StandardSpec)
    """The standard recipe."""
    regularized: RegularizedSpec = field(default_factory=RegularizedSpec)
    """The regularized recipe and its certificate budget."""
    ensemble: EnsembleSpec = field(default_factory=EnsembleSpec)
    """Ensembles at the certified optima."""
    distill: DistillSpec = field(default_factory=DistillSpec)
    """Distilled students."""
    fits: FitSpec = field(default_factory=FitSpec)
    """Scaling-law fits."""
    launcher: LauncherSpec = field(default_factory=LauncherSpec)
    """Local or SLURM."""

    @property
    def teacher(self) -> str:
        """The teacher's model preset (the largest model when not given)."""
        return self.distill.teacher or max(self.models, key=model_size)

    @property
    def ensemble_models(self) -> list[str]:
        """The sizes that get ensembles (every size when `ensemble.models` is not given)."""
        return list(self.models if self.ensemble.models is None else self.ensemble.models)

    @property
    def standard_tokens(self) -> list[int]:
        """The D values of the standard recipe."""
        return list(self.standard.seed_tokens or self.seed_tokens)

    @property
    def distill_tokens(self) -> int:
        """The D of the distillation stage."""
        return self.distill.seed_tokens or min(self.seed_tokens)


# -------------------------------------------------------------------------------------------
# Loading
# -------------------------------------------------------------------------------------------


def presets() -> list[str]:
    """Names of the shipped study presets."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def model_presets() -> list[str]:
    """Names of the model presets (launch/conf/model/)."""
    return sorted(p.stem for p in MODEL_PRESETS_DIR.glob("*.yaml"))


def model_config(name: str):
    """The ModelConfig of a model preset."""
    from omegaconf import OmegaConf

    from ...models.config import ModelConfig

    node = OmegaConf.merge(OmegaConf.structured(ModelConfig),
                           OmegaConf.load(MODEL_PRESETS_DIR / f"{name}.yaml"))
    return OmegaConf.to_object(node)


def model_size(name: str) -> int:
    """Non-embedding parameters of a model preset (the N of the scaling laws)."""
    from ...models.size import non_embedding_params

    return non_embedding_params(model_config(name))


def _suggest(word: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(word, valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(data: Any, schema: type, path: str = "") -> list[str]:
    """Every key of `data` the dataclass `schema` does not have, named with the valid keys and
    the closest match; free-form dict fields are not descended into."""
    if not isinstance(data, dict):
        return []
    hints = {f.name: f for f in dataclasses.fields(schema)}
    problems = []
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in hints:
            problems.append(f"unknown key {where!r}{_suggest(str(key), list(hints))}; valid keys"
                            f"{' of ' + path.rstrip('.') if path else ''}: {', '.join(hints)}")
            continue
        default = hints[key].default_factory if hints[key].default_factory is not \
            dataclasses.MISSING else None
        sub = default() if default else None
        if dataclasses.is_dataclass(sub):
            problems += unknown_keys(value, type(sub), where + ".")
    return problems


def _read(source: str | Path) -> tuple[dict, str]:
    """(mapping, where it came from) of a preset name or a YAML path; `base:` chains resolved."""
    from omegaconf import OmegaConf

    path = Path(source).expanduser()
    if not path.is_file():
        if str(source) in presets():
            path = PRESETS_DIR / f"{source}.yaml"
        else:
            raise StudyError(f"{source!r} is neither a study YAML file nor a preset; presets: "
                             f"{', '.join(presets())}{_suggest(str(source), presets())}")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    except Exception as exc:  # a YAML syntax error
        raise StudyError(f"{path}: not a readable YAML mapping: {exc}") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a study YAML is a mapping of keys, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data, str(path)
    if base == str(source) or Path(str(base)).expanduser() == path:
        raise StudyError(f"{path}: `base: {base}` names the file itself")
    parent, _ = _read(base)
    return _merge(parent, data), str(path)


def _merge(a: dict, b: dict) -> dict:
    """`b` over `a`, mappings merged key by key, everything else replaced."""
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def _missing(data: Any, path: str = "") -> list[str]:
    """Keys whose value is OmegaConf's `???` (a value the preset leaves to the user; a merge
    would silently keep the schema's default instead)."""
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in _missing(v, f"{path}{key}.")]
    return [path.rstrip(".")] if data == "???" else []


def _dotlist(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise StudyError(f"overrides must be key=value: {', '.join(bad)}")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    except Exception as exc:
        raise StudyError(f"overrides {overrides}: {exc}") from None


def load_spec(source: str | Path, overrides: list[str] | None = None) -> StudySpec:
    """The checked study of a YAML file or preset name, with `key=value` overrides on top;
    StudyError listing every problem otherwise."""
    from omegaconf import OmegaConf

    data, where = _read(source)
    data = _merge(data, _dotlist(overrides or []))
    if overrides:
        where += f" with {' '.join(overrides)}"
    problems = unknown_keys(data, StudySpec) + [
        f"{key} must be given (it is `???`): set it in your study YAML or as {key}=..."
        for key in _missing(data)]
    if problems:
        raise StudyError(f"{where}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(StudySpec), data)
        spec = OmegaConf.to_object(merged)
    except Exception as exc:  # a value of the wrong type, a required value not given (???)
        key = getattr(exc, "full_key", None) or "?"
        raise StudyError(f"{where}: {key}: {str(exc).splitlines()[0]}") from None
    problems = validate(spec)
    if problems:
        raise StudyError(f"{where}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return spec


# -------------------------------------------------------------------------------------------
# Checks of values
# -------------------------------------------------------------------------------------------


def _grid(problems: list[str], key: str, values: list, positive: bool = True,
          integer: bool = False, minimum: float | None = None) -> None:
    if not values:
        problems.append(f"{key} is empty: give at least one value")
        return
    if len(set(values)) != len(values):
        problems.append(f"{key} {list(values)} repeats a value")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            problems.append(f"{key}: {v!r} is not a finite number")
        elif integer and v != int(v):
            problems.append(f"{key}: {v} must be a whole number")
        elif positive and v <= 0:
            problems.append(f"{key}: {v} must be > 0")
        elif minimum is not None and v < minimum:
            problems.append(f"{key}: {v} must be >= {minimum:g}")


def _axis(problems: list[str], key: str, axis: AxisSpec, integer: bool = False) -> None:
    lowest = axis.min if axis.min is not None else (1 if integer else None)
    _grid(problems, f"{key}.grid", axis.grid, positive=axis.min is None and not integer,
          integer=integer, minimum=lowest)
    if axis.spacing not in SPACINGS:
        problems.append(f"{key}.spacing={axis.spacing!r}: use one of {', '.join(SPACINGS)}"
                        f"{_suggest(axis.spacing, list(SPACINGS))}")
    if axis.min is not None and axis.max is not None and axis.min > axis.max:
        problems.append(f"{key}: min {axis.min:g} is above max {axis.max:g}")
    if axis.max is not None and any(v > axis.max for v in axis.grid):
        problems.append(f"{key}.grid {list(axis.grid)} goes above max {axis.max:g}")


def _models(problems: list[str], key: str, names: list[str]) -> list[str]:
    """The names of `names` that are model presets; problems for the others."""
    valid = model_presets()
    good = []
    for name in names:
        if name in valid:
            good.append(name)
        else:
            problems.append(f"{key}: {name!r} is not a model preset{_suggest(name, valid)}; "
                            f"presets (launch/conf/model/): {', '.join(valid)}")
    return good


def validate(spec: StudySpec) -> list[str]:
    """Every problem of a typed study (empty when it can run)."""
    problems: list[str] = []
    if not spec.name or "/" in spec.name:
        problems.append(f"name={spec.name!r}: give a label without '/'")
    _grid(problems, "seed_tokens", spec.seed_tokens, integer=True)
    _grid_names(problems, "models", spec.models)
    models = _models(problems, "models", spec.models)
    r = spec.run
    if not r.corpus:
        problems.append("run.corpus is empty: give corpus files or folders, or [shipped]")
    for key in ("vocab_size", "val_sequences", "global_batch", "micro_batch"):
        if getattr(r, key) < 1:
            problems.append(f"run.{key}={getattr(r, key)} must be >= 1")
    if r.global_batch >= 1 and r.micro_batch >= 1 and r.global_batch % r.micro_batch:
        problems.append(f"run.global_batch={r.global_batch} is not a multiple of "
                        f"run.micro_batch={r.micro_batch}")
    bad = [o for o in r.overrides if "=" not in o]
    if bad:
        problems.append(f"run.overrides must be asymptote-train key=value overrides: {bad}")
    owned = [o for o in r.overrides if "=" in o and _study_owns(o.split("=", 1)[0].lstrip("+~"))]
    if owned:
        problems.append(f"run.overrides {owned} set keys the study sets itself (its grids, "
                        "recipes and folders); change the study's own fields instead")
    s = spec.standard
    if not s.weight_decay >= 0:
        problems.append(f"standard.weight_decay={s.weight_decay} must be >= 0")
    if s.seed_tokens:
        _grid(problems, "standard.seed_tokens", s.seed_tokens, integer=True)
    _grid(problems, "standard.lr", s.lr)
    _grid(problems, "standard.epochs", s.epochs, integer=True)
    g = spec.regularized
    _axis(problems, "regularized.lr", g.lr)
    _axis(problems, "regularized.weight_decay", g.weight_decay)
    _axis(problems, "regularized.epochs", g.epochs, integer=True)
    size = len(g.lr.grid) * len(g.weight_decay.grid) * len(g.epochs.grid)
    if size and g.max_runs < size:
        problems.append(f"regularized.max_runs={g.max_runs} is smaller than one grid "
                        f"({len(g.lr.grid)} lr x {len(g.weight_decay.grid)} weight decay x "
                        f"{len(g.epochs.grid)} epochs = {size} runs per cell); raise it to at "
                        f"least {size}, plus room for the certificate's extensions")
    e = spec.ensemble
    if e.k_max < 3:
        problems.append(f"ensemble.k_max={e.k_max}: L(K) is fitted over K = 1..k_max and needs "
                        "at least 3 ensemble sizes")
    if e.recipe not in ENSEMBLE_RECIPES:
        problems.append(f"ensemble.recipe={e.recipe!r}: use one of {', '.join(ENSEMBLE_RECIPES)}"
                        f"{_suggest(e.recipe, list(ENSEMBLE_RECIPES))}")
    if e.vary not in VARY:
        problems.append(f"ensemble.vary={e.vary!r}: use one of {', '.join(VARY)}")
    if e.models is not None:
        strays = [m for m in e.models if m not in spec.models]
        if strays or not e.models:
            problems.append(f"ensemble.models {list(e.models)}: " + (
                f"{strays} not in models {list(spec.models)}" if strays else "empty") +
                "; give sizes of the study, or null for every size")
    problems += _distill_problems(spec, models)
    if not spec.fits.n_boot >= 0 or not 0 < spec.fits.level < 1:
        problems.append(f"fits: n_boot={spec.fits.n_boot} must be >= 0 and level="
                        f"{spec.fits.level} in (0, 1)")
    if spec.launcher.kind not in LAUNCHERS:
        problems.append(f"launcher.kind={spec.launcher.kind!r}: use one of {', '.join(LAUNCHERS)}"
                        f"{_suggest(spec.launcher.kind, list(LAUNCHERS))}")
    if spec.launcher.slurm.timeout_min < 1 or spec.launcher.slurm.nodes < 1:
        problems.append("launcher.slurm.timeout_min and launcher.slurm.nodes must be >= 1")
    return problems


# Keys of a run the study sets from its own fields: an override of one would silently replace
# a grid value or move a run folder.
STUDY_KEYS = ("job", "model", "out", "name", "data.seed_tokens", "data.corpus", "data.tokenizer",
              "data.vocab_size", "data.val_sequences", "optim.lr", "optim.weight_decay",
              "train.epochs", "train.global_batch", "train.micro_batch", "train.eval_every",
              "train.ckpt_every", "ensemble", "distill", "generate", "hydra")


def _study_owns(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in STUDY_KEYS)


def _grid_names(problems: list[str], key: str, names: list[str]) -> None:
    if not names:
        problems.append(f"{key} is empty: give at least one model preset")
    elif len(set(names)) != len(names):
        problems.append(f"{key} {list(names)} repeats a preset")


def _distill_problems(spec: StudySpec, models: list[str]) -> list[str]:
    d, problems = spec.distill, []
    if not d.students or not models:
        return problems
    if not (d.sequence.enabled or d.logit.enabled):
        problems.append("distill.students are given but distill.sequence and distill.logit are "
                        "both disabled; enable one or give no students")
    if d.teacher is not None and d.teacher not in spec.models:
        problems.append(f"distill.teacher={d.teacher!r} is not one of models {list(spec.models)}:"
                        " the teacher is the ensemble of one of the study's sizes")
        return problems
    if spec.teacher not in spec.ensemble_models:
        problems.append(f"the teacher {spec.teacher!r} is not in ensemble.models "
                        f"{spec.ensemble_models}: add it, or choose distill.teacher among them")
    if len(models) != len(spec.models):
        return problems  # unknown presets are reported already; sizes cannot be compared
    students = _models(problems, "distill.students", d.students)
    teacher = spec.teacher
    teacher_size = model_size(teacher)
    for student in students:
        if model_size(student) > teacher_size:
            problems.append(f"distill.students: {student!r} ({model_size(student):,} non-embedding "
                            f"parameters) is larger than the teacher {teacher!r} "
                            f"({teacher_size:,}); a student must be no larger than its teacher")
    if d.seed_tokens is not None and d.seed_tokens not in spec.seed_tokens:
        problems.append(f"distill.seed_tokens={d.seed_tokens} is not in the D grid "
                        f"{list(spec.seed_tokens)}: the teacher ensemble exists only there")
    if d.sequence.enabled:
        _grid(problems, "distill.sequence.weights", d.sequence.weights, positive=False,
              minimum=0)
        if any(not w < 1 for w in d.sequence.weights):
            problems.append(f"distill.sequence.weights {list(d.sequence.weights)} must be in "
                            "[0, 1)")
        if d.sequence.sequences < 1 or d.sequence.shards < 1:
            problems.append("distill.sequence.sequences and .shards must be >= 1")
    if d.logit.enabled and not 0 <= d.logit.alpha <= 1:
        problems.append(f"distill.logit.alpha={d.logit.alpha} must be in [0, 1]")
    if d.logit.enabled and not d.logit.temperature > 0:
        problems.append(f"distill.logit.temperature={d.logit.temperature} must be > 0")
    return problems
