"""lm-eval's built-in benchmarks (arc_easy, piqa, sciq, hellaswag, mmlu) from local snapshots.

Compute nodes often have no internet, and lm-eval's built-in tasks download Hugging Face
datasets. Two steps make them work offline:

1. On a machine with internet: `asymptote eval snapshot arc_easy piqa sciq hellaswag mmlu
   --out SNAPSHOTS` saves each dataset (every split) with `datasets.save_to_disk`, one folder per
   task (`SNAPSHOTS/arc_easy/`, ..., `SNAPSHOTS/mmlu/<subject>/`). Copy SNAPSHOTS to the cluster.
   A Hugging Face snapshot folder (`huggingface-cli download --repo-type dataset REPO
   --local-dir SNAPSHOTS/<task>`) works too.
2. `asymptote eval recipes --out RECIPES [--snapshots SNAPSHOTS]` writes one YAML per task that
   `include:`s the installed lm-eval's own task file (same prompts, same metrics, same task
   name) and replaces only where the data comes from: `custom_dataset: !function
   asymptote.evals.snapshots.load`. Give RECIPES to lm-eval as `--include_path`; it takes
   precedence over the built-in definitions. The snapshot root is the one given at generation,
   else `$ASYMPTOTE_EVAL_DATA`.

A task whose snapshot is missing fails with `SnapshotMissingError`, naming the dataset, where it
looked and the commands above; job=evaluate turns lm-eval's network errors into a
`NetworkTaskError` with the same advice.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "ASYMPTOTE_EVAL_DATA"
#: Built-in lm-eval tasks with recipes: task (or group) -> folder of its YAMLs inside lm_eval/tasks
BUILTIN = {
    "arc_easy": "arc/arc_easy.yaml",
    "piqa": "piqa/piqa.yaml",
    "sciq": "sciq/sciq.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "mmlu": "mmlu/default",
}
DOCS = "docs/evaluation.md"


class NetworkTaskError(RuntimeError):
    """An lm-eval task needs a dataset from the network, and there is no local copy."""


class SnapshotMissingError(NetworkTaskError, FileNotFoundError):
    """A recipe task's local snapshot does not exist."""


def advice(task: str, hub: str | None, config: str | None, looked: str | None = None) -> str:
    """The message that says how to point a network task at local data."""
    what = f"the Hugging Face dataset {hub}" + (f" (config {config})" if config else "")
    where = f" (looked in {looked})" if looked else ""
    base = task.split("_")[0] if task.startswith("mmlu_") else task
    return (
        f"lm-eval task {task!r} needs {what}, which cannot be downloaded here, and there is no "
        f"local snapshot{where}. On a machine with internet run `asymptote eval snapshot {base} "
        f"--out SNAPSHOTS`, copy SNAPSHOTS here, then `asymptote eval recipes --out RECIPES "
        f"--snapshots SNAPSHOTS` and pass `--include_path RECIPES` to lm_eval (job=evaluate: "
        f"evaluate.snapshots=SNAPSHOTS does both), or set {ENV}=SNAPSHOTS. See {DOCS}.")


def lm_eval_tasks_dir() -> Path:
    """lm-eval's folder of built-in task YAMLs."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def snapshot_dir(root: str | Path | None, key: str) -> Path | None:
    """Folder of snapshot `key` under `root` (default: $ASYMPTOTE_EVAL_DATA)."""
    root = root or os.environ.get(ENV)
    return Path(root).expanduser() / key if root else None


def load(asymptote_task: str, asymptote_key: str, asymptote_hub: str,
         asymptote_config: str | None = None, asymptote_root: str | None = None, **_metadata):
    """lm-eval `custom_dataset` of a recipe: the task's dataset from its local snapshot.

    A `save_to_disk` folder loads with `load_from_disk`; a Hugging Face snapshot folder with
    `load_dataset(folder, config)`."""
    import datasets

    folder = snapshot_dir(asymptote_root, asymptote_key)
    if folder is None or not folder.is_dir():
        raise SnapshotMissingError(advice(
            asymptote_task, asymptote_hub, asymptote_config,
            str(folder) if folder else f"nowhere: no snapshot root given and ${ENV} is unset"))
    if (folder / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(folder))
    return datasets.load_dataset(str(folder), asymptote_config)


def _recipe(task_yaml: Path, root: str | None) -> tuple[str, dict]:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(task_yaml, resolve_func=False, recursive=True)
    name = cfg["task"]
    key = name if not name.startswith("mmlu_") else f"mmlu/{cfg['dataset_name']}"
    kwargs = {"asymptote_task": name, "asymptote_key": key, "asymptote_hub": cfg["dataset_path"],
              "asymptote_config": cfg.get("dataset_name")}
    if root:
        kwargs["asymptote_root"] = str(Path(root).expanduser().resolve())
    recipe = {"include": str(task_yaml), "task": name,
              "custom_dataset": "!function asymptote.evals.snapshots.load",
              "dataset_kwargs": kwargs}
    return name, recipe


def _dump(recipe: dict) -> str:
    import yaml

    body = dict(recipe)
    fn = body.pop("custom_dataset", None)
    text = yaml.safe_dump(body, sort_keys=False)
    if fn:
        text += f"custom_dataset: {fn}\n"
    return text


def _task_files(task: str, pattern: str) -> list[Path]:
    """lm-eval's own YAML file(s) of a built-in task we have a recipe for."""
    if task not in BUILTIN:
        raise ValueError(f"no recipe for {task!r}; recipes exist for {', '.join(BUILTIN)}")
    source = lm_eval_tasks_dir() / BUILTIN[task]
    return sorted(source.glob(pattern)) if source.is_dir() else [source]


def write_recipes(out: str | Path, snapshots: str | Path | None = None,
                  tasks=tuple(BUILTIN)) -> list[Path]:
    """Write the recipe YAMLs of `tasks` into `out`; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for task in tasks:
        for f in _task_files(task, "*.yaml"):
            if f.name.startswith("_"):  # group definitions: reuse them as they are
                path = out / f"{task}{f.name}"
                path.write_text(f"include: {f}\n")
                written.append(path)
                continue
            name, recipe = _recipe(f, str(snapshots) if snapshots else None)
            path = out / f"{name}.yaml"
            path.write_text(
                f"# asymptote recipe: lm-eval's {name} from a local snapshot "
                f"(asymptote.evals.snapshots)\n" + _dump(recipe))
            written.append(path)
    return written


def save_snapshots(tasks, out: str | Path) -> list[Path]:
    """On a machine with internet: download the datasets of `tasks` and `save_to_disk` them
    under `out` in the layout `load` reads."""
    import datasets
    from lm_eval.tasks._yaml_loader import load_yaml

    saved = []
    for task in tasks:
        for f in _task_files(task, "[!_]*.yaml"):
            cfg = load_yaml(f, resolve_func=False, recursive=True)
            name = cfg["task"]
            key = name if not name.startswith("mmlu_") else f"mmlu/{cfg['dataset_name']}"
            target = Path(out) / key
            if (target / "dataset_dict.json").is_file():
                continue
            ds = datasets.load_dataset(cfg["dataset_path"], cfg.get("dataset_name"))
            ds.save_to_disk(str(target))
            saved.append(target)
    return saved
