"""lm-eval tasks that need no network: the asymptote task pack, built from the shipped corpus.

- `asymptote_continuation` (multiple choice, 4 options, chance 25%): a passage of held-out
  text and four candidate continuations; the true one, and three spans of held-out text from
  three other domains. A model that has learned what each domain looks like beats chance.
- `asymptote_ppl` (group of `asymptote_ppl_<domain>`, loglikelihood_rolling): word/byte
  perplexity and bits per byte of the held-out documents of each domain.

The passages are the validation documents of the shipped corpus under the default data config
(`data.split_seed=1234`, `data.val_sequences=16`, `model.seq_len=128`): no run trained on the
shipped corpus with those settings has seen them. `python -m asymptote.evals.tasks.build`
rebuilds data/ from the corpus.

Point lm-eval at `TASKS_DIR` (`--include_path`, or `task_manager()` in Python).
"""

from __future__ import annotations

import json
from pathlib import Path

#: Folder of the task YAMLs (give it to lm-eval as --include_path).
TASKS_DIR = Path(__file__).resolve().parent / "asymptote"
#: The task pack's data files (JSON lines), read by the loaders below.
DATA_DIR = TASKS_DIR / "data"
#: Tasks of the pack (the perplexity group expands to one task per domain).
PACK_TASKS = ("asymptote_continuation", "asymptote_ppl")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the asymptote task pack; rebuild it with "
            "`python -m asymptote.evals.tasks.build`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _dataset(rows: list[dict]):
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def continuation(**_metadata):
    """lm-eval `custom_dataset` of asymptote_continuation (lm-eval passes task metadata and
    model arguments as keywords; they do not change the data)."""
    return _dataset(_read_jsonl(DATA_DIR / "continuation.jsonl"))


def heldout(domain: str, **_metadata):
    """lm-eval `custom_dataset` of asymptote_ppl_<domain>: that domain's held-out documents."""
    rows = [r for r in _read_jsonl(DATA_DIR / "heldout.jsonl") if r["domain"] == domain]
    if not rows:
        raise ValueError(f"the task pack has no held-out documents for domain {domain!r}")
    return _dataset(rows)


def task_manager(include_defaults: bool = False, extra_paths=()):
    """An lm-eval TaskManager that knows the task pack (and, optionally, lm-eval's built-in
    tasks: indexing them costs seconds, so they are left out unless asked for)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(TASKS_DIR), *map(str, extra_paths)],
                       include_defaults=include_defaults)
